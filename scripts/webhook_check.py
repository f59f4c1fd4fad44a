#!/usr/bin/env python3
"""Webhooks from outside: a receiver that fails at random, jobs submitted to
each deployment, and a check that every event of every job arrived signed,
once per webhook-id among the answered-2xx tries, with its final event; plus
the delivery latency (event written -> first try received) on loopback.

    cargo build --release
    python3 scripts/webhook_check.py                       # 20 jobs x 4 images, fail rate 0.3
    python3 scripts/webhook_check.py --fail-rate 0.5 --kill-worker

The receiver (stdlib http.server, one thread per request) verifies each
`webhook-signature` with its own HMAC and answers, at random with
probability --fail-rate, 500, 503 with `Retry-After: 1`, 429, or a dropped
connection; else 204. --kill-worker SIGKILLs the worker process of the split
deployments halfway through and starts a new one. Exits non-zero if any
check fails.
"""

import argparse
import base64
import hashlib
import hmac
import http.client
import json
import os
import random
import signal
import sys
import threading
import time
from collections import defaultdict
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sidebyside import Deployment, ensure_venv, free_port, multipart, pct  # noqa: E402

SECRET = os.urandom(32)
SECRET_TEXT = "whsec_" + base64.b64encode(SECRET).decode()


class Log:
    def __init__(self):
        self.lock = threading.Lock()
        self.tries = []  # (job, webhook-id, type, answered, signature ok, latency s)


def receiver(log, fail_rate, port):
    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received = time.time()
            msg_id, ts = self.headers.get("webhook-id", ""), self.headers.get("webhook-timestamp", "")
            mac = hmac.new(SECRET, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
            ok = ("v1," + base64.b64encode(mac).decode()) in self.headers.get("webhook-signature", "").split()
            event = json.loads(body)
            data = event["data"]
            written = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()
            answer = 204
            if random.random() < fail_rate:
                answer = random.choice([500, 503, 429, None])
            with log.lock:
                log.tries.append((data["job_id"], msg_id, event["type"], answer, ok, received - written))
            if answer is None:
                self.connection.shutdown(2)  # no answer: the sender sees a broken connection
                return
            self.send_response(answer)
            if answer in (503, 429):
                self.send_header("Retry-After", "1")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def submit(url, body, ctype, hook):
    host, port = url.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.request("POST", f"/process-job?filter=blur&webhook_url={hook}&webhook_events=all", body,
                 {"Content-Type": ctype})
    resp = conn.getresponse()
    answer = resp.read()
    assert resp.status == 202, (resp.status, answer[:300])
    return json.loads(answer)["job_id"]


def last_seq(url, job):
    """The job's events as the stream has them: the highest seq."""
    host, port = url.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.request("GET", f"/jobs/{job}/events", headers={"Last-Event-ID": "0"})
    resp = conn.getresponse()
    seq = 0
    for line in resp:
        if line.startswith(b"id: "):
            seq = int(line[4:])
    return seq


def restart_worker(deployment):
    worker = deployment.own[-1]
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    env = dict(os.environ, RUST_LOG="warn", IMGPIPE_BIND="127.0.0.1:0",
               IMGPIPE_DATA_DIR=str(deployment.dir / "data"), IMGPIPE_WORKERS="2", IMGPIPE_AUTH="off")
    # The same settings the deployment started its worker with.
    env.update({k: v for k, v in deployment.worker_env.items()})
    deployment.spawn("worker-2", [deployment.binary, "worker"], env)


def run(kind, args, body, ctype):
    log = Log()
    port = free_port()
    server = receiver(log, args.fail_rate, port)
    hook = f"http://127.0.0.1:{port}/hook"
    deployment = Deployment(kind, args)
    spawn = deployment.spawn

    def keep_env(name, cmd, env=None, cwd=None, infra=False):
        if name == "worker":
            deployment.worker_env = dict(env)
        return spawn(name, cmd, env, cwd, infra)

    deployment.spawn = keep_env
    deployment.start()
    deployment.spawn = spawn
    problems = []
    try:
        jobs = []
        for i in range(args.jobs):
            jobs.append(submit(deployment.url, body, ctype, hook))
            if args.kill_worker and i == args.jobs // 2 and kind != "embedded":
                time.sleep(0.3)
                restart_worker(deployment)
        deadline = time.time() + args.timeout
        wanted = {}
        while time.time() < deadline:
            with log.lock:
                tries = list(log.tries)
            delivered = defaultdict(set)
            for job, msg, _, answer, _, _ in tries:
                if answer is not None and 200 <= answer < 300:
                    delivered[job].add(msg)
            for job in jobs:
                if job not in wanted:
                    wanted[job] = last_seq(deployment.url, job)
            if all(len(delivered[j]) >= wanted[j] for j in jobs):
                break
            time.sleep(0.5)
        time.sleep(1)
        with log.lock:
            tries = list(log.tries)
    finally:
        deployment.stop()
        server.shutdown()
    delivered = defaultdict(list)
    for job, msg, kind_, answer, ok, _ in tries:
        if not ok:
            problems.append(f"bad signature on {msg}")
        if answer is not None and 200 <= answer < 300:
            delivered[(job, msg)].append(kind_)
    for job in jobs:
        ids = {msg for (j, msg) in delivered if j == job}
        expected = {f"msg_{job.replace('-', '')}_{seq}" for seq in range(1, wanted.get(job, 0) + 1)}
        if ids != expected:
            problems.append(f"job {job}: {len(expected - ids)} events never delivered, "
                            f"{len(ids - expected)} unexpected")
        if not any(k.startswith("job.completed") or k == "job.failed"
                   for (j, _), kinds in delivered.items() if j == job for k in kinds):
            problems.append(f"job {job}: no final event delivered")
    twice = sum(1 for kinds in delivered.values() if len(kinds) > 1)
    first = {}
    for job, msg, _, _, _, latency in tries:
        first.setdefault(msg, latency)
    lat = sorted(first.values())
    failed = sum(1 for t in tries if t[3] is None or not 200 <= t[3] < 300)
    print(f"  {kind:<15} {len(jobs)} jobs, {len(first)} events, {len(tries)} tries ({failed} refused by the "
          f"receiver), {twice} delivered twice; first try p50 {pct(lat, 50) * 1000:6.1f} ms, "
          f"p95 {pct(lat, 95) * 1000:6.1f} ms; {'OK' if not problems else 'FAILED'}", flush=True)
    for p in problems[:10]:
        print("    " + p)
    return not problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=20)
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--fail-rate", type=float, default=0.3)
    ap.add_argument("--kill-worker", action="store_true")
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--deployments", default="embedded,embedded-split,distributed")
    args = ap.parse_args()
    args.quality = None
    ensure_venv()  # Pillow, for the photos
    os.environ.update(IMGPIPE_WEBHOOK_ALLOW="127.0.0.1/32", IMGPIPE_WEBHOOK_SECRET=SECRET_TEXT,
                      IMGPIPE_WEBHOOK_FIRST_RETRY_MS="200", IMGPIPE_WEBHOOK_MAX_RETRY_SECS="2")
    from benchimages import jpeg_bytes, photo_like
    photos = [(f"photo-{i}.jpg", jpeg_bytes(photo_like(640, 480, i + 1), 90)) for i in range(args.images)]
    body, ctype = multipart(photos)
    print(f"{args.jobs} jobs x {args.images} 640x480 JPEGs (blur), every event as a webhook, receiver failing "
          f"{args.fail_rate:.0%} of tries{', worker SIGKILLed halfway' if args.kill_worker else ''}")
    ok = all([run(kind, args, body, ctype) for kind in args.deployments.split(",")])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
