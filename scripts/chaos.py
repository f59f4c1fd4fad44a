#!/usr/bin/env python3
"""Kill workers at random moments during multi-image jobs; check nothing is lost.

Starts `imgpipe api` (embedded, or distributed on the Redis and S3 named by
the IMGPIPE_TEST_* variables that scripts/test.sh exports), submits several
multi-image jobs, then starts two `imgpipe worker`s and SIGKILLs a random
one every 0.5-3 s (starting a fresh one each time)
until every job is finished. Then checks that every job completed, that each
ZIP holds every image exactly once, and that every result equals Pillow's own
output for the same filter.

    scripts/chaos.py [--backend embedded|distributed] [--jobs 5] [--images 6]
                     [--binary target/release/imgpipe]

Needs Python 3 with requests and Pillow. Exit status 0 only if nothing was lost.
"""

import argparse
import io
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile

import requests
from PIL import Image, ImageFilter

FILTERS = {
    "blur": ImageFilter.BLUR,
    "sharpen": ImageFilter.SHARPEN,
    "smooth": ImageFilter.SMOOTH,
    "edges": ImageFilter.FIND_EDGES,
}


def photo(seed, size=(1200, 900)):
    rnd = random.Random(seed)
    img = Image.linear_gradient("L").resize(size).convert("RGB")
    noise = Image.effect_noise(size, 40 + rnd.randint(0, 30)).convert("RGB")
    return Image.blend(img, noise, 0.5).rotate(rnd.randint(0, 359))


def start(binary, command, env, logs):
    log = open(os.path.join(logs, f"{command}-{time.time_ns()}.log"), "w")
    proc = subprocess.Popen([binary, command], env=env, stdout=subprocess.PIPE,
                            stderr=log, text=True)
    for line in proc.stdout:
        if line.startswith("imgpipe: listening on "):
            proc.base = line.split()[-1]
        if line.startswith("imgpipe: ready") or line.startswith("imgpipe: worker ready"):
            return proc
    raise SystemExit(f"imgpipe {command} did not start; see {logs}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", choices=["embedded", "distributed"], default="embedded")
    ap.add_argument("--jobs", type=int, default=5)
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--binary", default="target/debug/imgpipe")
    ap.add_argument("--timeout", type=int, default=300)
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="imgpipe-chaos-")
    env = dict(os.environ, IMGPIPE_BIND="127.0.0.1:0", IMGPIPE_DATA_DIR=f"{work}/data",
               IMGPIPE_WORKERS="2", IMGPIPE_HEARTBEAT_SECS="1", RUST_LOG="info",
               IMGPIPE_REDIS_PREFIX=f"chaos-{os.getpid()}", S3_BUCKET=f"chaos-{os.getpid()}")
    env.pop("REDIS_URL", None)
    env.pop("S3_ENDPOINT", None)
    # A throwaway loopback deployment: no keys (open mode), links signed
    # with a throwaway secret (required with REDIS_URL).
    env.pop("IMGPIPE_BOOTSTRAP_KEY", None)
    env.update(IMGPIPE_AUTH="off", IMGPIPE_SIGNING_KEY=os.urandom(32).hex())
    if args.backend == "distributed":
        env.update(REDIS_URL=os.environ["IMGPIPE_TEST_REDIS_URL"],
                   S3_ENDPOINT=os.environ["IMGPIPE_TEST_S3_ENDPOINT"],
                   S3_ACCESS_KEY=os.environ["IMGPIPE_TEST_S3_ACCESS_KEY"],
                   S3_SECRET_KEY=os.environ["IMGPIPE_TEST_S3_SECRET_KEY"])

    api = start(args.binary, "api", env, work)
    jobs = {}
    for j in range(args.jobs):
        name = random.choice(list(FILTERS))
        inputs = {}
        for i in range(args.images):
            buf = io.BytesIO()
            photo(j * 100 + i).save(buf, "PNG")
            inputs[f"j{j}-img{i}.png"] = buf.getvalue()
        files = [("files", (n, b, "image/png")) for n, b in inputs.items()]
        r = requests.post(f"{api.base}/process-job?filter={name}", files=files)
        if r.status_code != 202:
            raise SystemExit(f"submission refused: {r.status_code} {r.text}")
        jobs[r.json()["job_id"]] = (name, inputs)

    # Workers start once every job is queued, so the kills land mid-processing.
    workers = [start(args.binary, "worker", env, work) for _ in range(2)]
    kills = 0
    deadline = time.time() + args.timeout
    pending = set(jobs)
    while pending and time.time() < deadline:
        time.sleep(random.uniform(0.5, 3.0))
        victim = workers.pop(random.randrange(len(workers)))
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        kills += 1
        workers.append(start(args.binary, "worker", env, work))
        for job in list(pending):
            if requests.get(f"{api.base}/status-job/{job}").json()["all_ready"]:
                pending.discard(job)
    while pending and time.time() < deadline:
        time.sleep(0.5)
        pending = {j for j in pending
                   if not requests.get(f"{api.base}/status-job/{j}").json()["all_ready"]}

    lost = duplicated = wrong = stuck = 0
    attempts = []
    for job, (name, inputs) in jobs.items():
        status = requests.get(f"{api.base}/status-job/{job}").json()
        attempts += [i["attempts"] for i in status["images"]]
        if not status["all_ready"]:
            stuck += 1
            continue
        failed = [i for i in status["images"] if i["state"] != "succeeded"]
        for i in failed:
            print(f"job {job} image {i['filename']}: {i['state']}: {i.get('error')}")
        zf = zipfile.ZipFile(io.BytesIO(requests.get(f"{api.base}/download/{job}").content))
        names = [n for n in zf.namelist() if n != "manifest.json"]
        duplicated += len(names) - len(set(names))
        lost += len(set(inputs) - set(names))
        for n in set(names) & set(inputs):
            got = Image.open(io.BytesIO(zf.read(n)))
            want = Image.open(io.BytesIO(inputs[n])).filter(FILTERS[name])
            if got.tobytes() != want.tobytes():
                wrong += 1

    for p in workers + [api]:
        p.kill()
    total = args.jobs * args.images
    redone = sum(1 for a in attempts if a > 1)
    print(f"{args.backend}: {args.jobs} jobs, {total} images, {kills} workers killed; "
          f"{redone} images re-run after a kill (most attempts on one image: {max(attempts)}); lost {lost}, duplicated {duplicated}, "
          f"different from Pillow {wrong}, jobs stuck {stuck}")
    shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if lost or duplicated or wrong or stuck else 0)


if __name__ == "__main__":
    main()
