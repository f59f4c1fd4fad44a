#!/usr/bin/env python3
"""How long a POST waits once its body is sent: large uploads at a bounded rate.

Starts each given deployment as sidebyside.py does (embedded, distributed,
or either with another build: `embedded=PATH`), and POSTs N jobs, one at a
time, of K photo-like JPEGs (4000x3000 by default, ~3 MB each) over a raw
socket, sending the body in 256 KiB pieces at RATE MB/s: a client on a
link of that speed. Reported per deployment: from the last byte sent to the
answer's head (what the server still had to do once it had everything),
and the whole POST. The server stores each upload as it arrives
(src/service/staging.rs), so the first figure should be about the last
file's write, not all of them; `imgpipe_submission_stage_seconds` says
the same from inside.

    cargo build --release
    python3 scripts/upload_tail.py                                   # embedded,distributed at 50 MB/s
    python3 scripts/upload_tail.py --deployments embedded=target/imgpipe-old,embedded --rate 20

Needs what sidebyside.py needs (its virtualenv, for Pillow; redis-server
and s3s-fs for the distributed deployment). Loopback only.
"""

import argparse
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sidebyside as sbs  # noqa: E402

PIECE = 256 << 10


def post(url, body, ctype, rate):
    """One paced POST: (seconds from the last byte sent to the answer's
    head, seconds for the whole POST)."""
    host, port = url.split(":")
    with socket.create_connection((host, int(port))) as conn:
        head = (f"POST /process-job?filter=grayscale HTTP/1.1\r\nHost: {url}\r\n"
                f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n")
        started = time.perf_counter()
        conn.sendall(head.encode())
        for at in range(0, len(body), PIECE):
            due = started + at / rate
            if due > time.perf_counter():
                time.sleep(due - time.perf_counter())
            conn.sendall(body[at:at + PIECE])
        sent = time.perf_counter()
        answer = b""
        while b"\r\n\r\n" not in answer:
            got = conn.recv(65536)
            if not got:
                break
            answer += got
        answered = time.perf_counter()
    status = answer.split(b" ", 2)[1] if answer else b"(none)"
    if status != b"202":
        raise SystemExit(f"POST answered {status.decode()}: {answer[:300]!r}")
    return answered - sent, answered - started


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--deployments", default="embedded,distributed")
    ap.add_argument("--rate", type=float, default=50, help="MB/s the body is sent at")
    ap.add_argument("--jobs", type=int, default=5)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--size", default="4000x3000")
    ap.add_argument("--pause", type=float, default=3, help="seconds between jobs, for each to run")
    args = ap.parse_args()
    sbs.ensure_venv()
    from benchimages import jpeg_bytes, photo_like
    width, height = map(int, args.size.split("x"))
    photos = [(f"big-{i}.jpg", jpeg_bytes(photo_like(width, height, i + 1), 92)) for i in range(args.images)]
    body, ctype = sbs.multipart(photos)
    print(f"{args.jobs} jobs x {args.images} JPEGs of {width}x{height}, a {len(body) / 1e6:.1f} MB body "
          f"sent at {args.rate:g} MB/s, one job at a time", flush=True)
    options = argparse.Namespace(ops="grayscale", quality=None)
    for label in args.deployments.split(","):
        deployment = sbs.Deployment(label, options).start()
        try:
            tails, wholes = [], []
            for _ in range(args.jobs):
                tail, whole = post(deployment.url, body, ctype, args.rate * 1e6)
                tails.append(tail * 1000)
                wholes.append(whole * 1000)
                time.sleep(args.pause)
        finally:
            deployment.stop()
        print(f"  {label:<40} after the last byte p50 {statistics.median(tails):6.1f} ms "
              f"({min(tails):.1f}-{max(tails):.1f}); whole POST p50 {statistics.median(wholes):5.0f} ms",
              flush=True)


if __name__ == "__main__":
    main()
