#!/usr/bin/env bash
# The web page in a real headless Chromium: Debian's `chromium` (installed by
# scripts/test.sh), driven by Playwright for Python (pinned, in a virtualenv
# of its own, pointed at that browser: it downloads none). Runs
# tests/browser/page_test.py against the binary given; screenshots of each
# step go to target/browser-screenshots/. scripts/test.sh runs it; also
# usable alone:
#   cargo build && scripts/browser.sh target/debug/imgpipe
set -euo pipefail
cd "$(dirname "$0")/.."

BINARY=${1:-target/debug/imgpipe}
PLAYWRIGHT_VERSION=1.65.2
VENV=${IMGPIPE_BROWSER_VENV:-${CARGO_TARGET_DIR:-target}/browser-venv}
SHOTS=${CARGO_TARGET_DIR:-target}/browser-screenshots

command -v chromium >/dev/null || { echo "chromium is not installed (scripts/test.sh installs it)" >&2; exit 1; }
if ! "$VENV/bin/python" -c "import playwright, importlib.metadata as m; assert m.version('playwright') == '$PLAYWRIGHT_VERSION'" 2>/dev/null; then
  echo "== installing playwright $PLAYWRIGHT_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "playwright==$PLAYWRIGHT_VERSION"
fi
IMGPIPE_TEST_CHROMIUM=$(command -v chromium) "$VENV/bin/python" tests/browser/page_test.py "$BINARY" "$SHOTS"
