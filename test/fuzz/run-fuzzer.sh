#!/bin/sh
# Run one libFuzzer target for a short time on a scratch copy of its seed corpus, so
# the committed corpus is never modified. Used by the 'fuzz' test suite.
#
#   run-fuzzer.sh FUZZER CORPUS_DIR REGRESSIONS_DIR ARTIFACT_DIR [DICT]
#
# WSEV_FUZZ_SECONDS (default 12) is the time to fuzz. Exit codes: 0, or 1 on a
# crash, leak or timeout (not libFuzzer's default 77, which meson takes for "skipped"). Crash, leak and timeout
# reproducers go to ARTIFACT_DIR (in the build directory); copy them to
# test/fuzz/regressions/<target>/ to keep them.
set -eu
fuzzer=$1 corpus=$2 regressions=$3 artifacts=$4
dict=${5:-}
seconds=${WSEV_FUZZ_SECONDS:-12}

work=$(mktemp -d "${TMPDIR:-/tmp}/wsev-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
cp "$corpus"/* "$work"/
mkdir -p "$artifacts"

set -- -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -error_exitcode=1 -timeout_exitcode=1 \
  -artifact_prefix="$artifacts/"
[ -n "$dict" ] && [ -f "$dict" ] && set -- "$@" -dict="$dict"
# The regressions are read (and run first) but never written to.
[ -d "$regressions" ] && set -- "$@" "$work" "$regressions" || set -- "$@" "$work"
echo "run-fuzzer: $fuzzer $*"
# Not exec: the trap must still remove the scratch corpus (the exit status is the
# fuzzer's either way).
"$fuzzer" "$@"
