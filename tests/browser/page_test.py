"""The web page (GET /) in a real headless Chromium (Debian's, driven by
Playwright), as a new user would use it against `imgpipe serve` with keys
on: a bad file and a bad argument shown where they are, three images through
a two-operation chain watched to 100 %, results compared and downloaded as a
ZIP, the job reopened from the recent list after a reload, on a desktop and
a phone-sized screen; then the operator's page at /admin. Screenshots of
each step go to the directory given.

    python tests/browser/page_test.py BINARY SCREENSHOT_DIR

Run by scripts/browser.sh (which makes the virtualenv); exits non-zero on
the first failed check.
"""

import io
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
import zlib
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

BINARY, SHOTS = sys.argv[1], Path(sys.argv[2])
CHROMIUM = os.environ.get("IMGPIPE_TEST_CHROMIUM", "/usr/bin/chromium")
KEY = "ipk_browser_" + os.urandom(16).hex()


def png(width, height, seed):
    """A small RGB PNG with a gradient, made without any imaging library."""
    rows = b"".join(
        b"\0" + bytes(((x * 7 + seed * 40) % 256, (y * 5 + seed * 90) % 256, (x * y + seed) % 256)
                      [c] for x in range(width) for c in range(3))
        for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def broken_png():
    """A PNG whose header is fine and whose pixel data is not: accepted at
    submission, failed by the worker."""
    good = png(40, 30, 9)
    at = good.index(b"IDAT") + 4
    data = bytearray(good)
    for i in range(at + 20, at + 60):
        data[i] ^= 0x5A
    return bytes(data)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(work):
    port = free_port()
    env = dict(os.environ, IMGPIPE_DATA_DIR=str(work / "data"), IMGPIPE_TMP_DIR=str(work),
               IMGPIPE_BIND=f"127.0.0.1:{port}", IMGPIPE_AUTH="on", IMGPIPE_BOOTSTRAP_KEY=KEY,
               IMGPIPE_WORKERS="2", RUST_LOG="warn")
    for var in ("REDIS_URL", "S3_ENDPOINT"):
        env.pop(var, None)
    log = open(work / "server.log", "wb")
    server = subprocess.Popen([BINARY, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    for _ in range(300):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return server, f"http://127.0.0.1:{port}"
        except Exception:
            time.sleep(0.1)
    server.kill()
    sys.exit("imgpipe did not answer /healthz within 30 s")


def shot(page, name):
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    print(f"  screenshot {name}.png", flush=True)


def scenario(browser, base, work, viewport, prefix):
    context = browser.new_context(viewport=viewport, accept_downloads=True)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(base + "/")
    expect(page.locator("#op-select option")).not_to_have_count(0)
    expect(page.locator("#limits-hint")).to_contain_text("images per job")
    shot(page, f"{prefix}1-empty")

    # Three images and a file that is not one.
    images = []
    for i in range(3):
        path = work / f"photo-{i}.png"
        path.write_bytes(png(48 + 8 * i, 32, i))
        images.append(str(path))
    bad = work / "broken.png"
    bad.write_bytes(b"this is not a PNG")
    page.set_input_files("#pick-files", images + [str(bad)])
    expect(page.locator("#files li")).to_have_count(4)

    # A two-operation chain, with a bad argument first.
    page.select_option("#op-select", "grayscale")
    page.click("#op-add")
    page.select_option("#op-select", "gaussian_blur")
    page.click("#op-add")
    page.fill("#arg-1-0", "99999")
    expect(page.locator("#chain-text")).to_have_value("grayscale,gaussian_blur:99999")
    shot(page, f"{prefix}2-chosen")

    # The key is asked for once, then kept.
    page.click("#submit")
    expect(page.locator("#key-dialog")).to_be_visible()
    page.fill("#key-input", KEY)
    shot(page, f"{prefix}3-key")
    page.click("#key-dialog button[value=ok]")
    # The server's message, next to the operation it names.
    op_error = page.locator('#chain li[data-op="gaussian_blur"] .op-error')
    expect(op_error).to_contain_text("gaussian_blur")
    shot(page, f"{prefix}4-bad-argument")

    page.fill("#arg-1-0", "2")
    page.click("#submit")
    # The bad file's refusal, next to it.
    bad_file = page.locator("#files li.bad", has_text="broken.png")
    expect(bad_file.locator(".file-error")).to_be_visible()
    expect(page.locator("#submit-error")).to_contain_text("broken.png")
    shot(page, f"{prefix}5-bad-file")

    # Without it, the job goes through, watched live to the end.
    bad_file.locator("button.remove").click()
    expect(page.locator("#files li")).to_have_count(3)
    page.click("#submit")
    expect(page.locator("#job")).to_be_visible()
    expect(page.locator("#job-progress")).to_have_attribute("value", "100", timeout=60_000)
    expect(page.locator("#images li[data-state=succeeded] img")).to_have_count(3, timeout=30_000)
    expect(page.locator("#job-summary")).to_contain_text("completed")
    job_id = page.locator("#job-title").inner_text().split()[-1]
    shot(page, f"{prefix}6-done")

    # Before and after.
    page.locator("#images li button.thumb").first.click()
    expect(page.locator("#compare")).to_be_visible()
    expect(page.locator("#compare-after")).to_have_js_property("complete", True)
    shot(page, f"{prefix}7-compare")
    page.locator("#compare button").click()

    # The ZIP holds the three results.
    with page.expect_download() as download:
        page.click("#job-zip")
    data = Path(download.value.path()).read_bytes()
    names = sorted(n for n in zipfile.ZipFile(io.BytesIO(data)).namelist() if n != "manifest.json")
    assert names == ["photo-0.png", "photo-1.png", "photo-2.png"], names

    # After a reload, the job is in the recent list and opens again.
    page.reload()
    recent = page.locator("#recent li", has_text=job_id)
    expect(recent).to_be_visible()
    shot(page, f"{prefix}8-recent")
    recent.locator("button").click()
    expect(page.locator("#job-summary")).to_contain_text("completed: 3 of 3 done")
    expect(page.locator("#images li[data-state=succeeded] img")).to_have_count(3)
    shot(page, f"{prefix}9-reopened")
    assert not errors, f"script errors on the page: {errors}"
    context.close()


def admin(browser, base, work):
    """The operator's page: the key asked once, workers alive, queues, the
    throughput chart, recent jobs, a failure grouped by its reason."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    answer = context.request.post(base + "/process-job?filter=blur",
                                  headers={"Authorization": f"Bearer {KEY}"},
                                  multipart={"files": {"name": "broken.png", "mimeType": "image/png",
                                                       "buffer": broken_png()}})
    assert answer.status == 202, answer.text()
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(base + "/admin")
    expect(page.locator("#key-dialog")).to_be_visible()
    page.fill("#key-input", KEY)
    page.click("#key-dialog button[value=ok]")
    expect(page.locator("#workers tr[data-alive=true]")).to_have_count(3)
    expect(page.locator("#queues tr")).to_have_count(2)
    expect(page.locator("#jobs tr").first).to_be_visible()
    expect(page.locator("#failures .failure-group").first).to_be_visible(timeout=30_000)
    expect(page.locator("#throughput svg rect").first).to_be_attached()
    shot(page, "admin")
    assert not errors, f"script errors on the admin page: {errors}"
    context.close()


def main():
    SHOTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="imgpipe-browser-") as tmp:
        work = Path(tmp)
        server, base = start_server(work)
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                print(f"page test: Chromium {browser.version}, {base}", flush=True)
                scenario(browser, base, work, {"width": 1280, "height": 900}, "desktop-")
                scenario(browser, base, work, {"width": 390, "height": 844}, "phone-")
                admin(browser, base, work)
                browser.close()
        except Exception:
            print((work / "server.log").read_text()[-4000:], file=sys.stderr)
            raise
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"page test: ok (screenshots in {SHOTS})")


if __name__ == "__main__":
    main()
