#!/usr/bin/env bash
# Fuzzes what reads untrusted input, with cargo-fuzz (libFuzzer + ASan, on a
# nightly toolchain): intake (format sniffing and header/structure checks),
# the `ops` chain parser (with its cost estimate), and the decoders the
# worker uses. Each target runs for a bounded time (default 60 s), starting
# from the repository's fixtures and fuzz/seeds/chain (hand-written chains
# and a minimised corpus found earlier); what it finds goes to
# fuzz/corpus/<target> (not committed; `cargo +nightly fuzz cmin chain
# fuzz/corpus/chain` then copy into fuzz/seeds/chain to keep it) and a crash
# to fuzz/artifacts/<target>/, and the script fails. Not part of the test command: run it after touching intake, the
# parser or a codec.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.1
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(intake chain decode)

rustup toolchain list | grep -q '^nightly' || {
  echo "cargo-fuzz needs a nightly toolchain: rustup toolchain install nightly" >&2
  exit 1
}
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --quiet
fi

for target in "${targets[@]}"; do
  case "$target" in
    intake | decode) seeds=(tests/fixtures/golden tests/fixtures/foreign) ;;
    chain) seeds=(fuzz/seeds/chain) ;;
    *) echo "unknown target $target (intake, chain, decode)" >&2; exit 2 ;;
  esac
  mkdir -p "fuzz/corpus/$target"
  echo "== fuzzing $target for ${seconds}s"
  # 2 GiB of memory and 10 s per input: a decompression bomb or a hang is
  # a finding like a crash.
  cargo +nightly fuzz run "$target" "fuzz/corpus/$target" "${seeds[@]}" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -max_len=262144 -print_final_stats=1
done
