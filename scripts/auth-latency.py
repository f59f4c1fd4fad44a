#!/usr/bin/env python3
"""What API keys cost a submission: POST /process-job latency with auth off,
with auth on (a Bearer key, looked up by hash in the metadata store), and
with auth on plus an Idempotency-Key (claim, file hash, record), measured on
two `imgpipe serve` processes running side by side, requests interleaved so
that both see the same machine noise.

    cargo build --release
    python3 scripts/auth-latency.py [--requests 400] [--binary target/release/imgpipe]
    python3 scripts/auth-latency.py --redis-url redis://127.0.0.1:6379   # Redis metadata

Stdlib only. Prints p50/p95/mean per series and the differences to "off".
"""

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = os.path.join(ROOT, "tests/fixtures/golden/in-RGB-23x17.png")


def start(binary, env, logs):
    proc = subprocess.Popen([binary, "serve"], env=env, stdout=subprocess.PIPE,
                            stderr=open(logs, "w"), text=True)
    for line in proc.stdout:
        if line.startswith("imgpipe: listening on http://"):
            port = int(line.rsplit(":", 1)[1])
        if line.startswith("imgpipe: ready"):
            return proc, port
    raise SystemExit(f"imgpipe did not start; see {logs}")


def multipart(data):
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; "
            f"filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n").encode() + data + \
        f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def post(conn, body, ctype, headers):
    started = time.perf_counter()
    conn.request("POST", "/process-job?filter=blur", body=body,
                 headers={"Content-Type": ctype, **headers})
    resp = conn.getresponse()
    resp.read()
    elapsed = time.perf_counter() - started
    if resp.status != 202:
        raise SystemExit(f"POST answered {resp.status}")
    return elapsed * 1000


def summary(name, samples, base=None):
    samples = sorted(samples)
    p50 = statistics.median(samples)
    p95 = samples[int(len(samples) * 0.95) - 1]
    line = f"{name:<28} p50 {p50:6.2f} ms   p95 {p95:6.2f} ms   mean {statistics.mean(samples):6.2f} ms"
    if base:
        line += f"   Δp50 {p50 - statistics.median(base):+5.2f} ms"
    print(line)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=os.path.join(ROOT, "target/release/imgpipe"))
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--warmup", type=int, default=40)
    ap.add_argument("--redis-url", help="use Redis for metadata (and queue) instead of SQLite")
    args = ap.parse_args()
    if not os.path.exists(args.binary):
        sys.exit(f"{args.binary} not found: run `cargo build --release` first")

    work = tempfile.mkdtemp(prefix="imgpipe-auth-latency-")
    key = "ipk_" + os.urandom(32).hex()
    common = dict(os.environ, IMGPIPE_BIND="127.0.0.1:0", IMGPIPE_WORKERS="1",
                  RUST_LOG="warn", IMGPIPE_SIGNING_KEY=os.urandom(32).hex())
    common.pop("IMGPIPE_BOOTSTRAP_KEY", None)
    for var in ("REDIS_URL", "S3_ENDPOINT"):
        common.pop(var, None)
    servers = {}
    for name, extra in [("off", dict(IMGPIPE_AUTH="off")),
                        ("on", dict(IMGPIPE_AUTH="on", IMGPIPE_BOOTSTRAP_KEY=key))]:
        env = dict(common, IMGPIPE_DATA_DIR=f"{work}/{name}", **extra)
        if args.redis_url:
            env.update(REDIS_URL=args.redis_url, IMGPIPE_REDIS_PREFIX=f"authlat-{name}-{os.getpid()}")
        servers[name] = start(args.binary, env, f"{work}/{name}.log")

    data = open(IMAGE, "rb").read()
    body, ctype = multipart(data)
    conns = {n: http.client.HTTPConnection("127.0.0.1", port) for n, (_, port) in servers.items()}
    bearer = {"Authorization": f"Bearer {key}"}
    series = {"auth off": [], "auth on": [], "auth on + Idempotency-Key": []}
    try:
        for i in range(args.warmup + args.requests):
            results = [
                ("auth off", post(conns["off"], body, ctype, {})),
                ("auth on", post(conns["on"], body, ctype, bearer)),
                ("auth on + Idempotency-Key",
                 post(conns["on"], body, ctype, {**bearer, "Idempotency-Key": uuid.uuid4().hex})),
            ]
            if i >= args.warmup:
                for name, ms in results:
                    series[name].append(ms)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
    store = "Redis" if args.redis_url else "SQLite"
    print(f"POST /process-job, one 23x17 PNG, {args.requests} requests per series, "
          f"metadata in {store}, servers side by side, requests interleaved")
    base = series["auth off"]
    summary("auth off", base)
    summary("auth on", series["auth on"], base)
    summary("auth on + Idempotency-Key", series["auth on + Idempotency-Key"], base)


if __name__ == "__main__":
    main()
