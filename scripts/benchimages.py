"""Photo-like test images for the benchmark scripts, made in code.

A benchmark on flat or random images measures the wrong thing: JPEG time and
size depend on how much detail there is. These have a photo's mix of smooth
sky-like gradients, soft shapes, hard edges and fine sensor-like grain, and
come out near 520 KB as a 1920x1080 JPEG at quality 90, so that eight
make the 4 MB upload of the load targets. Deterministic for a given seed.
"""

import io
import random

from PIL import Image, ImageDraw, ImageFilter


def photo_like(width, height, seed):
    rng = random.Random(seed)
    # Smooth background: a small random field, upscaled (bicubic) to full size.
    small = Image.new("RGB", (8, 5))
    small.putdata([tuple(rng.randrange(30, 230) for _ in range(3)) for _ in range(40)])
    img = small.resize((width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(img)
    unit = max(1, min(width, height) // 40)
    for _ in range(60):
        x, y = rng.randrange(width), rng.randrange(height)
        rx, ry = rng.randrange(unit, unit * 12), rng.randrange(unit, unit * 12)
        colour = tuple(rng.randrange(256) for _ in range(3))
        if rng.random() < 0.5:
            draw.ellipse((x - rx, y - ry, x + rx, y + ry), fill=colour)
        else:
            draw.rectangle((x - rx, y - ry, x + rx, y + ry), fill=colour)
    for _ in range(40):
        pts = [(rng.randrange(width), rng.randrange(height)) for _ in range(2)]
        draw.line(pts, fill=tuple(rng.randrange(256) for _ in range(3)), width=rng.randrange(1, unit))
    # Soften the shapes a little, as a lens does, then add grain.
    img = img.filter(ImageFilter.GaussianBlur(1.2))
    grain = Image.effect_noise((width, height), 28).convert("RGB")
    return Image.blend(img, grain, 0.15)


def jpeg_bytes(img, quality=90):
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def write_set(directory, count, width=1920, height=1080, quality=90, seed=1):
    """Writes `count` JPEGs into `directory` and returns their paths."""
    import os

    os.makedirs(directory, exist_ok=True)
    paths = []
    for i in range(count):
        path = os.path.join(directory, f"photo-{width}x{height}-{i}.jpg")
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(jpeg_bytes(photo_like(width, height, seed + i), quality))
        paths.append(path)
    return paths


if __name__ == "__main__":
    import sys

    out = sys.argv[1] if len(sys.argv) > 1 else "bench-images"
    for p in write_set(out, 8):
        print(p)
