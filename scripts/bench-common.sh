# Helpers shared by the benchmark scripts (bench.sh, bench-tls.sh, bench-deflate.sh,
# bench-threads.sh, topics-bench.sh), sourced by them from the repository's root;
# nothing here runs on its own.

# bench_install [PACKAGE...]: the Debian packages named, Node and npm when missing, and
# the peers pinned by test/bench's lockfile (Bun, with uWS inside, and ws) unless they
# are installed already.
bench_install() {
  local pkgs=("$@")
  command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
  command -v npm >/dev/null 2>&1 || pkgs+=(npm)
  scripts/deps.sh "${pkgs[@]}"
  if [ ! -x test/bench/node_modules/.bin/bun ] || [ ! -d test/bench/node_modules/ws ]; then
    npm ci --prefix test/bench --no-audit --no-fund
  fi
}

# release_build DIR [-Dname=value...] [TARGET...]: set DIR up as a release build with
# those options (only when it is not set up yet), then build the targets named, or
# everything when none are.
release_build() {
  local dir=$1 a opts=(--buildtype=release) targets=()
  shift
  for a in "$@"; do
    case $a in -D*) opts+=("$a") ;; *) targets+=("$a") ;; esac
  done
  [ -f "$dir/build.ninja" ] || meson setup "$dir" "${opts[@]}" >/dev/null
  ninja -C "$dir" "${targets[@]}" >/dev/null
}

# The middle of the numbers on stdin, one per line ("NA" if there are none).
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print "NA" }'; }

# End the server whose pid is in SRV_PID (SIGTERM, SIGKILL after 5 s) and clear it.
SRV_PID=""
stop_server() {
  [ -n "$SRV_PID" ] || return 0
  kill "$SRV_PID" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$SRV_PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$SRV_PID" 2>/dev/null || true
  wait "$SRV_PID" 2>/dev/null || true
  SRV_PID=""
}

# start_pinned LOG PATTERN NAME COMMAND: COMMAND (split into words) on CPU 0 with its
# output in LOG; sets SRV_PID, and port to the number after PATTERN (a sed regular
# expression, e.g. "listening on port") in that output, waiting for it up to 10 s; an
# error naming NAME and the script's exit when it does not come.
start_pinned() {
  local log=$1 pattern=$2 name=$3
  : >"$log" # before the server starts: no stale port from the last one
  # shellcheck disable=SC2086
  taskset -c 0 $4 >"$log" 2>&1 &
  SRV_PID=$!
  port=""
  for _ in $(seq 100); do
    port=$(sed -n "s/.*$pattern \([0-9]*\).*/\1/p" "$log")
    [ -n "$port" ] && break
    sleep 0.1
  done
  [ -n "$port" ] || { echo "$name did not start: $(cat "$log")" >&2; exit 1; }
}

# Resident memory of process $1, in kB.
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# User plus system CPU seconds of process $1 (all its threads).
cpu_seconds() {
  awk -v t="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); split($0, f, " "); print (f[12] + f[13]) / t }' \
    "/proc/$1/stat"
}
