#!/usr/bin/env python3
"""Runs random operation chains through a running imgpipe and through Pillow,
and reports how far apart the results are, per operation.

    pip install pillow==13.0.0
    cargo run --release -- serve &            # or any imgpipe API
    python3 scripts/parity.py photo1.jpg photo2.png ...   # your own images
    python3 scripts/parity.py                             # generated photo-like images

Options: --url http://localhost:8000 --chains 20 --seed 1 --max-ops 4.
Each chain is submitted as one job (`ops=...&format=png`) with every image,
and each result is compared sample by sample with Pillow doing the same calls
on the same decoded image (EXIF orientation applied, palette/16-bit/CMYK
converted as imgpipe documents). Filters and ImageOps must differ by 0;
chains containing resize, thumbnail or rotate by at most 1. Exit status 1 if
any result is outside its tolerance.
"""

import argparse
import io
import json
import random
import sys
import time
import urllib.parse
import urllib.request
import uuid
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "fixtures"))
from generate import RESAMPLING, photo_like, pillow_chain, split_chain  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402

RESAMPLE_ALL = ["nearest", "box", "bilinear", "hamming", "bicubic", "lanczos"]


def random_op(rng: random.Random) -> str:
    """One operation in canonical form, arguments drawn from their documented ranges."""
    kind = rng.choice([
        "blur", "sharpen", "smooth", "smooth_more", "edges", "contour", "detail",
        "edge_enhance", "edge_enhance_more", "emboss", "grayscale", "invert",
        "equalize", "mirror", "flip", "solarize", "autocontrast", "posterize",
        "gaussian_blur", "box_blur", "unsharp_mask", "median", "min", "max", "mode",
        "rotate", "crop", "resize", "thumbnail",
    ])
    r = lambda lo, hi: round(rng.uniform(lo, hi), 1)  # noqa: E731
    if kind == "solarize":
        return f"solarize:{rng.randint(0, 256)}"
    if kind == "autocontrast":
        return f"autocontrast:{r(0, 10)}"
    if kind == "posterize":
        return f"posterize:{rng.randint(1, 8)}"
    if kind in ("gaussian_blur", "box_blur"):
        return f"{kind}:{r(0, 6)}"
    if kind == "unsharp_mask":
        return f"unsharp_mask:{r(0.5, 5)},{rng.randint(50, 300)},{rng.randint(0, 10)}"
    if kind in ("median", "min", "max"):
        return f"{kind}:{rng.choice([1, 3, 5])}"
    if kind == "mode":
        return f"mode:{rng.randint(1, 6)}"
    if kind == "rotate":
        angle = rng.choice([90, 180, 270, r(-360, 360)])
        return f"rotate:{angle}:{rng.choice(['nearest', 'bilinear', 'bicubic'])}"
    if kind == "crop":
        return f"crop:{rng.randint(0, 40)},{rng.randint(0, 40)},{rng.randint(20, 300)},{rng.randint(20, 300)}"
    if kind == "resize":
        mode = rng.choice(["exact", "fit", "fill"])
        return f"resize:{rng.randint(16, 400)}x{rng.randint(16, 400)}:{mode}:{rng.choice(RESAMPLE_ALL)}"
    if kind == "thumbnail":
        return f"thumbnail:{rng.randint(8, 200)}x{rng.randint(8, 200)}:{rng.choice(RESAMPLE_ALL)}"
    return kind


def as_imgpipe_reads(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as im:
        im = ImageOps.exif_transpose(im)
        if im.mode == "P":
            return im.convert("RGBA" if "transparency" in im.info else "RGB")
        if im.mode in ("I;16", "I;16B", "I"):
            return Image.frombytes("L", im.size, im.convert("I;16").tobytes("raw", "I;16")[1::2])
        if im.mode == "CMYK":
            return im.convert("RGB")
        return im.copy()


def submit(url: str, ops: str, files: list[tuple[str, bytes]]) -> dict:
    boundary = uuid.uuid4().hex
    body = io.BytesIO()
    for name, data in files:
        body.write(f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; "
                   f"filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n".encode())
        body.write(data + b"\r\n")
    body.write(f"--{boundary}--\r\n".encode())
    query = urllib.parse.urlencode({"ops": ops, "format": "png"})
    req = urllib.request.Request(f"{url}/process-job?{query}", data=body.getvalue(),
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(req) as resp:
        return json.load(resp)


def wait_and_download(url: str, job_id: str) -> dict[str, bytes]:
    deadline = time.time() + 300
    while time.time() < deadline:
        with urllib.request.urlopen(f"{url}/status-job/{job_id}") as resp:
            status = json.load(resp)
        if status["all_ready"]:
            break
        time.sleep(0.3)
    for image in status["images"]:
        if image["state"] != "succeeded":
            raise SystemExit(f"job {job_id}: {image['filename']} {image['state']}: {image.get('error')}")
    with urllib.request.urlopen(f"{url}/download/{job_id}") as resp:
        archive = zipfile.ZipFile(io.BytesIO(resp.read()))
    return {n: archive.read(n) for n in archive.namelist() if n != "manifest.json"}


def max_diff(a: Image.Image, b: Image.Image) -> int | None:
    if a.size != b.size or a.mode != b.mode:
        return None
    return max((abs(x - y) for x, y in zip(a.tobytes(), b.tobytes())), default=0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="*", type=Path)
    parser.add_argument("--url", default="http://localhost:8000")
    parser.add_argument("--chains", type=int, default=20)
    parser.add_argument("--max-ops", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    if args.images:
        files = [(p.name, p.read_bytes()) for p in args.images]
    else:
        files = []
        for i, (w, h) in enumerate([(640, 427), (333, 500), (257, 129)]):
            buf = io.BytesIO()
            photo_like("RGB", w, h, f"parity{i}").save(buf, format="JPEG", quality=88)
            files.append((f"photo{i}.jpg", buf.getvalue()))
    originals = {name: as_imgpipe_reads(data) for name, data in files}

    failures = 0
    worst: dict[str, int] = {}
    for _ in range(args.chains):
        ops = ",".join(random_op(rng) for _ in range(rng.randint(1, args.max_ops)))
        job = submit(args.url, ops, files)
        results = wait_and_download(args.url, job["job_id"])
        tolerance = 1 if any(op in RESAMPLING for op, _ in split_chain(ops)) else 0
        for name, original in originals.items():
            out_name = Path(name).stem + ".png"
            got = Image.open(io.BytesIO(results[out_name]))
            expected = pillow_chain(ops, original)
            diff = max_diff(got, expected)
            for op, _ in split_chain(ops):
                worst[op] = max(worst.get(op, 0), 255 if diff is None else diff)
            ok = diff is not None and diff <= tolerance
            failures += not ok
            print(f"{'ok ' if ok else 'BAD'} max diff {diff} (allowed {tolerance})  {name}  {ops}")
    print("largest difference per operation (over every chain it was in):")
    for op, diff in sorted(worst.items()):
        print(f"  {op:18} {diff}")
    print(f"{failures} result(s) outside tolerance")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
