#!/usr/bin/env python3
"""SQLite statements per image in embedded mode, by kind, from sqlx's log.

Starts `imgpipe serve` as sidebyside.py does, with sqlx's statement log on,
submits J jobs of K copies of a 23x17 PNG from 4 clients (each polls its
job's status every 50 ms until it is ready, then takes the next), and
counts the statements the server logged from the first POST on: per image,
grouped by their first words, with sqlx's elapsed time per statement (which
includes waits for SQLite's write lock, so it is latency, not CPU). BEGIN
and COMMIT are not logged. Run it on the builds before and after a change
to see which statements it removed or made cheaper; the README's counts
come from it.

    cargo build --release
    python3 scripts/statements.py                          # 20 jobs x 8
    python3 scripts/statements.py --jobs 1000              # a server holding 1 000 jobs
    python3 scripts/statements.py --build target/imgpipe-old --jobs 4 --images 400

Standard library only; loopback only. TMPDIR=/dev/shm keeps ext4 out.
"""

import argparse
import collections
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sidebyside as sbs  # noqa: E402


def run(args):
    """The server's log lines written while the jobs ran."""
    deployment = sbs.Deployment(f"embedded={args.build}", args)
    deployment.rust_log = "warn,sqlx::query=debug"
    deployment.start()
    try:
        log = deployment.dir / "serve.log"
        tiny = (sbs.ROOT / "tests/fixtures/golden/in-RGB-23x17.png").read_bytes()
        body, ctype = sbs.multipart([(f"tiny-{i}.png", tiny) for i in range(args.images)])
        mark = log.stat().st_size
        sbs.drive(deployment.url, args.jobs, "/process-job?filter=blur", body, ctype)
        with open(log, "rb") as f:
            f.seek(mark)
            return f.read().decode("utf-8", "replace").splitlines()
    finally:
        deployment.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=str(sbs.BIN / "imgpipe"), help="the imgpipe binary")
    ap.add_argument("--jobs", type=int, default=20)
    ap.add_argument("--images", type=int, default=8, help="images per job")
    ap.add_argument("--top", type=int, default=16, help="kinds shown")
    args = ap.parse_args()
    kinds = collections.defaultdict(lambda: [0, 0.0])
    for line in run(args):
        if "sqlx::query" not in line:
            continue
        summary = re.search(r'summary="([^"]*)"', line)
        elapsed = re.search(r"elapsed_secs=([0-9.e-]+)", line)
        kind = kinds[(summary.group(1) if summary else "?")[:60]]
        kind[0] += 1
        kind[1] += float(elapsed.group(1)) if elapsed else 0.0
    images = args.jobs * args.images
    total = sum(count for count, _ in kinds.values())
    print(f"{args.jobs} jobs x {args.images} 23x17 PNGs: {total / images:.2f} statements per image, "
          f"{sum(e for _, e in kinds.values()) / images * 1000:.3f} ms elapsed per image")
    print(f"{'per image':>9} {'µs/image':>9} {'µs each':>8}  statement")
    for name, (count, elapsed) in sorted(kinds.items(), key=lambda kv: -kv[1][1])[:args.top]:
        print(f"{count / images:9.2f} {elapsed / images * 1e6:9.1f} {elapsed / count * 1e6:8.1f}  {name}")


if __name__ == "__main__":
    main()
