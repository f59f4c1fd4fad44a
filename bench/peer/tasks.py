"""The peer's worker: one Celery task per image, Pillow with its defaults,
results on local disk, states in Celery's Redis result backend."""

import os

from celery import Celery
from PIL import Image, ImageFilter, ImageOps

BROKER = os.environ.get("PEER_REDIS_URL", "redis://127.0.0.1:6379/0")
DATA = os.environ.get("PEER_DATA_DIR", "/tmp/peer-data")

app = Celery("peer", broker=BROKER, backend=BROKER)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    # Celery's advice for long tasks on a prefork pool: one task at a time
    # per child, acknowledged once done.
    worker_prefetch_multiplier=1,
    task_acks_late=True,
)

FILTERS = {
    "blur": ImageFilter.BLUR,
    "sharpen": ImageFilter.SHARPEN,
    "smooth": ImageFilter.SMOOTH,
    "smooth_more": ImageFilter.SMOOTH_MORE,
    "detail": ImageFilter.DETAIL,
    "edge_enhance": ImageFilter.EDGE_ENHANCE,
    "edge_enhance_more": ImageFilter.EDGE_ENHANCE_MORE,
    "emboss": ImageFilter.EMBOSS,
    "find_edges": ImageFilter.FIND_EDGES,
    "contour": ImageFilter.CONTOUR,
}


def apply(img, name):
    if name == "grayscale":
        return ImageOps.grayscale(img)
    if name == "invert":
        return ImageOps.invert(img.convert("RGB"))
    return img.filter(FILTERS[name])


@app.task(bind=True)
def process_image(self, job_id, index, src, dst, filter_name, quality=None):
    with Image.open(src) as img:
        img = ImageOps.exif_transpose(img)
        if img.mode not in ("RGB", "L"):
            img = img.convert("RGB")
        out = apply(img, filter_name)
        # Pillow's default quality (75) unless the client asked.
        out.save(dst, "JPEG", **({"quality": quality} if quality else {}))
    return {"job_id": job_id, "index": index, "path": dst}
