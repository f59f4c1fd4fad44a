#!/usr/bin/env python3
"""End-to-end load: starts imgpipe, submits J jobs x K images from C
concurrent clients, waits for every job, downloads and verifies every ZIP,
and prints images/s, POST latency percentiles, time-to-done and the peak RSS
of each imgpipe process. Standard library only (plus Pillow to make images).

    cargo build --release
    python3 scripts/load.py                                  # 10 jobs x 8 1080p JPEGs, 4 clients, 2 workers, blur
    python3 scripts/load.py --jobs 20 --images 8 --clients 8 --ops sharpen
    python3 scripts/load.py --distributed                    # imgpipe api + worker on redis-server and s3s-fs
    python3 scripts/load.py --zip-mb 1024                    # also: RSS growth while a 1 GB ZIP downloads
    python3 scripts/load.py --url http://host:8000           # an imgpipe already running (no RSS figures)

Embedded mode runs `imgpipe serve` (API + IMGPIPE_WORKERS=--workers slots in
one process) on a fresh data directory and a free loopback port.
--distributed runs `imgpipe api` and one `imgpipe worker` with --workers
slots on redis-server and s3s-fs (both must be on PATH; scripts/test.sh
installs them). Every process is stopped at the end.

Time-to-done is from a job's POST to its last image finishing, as the
job's own `finished_at` records it. The --zip-mb phase uploads noise JPEGs
(which do not compress) until the job's results reach that size, then
streams its ZIP to a file while sampling the server's RSS every 10 ms.
"""

import argparse
import concurrent.futures as futures
import http.client
import io
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import zipfile
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from benchimages import jpeg_bytes, photo_like  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, what, proc=None, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"{what} exited with status {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not listen on port {port} within {timeout} s")


class Rss:
    """Peak and current resident memory of a process, from /proc."""

    def __init__(self, name, pid):
        self.name, self.pid = name, pid

    def field(self, key):
        try:
            for line in open(f"/proc/{self.pid}/status"):
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
        except OSError:
            return None
        return None

    def peak(self):
        return self.field("VmHWM")

    def now(self):
        return self.field("VmRSS")


