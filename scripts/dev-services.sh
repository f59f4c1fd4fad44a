#!/usr/bin/env bash
# Starts the two services imgpipe's distributed mode needs, on their default
# ports, in the foreground (Ctrl-C stops both): redis-server on 127.0.0.1:6379
# and s3s-fs (an S3-compatible server) on 127.0.0.1:9000 with the default
# credentials minioadmin/minioadmin, storing their data under ./.dev-services/.
# Installs them first if missing (Debian's redis-server; s3s-fs from crates.io).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v redis-server >/dev/null; then
  as_root apt-get update -qq && DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq redis-server
fi
if ! command -v s3s-fs >/dev/null; then
  cargo install s3s-fs --version 0.14.1 --features binary --locked
fi
mkdir -p .dev-services/s3 .dev-services/redis
redis-server --port 6379 --bind 127.0.0.1 --dir .dev-services/redis --appendonly yes &
redis_pid=$!
s3s-fs --host 127.0.0.1 --port 9000 --access-key minioadmin --secret-key minioadmin .dev-services/s3 &
s3_pid=$!
trap 'kill $redis_pid $s3_pid 2>/dev/null; wait' EXIT INT TERM
echo "redis on redis://127.0.0.1:6379, S3 on http://127.0.0.1:9000 (Ctrl-C to stop)"
wait
