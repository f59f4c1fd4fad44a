#!/usr/bin/env python3
"""imgpipe next to the stack it replaces, measured the same way, in one run.

Starts, one after another and alternating, three deployments on free
loopback ports, each fresh, and drives each with the same client:

  embedded     imgpipe serve (2 worker slots)
  distributed  imgpipe api + imgpipe worker (2 slots) on redis-server and s3s-fs
  distributed-garage  the same on Garage (a production S3 server, one node,
               its defaults) instead of s3s-fs; only when asked for, as it
               builds Garage from crates.io into target/garage on first use
  peer         bench/peer: FastAPI under uvicorn (2 workers) + Celery
               (prefork, 2) on redis-server + Pillow, results on local disk

A run is J jobs of K photo-like 1080p JPEGs from C clients; each client
POSTs a job, polls its status every 50 ms until every image is ready, then
takes the next job. The clock stops when the last job is ready; every ZIP
is then downloaded and every image in it decoded (after the clock). Two
clients, each over the same sequence:

  light   threads over the standard library's http.client (keep-alive)
  httpx   one asyncio httpx.AsyncClient, C tasks (an ordinary async client)

Reported for each deployment and client: images/s, POST p50/p95, time from
POST to ready p50/p95, and server CPU per image: user + system time of
every process of the deployment and its children (read from /proc before
and after the clock; the client excluded). Redis' and the S3 server's CPU
are shown apart. Ratios are against the peer in the same round. The codec
floor is pipeline-bench's single-thread CPU per image on the same photos,
measured right before and right after each imgpipe run (1.5 s each); each
run is read against the mean of its two, and their ratio shows how much
the machine drifted meanwhile.
Also shown: the client's own CPU per image (this process) and how much of
the machine stayed idle during the clock (/proc/stat): with little idle,
images/s is bound by the CPU that server and client share, so it depends
on the client. For imgpipe, also where its POSTs spent their time as the
server measured them (from /metrics, before and after the clock): the
request, and within it the submission's stages once the body was in
(examine, store, record, enqueue); the rest is receiving the body and
answering. The client's POST time adds the wait for a connection and the
network on top.

    cargo build --release
    python3 scripts/sidebyside.py                        # blur, 10 x 8, 4 clients, 2 rounds, both clients
    python3 scripts/sidebyside.py --ops sharpen --rounds 3
    python3 scripts/sidebyside.py --quality 90           # both at quality 90 (the default is each one's own: 75)
    python3 scripts/sidebyside.py --pickup 200           # only: 200 one-tiny-image jobs, one at a time, idle
    python3 scripts/sidebyside.py --photos ~/Pictures    # your own JPEGs, in turn, 8 per job

--pickup times single-image jobs of a 23x17 PNG on an idle server, in both
imgpipe deployments (and the peer): from the job's creation to its image's
start as the server records them (imgpipe only), and from POST to the first
status that says it is ready (polled every 2 ms).

Each deployment's files (its data directory, Redis', S3's) are deleted at
the end of the whole run, not when it stops: on ext4 without a journal (as
on the build machine), creating a file skips every inode freed in the last
minute, one lookup each, so a run that followed another's deletes paid for
them, the embedded server most (two files per image, against the peer's
one).

Installs bench/peer/requirements.txt into target/peer-venv on first use
(PyPI), and re-runs itself there. Needs redis-server and s3s-fs on PATH
(scripts/test.sh installs them). Loopback only; everything it starts is
stopped at the end.
"""

import argparse
import asyncio
import atexit
import concurrent.futures as futures
import hashlib
import http.client
import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEER = ROOT / "bench" / "peer"
VENV = ROOT / "target" / "peer-venv"
BIN = ROOT / "target" / "release"
TICK = os.sysconf("SC_CLK_TCK")


GARAGE = ROOT / "target" / "garage" / "bin" / "garage"
# Columns wide enough for the longest deployment name.
WIDTH = len("distributed-garage")
GARAGE_VERSION = "2.5.0"


def garage_binary():
    """Garage for the distributed-garage deployment, built from crates.io
    into target/garage on first use (main() does it before any run)."""
    if not GARAGE.exists():
        print(f"# building garage {GARAGE_VERSION} into {GARAGE.parent.parent} (first use only)", flush=True)
        subprocess.run(["cargo", "install", "garage", "--version", GARAGE_VERSION, "--locked",
                        "--no-default-features", "--features", "bundled-libs,lmdb",
                        "--root", str(GARAGE.parent.parent)], check=True)
    return str(GARAGE)


