#!/usr/bin/env python3
"""Abuse, measured from a normal client's side. Starts `imgpipe serve`
(release build, 2 worker slots, open mode on loopback), measures a normal
client's job (8 photo-sized JPEGs, blur: POST latency, then POST → every
image done → ZIP downloaded) on the idle server, then again while each kind
of abuse runs from other connections:

  cost-bombs     100 POSTs of a 70-byte PNG with chains that cost hours
  trickle        64 uploads sending 1 KiB/s
  slow-readers   64 ZIP downloads read at 1 KiB/s
  burst          500 POSTs of a tiny image at once
  heavy-job      one 100-image job of the costliest chain admission accepts

Bounded: each scenario runs while two normal jobs are measured; a normal job
that does not finish within --normal-timeout is reported as such. Loopback only; standard
library only (images are made with target/release/pipeline-bench).

    cargo build --release
    python3 scripts/abuse.py [--scenarios trickle,burst] [--normal-timeout 60]
"""

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target/release")
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


def request(port, method, path, body=None, headers=None, timeout=120):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data


def normal_job(port, photos, timeout):
    """POST latency (s), end-to-end time (s) or None if it did not finish."""
    body, ctype = multipart(photos)
    started = time.perf_counter()
    status, data = request(port, "POST", "/process-job?filter=blur", body, {"Content-Type": ctype})
    post = time.perf_counter() - started
    if status != 202:
        return post, None, f"POST answered {status}"
    job = json.loads(data)["job_id"]
    while time.perf_counter() - started < timeout:
        _, data = request(port, "GET", f"/status-job/{job}")
        if json.loads(data).get("all_ready"):
            for _ in range(20):
                status, _ = request(port, "GET", f"/download/{job}")
                if status == 200:
                    return post, time.perf_counter() - started, "ok"
                time.sleep(1)
            return post, None, f"download answered {status}"
        time.sleep(0.05)
    return post, None, "not done in time"


def trickle(port, stop):
    try:
        s = socket.create_connection(("127.0.0.1", port))
        boundary = "x" * 16
        s.sendall((f"POST /process-job?filter=blur HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                   f"boundary={boundary}\r\nContent-Length: 10000000\r\n\r\n--{boundary}\r\n"
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
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        while not stop.is_set():
            if not s.recv(1024):
                return
            time.sleep(1)
    except OSError:
        pass


def run(args):
    work = tempfile.mkdtemp(prefix="imgpipe-abuse-")
    port = free_port()
    env = dict(os.environ, IMGPIPE_BIND=f"127.0.0.1:{port}", IMGPIPE_DATA_DIR=f"{work}/data",
               IMGPIPE_TMP_DIR=work, IMGPIPE_WORKERS="2", IMGPIPE_AUTH="off", RUST_LOG="warn",
               IMGPIPE_MAX_FILES="1000")
    for var in ("REDIS_URL", "S3_ENDPOINT", "IMGPIPE_BOOTSTRAP_KEY"):
        env.pop(var, None)
    server = subprocess.Popen([os.path.join(BIN, "imgpipe"), "serve"], env=env,
                              stdout=subprocess.DEVNULL, stderr=open(f"{work}/server.log", "w"))
    try:
        for _ in range(100):
            try:
                request(port, "GET", "/healthz")
                break
            except OSError:
                time.sleep(0.1)
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
            rows.append((name, max(posts) * 1000, statistics.median(ends) if ends else None,
                         ", ".join(sorted(set(notes)))))

        measure("idle")
        tiny = open(FIXTURE, "rb").read()
        for scenario in args.scenarios.split(","):
            stop = threading.Event()
            threads = []
            if scenario == "cost-bombs":
                body, ctype = multipart([("bomb.png", tiny)])
                chain = "resize:7071x7071," + ",".join(["mode:25"] * 15)
                refused = sum(request(port, "POST", f"/process-job?ops={chain}", body,
                                      {"Content-Type": ctype})[0] == 422 for _ in range(100))
                print(f"cost-bombs: {refused}/100 refused with 422")
            elif scenario == "trickle":
                threads = [threading.Thread(target=trickle, args=(port, stop)) for _ in range(64)]
            elif scenario == "slow-readers":
                body, ctype = multipart(photos)
                _, data = request(port, "POST", "/process-job?filter=flip&format=png", body, {"Content-Type": ctype})
                job = json.loads(data)["job_id"]
                while not json.loads(request(port, "GET", f"/status-job/{job}")[1])["all_ready"]:
                    time.sleep(0.2)
                threads = [threading.Thread(target=slow_reader, args=(port, f"/download/{job}", stop))
                           for _ in range(64)]
            elif scenario == "burst":
                body, ctype = multipart([("tiny.png", tiny)])
                def burst():
                    for _ in range(10):
                        request(port, "POST", "/process-job?filter=blur", body, {"Content-Type": ctype})
                threads = [threading.Thread(target=burst) for _ in range(50)]
            elif scenario == "heavy-job":
                body, ctype = multipart([(f"t{i}.png", tiny) for i in range(100)])
                chain = "resize:92x68,resize:368x272,resize:1472x1088," + ",".join(["mode:25"] * 6)
                status, data = request(port, "POST", f"/process-job?ops={chain}", body, {"Content-Type": ctype})
                print(f"heavy-job: POST answered {status} {data[:200]!r}")
            for t in threads:
                t.daemon = True
                t.start()
            time.sleep(1)
            measure(scenario, rounds=2)
            stop.set()
            time.sleep(2)
        print(f"\n{'scenario':<14} {'POST max ms':>12} {'end-to-end s':>13}  notes")
        idle = rows[0][2]
        for name, post, end, note in rows:
            ratio = f" ({end / idle:.1f}x idle)" if end and idle else ""
            e2e = f"{end:.2f}{ratio}" if end else "-"
            print(f"{name:<14} {post:>12.1f} {e2e:>13}  {note}")
    finally:
        server.kill()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenarios", default="cost-bombs,trickle,slow-readers,burst,heavy-job")
    ap.add_argument("--normal-timeout", type=float, default=60)
    run(ap.parse_args())
