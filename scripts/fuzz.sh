#!/usr/bin/env bash
# Build the libFuzzer targets with clang + ASan + UBSan (build-fuzz/) and fuzz each
# for a short time on a copy of its seed corpus (the 'fuzz' meson test suite).
# Installs clang and libFuzzer if missing (Debian 12). Exits non-zero on any failure.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]     (default 12)
#
# Reproducers of failures are left in build-fuzz/test/fuzz/artifacts/<target>/.
# Longer runs: see test/fuzz/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-12}
case $seconds in
'' | *[!0-9]*)
  echo "usage: $0 [SECONDS_PER_TARGET]" >&2
  exit 2
  ;;
esac

scripts/deps.sh clang libclang-rt-14-dev

dir=build-fuzz
opts=(-Dfuzzing=true -Db_sanitize=address,undefined -Db_lundef=false)
if [ -d "$dir" ]; then
  CC=clang meson setup --reconfigure "$dir" "${opts[@]}" >/dev/null
else
  CC=clang meson setup "$dir" "${opts[@]}" >/dev/null
fi
ninja -C "$dir"

# UBSan findings must fail the run, not only be printed.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export WSEV_FUZZ_SECONDS=$seconds
# meson's per-test timeout is 120 s; scale it for longer runs.
multiplier=$(((seconds + 60) / 60))
meson test -C "$dir" --suite fuzz --print-errorlogs --timeout-multiplier "$multiplier"
