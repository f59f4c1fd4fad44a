#!/usr/bin/env python3
"""Side by side, one thread each, on the same images in one run: imgpipe's
decode -> operation -> encode against Pillow's and libvips' (pyvips).

    pip install pillow==13.0.0 pyvips pyvips-binary   # pyvips-binary bundles libvips
    python3 scripts/compare.py                        # 8 generated photo-like 1080p JPEGs
    python3 scripts/compare.py ~/photos/*.jpg         # your own images
    python3 scripts/compare.py --input webp --ops "mirror;grayscale"   # WebP in, JPEG out
    python3 scripts/compare.py --ops blur,median:5,resize:800x600 --seconds 5 --rounds 5
    python3 scripts/compare.py --format png                     # PNG out (--png-compression fast|1..9)
    python3 scripts/compare.py --ops all --rounds 1 --seconds 1 # every operation of GET /filters

For every operation each tool decodes every image from memory, applies the
operation and encodes a JPEG at --quality (75) (or --format png, each at
its default zlib level 6), in a loop for --seconds; the
tools take turns for --rounds rounds and the median round counts, so that a
noisy neighbour hurts all three alike. It prints images/s and imgpipe's ratio
to each, and checks that imgpipe's files are byte-identical to Pillow's (or
else the largest pixel difference, and for PNG the size ratio). libvips runs the same kernels through
`conv` (integer precision) and `colourspace("b-w")` for grayscale; operations
with no direct libvips equivalent show "-" there.

imgpipe runs through `pipeline-bench` (src/bin/pipeline-bench.rs), built
here with `cargo build --release` unless --bench-bin names one.
"""

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# libvips reads these at start-up: one thread, no operation cache.
os.environ["VIPS_CONCURRENCY"] = "1"

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
sys.path.insert(0, str(ROOT / "scripts"))
from benchimages import write_set  # noqa: E402
from generate import pillow_chain  # noqa: E402
from PIL import Image, ImageChops  # noqa: E402

try:
    import pyvips
except ImportError:  # reported in the table, not fatal: Pillow still compares
    pyvips = None

KERNELS = {
    "blur": ([[1, 1, 1, 1, 1], [1, 0, 0, 0, 1], [1, 0, 0, 0, 1], [1, 0, 0, 0, 1], [1, 1, 1, 1, 1]], 16, 0),
    "sharpen": ([[-2, -2, -2], [-2, 32, -2], [-2, -2, -2]], 16, 0),
    "smooth": ([[1, 1, 1], [1, 5, 1], [1, 1, 1]], 13, 0),
    "edges": ([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]], 1, 0),
    "contour": ([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]], 1, 255),
    "detail": ([[0, -1, 0], [-1, 10, -1], [0, -1, 0]], 6, 0),
    "edge_enhance": ([[-1, -1, -1], [-1, 10, -1], [-1, -1, -1]], 2, 0),
    "edge_enhance_more": ([[-1, -1, -1], [-1, 9, -1], [-1, -1, -1]], 1, 0),
    "emboss": ([[-1, 0, 0], [0, 1, 0], [0, 0, 0]], 1, 128),
    "smooth_more": ([[1, 1, 1, 1, 1], [1, 5, 5, 5, 1], [1, 5, 44, 5, 1], [1, 5, 5, 5, 1], [1, 1, 1, 1, 1]], 100, 0),
}


def vips_op(ops):
    """The libvips call for a one-operation chain, or None."""
    if pyvips is None or "," in ops:
        return None
    name = ops.split(":")[0]
    if name in KERNELS:
        matrix, scale, offset = KERNELS[name]
        mask = pyvips.Image.new_from_array(matrix, scale=scale, offset=offset)
        return lambda im: im.conv(mask, precision="integer")
    if name == "grayscale":
        return lambda im: im.colourspace("b-w")
    if name == "gaussian_blur":
        sigma = float(ops.split(":")[1])
        return lambda im: im.gaussblur(sigma) if sigma > 0 else im
    if name == "median":
        size = int(ops.split(":")[1])
        return lambda im: im.median(size)
    return None


