"""The peer's API: the same three routes as imgpipe (`POST /process-job`,
`GET /status-job/{id}`, `GET /download/{id}`), FastAPI under uvicorn, one
Celery task per image, uploads and results on local disk."""

import io
import json
import os
import uuid
import zipfile

import redis
from celery.result import AsyncResult
from fastapi import FastAPI, File, HTTPException, Query, UploadFile
from fastapi.responses import StreamingResponse

from tasks import DATA, FILTERS, app as celery_app, process_image

api = FastAPI(title="peer")
store = redis.Redis.from_url(os.environ.get("PEER_REDIS_URL", "redis://127.0.0.1:6379/0"))
ACCEPTED = set(FILTERS) | {"grayscale", "invert"}


@api.post("/process-job", status_code=202)
async def process_job(files: list[UploadFile] = File(...), filter: str = Query("blur"),
                      quality: int | None = Query(None, ge=1, le=100)):
    if filter not in ACCEPTED:
        raise HTTPException(422, f"unknown filter {filter}")
    job_id = str(uuid.uuid4())
    folder = os.path.join(DATA, job_id)
    os.makedirs(folder)
    tasks = []
    for index, upload in enumerate(files):
        src = os.path.join(folder, f"in-{index}")
        with open(src, "wb") as f:
            f.write(await upload.read())
        dst = os.path.join(folder, f"out-{index}.jpg")
        result = process_image.delay(job_id, index, src, dst, filter, quality)
        tasks.append({"task_id": result.id, "filename": upload.filename, "path": dst})
    store.set(f"job:{job_id}", json.dumps(tasks), ex=86400)
    return {"job_id": job_id, "status": "queued", "status_url": f"/status-job/{job_id}",
            "download_url": f"/download/{job_id}"}


def load(job_id):
    raw = store.get(f"job:{job_id}")
    if raw is None:
        raise HTTPException(404, "no such job")
    return json.loads(raw)


@api.get("/status-job/{job_id}")
def status_job(job_id: str):
    tasks = load(job_id)
    states = [AsyncResult(t["task_id"], app=celery_app).state for t in tasks]
    done = sum(s == "SUCCESS" for s in states)
    failed = sum(s == "FAILURE" for s in states)
    ready = done + failed == len(states)
    status = ("completed" if failed == 0 else "completed_with_errors") if ready else "processing"
    return {"job_id": job_id, "status": status, "all_ready": ready,
            "progress": {"total": len(states), "succeeded": done, "failed": failed},
            "images": [{"filename": t["filename"], "state": s} for t, s in zip(tasks, states)]}


@api.get("/download/{job_id}")
def download(job_id: str):
    tasks = load(job_id)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as z:
        for index, t in enumerate(tasks):
            if os.path.exists(t["path"]):
                z.write(t["path"], f"{index}-{os.path.basename(t['filename'] or 'image')}.jpg")
    buffer.seek(0)
    return StreamingResponse(buffer, media_type="application/zip",
                             headers={"Content-Disposition": f'attachment; filename="{job_id}.zip"'})