class Deployment:
    """The imgpipe processes (and, distributed, their Redis and S3), started
    on free ports and stopped on exit."""

    def __init__(self, args):
        self.args = args
        self.dir = Path(tempfile.mkdtemp(prefix="imgpipe-load-"))
        self.procs = []  # (name, Popen)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def spawn(self, name, cmd, env=None):
        log = open(self.dir / f"{name}.log", "wb")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.procs.append((name, proc))
        return proc

    def start(self):
        binary = Path(self.args.binary)
        if not binary.exists():
            raise SystemExit(f"{binary} not found: run `cargo build --release` first")
        env = dict(os.environ)
        env.update({
            "IMGPIPE_BIND": f"127.0.0.1:{self.port}",
            "IMGPIPE_DATA_DIR": str(self.dir / "data"),
            "IMGPIPE_WORKERS": str(self.args.workers),
            "IMGPIPE_MAX_FILES": "10000",
            "RUST_LOG": "warn",
            # Loopback, throwaway: open mode (no keys) and a throwaway link
            # secret (required with REDIS_URL).
            "IMGPIPE_AUTH": os.environ.get("IMGPIPE_AUTH", "off"),
            "IMGPIPE_SIGNING_KEY": os.urandom(32).hex(),
        })
        if not self.args.distributed:
            proc = self.spawn("imgpipe-serve", [str(binary), "serve"], env)
            wait_port(self.port, "imgpipe serve", proc)
            self.imgpipe = [Rss("imgpipe serve", proc.pid)]
            return
        for tool in ("redis-server", "s3s-fs"):
            if shutil.which(tool) is None:
                raise SystemExit(f"--distributed needs {tool} on PATH (scripts/test.sh installs it)")
        redis_port, s3_port = free_port(), free_port()
        self.spawn("redis", ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", str(self.dir)])
        (self.dir / "s3").mkdir()
        self.spawn("s3", ["s3s-fs", "--host", "127.0.0.1", "--port", str(s3_port),
                          "--access-key", "load", "--secret-key", "load-secret", str(self.dir / "s3")])
        wait_port(redis_port, "redis-server")
        wait_port(s3_port, "s3s-fs")
        env.update({
            "REDIS_URL": f"redis://127.0.0.1:{redis_port}",
            "S3_ENDPOINT": f"http://127.0.0.1:{s3_port}",
            "S3_ACCESS_KEY": "load",
            "S3_SECRET_KEY": "load-secret",
        })
        api = self.spawn("imgpipe-api", [str(binary), "api"], env)
        wait_port(self.port, "imgpipe api", api)
        worker_env = dict(env, IMGPIPE_BIND="127.0.0.1:0")
        worker = self.spawn("imgpipe-worker", [str(binary), "worker"], worker_env)
        time.sleep(0.5)
        if worker.poll() is not None:
            raise SystemExit("imgpipe worker exited at start-up; see " + str(self.dir / "imgpipe-worker.log"))
        self.imgpipe = [Rss("imgpipe api", api.pid), Rss("imgpipe worker", worker.pid)]

    def stop(self):
        for _, proc in reversed(self.procs):
            proc.terminate()
        for _, proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def multipart(files):
    boundary = "imgpipe-load-" + "".join(random.choice("0123456789abcdef") for _ in range(16))
    parts = []
    for name, data in files:
        parts.append(
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n".encode() + data + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class Client:
    """One keep-alive HTTP connection, as a real client would hold."""

    def __init__(self, url):
        u = urllib.parse.urlparse(url)
        self.host, self.port = u.hostname, u.port or 80
        self.conn = None

    def request(self, method, path, body=None, headers=None):
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=600)
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                return self.conn.getresponse()
            except (ConnectionError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise

    def json(self, method, path, body=None, headers=None):
        resp = self.request(method, path, body, headers)
        data = resp.read()
        if resp.status >= 300:
            raise RuntimeError(f"{method} {path}: {resp.status} {data[:300]!r}")
        return json.loads(data)


def post_job(client, ops, files, extra=""):
    body, ctype = multipart(files)
    start = time.perf_counter()
    answer = client.json("POST", f"/process-job?{urllib.parse.urlencode({'ops': ops})}{extra}", body,
                         {"Content-Type": ctype})
    return answer["job_id"], time.perf_counter() - start


def wait_done(client, job_ids, timeout):
    deadline, pending, statuses = time.time() + timeout, set(job_ids), {}
    while pending:
        if time.time() > deadline:
            raise SystemExit(f"{len(pending)} jobs not finished after {timeout} s")
        for job in list(pending):
            status = client.json("GET", f"/status-job/{job}")
            if status["all_ready"]:
                statuses[job] = status
                pending.discard(job)
        if pending:
            time.sleep(0.02)
    return statuses


def verify_zip(client, job, expected):
    resp = client.request("GET", f"/download/{job}")
    data = resp.read()
    if resp.status != 200:
        raise SystemExit(f"download {job}: {resp.status} {data[:200]!r}")
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        bad = z.testzip()
        if bad:
            raise SystemExit(f"job {job}: CRC error in {bad}")
        images = [n for n in z.namelist() if n != "manifest.json"]
        if len(images) != expected:
            raise SystemExit(f"job {job}: {len(images)} images in the ZIP, expected {expected}")
        for name in images:
            head = z.read(name)[:3]
            if head != b"\xff\xd8\xff":
                raise SystemExit(f"job {job}: {name} is not a JPEG")
    return len(data)


def parse_time(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def pct(values, p):
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def mb(n):
    return f"{n / 2**20:.0f} MB" if n is not None else "-"


def load_phase(args, url):
    w, h = map(int, args.size.split("x"))
    print(f"# making {args.images} photo-like {w}x{h} JPEGs (q90)", flush=True)
    files = [(f"photo-{i}.jpg", jpeg_bytes(photo_like(w, h, 100 + i), 90)) for i in range(args.images)]
    upload_mb = sum(len(d) for _, d in files) / 2**20
    print(f"# {args.jobs} jobs x {args.images} images ({upload_mb:.1f} MB per upload), "
          f"{args.clients} clients, ops={args.ops}", flush=True)

    # Warm-up: one small job, so that start-up costs are not counted.
    warm = Client(url)
    job, _ = post_job(warm, args.ops, files[:1])
    wait_done(warm, [job], 120)

    posted = []  # (job_id, latency, wall-clock POST start)
    lock = threading.Lock()
    queue = list(range(args.jobs))

    def client_loop():
        client = Client(url)
        while True:
            with lock:
                if not queue:
                    return
                queue.pop()
            started = time.time()
            job, latency = post_job(client, args.ops, files)
            with lock:
                posted.append((job, latency, started))

    t0 = time.time()
    with futures.ThreadPoolExecutor(args.clients) as pool:
        for f in [pool.submit(client_loop) for _ in range(args.clients)]:
            f.result()
    statuses = wait_done(Client(url), [p[0] for p in posted], args.timeout)
    finished = max(parse_time(s["finished_at"]) for s in statuses.values())
    wall = finished - t0

    failed = [(j, i["index"], i.get("error")) for j, s in statuses.items() for i in s["images"]
              if i["state"] != "succeeded"]
    if failed:
        raise SystemExit(f"{len(failed)} images failed, first: {failed[0]}")
    client = Client(url)
    zip_bytes = sum(verify_zip(client, job, args.images) for job in statuses)

    latencies = [p[1] * 1000 for p in posted]
    to_done = [parse_time(statuses[j]["finished_at"]) - started for j, _, started in posted]
    total = args.jobs * args.images
    print(f"images/s            {total / wall:.1f}  ({total} images in {wall:.2f} s, first POST to last image done)")
    print(f"POST latency ms     p50 {pct(latencies, 50):.1f}  p95 {pct(latencies, 95):.1f}  "
          f"p99 {pct(latencies, 99):.1f}  max {max(latencies):.1f}")
    print(f"time-to-done s      p50 {pct(to_done, 50):.2f}  p95 {pct(to_done, 95):.2f}  max {max(to_done):.2f}")
    print(f"ZIPs verified       {len(statuses)} ({zip_bytes / 2**20:.1f} MB, every entry's CRC and JPEG header)")


def zip_phase(args, deployment, url):
    target = args.zip_mb * 2**20
    rng = random.Random(7)
    # Noise does not compress: a 1080p noise JPEG at q100 stays ~2-3 MB after
    # `invert`, so the results add up fast. Four distinct files, reused.
    noise = []
    for i in range(4):
        from PIL import Image
        img = Image.frombytes("RGB", (1920, 1080), bytes(rng.getrandbits(8) for _ in range(1920 * 1080 * 3)))
        noise.append((f"noise-{i}.jpg", jpeg_bytes(img, 100)))
    per = statistics.mean(len(d) for _, d in noise)
    # Re-encoded at q100 the results come out ~4% smaller than the inputs.
    count = int(target * 1.05 / per) + 1
    client = Client(url)
    files = [noise[i % 4] for i in range(count)]
    files = [(f"n{i}-{name}", data) for i, (name, data) in enumerate(files)]
    print(f"# ZIP phase: one job of {count} noise JPEGs ({count * per / 2**20:.0f} MB upload), ops=invert q100",
          flush=True)
    job, _ = post_job(client, "invert", files, "&quality=100")
    status = wait_done(client, [job], args.timeout)[job]
    if status["status"] != "completed":
        raise SystemExit(f"ZIP job ended {status['status']}")
    server = deployment.imgpipe[0] if deployment else None
    before = server.now() if server else None
    peak = [before or 0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            now = server.now()
            if now:
                peak[0] = max(peak[0], now)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    if server:
        sampler.start()
    start = time.perf_counter()
    resp = client.request("GET", f"/download/{job}")
    size = 0
    with tempfile.TemporaryFile() as out:
        while True:
            chunk = resp.read(1 << 20)
            if not chunk:
                break
            size += len(chunk)
            out.write(chunk)
        elapsed = time.perf_counter() - start
        stop.set()
        out.seek(0)
        with zipfile.ZipFile(out) as z:
            bad = z.testzip()
            entries = len(z.namelist()) - 1
    if resp.status != 200 or bad or entries != count:
        raise SystemExit(f"ZIP check failed: status {resp.status}, bad entry {bad}, {entries}/{count} entries")
    print(f"ZIP download        {size / 2**20:.0f} MB in {elapsed:.1f} s ({size / 2**20 / elapsed:.0f} MB/s), "
          f"{entries} entries, every CRC verified")
    if server:
        print(f"ZIP RSS growth      {mb(peak[0] - before)} ({server.name}: {mb(before)} before, {mb(peak[0])} peak)")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=10)
    p.add_argument("--images", type=int, default=8, help="images per job")
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--workers", type=int, default=2, help="worker slots (IMGPIPE_WORKERS)")
    p.add_argument("--ops", default="blur")
    p.add_argument("--size", default="1920x1080")
    p.add_argument("--distributed", action="store_true")
    p.add_argument("--zip-mb", type=int, default=0, help="also download a ZIP this large and report RSS growth")
    p.add_argument("--url", help="use a running imgpipe instead of starting one")
    p.add_argument("--binary", default=str(ROOT / "target" / "release" / "imgpipe"))
    p.add_argument("--timeout", type=float, default=600)
    args = p.parse_args()

    deployment = None
    if args.url:
        url = args.url
    else:
        deployment = Deployment(args)
        deployment.start()
        url = deployment.url
        print(f"# {'distributed (api + worker, redis-server, s3s-fs)' if args.distributed else 'embedded (imgpipe serve)'}"
              f", {args.workers} worker slots, {url}", flush=True)
    try:
        load_phase(args, url)
        if deployment:
            for proc in deployment.imgpipe:
                print(f"peak RSS            {proc.name}: {mb(proc.peak())}")
        if args.zip_mb:
            zip_phase(args, deployment, url)
    finally:
        if deployment:
            deployment.stop()


if __name__ == "__main__":
    main()
