#!/usr/bin/env python3
"""Runs every file of a directory of images nobody here made (for example
Pillow's own test images) through a running imgpipe, one job per file and
chain, and compares each result with Pillow's own call sequence:
`Image.open` -> `ImageOps.exif_transpose` -> imgpipe's documented mode rule ->
the operations.

    python3 -m venv /tmp/pyenv && /tmp/pyenv/bin/pip install pillow==13.0.0
    # Pillow's test images come with its source distribution on PyPI:
    #   pip download --no-deps --no-binary :all: pillow==13.0.0, or the sdist
    #   link on https://pypi.org/simple/pillow/; then
    #   tar xzf pillow-13.0.0.tar.gz pillow-13.0.0/Tests/images
    IMGPIPE_QUOTA_JOBS_PER_MINUTE=100000 cargo run --release -- serve &
    /tmp/pyenv/bin/python scripts/corpus.py pillow-13.0.0/Tests/images \
        --ops blur --ops resize:97x61:exact:bicubic --ops rotate:33:bicubic --ops grayscale

Every file is submitted, whatever its format; a file is counted in one class:
  server-error   any answer >= 500 (must be none)
  other-format   Pillow reads it, but not as JPEG/PNG/GIF/WebP/BMP/TIFF (imgpipe may refuse)
  not-pillow     Pillow cannot open or load it (imgpipe should refuse it with a 4xx)
  over-limit     refused by a documented limit (upscale, cost, pixels): not counted
  refused        Pillow reads it in an accepted format, imgpipe refuses it
  failed         accepted at upload, but the image failed in the worker
  no-filter      Pillow cannot apply the chain to its mode (nothing to compare)
  same / differs the result against Pillow's, sample by sample
Resampling chains (resize, thumbnail, rotate) may differ by 1, as in the golden set.
Exit status 1 when any answer is >= 500 or any compared result differs.
"""

import argparse
import io
import json
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "fixtures"))
from generate import RESAMPLING, pillow_chain, split_chain  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402

ACCEPTED = {"JPEG", "MPO", "PNG", "GIF", "WEBP", "BMP", "DIB", "TIFF"}


def pillow_reads(path: Path):
    """The image imgpipe is documented to work on, from Pillow's own reading;
    (format, image) or (format or None, None) when Pillow cannot read it."""
    try:
        with Image.open(path) as im:
            fmt = im.format
            im.load()
            im = ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001 - any failure means "Pillow cannot"
        return None, None
    return fmt, as_imgpipe_mode(im)


def as_imgpipe_mode(im: Image.Image) -> Image.Image:
    """imgpipe's mode rules (README, Modes): 1 -> L; L/LA/RGB/RGBA kept; P/PA ->
    RGB or RGBA as Pillow converts them; 16-bit grey -> L from the high byte;
    32-bit I and F -> L as Pillow converts them (clipped); CMYK, YCbCr, LAB -> RGB."""
    if im.mode == "1":
        return im.convert("L")
    if im.mode == "P":
        return im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode == "PA":
        return im.convert("RGBA")
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        # The high byte of each sample, straight from the stored bytes
        # (Pillow's own convert("I;16") from I;16B clips to 255).
        raw = im.tobytes()
        return Image.frombytes("L", im.size, raw[0::2] if im.mode == "I;16B" else raw[1::2])
    if im.mode in ("I", "F"):
        return im.convert("L")
    if im.mode == "La":
        return im.convert("LA")
    if im.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        return im.convert("RGB")
    return im


