#!/usr/bin/env python3
"""Abuse, measured from a normal client's side. Starts imgpipe (release build,
2 worker slots, loopback): `serve` (--backend embedded) or `api` + `worker`
on a private redis-server and s3s-fs (--backend distributed; both must be on
PATH, as scripts/test.sh installs them). Keys are required; the normal
client and the abuser are two tenants with keys of their own (--open: auth
off, everyone one tenant). Measures the normal client's job (8 photo-sized
JPEGs, blur: POST latency, then POST → every image done → ZIP downloaded)
on the idle server, then again while each kind of abuse runs from other
connections:

  cost-bombs     100 POSTs of a 70-byte PNG with chains that cost hours
  trickle        64 uploads sending 1 KiB/s
  slow-readers   64 ZIP downloads read at 1 KiB/s
  burst          500 POSTs of a tiny image from 50 connections at once (the
                 normal client starts with them)
  heavy-job      one 100-image job of the costliest chain admission accepts
  disk-fill      uploads until the abuser's bytes-stored quota stops it, on a
                 disk whose free-space watermark is set 1 GiB below what is free
                 (the abuser's key may store 512 MiB; without the quota it
                 would fill the disk to the watermark and everyone would get 507)

Bounded: each scenario runs while two normal jobs are measured; a normal job
that does not finish within --normal-timeout is reported as such. Loopback only; standard
library only (images are made with target/release/pipeline-bench).

    cargo build --release
    python3 scripts/abuse.py [--backend distributed] [--scenarios trickle,burst] [--normal-timeout 60]
                             [--binary target/imgpipe-old]

The servers' peak RSS (VmHWM, summed over the imgpipe processes) is shown
after each scenario.
"""

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target/release")
# The imgpipe binary under test (--binary: another build, to compare).
IMGPIPE = os.path.join(BIN, "imgpipe")
FIXTURE = os.path.join(ROOT, "tests/fixtures/golden/in-RGB-23x17.png")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_photos(work, n=8):
    """1080p JPEGs (a fixture blown up and blurred: smooth, photo-sized)."""
    out = os.path.join(work, "photos")
    os.makedirs(out, exist_ok=True)
    subprocess.run([os.path.join(BIN, "pipeline-bench"), "--ops", "resize:1920x1080:exact:bicubic,gaussian_blur:2",
                    "--format", "jpeg", "--quality", "90", "--seconds", "0.01", "--write-dir", out, FIXTURE],
                   check=True, capture_output=True)
    data = open(os.path.join(out, os.listdir(out)[0]), "rb").read()
    return [(f"photo-{i}.jpg", data) for i in range(n)]


