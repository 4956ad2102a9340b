#!/usr/bin/env bash
# The wsev benchmark: wsev side by side with uWebSockets (inside Bun), libwebsockets,
# Node's ws and a raw TCP echo ceiling, in one run. See test/bench/README.md.
#
#   scripts/bench.sh               every workload x every server, 3 repetitions, medians;
#                                  writes test/bench/results/latest.md and latest.png
#   scripts/bench.sh --quick       1 repetition, short runs (try it out; same outputs)
#   scripts/bench.sh --callgrind   instructions per echoed message and per delivered
#                                  pubsub message for wsev (valgrind), printed
#   --reps N                       repetitions (default 3; --quick: 1)
#   --servers "wsev uws lws ws"    a subset of peers (raw is always run for echo rows)
#   --workloads "echo_100x10 ..."  a subset of workloads (names as in the table)
#   --no-install                   skip apt-get / npm ci
#   --threads "0 1 3 7" [--server-cores 0-7] [--client-cores 8-15] [--seconds S]
#                                  I/O threads instead: wsev-echo inline and on each
#                                  thread count, CPU per message split between the
#                                  dispatcher and the I/O threads, the overhead and a
#                                  projection (scripts/bench-threads.sh, which it runs)
#
# The server runs pinned to CPU 0, the load generator to CPU 1 (taskset); all traffic
# is on 127.0.0.1, every run stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-common.sh
ROOT=$PWD
BUILD=build-bench
BENCH=test/bench
RESULTS=$BENCH/results

# I/O threads are measured by bench-threads.sh with the same options.
for a in "$@"; do
  case "$a" in --threads | --server-cores | --client-cores | --seconds)
    exec scripts/bench-threads.sh "$@" ;;
  esac
done

quick=0; callgrind=0; reps=""; install=1
args="$*"
servers="wsev uws lws ws"
workloads="echo_100x10 echo_1000x1 echo_10x64k pubsub_1to1000 pubsub_10x100 idle_10k handshakes"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --callgrind) callgrind=1 ;;
    --reps) reps=$2; shift ;;
    --servers) servers=$2; shift ;;
    --workloads) workloads=$2; shift ;;
    --no-install) install=0 ;;
    -h|--help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "bench: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
[ -n "$reps" ] || { [ $quick = 1 ] && reps=1 || reps=3; }
if [ $quick = 1 ]; then DUR=2; WARM=0.5; IDLE_HOLD=2; else DUR=5; WARM=1; IDLE_HOLD=3; fi

# --- setup: only what is missing ------------------------------------------------------
[ $install = 0 ] || bench_install libwebsockets-dev gnuplot-nox valgrind iproute2 util-linux procps

# --- build ----------------------------------------------------------------------------
release_build $BUILD
LOADGEN=$ROOT/$BUILD/test/bench/wsev-loadgen
BUN=$ROOT/$BENCH/node_modules/.bin/bun
LWS=$ROOT/$BUILD/test/bench/lws-bench-server

# Descriptors for 10,000 connections on each side.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

PORT=19300
next_port() { PORT=$((PORT + 1)); [ $PORT -lt 19900 ] || PORT=19301; }

wait_port() { # PORT: until something listens there (no connection made)
  for _ in $(seq 150); do
    ss -Hltn "sport = :$1" 2>/dev/null | grep -q . && return 0
    sleep 0.1
  done
  return 1
}