def ensure_venv():
    """Re-runs this script in the peer's virtualenv, creating it first."""
    python = VENV / "bin" / "python"
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    requirements = (PEER / "requirements.txt").read_bytes()
    stamp = VENV / "requirements.sha256"
    digest = hashlib.sha256(requirements).hexdigest()
    if not python.exists() or not stamp.exists() or stamp.read_text() != digest:
        print(f"installing {PEER / 'requirements.txt'} into {VENV} …", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(PEER / "requirements.txt")],
                       check=True)
        stamp.write_text(digest)
    os.execv(str(python), [str(python), os.path.abspath(sys.argv[0]), *sys.argv[1:]])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, what, proc, log, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}; see {log}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not listen on {port} within {timeout} s; see {log}")


def cpu_seconds(root_pids):
    """User + system seconds of these processes and all their descendants
    (live ones, plus the children each has reaped)."""
    parents, stats = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = open(f"/proc/{entry}/stat").read()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2:].split()
        pid = int(entry)
        parents[pid] = int(fields[1])
        # utime, stime, cutime, cstime: fields 14-17 of stat (1-based).
        stats[pid] = sum(int(v) for v in fields[11:15])
    total, todo = 0, list(root_pids)
    seen = set()
    while todo:
        pid = todo.pop()
        if pid in seen or pid not in stats:
            continue
        seen.add(pid)
        total += stats[pid]
        todo.extend(child for child, parent in parents.items() if parent == pid)
    return total / TICK


# Data directories of stopped deployments, deleted at exit (see the doc).
LEFT = []


def remove_left():
    for d in LEFT:
        shutil.rmtree(d, ignore_errors=True)
    # Written back now, the deleted files' inodes stop costing the next
    # run's file creations after a minute instead of five (see
    # cost_breakdown.py on ext4 without a journal).
    os.sync()


atexit.register(remove_left)