def multipart(files, extra=b""):
    boundary = uuid.uuid4().hex
    parts = []
    for name, data in files:
        parts.append((f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\n"
                      f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


KEYS = {}  # who → API key ("normal", "abuser"); empty in --open mode


def auth(who):
    return {"Authorization": f"Bearer {KEYS[who]}"} if who in KEYS else {}


def auth_line(who):
    return f"Authorization: Bearer {KEYS[who]}\r\n" if who in KEYS else ""


def request(port, method, path, body=None, headers=None, timeout=120, who="abuser"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request(method, path, body=body, headers={**auth(who), **(headers or {})})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data


ABUSER_JOBS = []  # the abuser's accepted jobs in the current scenario
ABUSER_LOCK = threading.Lock()


def abuser_submit(port, path, body, ctype):
    """An abusive POST; its job, if accepted, is deleted when the scenario ends."""
    status, data = request(port, "POST", path, body, {"Content-Type": ctype})
    if status == 202:
        with ABUSER_LOCK:
            ABUSER_JOBS.append(json.loads(data)["job_id"])
    return status, data


def clean_up(port):
    """Deletes the abuser's jobs, so that one scenario's work does not run on into the next."""
    with ABUSER_LOCK:
        jobs, ABUSER_JOBS[:] = list(ABUSER_JOBS), []
    for job in jobs:
        request(port, "DELETE", f"/jobs/{job}")


def normal_job(port, photos, timeout):
    """POST latency (s), end-to-end time (s) or None if it did not finish."""
    body, ctype = multipart(photos)
    started = time.perf_counter()
    status, data = request(port, "POST", "/process-job?filter=blur", body, {"Content-Type": ctype}, who="normal")
    post = time.perf_counter() - started
    if status != 202:
        return post, None, f"POST answered {status}"
    job = json.loads(data)["job_id"]
    while time.perf_counter() - started < timeout:
        _, data = request(port, "GET", f"/status-job/{job}", who="normal")
        if json.loads(data).get("all_ready"):
            refused = []
            for _ in range(20):
                status, _ = request(port, "GET", f"/download/{job}", who="normal")
                if status == 200:
                    note = f"download answered {refused} first" if refused else "ok"
                    return post, time.perf_counter() - started, note
                refused.append(status)
                time.sleep(1)
            return post, None, f"download answered {status}"
        time.sleep(0.05)
    return post, None, "not done in time"


def trickle(port, stop):
    try:
        s = socket.create_connection(("127.0.0.1", port))
        boundary = "x" * 16
        s.sendall((f"POST /process-job?filter=blur HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                   f"boundary={boundary}\r\n{auth_line('abuser')}Content-Length: 10000000\r\n\r\n--{boundary}\r\n"
                   f"Content-Disposition: form-data; name=\"files\"; filename=\"t.png\"\r\n\r\n").encode())
        while not stop.is_set():
            s.sendall(os.urandom(1024))
            time.sleep(1)
    except OSError:
        pass  # cut by the server: the point


def slow_reader(port, path, stop):
    try:
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n{auth_line('abuser')}\r\n".encode())
        while not stop.is_set():
            if not s.recv(1024):
                return
            time.sleep(1)
    except OSError:
        pass


def wait_port(port, what, proc, log):
    for _ in range(300):
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited; see {log}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{what} did not listen on {port}; see {log}")


def rss_mb(procs):
    total = 0
    for p in procs:
        try:
            for line in open(f"/proc/{p.pid}/status"):
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def start(args, work):
    """Starts the deployment; returns (API port, imgpipe processes, all processes, env)."""
    port = free_port()
    env = dict(os.environ, IMGPIPE_BIND=f"127.0.0.1:{port}", IMGPIPE_DATA_DIR=f"{work}/data",
               IMGPIPE_TMP_DIR=work, IMGPIPE_WORKERS="2", RUST_LOG="warn", IMGPIPE_MAX_FILES="1000",
               IMGPIPE_SIGNING_KEY="abuse-signing-key-0123456789abcdef0123",
               # The disk-fill scenario's watermark: 1 GiB of room above it.
               IMGPIPE_MIN_FREE_DISK_BYTES=str(shutil.disk_usage(work).free - (1 << 30)))
    for var in ("REDIS_URL", "S3_ENDPOINT", "IMGPIPE_BOOTSTRAP_KEY"):
        env.pop(var, None)
    env.update({"IMGPIPE_AUTH": "off"} if args.open else
               {"IMGPIPE_AUTH": "on", "IMGPIPE_BOOTSTRAP_KEY": "abuse-admin-key-0123456789abcdef0123456789"})
    helpers = []
    if args.backend == "distributed":
        redis_port, s3_port = free_port(), free_port()
        os.makedirs(f"{work}/s3", exist_ok=True)
        for cmd, p, what in (
            (["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
              "--appendonly", "no", "--dir", work], redis_port, "redis-server"),
            (["s3s-fs", "--host", "127.0.0.1", "--port", str(s3_port), "--access-key", "abuse",
              "--secret-key", "abuse-secret", f"{work}/s3"], s3_port, "s3s-fs")):
            log = f"{work}/{what}.log"
            proc = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT)
            helpers.append(proc)
            wait_port(p, what, proc, log)
        env.update(REDIS_URL=f"redis://127.0.0.1:{redis_port}", S3_ENDPOINT=f"http://127.0.0.1:{s3_port}",
                   S3_ACCESS_KEY="abuse", S3_SECRET_KEY="abuse-secret", S3_BUCKET="abuse")
        commands = ["api", "worker"]
    else:
        commands = ["serve"]
    servers = []
    for command in commands:
        log = f"{work}/{command}.log"
        proc = subprocess.Popen([IMGPIPE, command], env=env,
                                stdout=subprocess.DEVNULL, stderr=open(log, "w"))
        servers.append(proc)
        if command != "worker":
            wait_port(port, f"imgpipe {command}", proc, log)
    if not args.open:
        # The abuser's own rate quota is lifted, so that one scenario's
        # submissions do not stop the next one's at the door; its storage is
        # half the room above the disk's watermark.
        abuser = ["--jobs-per-minute", "100000", "--stored-bytes", str(512 << 20)]
        for who, more in (("normal", []), ("abuser", abuser)):
            out = subprocess.run([IMGPIPE, "keys", "create", "--tenant", who,
                                  "--scopes", "submit,read", *more], env=env, check=True,
                                 capture_output=True, text=True)
            KEYS[who] = out.stdout.strip().splitlines()[-1]
    return port, servers, servers + helpers


def run(args):
    work = tempfile.mkdtemp(prefix="imgpipe-abuse-")
    port, servers, procs = start(args, work)
    try:
        photos = make_photos(work)
        rows = []

        def measure(name, rounds=3):
            posts, ends, notes = [], [], []
            for _ in range(rounds):
                post, end, note = normal_job(port, photos, args.normal_timeout)
                posts.append(post)
                if end is not None:
                    ends.append(end)
                notes.append(note)
            if os.environ.get("ABUSE_DEBUG"):
                print(name, [round(e, 2) for e in ends], notes)
            rows.append((name, max(posts) * 1000, statistics.median(ends) if ends else None,
                         rss_mb(servers), ", ".join(sorted(set(notes)))))

        measure("idle")
        tiny = open(FIXTURE, "rb").read()
        for scenario in args.scenarios.split(","):
            stop = threading.Event()
            threads = []
            if scenario == "cost-bombs":
                body, ctype = multipart([("bomb.png", tiny)])
                chain = "resize:7071x7071," + ",".join(["mode:25"] * 15)
                refused = sum(abuser_submit(port, f"/process-job?ops={chain}", body, ctype)[0] == 422
                              for _ in range(100))
                print(f"cost-bombs: {refused}/100 refused with 422")
            elif scenario == "trickle":
                threads = [threading.Thread(target=trickle, args=(port, stop)) for _ in range(64)]
            elif scenario == "slow-readers":
                body, ctype = multipart(photos)
                _, data = abuser_submit(port, "/process-job?filter=flip&format=png", body, ctype)
                job = json.loads(data)["job_id"]
                while not json.loads(request(port, "GET", f"/status-job/{job}")[1])["all_ready"]:
                    time.sleep(0.2)
                threads = [threading.Thread(target=slow_reader, args=(port, f"/download/{job}", stop))
                           for _ in range(64)]
            elif scenario == "burst":
                body, ctype = multipart([("tiny.png", tiny)])
                burst_answers = {}
                def burst():
                    for _ in range(10):
                        status, _ = abuser_submit(port, "/process-job?filter=blur", body, ctype)
                        with ABUSER_LOCK:
                            burst_answers[status] = burst_answers.get(status, 0) + 1
                threads = [threading.Thread(target=burst) for _ in range(50)]
            elif scenario == "heavy-job":
                body, ctype = multipart([(f"t{i}.png", tiny) for i in range(100)])
                chain = "resize:92x68,resize:368x272,resize:1472x1088," + ",".join(["mode:25"] * 6)
                status, data = abuser_submit(port, f"/process-job?ops={chain}", body, ctype)
                print(f"heavy-job: POST answered {status} {data[:200]!r}")
            elif scenario == "disk-fill":
                body, ctype = multipart(photos)
                answers = {}
                while True:
                    status, data = abuser_submit(port, "/process-job?filter=flip", body, ctype)
                    answers[status] = answers.get(status, 0) + 1
                    if status != 202:
                        break
                print(f"disk-fill: the abuser's uploads were answered {answers}: {data[:160]!r}")
            for t in threads:
                t.daemon = True
                t.start()
            # The burst is measured as it starts (refused POSTs are over
            # quickly); the others once their connections are all going.
            time.sleep(0.05 if scenario == "burst" else 1)
            measure(scenario, rounds=2)
            busy = sum(t.is_alive() for t in threads)
            if busy and scenario != "burst":
                print(f"{scenario}: {busy} abusing connections still busy after the normal jobs")
            stop.set()
            if scenario == "burst":
                for t in threads:
                    t.join()
                total = sum(burst_answers.values())
                print(f"burst: the abuser's {total} POSTs were answered {burst_answers}")
            clean_up(port)
            time.sleep(2)
        print(f"\n{args.backend}, {'open mode' if args.open else 'two tenants'}")
        print(f"{'scenario':<14} {'POST max ms':>12} {'end-to-end s':>20} {'peak RSS MB':>12}  notes")
        idle = rows[0][2]
        for name, post, end, rss, note in rows:
            ratio = f" ({end / idle:.1f}x idle)" if end and idle else ""
            e2e = f"{end:.2f}{ratio}" if end else "-"
            print(f"{name:<14} {post:>12.1f} {e2e:>20} {rss:>12.0f}  {note}")
    finally:
        for proc in procs:
            proc.kill()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenarios", default="cost-bombs,trickle,slow-readers,burst,heavy-job,disk-fill")
    ap.add_argument("--normal-timeout", type=float, default=60)
    ap.add_argument("--backend", choices=["embedded", "distributed"], default="embedded")
    ap.add_argument("--open", action="store_true", help="auth off: the normal client and the abuser are one tenant")
    ap.add_argument("--binary", help="another imgpipe build to run (default: target/release/imgpipe)")
    args = ap.parse_args()
    if args.binary:
        IMGPIPE = os.path.abspath(args.binary)
    run(args)