# server_cmd SERVER KIND(echo|pubsub) PORT -> the command line, or nothing when the
# server has no such kind.
server_cmd() {
  local s=$1 kind=$2 port=$3
  case "$s/$kind" in
    wsev/echo) echo "$ROOT/$BUILD/sample/wsev-echo $port" ;;
    wsev/pubsub) echo "$ROOT/$BUILD/sample/wsev-pubsub --port $port --quiet" ;;
    uws/*) echo "$BUN $ROOT/$BENCH/bun-server.js $port $kind" ;;
    ws/*) echo "node $ROOT/$BENCH/ws-server.mjs $port $kind" ;;
    lws/*) [ -x "$LWS" ] && echo "$LWS $port $kind" ;;
    raw/echo) echo "$ROOT/$BUILD/test/bench/wsev-raw-echo $port" ;;
    *) ;;
  esac
}

start_server() { # SERVER KIND
  next_port
  local cmd; cmd=$(server_cmd "$1" "$2" $PORT)
  [ -n "$cmd" ] || return 1
  # shellcheck disable=SC2086
  taskset -c 0 $cmd >"$TMP/server.log" 2>&1 &
  SRV_PID=$!
  if ! wait_port $PORT; then
    echo "bench: $1 ($2) did not start:" >&2; cat "$TMP/server.log" >&2
    stop_server; return 1
  fi
  sleep 0.3
}

TMP=$(mktemp -d)
trap 'stop_server; rm -rf "$TMP"' EXIT

lg() { taskset -c 1 "$LOADGEN" "$@" --port $PORT; }
field() { # KEY LINE
  sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"
}

# ======================================================================================
# callgrind: a deterministic figure
# ======================================================================================
if [ $callgrind = 1 ]; then
  command -v valgrind >/dev/null || { echo "bench: valgrind missing" >&2; exit 1; }
  mkdir -p "$RESULTS"
  cg_run() { # NAME KIND COUNT LOADGEN-ARGS... -> total Ir of the server
    local name=$1 kind=$2 count=$3; shift 3
    next_port
    local cmd; cmd=$(server_cmd wsev "$kind" $PORT)
    local out="$TMP/cg.$name.$count.out"
    # shellcheck disable=SC2086
    valgrind --tool=callgrind --callgrind-out-file="$out" $cmd >"$TMP/server.log" 2>"$TMP/vg.log" &
    SRV_PID=$!
    wait_port $PORT || { cat "$TMP/vg.log" >&2; exit 1; }
    "$LOADGEN" "$@" --count "$count" -d 120 --port $PORT >"$TMP/lg.log" || { cat "$TMP/lg.log" >&2; exit 1; }
    grep -q "ok=1" "$TMP/lg.log" || { cat "$TMP/lg.log" >&2; exit 1; }
    kill -TERM $SRV_PID; wait $SRV_PID 2>/dev/null || true; SRV_PID=""
    awk '/^summary:|^totals:/ {print $2; exit}' "$out"
  }
  N_ECHO=20000; N_PUB=200; SUBS=100
  echo "callgrind: wsev-echo, 10 connections x 10 in flight x 32 B, $N_ECHO messages (and 0)"
  e0=$(cg_run echo echo 0 echo -c 10 -k 10 -s 32)
  e1=$(cg_run echo echo $N_ECHO echo -c 10 -k 10 -s 32)
  cp "$TMP/cg.echo.$N_ECHO.out" "$TMP/callgrind.echo.out"
  echo "callgrind: wsev-pubsub, 1 publisher -> $SUBS subscribers, $N_PUB publishes = $((N_PUB * SUBS)) deliveries (and 0)"
  p0=$(cg_run pubsub pubsub 0 pubsub --publishers 1 --subscribers $SUBS --channels 1 -k 4 -s 32)
  p1=$(cg_run pubsub pubsub $N_PUB pubsub --publishers 1 --subscribers $SUBS --channels 1 -k 4 -s 32)
  cp "$TMP/cg.pubsub.$N_PUB.out" "$TMP/callgrind.pubsub.out"
  per_echo=$(( (e1 - e0) / N_ECHO ))
  per_deliv=$(( (p1 - p0) / (N_PUB * SUBS) ))
  {
    echo "# wsev callgrind figures ($(date -u +%Y-%m-%d), $(git rev-parse --short HEAD 2>/dev/null || echo '?'))"
    echo
    echo "| figure | instructions |"
    echo "|---|---|"
    echo "| wsev-echo startup+shutdown, 10 connections, 0 messages | $e0 |"
    echo "| wsev-echo, + $N_ECHO echoed 32 B messages | $e1 |"
    echo "| **per echoed message** | **$per_echo** |"
    echo "| wsev-pubsub startup+shutdown, $((SUBS + 1)) connections, 0 publishes | $p0 |"
    echo "| wsev-pubsub, + $N_PUB publishes x $SUBS subscribers | $p1 |"
    echo "| **per delivered pubsub message** (publish cost included) | **$per_deliv** |"
  } | tee "$RESULTS/callgrind.md"
  if command -v callgrind_annotate >/dev/null; then
    for k in echo pubsub; do
      echo
      echo "Top functions, wsev-$k run (inclusive of nothing; self cost):"
      callgrind_annotate "$TMP/callgrind.$k.out" 2>/dev/null | sed -n '/^Ir/,$p' | sed -n '3,22p'
    done | tee -a "$RESULTS/callgrind.md" >/dev/null
    echo "(top functions written to $RESULTS/callgrind.md)"
  fi
  exit 0
fi

# ======================================================================================
# the side-by-side run
# ======================================================================================
mkdir -p "$RESULTS"
RAW="$TMP/raw.tsv" # workload server rep value p50 p99 lg_cpu errors
: >"$RAW"

# wl_args WORKLOAD -> "kind loadgen-mode args..."
wl_kind() {
  case $1 in
    echo_*) echo echo ;; pubsub_*) echo pubsub ;; idle_*) echo echo ;; handshakes) echo echo ;;
  esac
}
wl_args() {
  case $1 in
    echo_100x10) echo "-c 100 -k 10 -s 32" ;;
    echo_1000x1) echo "-c 1000 -k 1 -s 32" ;;
    echo_10x64k) echo "-c 10 -k 1 -s 65536" ;;
    pubsub_1to1000) echo "--publishers 1 --subscribers 1000 --channels 1 -k 10 -s 32" ;;
    pubsub_10x100) echo "--publishers 10 --subscribers 1000 --channels 100 -k 10 -s 32" ;;
  esac
}

run_one() { # WORKLOAD SERVER REP
  local wl=$1 s=$2 rep=$3 kind out val p50 p99 cpu err
  kind=$(wl_kind "$wl")
  start_server "$s" "$kind" || { printf '%s\t%s\t%s\tNA\tNA\tNA\tNA\tNA\n' "$wl" "$s" "$rep" >>"$RAW"; return; }
  case $wl in
    echo_*)
      local mode=echo; [ "$s" = raw ] && mode=raw
      # shellcheck disable=SC2046
      out=$(lg $mode $(wl_args "$wl") -d $DUR -w $WARM | grep '^RESULT' || true)
      val=$(field rate "$out") ;;
    pubsub_*)
      # shellcheck disable=SC2046
      out=$(lg pubsub $(wl_args "$wl") -d $DUR -w $WARM | grep '^RESULT' || true)
      val=$(field rate "$out") ;;
    idle_10k)
      local n=10000 r0 r1
      r0=$(rss_kb "$SRV_PID")
      taskset -c 1 "$LOADGEN" idle -c $n -d $IDLE_HOLD --port $PORT >"$TMP/idle.out" 2>&1 &
      local lgpid=$!
      for _ in $(seq 600); do grep -q '^READY\|^RESULT' "$TMP/idle.out" && break; sleep 0.1; done
      sleep 1
      r1=$(rss_kb "$SRV_PID")
      wait $lgpid || true
      out=$(grep '^RESULT' "$TMP/idle.out" || true)
      if grep -q '^READY' "$TMP/idle.out"; then
        val=$(( (r1 - r0) * 1024 / n ))
      else
        val=NA
      fi ;;
    handshakes)
      out=$(lg handshakes -c 50 -d $DUR -w $WARM | grep '^RESULT' || true)
      val=$(field rate "$out") ;;
  esac
  stop_server
  p50=$(field p50_us "$out"); p99=$(field p99_us "$out"); cpu=$(field cpu_pct "$out"); err=$(field errors "$out")
  [ -n "$val" ] || val=NA
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$wl" "$s" "$rep" "$val" "${p50:-NA}" "${p99:-NA}" "${cpu:-NA}" "${err:-NA}" >>"$RAW"
  printf '  %-15s %-5s rep %s: %s (p50 %s us, p99 %s us, generator cpu %s%%, errors %s)\n' \
    "$wl" "$s" "$rep" "$val" "${p50:-NA}" "${p99:-NA}" "${cpu:-NA}" "${err:-NA}"
}

echo "bench: $(nproc) cores; server on CPU 0, load generator on CPU 1; reps=$reps duration=${DUR}s warm-up=${WARM}s"
echo "bench: servers: $servers (+ raw TCP ceiling for echo rows); workloads: $workloads"
start_time=$(date +%s)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
# Repetitions outermost, servers interleaved, so that a noisy moment on the machine
# spreads over all servers instead of sinking one.
for rep in $(seq "$reps"); do
  for wl in $workloads; do
    list=$servers
    case $wl in echo_*) list="$servers raw" ;; esac
    for s in $list; do run_one "$wl" "$s" "$rep"; done
  done
done

# --- medians and the table ------------------------------------------------------------
MED="$TMP/med.tsv" # workload server value p50 p99 cpu errors(max)
awk -F'\t' '
  function median(str,   a, n, i, j, t) {
    n = split(str, a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    if (n == 0) return "NA"
    return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  { k = $1 "\t" $2; if (!(k in seen)) { seen[k] = 1; order[++m] = k }
    if ($4 != "NA") { v[k] = v[k] " " $4; p5[k] = p5[k] " " $5; p9[k] = p9[k] " " $6; c[k] = c[k] " " $7 }
    if ($8 != "NA" && $8 + 0 > e[k] + 0) e[k] = $8 }
  END { for (i = 1; i <= m; i++) { k = order[i]
          printf "%s\t%s\t%s\t%s\t%s\t%s\n", k, median(v[k]), median(p5[k]), median(p9[k]), median(c[k]), (k in e) ? e[k] : 0 } }
' "$RAW" >"$MED"

get() { awk -F'\t' -v w="$1" -v s="$2" -v col="$3" '$1 == w && $2 == s { print $col }' "$MED"; }
fmt_val() { # WORKLOAD VALUE
  local v=$2
  [ -n "$v" ] && [ "$v" != NA ] || { echo "–"; return; }
  case $1 in
    idle_*) echo "$v B" ;;
    *) awk -v v="$v" 'BEGIN { if (v >= 1e6) printf "%.2f M", v / 1e6; else if (v >= 1e3) printf "%.1f k", v / 1e3; else printf "%.0f", v }' ;;
  esac
}
ratio() { # A B -> A/B
  [ -n "$1" ] && [ -n "$2" ] && [ "$1" != NA ] && [ "$2" != NA ] || { echo "–"; return; }
  awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "–"; else printf "%.2f×", a / b }'
}
label() {
  case $1 in
    echo_100x10) echo "echo 100 conns × 10 in flight × 32 B (msg/s)" ;;
    echo_1000x1) echo "echo 1000 conns × 1 × 32 B (msg/s)" ;;
    echo_10x64k) echo "echo 10 conns × 1 × 64 KiB (msg/s)" ;;
    pubsub_1to1000) echo "pubsub 1 publisher → 1000 subscribers (deliveries/s)" ;;
    pubsub_10x100) echo "pubsub 10 publishers, 100 channels, 1000 subscribers (deliveries/s)" ;;
    idle_10k) echo "10,000 idle connections (server RSS per connection, lower is better)" ;;
    handshakes) echo "handshakes/s (connect, upgrade, close; 50 concurrent)" ;;
  esac
}
name() { case $1 in wsev) echo wsev ;; uws) echo "uWS (Bun $("$BUN" --version 2>/dev/null))" ;; lws) echo "libwebsockets $(pkg-config --modversion libwebsockets 2>/dev/null | tr -d -)" ;; ws) echo "Node ws $(node -p 'require("'"$ROOT/$BENCH"'/node_modules/ws/package.json").version' 2>/dev/null)" ;; raw) echo "raw TCP ceiling" ;; esac; }

peers=""; for s in $servers; do [ "$s" = wsev ] || peers="$peers $s"; done
MD="$RESULTS/latest.md"
{
  echo "# wsev benchmark: latest run"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), kernel $(uname -r)."
  echo "Command: \`scripts/bench.sh${args:+ $args}\`; $reps repetition(s), medians; ${DUR} s measured after ${WARM} s warm-up; server pinned to CPU 0, load generator to CPU 1."
  echo
  printf '| workload |'; for s in $servers raw; do printf ' %s |' "$(name $s)"; done
  for p in $peers raw; do printf ' wsev ÷ %s |' "$p"; done; echo ' generator CPU (wsev run / max) |'
  printf '|---|'; for _ in $servers raw $peers raw; do printf -- '---|'; done; echo '---|'
  for wl in $workloads; do
    printf '| %s |' "$(label "$wl")"
    for s in $servers raw; do
      v=$(get "$wl" "$s" 3)
      cell=$(fmt_val "$wl" "$v")
      p50=$(get "$wl" "$s" 4); p99=$(get "$wl" "$s" 5)
      if [ "$cell" != "–" ] && [ -n "$p50" ] && [ "$p50" != NA ] && [ "$p50" != 0.0 ]; then
        cell="$cell<br>p50 $(awk -v x="$p50" 'BEGIN{ if (x>=1000) printf "%.1f ms", x/1000; else printf "%.0f µs", x}') / p99 $(awk -v x="$p99" 'BEGIN{ if (x>=1000) printf "%.1f ms", x/1000; else printf "%.0f µs", x}')"
      fi
      printf ' %s |' "$cell"
    done
    w=$(get "$wl" wsev 3)
    for p in $peers raw; do printf ' %s |' "$(ratio "$w" "$(get "$wl" "$p" 3)")"; done
    cw=$(get "$wl" wsev 6)
    cmax=$(awk -F'\t' -v w="$wl" '$1 == w && $7 != "NA" && $7 + 0 > m { m = $7 + 0 } END { printf "%.0f", m }' "$RAW")
    printf ' %s%% / %s%% |\n' "$(printf '%.0f' "${cw:-0}" 2>/dev/null || echo '?')" "$cmax"
  done
  echo
  echo "Ratios are wsev ÷ peer: above 1.0× wsev is faster, except for idle RSS where below 1.0× means wsev uses less memory."
  echo "Load average of the machine (other work included) at start: $load_start, at end: $(cut -d' ' -f1-3 /proc/loadavg); on $(nproc) cores anything well above 2 means other processes competed with the run."
  echo "Generator CPU is the load generator's own CPU use over the measured interval (getrusage); near 100 % means the generator, not the server, may be the limit."
  errs=$(awk -F'\t' '$8 != "NA" && $8 + 0 > 0 { printf "%s/%s rep %s: %s; ", $1, $2, $3, $8 }' "$RAW")
  [ -z "$errs" ] || echo "Runs with errors (unexpected closes or refused upgrades): $errs"
  echo
  echo "<details><summary>every run</summary>"
  echo
  echo '```'
  printf 'workload\tserver\trep\tvalue\tp50_us\tp99_us\tgen_cpu%%\terrors\n'
  cat "$RAW"
  echo '```'
  echo "</details>"
} >"$MD"

# --- chart: each server relative to wsev (higher is better; idle uses 1/RSS) -----------
DAT="$TMP/chart.dat"
{
  printf 'workload'; for s in $servers raw; do printf '\t%s' "$s"; done; echo
  for wl in $workloads; do
    printf '%s' "$wl"
    w=$(get "$wl" wsev 3)
    for s in $servers raw; do
      v=$(get "$wl" "$s" 3)
      awk -v a="$v" -v w="$w" -v idle="$([ "${wl%%_*}" = idle ] && echo 1 || echo 0)" 'BEGIN {
        if (a == "" || a == "NA" || w == "" || w == "NA" || a + 0 == 0 || w + 0 == 0) { printf "\t-"; exit }
        printf "\t%.3f", idle ? w / a : a / w }'
    done
    echo
  done
} >"$DAT"
if command -v gnuplot >/dev/null; then
  ncols=$(( $(echo $servers raw | wc -w) + 1 ))
  gnuplot <<EOF || echo "bench: gnuplot failed" >&2
set terminal pngcairo size 1200,600 noenhanced font ",10"
set output "$RESULTS/latest.png"
set title "wsev benchmark, $(date -u +%Y-%m-%d): each server relative to wsev (= 1.0; higher is better; idle: inverse of RSS per connection)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y 2
set yrange [0.01:*]
set grid ytics
set ylabel "relative to wsev (log scale)"
set xtics rotate by -20
set key top right
set datafile missing "-"
set datafile separator "\t"
plot for [i=2:$ncols] "$DAT" using i:xtic(1) title columnheader(i)
EOF
fi

echo
cat "$MD" | sed '/<details>/,$d'
echo "bench: wrote $MD and $RESULTS/latest.png in $(( $(date +%s) - start_time )) s"
