#!/usr/bin/env bash
# The project's test command (README "Test"): installs what is missing, starts
# checks formatting and lints, starts a real redis-server and a real S3 server
# (s3s-fs, which verifies SigV4 signatures) on free loopback ports, runs every
# test against them, validates docker-compose.yml, and stops everything on exit. Tests never skip: if a
# service cannot be started, this script fails.
set -euo pipefail
cd "$(dirname "$0")/.."

S3S_VERSION=0.14.1
export PATH="$HOME/.cargo/bin:$PATH"
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=
apt_install() {
  [ -n "$apt_updated" ] || { as_root apt-get update -qq; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

# nasm: libjpeg-turbo's SIMD code (the build works without it, 2x slower JPEG).
command -v nasm >/dev/null || { echo "== installing nasm"; apt_install nasm; }
# libtiff-dev: the TIFF decoder links the system libtiff (Pillow's TIFF library).
[ -e /usr/include/x86_64-linux-gnu/tiffio.h ] || [ -e /usr/include/tiffio.h ] || [ -e /usr/include/aarch64-linux-gnu/tiffio.h ] \
  || { echo "== installing libtiff-dev"; apt_install libtiff-dev; }
# liblcms2-dev: CIELab TIFFs are converted to RGB by LittleCMS, as Pillow does.
[ -e /usr/include/lcms2.h ] || { echo "== installing liblcms2-dev"; apt_install liblcms2-dev; }
command -v redis-server >/dev/null || { echo "== installing redis-server"; apt_install redis-server; }
command -v docker-compose >/dev/null || { echo "== installing docker-compose (for config validation only)"; apt_install docker-compose; }
# chromium: the web page is tested in a real headless browser (scripts/browser.sh).
command -v chromium >/dev/null || { echo "== installing chromium"; apt_install chromium; }
# python3-venv: the virtualenvs scripts/schemathesis.sh and scripts/browser.sh install into.
python3 -c 'import ensurepip, venv' 2>/dev/null || { echo "== installing python3-venv"; apt_install python3-venv; }
# promtool (Debian's prometheus package, unpacked into target/: the package's
# daemon is neither installed nor started) checks the alert rules, the
# Prometheus config and the /metrics output.
PROMETHEUS_DEB_VERSION=2.42.0+ds-5+deb12u1
promtool="$PWD/${CARGO_TARGET_DIR:-target}/promtool/usr/bin/promtool"
if ! "$promtool" --version 2>&1 | grep -q "${PROMETHEUS_DEB_VERSION%%+*}"; then
  echo "== unpacking promtool from Debian's prometheus $PROMETHEUS_DEB_VERSION"
  [ -n "$apt_updated" ] || { as_root apt-get update -qq; apt_updated=1; }
  deb_dir=$(mktemp -d)
  (cd "$deb_dir" && { apt-get download -qq "prometheus=$PROMETHEUS_DEB_VERSION" 2>/dev/null \
     || apt-get download -qq prometheus; })
  promtool_root=$(dirname "$(dirname "$(dirname "$promtool")")")
  rm -rf "$promtool_root" && mkdir -p "$promtool_root"
  dpkg-deb -x "$deb_dir"/prometheus_*.deb "$promtool_root"
  rm -rf "$deb_dir"
fi
export IMGPIPE_TEST_PROMTOOL="$promtool"

if ! s3s-fs --version 2>/dev/null | grep -q "$S3S_VERSION"; then
  echo "== installing s3s-fs $S3S_VERSION (S3 server for tests)"
  cargo install s3s-fs --version "$S3S_VERSION" --features binary --locked --quiet
fi

# Style first: a formatting slip or a lint fails in seconds, before any
# server starts or any test builds.
echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
work=$(mktemp -d -t imgpipe-test-XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" \
  >"$work/redis.log" 2>&1 &
pids+=($!)

s3_port=$(free_port)
mkdir -p "$work/s3"
s3s-fs --host 127.0.0.1 --port "$s3_port" --access-key imgpipe-test --secret-key imgpipe-test-secret "$work/s3" \
  >"$work/s3.log" 2>&1 &
pids+=($!)

wait_port() {
  for _ in $(seq 1 100); do
    python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "$2 did not start on port $1:"; cat "$work/$2.log"; exit 1
}
wait_port "$redis_port" redis
wait_port "$s3_port" s3
echo "== redis-server on 127.0.0.1:$redis_port, s3s-fs on 127.0.0.1:$s3_port"

export IMGPIPE_TEST_REDIS_URL="redis://127.0.0.1:$redis_port"
export IMGPIPE_TEST_S3_ENDPOINT="http://127.0.0.1:$s3_port"
export IMGPIPE_TEST_S3_ACCESS_KEY=imgpipe-test
export IMGPIPE_TEST_S3_SECRET_KEY=imgpipe-test-secret
export IMGPIPE_TEST_S3_DIR="$work/s3"

echo "== docker-compose config (and its monitoring profile)"
IMGPIPE_SIGNING_KEY=x IMGPIPE_BOOTSTRAP_KEY=y docker-compose -f docker-compose.yml config -q
IMGPIPE_SIGNING_KEY=x IMGPIPE_BOOTSTRAP_KEY=y docker-compose -f docker-compose.yml --profile monitoring config -q
echo "== promtool: Prometheus config, alert rules and their tests"
"$promtool" check config deploy/prometheus/prometheus.yml >/dev/null
(cd deploy/prometheus && "$promtool" test rules alerts_test.yml >/dev/null)
python3 -c 'import json; json.load(open("deploy/grafana/dashboards/imgpipe.json"))'

echo "== cargo test"
cargo test --all-targets "$@"

# The whole suite (no test filter given) also fuzzes the API against its contract.
if [ $# -eq 0 ]; then
  echo "== schemathesis"
  "$(dirname "$0")/schemathesis.sh" "${CARGO_TARGET_DIR:-target}/debug/imgpipe"
  echo "== web page in headless Chromium"
  "$(dirname "$0")/browser.sh" "${CARGO_TARGET_DIR:-target}/debug/imgpipe"
fi