class Deployment:
    """One deployment's processes: `own` (its service) and `infra` (Redis,
    S3), started on free ports and stopped on exit."""

    def __init__(self, label, args):
        # "embedded=PATH" runs another imgpipe binary: A/B two builds in one run.
        kind, _, binary = label.partition("=")
        self.kind, self.args = kind, args
        self.binary = str(Path(binary).resolve()) if binary else str(BIN / "imgpipe")
        self.dir = Path(tempfile.mkdtemp(prefix=f"sidebyside-{kind}-"))
        self.port = free_port()
        self.url = f"127.0.0.1:{self.port}"
        # `infra` by name ("redis", "s3"), so that each is reported apart.
        self.own, self.infra, self.procs = [], {}, []
        # imgpipe's RUST_LOG (statements.py turns on sqlx's statement log).
        self.rust_log = "warn"

    def spawn(self, name, cmd, env=None, cwd=None, infra=False):
        log = self.dir / f"{name}.log"
        proc = subprocess.Popen(cmd, stdout=open(log, "wb"), stderr=subprocess.STDOUT, env=env, cwd=cwd)
        self.procs.append(proc)
        (self.infra.setdefault(name, []) if infra else self.own).append(proc)
        return proc, log

    def redis(self):
        port = free_port()
        proc, log = self.spawn("redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                         "--appendonly", "no", "--dir", str(self.dir)], infra=True)
        wait_port(port, "redis-server", proc, log)
        return f"redis://127.0.0.1:{port}"

    def s3s_fs(self):
        """s3s-fs on a free port: imgpipe's S3 settings for it."""
        s3_port = free_port()
        (self.dir / "s3").mkdir()
        proc, log = self.spawn("s3", ["s3s-fs", "--host", "127.0.0.1", "--port", str(s3_port),
                                      "--access-key", "bench", "--secret-key", "bench-secret",
                                      str(self.dir / "s3")], infra=True)
        wait_port(s3_port, "s3s-fs", proc, log)
        return dict(S3_ENDPOINT=f"http://127.0.0.1:{s3_port}", S3_ACCESS_KEY="bench",
                    S3_SECRET_KEY="bench-secret")

    def garage(self):
        """Garage (a production S3 server) as one node with its defaults, on
        free ports, its bucket and key made at start: imgpipe's S3 settings
        for it."""
        s3_port, rpc_port = free_port(), free_port()
        root = self.dir / "garage"
        root.mkdir()
        (root / "garage.toml").write_text(
            f'metadata_dir = "{root}/meta"\ndata_dir = "{root}/data"\ndb_engine = "lmdb"\n'
            f'replication_factor = 1\nrpc_bind_addr = "127.0.0.1:{rpc_port}"\n'
            f'rpc_public_addr = "127.0.0.1:{rpc_port}"\nrpc_secret = "{os.urandom(32).hex()}"\n'
            f'[s3_api]\ns3_region = "us-east-1"\napi_bind_addr = "127.0.0.1:{s3_port}"\n'
            f'root_domain = ".s3.garage.localhost"\n')
        key, secret = "GK" + os.urandom(12).hex(), os.urandom(32).hex()
        genv = dict(os.environ, GARAGE_DEFAULT_ACCESS_KEY=key, GARAGE_DEFAULT_SECRET_KEY=secret,
                    GARAGE_DEFAULT_BUCKET="imgpipe", RUST_LOG="warn")
        proc, log = self.spawn("s3", [garage_binary(), "-c", str(root / "garage.toml"), "server",
                                      "--single-node", "--default-bucket"], genv, infra=True)
        wait_port(s3_port, "garage", proc, log)
        return dict(S3_ENDPOINT=f"http://127.0.0.1:{s3_port}", S3_ACCESS_KEY=key, S3_SECRET_KEY=secret)

    def start(self):
        env = dict(os.environ, RUST_LOG=self.rust_log, IMGPIPE_BIND=self.url, IMGPIPE_DATA_DIR=str(self.dir / "data"),
                   IMGPIPE_WORKERS="2", IMGPIPE_AUTH="off", IMGPIPE_MAX_FILES="1000",
                   IMGPIPE_SIGNING_KEY=os.urandom(32).hex(), IMGPIPE_QUOTA_JOBS_PER_MINUTE="1000000")
        for var in ("REDIS_URL", "S3_ENDPOINT", "IMGPIPE_BOOTSTRAP_KEY"):
            env.pop(var, None)
        if self.kind == "embedded":
            proc, log = self.spawn("serve", [self.binary, "serve"], env)
            wait_port(self.port, "imgpipe serve", proc, log)
        elif self.kind == "embedded-split":
            # `imgpipe api` + `imgpipe worker` on one data directory (SQLite).
            api, log = self.spawn("api", [self.binary, "api"], env)
            wait_port(self.port, "imgpipe api", api, log)
            self.spawn("worker", [self.binary, "worker"], dict(env, IMGPIPE_BIND="127.0.0.1:0"))
        elif self.kind in ("distributed", "distributed-garage"):
            env["REDIS_URL"] = self.redis()
            if self.kind == "distributed":
                env.update(self.s3s_fs())
            else:
                env.update(self.garage())
            api, log = self.spawn("api", [self.binary, "api"], env)
            wait_port(self.port, "imgpipe api", api, log)
            self.spawn("worker", [self.binary, "worker"], dict(env, IMGPIPE_BIND="127.0.0.1:0"))
        else:
            (self.dir / "data").mkdir()
            penv = dict(os.environ, PEER_REDIS_URL=self.redis(), PEER_DATA_DIR=str(self.dir / "data"))
            python = str(VENV / "bin" / "python")
            self.spawn("celery", [python, "-m", "celery", "-A", "tasks", "worker", "--pool", "prefork",
                                  "--concurrency", "2", "--loglevel", "warning"], penv, cwd=PEER)
            api, log = self.spawn("uvicorn", [python, "-m", "uvicorn", "app:api", "--host", "127.0.0.1",
                                              "--port", str(self.port), "--workers", "2", "--log-level",
                                              "warning"], penv, cwd=PEER)
            wait_port(self.port, "uvicorn", api, log)
        return self

    def cpu(self):
        """CPU seconds so far: the service's own, and each infra server's by name."""
        return (cpu_seconds([p.pid for p in self.own]),
                {name: cpu_seconds([p.pid for p in procs]) for name, procs in self.infra.items()})

    def stop(self):
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        LEFT.append(self.dir)


def photos_from(paths, count):
    """`count` (name, bytes) pairs from the JPEG files at `paths` (files, or
    directories whose *.jpg / *.jpeg files are taken), in turn: the caller's
    own photos instead of the generated ones. Refuses anything that is not a
    JPEG, since the codec floor re-encodes as JPEG as the servers do."""
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
        else:
            files.append(path)
    if not files:
        raise SystemExit(f"--photos: no JPEG files in {' '.join(paths)}")
    loaded = []
    for path in files:
        data = path.read_bytes()
        if not data.startswith(b"\xff\xd8"):
            raise SystemExit(f"--photos: {path} is not a JPEG")
        loaded.append((path.stem, data))
    return [(f"{i}-{loaded[i % len(loaded)][0]}.jpg", loaded[i % len(loaded)][1]) for i in range(count)]


def describe(photos):
    """What a job is made of, for the report's first line."""
    from PIL import Image
    sizes = sorted({Image.open(io.BytesIO(data)).size for _, data in photos})
    kb = [len(data) // 1024 for _, data in photos]
    shown = ", ".join(f"{w}x{h}" for w, h in sizes[:4]) + (", …" if len(sizes) > 4 else "")
    return f"JPEGs of {shown} ({min(kb)}-{max(kb)} KB)"


def multipart(files):
    boundary = "sidebyside" + os.urandom(8).hex()
    parts = [f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\n"
             f"Content-Type: image/jpeg\r\n\r\n".encode() + data + b"\r\n" for name, data in files]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def post_and_wait(conn, path, body, ctype, poll):
    """POSTs a job and polls its status every `poll` s until it is ready:
    (POST seconds, POST → ready seconds, job id, last status)."""
    started = time.perf_counter()
    conn.request("POST", path, body=body, headers={"Content-Type": ctype})
    resp = conn.getresponse()
    answer = resp.read()
    posted = time.perf_counter()
    if resp.status != 202:
        raise SystemExit(f"POST {path} answered {resp.status} {answer[:200]!r}")
    job = json.loads(answer)["job_id"]
    while True:
        conn.request("GET", f"/status-job/{job}")
        status = json.loads(conn.getresponse().read())
        if status.get("all_ready"):
            return posted - started, time.perf_counter() - started, job, status
        time.sleep(poll)


def query(args, kind):
    q = f"filter={args.ops}"
    if args.quality:
        q += f"&quality={args.quality}"
    return q


def drive(url, jobs, path, body, ctype, clients=4):
    """`jobs` jobs POSTed to `path` at `url` (host:port) from `clients`
    threads, each with its own keep-alive http.client connection and waiting
    for its job (status every 50 ms) before the next: each job's POST and
    POST → ready seconds, and its id."""
    left = list(range(jobs))
    lock = threading.Lock()
    posts, dones, ids = [], [], []

    def client():
        conn = http.client.HTTPConnection(*url.split(":"), timeout=600)
        while True:
            with lock:
                if not left:
                    return
                left.pop()
            post, done, job, _ = post_and_wait(conn, path, body, ctype, 0.05)
            with lock:
                posts.append(post)
                dones.append(done)
                ids.append(job)

    with futures.ThreadPoolExecutor(clients) as pool:
        for f in [pool.submit(client) for _ in range(clients)]:
            f.result()
    return posts, dones, ids


def light_run(url, args, kind, body, ctype):
    """The light client: see `drive`."""
    return drive(url, args.jobs, f"/process-job?{query(args, kind)}", body, ctype, args.clients)


def httpx_run(url, args, kind, body, ctype):
    """One httpx.AsyncClient, C tasks."""
    import httpx

    async def main():
        jobs = list(range(args.jobs))
        posts, dones, ids = [], [], []
        limits = httpx.Limits(max_connections=args.clients)
        async with httpx.AsyncClient(base_url=f"http://{url}", timeout=600, limits=limits) as client:
            async def one():
                while jobs:
                    jobs.pop()
                    started = time.perf_counter()
                    resp = await client.post(f"/process-job?{query(args, kind)}", content=body,
                                             headers={"Content-Type": ctype})
                    posted = time.perf_counter()
                    if resp.status_code != 202:
                        raise SystemExit(f"{kind}: POST answered {resp.status_code} {resp.text[:200]}")
                    job = resp.json()["job_id"]
                    while not (await client.get(f"/status-job/{job}")).json().get("all_ready"):
                        await asyncio.sleep(0.05)
                    posts.append(posted - started)
                    dones.append(time.perf_counter() - started)
                    ids.append(job)
            await asyncio.gather(*(one() for _ in range(args.clients)))
        return posts, dones, ids

    return asyncio.run(main())


def verify(url, ids, images):
    """Every ZIP downloaded and every image in it decoded (after the clock)."""
    from PIL import Image
    conn = http.client.HTTPConnection(*url.split(":"), timeout=600)
    for job in ids:
        conn.request("GET", f"/download/{job}")
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise SystemExit(f"download {job}: {resp.status} {data[:200]!r}")
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            names = [n for n in z.namelist() if n != "manifest.json"]
            if len(names) != images:
                raise SystemExit(f"job {job}: {len(names)} images in its ZIP, expected {images}")
            for name in names:
                Image.open(io.BytesIO(z.read(name))).load()


def pct(values, p):
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


class Scraper:
    """GET /metrics every `every` seconds while a run goes on, as Prometheus
    would (what metrics cost the hot path, scraped)."""

    def __init__(self, url, every):
        self.url, self.every, self.done = url, every, threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        host, port = self.url.split(":")
        while not self.done.wait(self.every):
            conn = http.client.HTTPConnection(host, int(port), timeout=10)
            conn.request("GET", "/metrics")
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 200, resp.status
            conn.close()

    def stop(self):
        self.done.set()
        self.thread.join()


STAGES = ("examine", "store", "record", "enqueue")


def post_timings(url):
    """Seconds and counts of the server's POST /process-job requests and of
    their submission stages, summed so far, from its /metrics (what the
    server says its POSTs spent, and where)."""
    host, port = url.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    wanted = {f'imgpipe_submission_stage_seconds_{part}{{stage="{stage}"}}': (stage, part)
              for stage in STAGES for part in ("sum", "count")}
    wanted.update({f'imgpipe_http_request_duration_seconds_{part}{{route="/process-job"}}': ("request", part)
                   for part in ("sum", "count")})
    found = {}
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name in wanted:
            found[wanted[name]] = float(value)
    return found


def stage_means(before, after):
    """Mean milliseconds per POST, by stage, between two `post_timings`."""
    means = {}
    for stage in ("request",) + STAGES:
        count = after.get((stage, "count"), 0) - before.get((stage, "count"), 0)
        if count:
            means[stage] = (after[(stage, "sum")] - before.get((stage, "sum"), 0)) / count * 1000
    return means


def machine_ticks():
    """(idle, all) clock ticks of every CPU so far, from /proc/stat (idle
    counts iowait too; guest time is already in user)."""
    with open("/proc/stat") as f:
        ticks = [int(t) for t in f.readline().split()[1:9]]
    return ticks[3] + ticks[4], sum(ticks)


def client_seconds():
    """User + system CPU of this process (the client's threads or event loop)."""
    t = os.times()
    return t.user + t.system


def measure(kind, client, args, body, ctype):
    deployment = Deployment(kind, args).start()
    try:
        run = light_run if client == "light" else httpx_run
        warm = argparse.Namespace(**{**vars(args), "jobs": 1, "clients": 1})
        run(deployment.url, warm, kind, body, ctype)
        time.sleep(0.5)
        timings0 = post_timings(deployment.url) if kind != "peer" else None
        own0, infra0 = deployment.cpu()
        client0, ticks0 = client_seconds(), machine_ticks()
        scraper = Scraper(deployment.url, args.scrape) if args.scrape and kind != "peer" else None
        started = time.perf_counter()
        posts, dones, ids = run(deployment.url, args, kind, body, ctype)
        wall = time.perf_counter() - started
        client1, ticks1 = client_seconds(), machine_ticks()
        if scraper:
            scraper.stop()
        own1, infra1 = deployment.cpu()
        stages = stage_means(timings0, post_timings(deployment.url)) if timings0 is not None else {}
        verify(deployment.url, ids, args.images)
    finally:
        deployment.stop()
    n = args.jobs * args.images
    return {"kind": kind, "client": client, "img_s": n / wall, "post50": pct(posts, 50) * 1000,
            "post95": pct(posts, 95) * 1000, "done50": pct(dones, 50), "done95": pct(dones, 95),
            "cpu": (own1 - own0) / n * 1000, "infra": (sum(infra1.values()) - sum(infra0.values())) / n * 1000,
            "infra_parts": {name: (infra1[name] - infra0[name]) / n * 1000 for name in infra1},
            "client_cpu": (client1 - client0) / n * 1000, "stages": stages,
            "idle": 100 * (ticks1[0] - ticks0[0]) / max(1, ticks1[1] - ticks0[1])}


def infra_parts(row):
    """Each infra server's share, e.g. " = redis 1.2 + s3 8.0", or nothing."""
    parts = row["infra_parts"]
    return " = " + " + ".join(f"{name} {ms:.1f}" for name, ms in parts.items()) if parts else ""


def parse_time(text):
    from datetime import datetime
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def pickup(kind, args):
    """One-image jobs, one at a time: (start latencies, POST → ready), in s."""
    tiny = (ROOT / "tests/fixtures/golden/in-RGB-23x17.png").read_bytes()
    body, ctype = multipart([("tiny.png", tiny)])
    deployment = Deployment(kind, args).start()
    starts, readies = [], []
    try:
        conn = http.client.HTTPConnection(*deployment.url.split(":"), timeout=60)
        for i in range(args.pickup + 5):
            time.sleep(0.05)  # idle between jobs
            _, ready, _, status = post_and_wait(conn, "/process-job?filter=blur", body, ctype, 0.002)
            if i < 5:
                continue  # warm-up
            readies.append(ready)
            image = (status.get("images") or [{}])[0]
            if image.get("started_at") and status.get("created_at"):
                starts.append(parse_time(image["started_at"]) - parse_time(status["created_at"]))
    finally:
        deployment.stop()
    return starts, readies


def codec_floor(args, photos):
    """pipeline-bench's single-thread CPU per image on the same photos."""
    d = Path(tempfile.mkdtemp(prefix="sidebyside-floor-"))
    try:
        for name, data in photos:
            (d / name).write_bytes(data)
        # One thread, busy throughout: its wall time per image is its CPU time.
        cmd = [str(BIN / "pipeline-bench"), "--ops", args.ops, "--format", "jpeg", "--seconds", "1.5",
               "--quality", str(args.quality or 75)]
        out = subprocess.run(cmd + sorted(str(p) for p in d.iterdir()), check=True, capture_output=True, text=True)
        return json.loads(out.stdout.strip().splitlines()[-1])["ms_per_image"]
    except (subprocess.CalledProcessError, ValueError, KeyError) as e:
        print(f"(pipeline-bench floor unavailable: {e})")
        return None
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ops", default="blur", help="a filter both implement (blur, sharpen, grayscale, …)")
    ap.add_argument("--jobs", type=int, default=10)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--quality", type=int, help="JPEG quality for both (default: each one's own; both 75, Pillow's)")
    ap.add_argument("--client", default="light,httpx")
    ap.add_argument("--deployments", default="embedded,distributed,peer",
                    help="comma-separated; embedded-split: api + worker on SQLite; "
                         "distributed-garage: on Garage instead of s3s-fs; "
                         "embedded=PATH or distributed=PATH runs another imgpipe build")
    ap.add_argument("--scrape", type=float, default=0, metavar="S",
                    help="GET /metrics every S seconds during each imgpipe run (0: never)")
    ap.add_argument("--pickup", type=int, default=0, metavar="N",
                    help="only time N single-image jobs on each idle deployment")
    ap.add_argument("--photos", nargs="+", metavar="PATH",
                    help="your own JPEGs (files or directories) instead of the generated photos, "
                         "used in turn to fill each job")
    args = ap.parse_args()
    ensure_venv()
    if any(d.partition("=")[0] == "distributed-garage" for d in args.deployments.split(",")):
        garage_binary()
    for tool in ("redis-server", "s3s-fs"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not on PATH (scripts/test.sh installs it)")
    if not (BIN / "imgpipe").exists():
        raise SystemExit("target/release/imgpipe not found: run `cargo build --release` first")
    if args.pickup:
        print(f"{args.pickup} one-image jobs (23x17 PNG, blur), one at a time, on an idle server")
        for kind in args.deployments.split(","):
            starts, readies = pickup(kind, args)
            line = f"  {kind:<{WIDTH}} POST → ready p50 {pct(readies, 50) * 1000:6.1f} ms, p99 {pct(readies, 99) * 1000:6.1f} ms"
            if starts:
                line += (f"; created → started p50 {pct(starts, 50) * 1000:5.1f} ms, "
                         f"p99 {pct(starts, 99) * 1000:5.1f} ms")
            print(line, flush=True)
        return
    sys.path.insert(0, str(ROOT / "scripts"))
    from benchimages import jpeg_bytes, photo_like
    if args.photos:
        photos = photos_from(args.photos, args.images)
    else:
        photos = [(f"photo-{i}.jpg", jpeg_bytes(photo_like(1920, 1080, i + 1), 90)) for i in range(args.images)]
    body, ctype = multipart(photos)
    print(f"{args.jobs} jobs x {args.images} {'' if args.photos else 'photo-like '}{describe(photos)}, "
          f"{args.clients} clients, ops {args.ops}, quality {args.quality or 'each default'}, "
          f"{os.cpu_count()} CPUs", flush=True)
    rows = []
    for r in range(args.rounds):
        for client in args.client.split(","):
            for kind in args.deployments.split(","):
                # imgpipe's runs are read against the floor measured right
                # before and right after each (their mean): this machine's
                # speed drifts by a sixth within minutes, so a floor taken
                # once per round misread the runs far from it.
                before = codec_floor(args, photos) if kind != "peer" else None
                row = measure(kind, client, args, body, ctype)
                after = codec_floor(args, photos) if kind != "peer" else None
                row["round"] = r + 1
                row["floor"] = (before + after) / 2 if before and after else None
                row["drift"] = after / before if before and after else None
                rows.append(row)
                floor = (f"; floor {row['floor']:.1f} ms, {row['cpu'] / row['floor']:.2f}x "
                         f"(after ÷ before {row['drift']:.2f})" if row["floor"] else "")
                print(f"  round {r + 1} {client:<5} {kind:<{WIDTH}} {row['img_s']:6.1f} img/s  "
                      f"POST p50/p95 {row['post50']:5.0f}/{row['post95']:5.0f} ms  "
                      f"CPU {row['cpu']:6.1f} ms/img (+{row['infra']:.1f} infra{infra_parts(row)}, "
                      f"{row['client_cpu']:.1f} client; {row['idle']:.0f}% idle){floor}", flush=True)
                if row["stages"].get("request"):
                    parts = " + ".join(f"{stage} {row['stages'][stage]:.1f}" for stage in STAGES
                                       if stage in row["stages"])
                    print(f"      POST inside the server, mean ms: {row['stages']['request']:.1f} "
                          f"= {parts} + receiving the body and answering "
                          f"{row['stages']['request'] - sum(row['stages'].get(s, 0) for s in STAGES):.1f}",
                          flush=True)
    print(f"\n{'round':<6}{'client':<7}{'deployment':<{WIDTH + 1}}{'img/s':>7}{'÷peer':>7}{'POST p50':>9}{'p95 ms':>7}"
          f"{'ready p50':>10}{'p95 s':>7}{'CPU ms/img':>11}{'peer÷':>7}{'infra':>7}{'client':>7}{'idle':>6}")
    for row in rows:
        peer = next((p for p in rows if p["kind"] == "peer" and p["round"] == row["round"]
                     and p["client"] == row["client"]), None)
        speed = f"{row['img_s'] / peer['img_s']:.1f}x" if peer and row is not peer else ""
        cpu = f"{peer['cpu'] / row['cpu']:.1f}x" if peer and row is not peer else ""
        print(f"{row['round']:<6}{row['client']:<7}{row['kind']:<{WIDTH + 1}}{row['img_s']:7.1f}{speed:>7}"
              f"{row['post50']:9.0f}{row['post95']:7.0f}{row['done50']:10.2f}{row['done95']:7.2f}"
              f"{row['cpu']:11.1f}{cpu:>7}{row['infra']:7.1f}{row['client_cpu']:7.1f}{row['idle']:5.0f}%")
    floored = [r for r in rows if r["floor"]]
    if floored:
        print("\ncodec floor (pipeline-bench, one thread, same photos), before and after each imgpipe run: "
              f"{min(r['floor'] for r in floored):.1f}-{max(r['floor'] for r in floored):.1f} ms CPU per image; "
              f"after ÷ before {min(r['drift'] for r in floored):.2f}-{max(r['drift'] for r in floored):.2f}")
        for label in dict.fromkeys(r["kind"] for r in floored):
            mine = [r["cpu"] / r["floor"] for r in floored if r["kind"] == label]
            print(f"  {label}: {statistics.median(mine):.2f}x the floor around its runs "
                  f"(median over {len(mine)} runs; {min(mine):.2f}-{max(mine):.2f})")

if __name__ == "__main__":
    main()
