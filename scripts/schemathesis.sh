#!/usr/bin/env bash
# API fuzzing against the contract: schemathesis (pinned, in a virtualenv of
# its own) generates requests from openapi.yaml and sends them to a live
# embedded `imgpipe serve` (auth on, an admin key), checking that no answer
# is a server error and that every status, content type and body matches the
# spec. Fixed seed and a bounded number of examples, so a run takes well
# under two minutes. scripts/test.sh runs it; also usable alone:
#   cargo build && scripts/schemathesis.sh target/debug/imgpipe
set -euo pipefail

BINARY=${1:-target/debug/imgpipe}
SCHEMATHESIS_VERSION=4.32.5
VENV=${IMGPIPE_SCHEMATHESIS_VENV:-${CARGO_TARGET_DIR:-target}/schemathesis-venv}
EXAMPLES=${IMGPIPE_SCHEMATHESIS_EXAMPLES:-100}

if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  echo "== installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION"
fi

WORK=$(mktemp -d)
KEY="ipk_$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
env -u REDIS_URL -u S3_ENDPOINT \
  IMGPIPE_DATA_DIR="$WORK/data" IMGPIPE_TMP_DIR="$WORK" IMGPIPE_BIND="127.0.0.1:$PORT" \
  IMGPIPE_AUTH=on IMGPIPE_BOOTSTRAP_KEY="$KEY" IMGPIPE_WORKERS=1 RUST_LOG=warn \
  "$BINARY" serve >"$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true; rm -rf "$WORK"' EXIT
python3 - "$PORT" <<'PY'
import sys, time, urllib.request
for _ in range(300):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/healthz", timeout=1)
        sys.exit(0)
    except Exception:
        time.sleep(0.1)
sys.exit("imgpipe did not answer /healthz within 30 s")
PY

echo "== schemathesis: $EXAMPLES examples per operation, seed 1"
"$VENV/bin/schemathesis" run "http://127.0.0.1:$PORT/openapi.yaml" \
  --url "http://127.0.0.1:$PORT" \
  -H "Authorization: Bearer $KEY" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --max-examples "$EXAMPLES" --seed 1 \
  --request-timeout 30 \
  --suppress-health-check all \
  --no-color || { echo "schemathesis found failures; server log:"; tail -50 "$WORK/server.log"; exit 1; }