def timed_loop(work, inputs, seconds):
    """Runs `work` over the inputs, round-robin, for at least `seconds` and
    at least one pass; returns images/s."""
    done, start = 0, time.perf_counter()
    while True:
        for data in inputs:
            work(data)
            done += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed


def pillow_work(ops, quality, fmt):
    def work(data):
        im = Image.open(io.BytesIO(data))
        im.load()
        out = pillow_chain(ops, im)
        buf = io.BytesIO()
        if fmt == "png":
            out.save(buf, "PNG")
        else:
            out.save(buf, "JPEG", quality=quality)
        return buf.getvalue()
    return work


def vips_work(op, quality, fmt):
    def work(data):
        im = pyvips.Image.new_from_buffer(data, "", access="sequential")
        if fmt == "png":
            return op(im).write_to_buffer(".png", compression=6)
        return op(im).write_to_buffer(".jpg", Q=quality)
    return work


def imgpipe_run(binary, ops, quality, seconds, files, fmt, png, write_dir=None):
    cmd = [str(binary), "--ops", ops, "--quality", str(quality), "--seconds", str(seconds),
           "--format", fmt, "--png-compression", png]
    if write_dir:
        cmd += ["--write-dir", str(write_dir)]
    out = subprocess.run(cmd + [str(f) for f in files], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def parity(ops, files, imgpipe_dir, quality, fmt):
    """'identical' if every imgpipe file equals Pillow's byte for byte, else
    the largest pixel difference between the decoded results."""
    worst, identical, sizes = 0, True, [0, 0]
    for f in files:
        ours = (Path(imgpipe_dir) / (Path(f).stem + (".png" if fmt == "png" else ".jpg"))).read_bytes()
        theirs = pillow_work(ops, quality, fmt)(Path(f).read_bytes())
        sizes[0] += len(ours)
        sizes[1] += len(theirs)
        if ours == theirs:
            continue
        identical = False
        a, b = Image.open(io.BytesIO(ours)), Image.open(io.BytesIO(theirs))
        if a.size != b.size or a.mode != b.mode:
            return f"differs: {a.mode} {a.size} vs {b.mode} {b.size}"
        extrema = ImageChops.difference(a, b).getextrema()
        worst = max(worst, max(e[1] for e in extrema) if isinstance(extrema[0], tuple) else extrema[1])
    size = f", size {sizes[0] / sizes[1]:.2f}x Pillow's" if fmt == "png" else ""
    return ("identical" if identical else f"max diff {worst}") + size


def build(args):
    if args.bench_bin:
        return Path(args.bench_bin)
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "pipeline-bench"], cwd=ROOT, check=True)
    return ROOT / "target" / "release" / "pipeline-bench"


def machine():
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs"


# `--ops all`: every operation of `GET /filters` (src/ops/table.rs), with
# arguments a photo would get.
EVERY_OP = {
    "blur": "blur", "sharpen": "sharpen", "smooth": "smooth", "edges": "edges", "grayscale": "grayscale",
    "contour": "contour", "detail": "detail", "edge_enhance": "edge_enhance",
    "edge_enhance_more": "edge_enhance_more", "emboss": "emboss", "smooth_more": "smooth_more",
    "invert": "invert", "solarize": "solarize:128", "autocontrast": "autocontrast:2", "equalize": "equalize",
    "mirror": "mirror", "flip": "flip", "gaussian_blur": "gaussian_blur:2", "box_blur": "box_blur:2",
    "unsharp_mask": "unsharp_mask:2,150,3", "median": "median:3", "min": "min:3", "max": "max:3",
    "mode": "mode:3", "posterize": "posterize:3", "rotate": "rotate:33:bicubic",
    "crop": "crop:100,100,800,600", "resize": "resize:960x540:exact:bicubic",
    "thumbnail": "thumbnail:640x640:lanczos",
}


