#!/usr/bin/env python3
"""Event latency of GET /jobs/{id}/events: from the moment a state change is
written (the event's `at`, stamped by the writer in the same step) to the
moment a watcher reads the event, on loopback, in each deployment.

    cargo build --release
    python3 scripts/events_latency.py                  # (re-runs itself in target/peer-venv) 20 jobs x 8 images, each deployment
    python3 scripts/events_latency.py --jobs 50 --watchers 10

Starts each deployment like scripts/sidebyside.py (same processes, free
ports), submits jobs one at a time, and has `--watchers` SSE clients (plain
http.client, one thread each) follow every job. Reports p50/p95/max over
every event of every watcher. Both clocks are this machine's.
"""

import argparse
import http.client
import json
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sidebyside import ROOT, Deployment, ensure_venv, multipart, pct  # noqa: E402


def follow(url, job, out):
    """Reads the job's stream from the start; appends (event, latency s)."""
    host, port = url.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    conn.request("GET", f"/jobs/{job}/events", headers={"Last-Event-ID": "0"})
    resp = conn.getresponse()
    assert resp.status == 200, resp.status
    event = None
    while True:
        line = resp.readline()
        if not line:
            break
        line = line.decode().rstrip("\n")
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            received = time.time()
            data = json.loads(line[6:])
            at = data.get("at") or data.get("updated_at")
            if at and event != "job.queued":  # queued is written before the watcher connects
                written = datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()
                out.append((event, received - written))
    conn.close()


def run(kind, args, body, ctype):
    deployment = Deployment(kind, args).start()
    samples = []
    try:
        host, port = deployment.url.split(":")
        for _ in range(args.jobs):
            conn = http.client.HTTPConnection(host, int(port), timeout=60)
            conn.request("POST", "/process-job?filter=blur", body, {"Content-Type": ctype})
            resp = conn.getresponse()
            job = json.loads(resp.read())["job_id"]
            conn.close()
            threads = [threading.Thread(target=follow, args=(deployment.url, job, samples))
                       for _ in range(args.watchers)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    finally:
        deployment.stop()
    return samples


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=20)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--watchers", type=int, default=3)
    ap.add_argument("--deployments", default="embedded,embedded-split,distributed")
    args = ap.parse_args()
    args.quality = None
    ensure_venv()  # Pillow, for the photos
    sys.path.insert(0, str(ROOT / "scripts"))
    from benchimages import jpeg_bytes, photo_like
    photos = [(f"photo-{i}.jpg", jpeg_bytes(photo_like(640, 480, i + 1), 90)) for i in range(args.images)]
    body, ctype = multipart(photos)
    print(f"{args.jobs} jobs x {args.images} 640x480 JPEGs (blur), {args.watchers} watchers each, one job at a time")
    for kind in args.deployments.split(","):
        samples = run(kind, args, body, ctype)
        lat = [s for _, s in samples]
        print(f"  {kind:<11} {len(lat):5d} events: latency p50 {pct(lat, 50) * 1000:6.1f} ms, "
              f"p95 {pct(lat, 95) * 1000:6.1f} ms, max {max(lat) * 1000:6.1f} ms", flush=True)


if __name__ == "__main__":
    main()