class Client:
    def __init__(self, url: str, key: str | None):
        self.url = url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.retries = 0
        self.lock = threading.Lock()

    def request(self, method: str, path: str, body: bytes | None = None, headers=None):
        """(status, headers, body); waits out 429/503 with Retry-After like an ordinary client."""
        for _ in range(60):
            req = urllib.request.Request(self.url + path, data=body, method=method,
                                         headers={**self.headers, **(headers or {})})
            try:
                with urllib.request.urlopen(req, timeout=300) as resp:
                    return resp.status, resp.headers, resp.read()
            except urllib.error.HTTPError as err:
                payload = err.read()
                if err.code in (429, 503) and err.headers.get("Retry-After"):
                    with self.lock:
                        self.retries += 1
                    time.sleep(min(float(err.headers["Retry-After"]), 5))
                    continue
                return err.code, err.headers, payload
        raise SystemExit(f"{method} {path}: still refused after 60 tries")

    def run(self, name: str, data: bytes, ops: str):
        """('answer', status, detail) for a refused upload, ('image', state,
        png bytes or error) once the job is over."""
        boundary = uuid.uuid4().hex
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; "
                f"filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
        body += data + f"\r\n--{boundary}--\r\n".encode()
        query = urllib.parse.urlencode({"ops": ops, "format": "png"})
        status, _, payload = self.request("POST", f"/process-job?{query}", body,
                                          {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        if status != 202:
            return "answer", status, payload.decode(errors="replace")[:2000]
        job_id = json.loads(payload)["job_id"]
        try:
            deadline = time.time() + 600
            while True:
                status, _, payload = self.request("GET", f"/status-job/{job_id}")
                job = json.loads(payload)
                if job["all_ready"] or time.time() > deadline:
                    break
                time.sleep(0.05)
            image = job["images"][0]
            if image["state"] != "succeeded":
                return "image", image["state"], image.get("error")
            status, _, payload = self.request("GET", f"/download/{job_id}")
            if status != 200:
                return "answer", status, payload.decode(errors="replace")[:2000]
            archive = zipfile.ZipFile(io.BytesIO(payload))
            names = [n for n in archive.namelist() if n != "manifest.json"]
            return "image", "succeeded", archive.read(names[0])
        finally:
            self.request("DELETE", f"/jobs/{job_id}")


def max_diff(a: Image.Image, b: Image.Image):
    if a.size != b.size or a.mode != b.mode:
        return f"{b.mode} {b.size[0]}x{b.size[1]} here, Pillow {a.mode} {a.size[0]}x{a.size[1]}"
    return max((abs(x - y) for x, y in zip(a.tobytes(), b.tobytes())), default=0)


def check(client: Client, path: Path, ops: str, root: Path):
    name = str(path.relative_to(root)) if path.is_relative_to(root) else path.name
    fmt, upright = pillow_reads(path)
    kind, state, detail = client.run(path.name, path.read_bytes(), ops)
    row = {"file": name, "ops": ops, "pillow_format": fmt,
           "pillow_mode": upright.mode if upright else None}
    if kind == "answer" and state >= 500:
        return {**row, "class": "server-error", "detail": f"{state} {detail}"}
    if fmt is None:
        return {**row, "class": "not-pillow", "detail": f"{state} {detail}" if kind == "answer" else state}
    if fmt not in ACCEPTED:
        return {**row, "class": "other-format", "detail": f"{state}" if kind == "answer" else state}
    if kind == "answer":
        code = ""
        try:
            code = json.loads(detail)["error"]["code"]
        except (ValueError, KeyError, TypeError):
            pass
        # A documented limit (upscale, cost, pixels), not a file it cannot read.
        limited = code in ("too_costly", "too_many_pixels", "file_too_large")
        return {**row, "class": "over-limit" if limited else "refused", "detail": f"{state} {detail}"}
    if state != "succeeded":
        return {**row, "class": "failed", "detail": f"{state}: {detail}"}
    try:
        expected = pillow_chain(ops, upright)
    except Exception as err:  # noqa: BLE001 - Pillow refuses this mode for the chain
        return {**row, "class": "no-filter", "detail": f"{type(err).__name__}: {err}"}
    got = Image.open(io.BytesIO(detail))
    got.load()
    diff = max_diff(expected, got)
    tolerance = 1 if any(op in RESAMPLING for op, _ in split_chain(ops)) else 0
    same = isinstance(diff, int) and diff <= tolerance
    return {**row, "class": "same" if same else "differs", "detail": diff}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", type=Path, help="files or directories (searched recursively)")
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--key", help="an API key with submit and read scopes")
    parser.add_argument("--ops", action="append", help="a chain; repeat for several (default: blur)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--json", type=Path, help="write every row here")
    parser.add_argument("--quiet", action="store_true", help="list only problems")
    args = parser.parse_args()
    chains = args.ops or ["blur"]
    files = []
    for p in args.paths:
        files += sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    root = args.paths[0] if args.paths[0].is_dir() else args.paths[0].parent
    client = Client(args.url, args.key)
    started = time.time()
    with ThreadPoolExecutor(args.clients) as pool:
        rows = list(pool.map(lambda job: check(client, job[0], job[1], root),
                             [(f, ops) for ops in chains for f in files]))
    counts: dict[str, dict[str, int]] = {}
    for row in rows:
        counts.setdefault(row["ops"], {}).setdefault(row["class"], 0)
        counts[row["ops"]][row["class"]] += 1
        if not args.quiet or row["class"] in ("server-error", "refused", "failed", "differs"):
            print(f"{row['class']:13} {row['ops']:28} {row['file']} "
                  f"[{row['pillow_format']} {row['pillow_mode']}] {row['detail']}")
    print(f"\n{len(files)} files x {len(chains)} chains in {time.time() - started:.0f} s "
          f"({client.retries} answers waited out)")
    for ops, by_class in counts.items():
        read = sum(by_class.get(c, 0) for c in ("refused", "failed", "no-filter", "same", "differs"))
        processed = read - by_class.get("refused", 0) - by_class.get("failed", 0)
        compared = by_class.get("same", 0) + by_class.get("differs", 0)
        print(f"{ops}: " + ", ".join(f"{k} {v}" for k, v in sorted(by_class.items())))
        if read:
            print(f"  accepted and processed {processed}/{read} = {100 * processed / read:.1f} %"
                  + (f"; identical {by_class.get('same', 0)}/{compared} = "
                     f"{100 * by_class.get('same', 0) / compared:.1f} %" if compared else ""))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=str))
    bad = sum(r["class"] in ("server-error", "differs") for r in rows)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
