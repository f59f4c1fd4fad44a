#!/usr/bin/env python3
"""Where an imgpipe process spends its CPU, per image, by thread.

Starts each given build of `imgpipe serve` fresh (as sidebyside.py does),
drives it with sidebyside's light client (J jobs x 8 photo-like 1080p
JPEGs, 4 clients, status polled every 50 ms, no ZIP downloads), and reads
every thread's user + system time, context switches and minor page faults
(fresh pages the kernel had to map) from /proc before
and after the clock. Threads are grouped by name: the render pools
(imgpipe-priority, imgpipe-bulk), tokio's runtime and blocking threads
(tokio-rt-worker), sqlx's SQLite connection threads and actix's workers.
Builds alternate within each round, so A/B figures share the machine's
state. With photos, the codec floor (pipeline-bench, one thread, the same
photos) is measured right before and right after each run, and the render
threads and the rest are shown as multiples of it.

On ext4 without a journal, creating a file skips every inode freed in the
last minute (five if its inode table block is not yet written back), one
lookup each: a run that followed another's deletes paid for them, so the
second build of a round looked worse. The runs' data directories are
therefore deleted at exit, not between runs (sidebyside.Deployment), and
`--settle 65` also syncs and waits that long before each run, so that each
starts with the previous one's writes on disk.

    cargo build --release
    python3 scripts/cost_breakdown.py                                   # target/release/imgpipe
    python3 scripts/cost_breakdown.py --builds target/imgpipe-old,target/release/imgpipe --rounds 3
    python3 scripts/cost_breakdown.py --ops sharpen --jobs 40
    python3 scripts/cost_breakdown.py --tiny --jobs 100                 # 23x17 PNGs: the fixed cost per image
    python3 scripts/cost_breakdown.py --tiny --jobs 100 --settle 65     # each run from the same file system state
    python3 scripts/cost_breakdown.py --tiny --jobs 8 --images 100      # large jobs: does an image cost more?

Needs Pillow to make the photos; runs in sidebyside.py's virtualenv
(target/peer-venv), which it creates if needed. Loopback only.
"""

import argparse
import collections
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sidebyside as sbs  # noqa: E402


def threads(pid):
    """{thread group: [CPU seconds, context switches, minor faults]} of process `pid`."""
    out = collections.defaultdict(lambda: [0.0, 0, 0])
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = open(f"/proc/{pid}/task/{tid}/stat").read()
            status = open(f"/proc/{pid}/task/{tid}/status").read()
        except FileNotFoundError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")].rstrip("0123456789-")
        fields = stat[stat.rindex(")") + 2:].split()
        group = out[name]
        group[0] += (int(fields[11]) + int(fields[12])) / sbs.TICK
        group[1] += sum(int(line.split()[1]) for line in status.splitlines() if "ctxt_switches" in line)
        group[2] += int(fields[7])
    return out


def measure(build, args, body, ctype):
    deployment = sbs.Deployment(f"embedded={build}", args).start()
    try:
        pid = deployment.own[0].pid
        before, started = threads(pid), time.perf_counter()
        posts, _, _ = sbs.drive(deployment.url, args.jobs, f"/process-job?filter={args.ops}", body, ctype)
        after, wall = threads(pid), time.perf_counter() - started
    finally:
        deployment.stop()
    images = args.jobs * args.images
    rows = {name: ((cpu - before.get(name, [0, 0, 0])[0]) * 1000 / images,
                   (switches - before.get(name, [0, 0, 0])[1]) / images,
                   (faults - before.get(name, [0, 0, 0])[2]) / images)
            for name, (cpu, switches, faults) in after.items()}
    return images / wall, sorted(posts)[len(posts) // 2] * 1000, rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--builds", default=str(sbs.BIN / "imgpipe"), help="comma-separated imgpipe binaries")
    ap.add_argument("--ops", default="blur")
    ap.add_argument("--jobs", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--images", type=int, default=8, help="images per job")
    ap.add_argument("--tiny", action="store_true",
                    help="copies of a 23x17 PNG instead of the photos: what an image costs besides its pixels")
    ap.add_argument("--photos", nargs="+", metavar="PATH",
                    help="your own JPEGs (files or directories) instead of the generated photos")
    ap.add_argument("--settle", type=float, default=0,
                    help="sync, then wait this many seconds before each run (see above)")
    args = ap.parse_args()
    args.quality = None  # each one's default, as sidebyside.py
    sbs.ensure_venv()
    from benchimages import jpeg_bytes, photo_like
    if args.tiny:
        tiny = (sbs.ROOT / "tests/fixtures/golden/in-RGB-23x17.png").read_bytes()
        photos, what = [(f"tiny-{i}.png", tiny) for i in range(args.images)], "23x17 PNGs"
    elif args.photos:
        photos = sbs.photos_from(args.photos, args.images)
        what = sbs.describe(photos)
    else:
        made = [jpeg_bytes(photo_like(1920, 1080, i + 1), 90) for i in range(min(args.images, 8))]
        photos = [(f"photo-{i}.jpg", made[i % len(made)]) for i in range(args.images)]
        what = "photo-like 1080p JPEGs"
    body, ctype = sbs.multipart(photos)
    print(f"{args.jobs} jobs x {args.images} {what}, 4 clients, ops {args.ops}; per image:")
    for r in range(args.rounds):
        for build in args.builds.split(","):
            if args.settle:
                os.sync()
                time.sleep(args.settle)
            # Photos: the codec floor right before and right after the run
            # (see sidebyside.py), to read the render threads against it.
            floor = sbs.codec_floor(args, photos[:8]) if not args.tiny else None
            img_s, post50, rows = measure(build, args, body, ctype)
            total = sum(cpu for cpu, _, _ in rows.values())
            against = ""
            if floor:
                floor = (floor + sbs.codec_floor(args, photos[:8])) / 2
                render = sum(cpu for name, (cpu, _, _) in rows.items() if name.startswith("imgpipe-"))
                against = (f"; codec floor {floor:.2f} ms: render threads {render / floor:.3f}x, "
                           f"the rest {(total - render) / floor:.3f}x, all {total / floor:.3f}x")
            print(f"round {r + 1} {build}: {img_s:.1f} img/s, POST p50 {post50:.0f} ms, CPU {total:.2f} ms{against}")
            for name, (cpu, switches, faults) in sorted(rows.items(), key=lambda kv: -kv[1][0]):
                if cpu >= 0.01 or switches >= 0.5:
                    print(f"    {name:<18} {cpu:6.2f} ms  {switches:6.1f} context switches  {faults:7.1f} page faults")


if __name__ == "__main__":
    main()