def every_op():
    """EVERY_OP's chains, after checking it names every operation the table has."""
    import re
    table = (ROOT / "src" / "ops" / "table.rs").read_text()
    names = re.findall(r'\bop\(\s*"([a-z_]+)"', table)
    missing = [n for n in names if n not in EVERY_OP]
    if missing:
        raise SystemExit(f"compare.py's EVERY_OP lacks {missing}: add an example for each")
    return [EVERY_OP[n] for n in names]


def generated(fmt):
    """The 8 generated photos, as JPEGs or re-saved by Pillow in `fmt`."""
    jpegs = [Path(f) for f in write_set(str(ROOT / "target" / "bench-images"), 8)]
    if fmt == "jpeg":
        return jpegs
    out = []
    for jpeg in jpegs:
        path = jpeg.with_suffix("." + fmt)
        if not path.exists():
            Image.open(jpeg).save(path, **({"quality": 80} if fmt == "webp" else {}))
        out.append(path)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="*", help="images (default: 8 generated 1920x1080 JPEGs)")
    p.add_argument("--ops", default="blur,sharpen,edges,smooth,grayscale",
                   help="comma-separated operations; use ';' between them if an operation has comma "
                        "arguments; 'all': every operation of GET /filters")
    p.add_argument("--quality", type=int, default=75)
    p.add_argument("--format", choices=["jpeg", "png"], default="jpeg")
    p.add_argument("--png-compression", default="6", help="imgpipe's, as IMGPIPE_PNG_COMPRESSION")
    p.add_argument("--seconds", type=float, default=3.0, help="per tool, per operation, per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--bench-bin", help="a built pipeline-bench binary")
    p.add_argument("--input", choices=["jpeg", "webp", "png"], default="jpeg",
                   help="format of the generated images (Pillow re-saves the JPEGs; webp at quality 80)")
    args = p.parse_args()

    files = [Path(f) for f in args.files] or generated(args.input)
    inputs = [f.read_bytes() for f in files]
    binary = build(args)
    if args.ops == "all":
        op_list = every_op()
    else:
        op_list = [o for o in (args.ops.split(";") if ";" in args.ops else args.ops.split(",")) if o]
    sizes = sorted({Image.open(f).size for f in files})
    print(f"# {len(files)} images {', '.join(f'{w}x{h}' for w, h in sizes)} "
          f"({', '.join(sorted({Image.open(f).format for f in files}))}); q{args.quality}; "
          f"one thread each; median of {args.rounds} rounds x {args.seconds:g} s; output {args.format}")
    print(f"# {machine()}; Pillow {Image.__version__}; "
          f"libvips {'%d.%d.%d' % tuple(pyvips.version(i) for i in range(3)) if pyvips else 'not installed'}")
    header = f"{'operation':<22} {'imgpipe/s':>10} {'Pillow/s':>9} {'libvips/s':>10} {'x Pillow':>9} {'x libvips':>10}  output vs Pillow"
    print(header)
    print("-" * len(header))
    for ops in op_list:
        with tempfile.TemporaryDirectory() as out_dir:
            first = imgpipe_run(binary, ops, args.quality, 0, files, args.format, args.png_compression, out_dir)
            canonical = first["ops"]
            same = parity(canonical, files, out_dir, args.quality, args.format)
        vop = vips_op(canonical)
        ours, pil, vips = [], [], []
        for _ in range(args.rounds):
            ours.append(imgpipe_run(binary, canonical, args.quality, args.seconds, files,
                                    args.format, args.png_compression)["images_per_s"])
            pil.append(timed_loop(pillow_work(canonical, args.quality, args.format), inputs, args.seconds))
            if vop:
                vips.append(timed_loop(vips_work(vop, args.quality, args.format), inputs, args.seconds))
        o, pl = statistics.median(ours), statistics.median(pil)
        v = statistics.median(vips) if vips else None
        print(f"{ops:<22} {o:>10.1f} {pl:>9.1f} {(f'{v:.1f}' if v else '-'):>10} {o / pl:>8.2f}x "
              f"{(f'{o / v:.2f}x' if v else '-'):>10}  {same}", flush=True)


if __name__ == "__main__":
    main()
