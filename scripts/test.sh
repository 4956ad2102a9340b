#!/usr/bin/env bash
# Install what is missing, build, and run every test:
#   1. the whole suite on a normal build (build/);
#   2. the same suite on an AddressSanitizer + UndefinedBehaviorSanitizer build
#      (build-asan/);
#   3. ThreadSanitizer (build-tsan/) on the suites where other threads call in;
#   4. memcheck: the C tests under valgrind, and the echo, pubsub and control servers
#      (and wsev-client) under valgrind while real clients (and nginx, HAProxy,
#      tinyproxy) drive them;
#   5. the OpenSSL backend (build-openssl/, build-openssl-asan/, build-openssl-tsan/):
#      the suites where the backend matters (TLS, client, browser, TLS churn,
#      certificates by SNI and replaced), plain, under ASan+UBSan and under valgrind,
#      the two backends against each other, and the TLS tests on I/O threads under
#      ThreadSanitizer;
#   6. a build without zlib (build-nodeflate/): permessage-deflate is never agreed;
#   7. a short fuzzing run of every libFuzzer target (clang, build-fuzz/).
# Ends with one line "N passed, N failed" and exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh --test || { echo "0 passed, 1 failed"; exit 1; }

total_passed=0
total_failed=0
# Each failed test's name and the end of its output, printed again just before the
# summary, so that the tail of a long CI log says what failed.
failures=$(mktemp)
trap 'rm -f "$failures"' EXIT

# Adds the results of the last `meson test` in build dir $1 to the totals.
count() {
  local counts
  counts=$(/usr/bin/python3 - "$1" "$failures" "$1"/meson-logs/testlog*.json <<'PY'
import json, os, sys
ok = bad = 0
builddir, failures, logs = sys.argv[1], sys.argv[2], sys.argv[3:]
with open(failures, "a") as out:
    # meson names the log after the wrapper when --wrap is used.
    if len(logs) != 1 or not os.path.exists(logs[0]):
        bad = 1
        out.write(f"--- {builddir}: no test log\n")
    else:
        for line in open(logs[0]):
            t = json.loads(line)
            r = t.get("result")
            if r in ("OK", "EXPECTEDFAIL"):
                ok += 1
            elif r != "SKIP":
                bad += 1
                tail = (t.get("stdout") or "").splitlines()[-15:]
                out.write(f"--- {builddir}: {t.get('name')} {r}"
                          f" after {t.get('duration', 0):.1f} s\n")
                out.write("".join(f"    {l}\n" for l in tail))
print(ok, bad)
PY
)
  total_passed=$((total_passed + ${counts% *}))
  total_failed=$((total_failed + ${counts#* }))
}

# A stage's title, with the time since the start (to see what the 20 minutes go to).
current_stage=
stage() { current_stage=$*; echo "== [${SECONDS}s] $*"; }

build_failed() {
  total_failed=$((total_failed + 1))
  echo "--- a build failed in: $current_stage" >>"$failures"
}

setup() { # dir [meson options...]
  local dir=$1; shift
  if [ -d "$dir" ]; then
    meson setup --reconfigure "$dir" "$@" >/dev/null
  else
    meson setup "$dir" "$@" >/dev/null
  fi && ninja -C "$dir"
}

run() { # dir [meson test options...]
  local dir=$1; shift
  rm -f "$dir"/meson-logs/testlog*.json
  meson test -C "$dir" --print-errorlogs "$@"
  count "$dir"
}

# ASan and UBSan fail a test with these exit codes, leaks included.
sanitizers_report() {
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=23
  export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:exitcode=24
}

stage "build and test (build/)"
if setup build; then
  run build --no-suite valgrind
else
  build_failed
fi

stage "AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/)"
sanitizers_report
if setup build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug; then
  # Chromium drives the same server code as the Python and Node peers: under ASan one
  # browser test (deflate on I/O threads) is enough, and saves a minute of CI.
  run build-asan --no-suite valgrind --no-suite browser --timeout-multiplier 3
  run build-asan browser-deflate-io2 --timeout-multiplier 3
else
  build_failed
fi
unset ASAN_OPTIONS UBSAN_OPTIONS

stage "ThreadSanitizer (build-tsan/): the suites where other threads call in"
export TSAN_OPTIONS=halt_on_error=1:exitcode=66
if setup build-tsan -Db_sanitize=thread -Dbuildtype=debug; then
  run build-tsan --suite api --suite threads --no-suite valgrind --timeout-multiplier 3
else
  build_failed
fi
unset TSAN_OPTIONS

stage "valgrind (build/)"
# test/valgrind-wrap holds the memcheck options; the 'valgrind' suite uses it too.
run build --suite vgwrap --timeout-multiplier 10 --wrap="$PWD/test/valgrind-wrap"
run build --suite valgrind

stage "OpenSSL backend (build-openssl/): TLS, client, browser, TLS churn, interoperation"
if setup build-openssl -Dtls=openssl; then
  run build-openssl --suite tls --suite client --suite browser --no-suite valgrind
  run build-openssl limits unit-tls-sni deploy-rotation deploy-rotation-io2 deploy-http-proxy
  run build-openssl tls-python-valgrind tls-node-valgrind py-client-valgrind
  run build-openssl tls-resume client-adopt unit-tls-sni --timeout-multiplier 10 \
    --wrap="$PWD/test/valgrind-wrap"
else
  build_failed
fi
sanitizers_report
if setup build-openssl-asan -Dtls=openssl -Db_sanitize=address,undefined -Db_lundef=false \
    -Dbuildtype=debug; then
  run build-openssl-asan --suite tls --suite client --no-suite valgrind --timeout-multiplier 3
  run build-openssl-asan unit-tls-sni deploy-rotation --timeout-multiplier 3
else
  build_failed
fi
unset ASAN_OPTIONS UBSAN_OPTIONS
# The ticket keys and the client session cache are shared by the I/O threads.
export TSAN_OPTIONS=halt_on_error=1:exitcode=66
if setup build-openssl-tsan -Dtls=openssl -Db_sanitize=thread -Dbuildtype=debug; then
  run build-openssl-tsan tls-resume-io2 tls-python-io2 tls-node-io2 client-adopt-io2 \
    py-client-io2 --timeout-multiplier 3
else
  build_failed
fi
unset TSAN_OPTIONS

stage "without zlib (build-nodeflate/): permessage-deflate never offered or accepted"
if setup build-nodeflate -Ddeflate=disabled; then
  run build-nodeflate --suite unit
  run build-nodeflate no-deflate py-websockets node-echo py-client
else
  build_failed
fi

stage "fuzzing, 12 s per target (build-fuzz/)"
rm -f build-fuzz/meson-logs/testlog*.json
scripts/fuzz.sh 12
count build-fuzz

if [ -s "$failures" ]; then
  echo "== failed:"
  cat "$failures"
fi
echo "${total_passed} passed, ${total_failed} failed"
[ "$total_failed" -eq 0 ]
