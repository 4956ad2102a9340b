#!/usr/bin/env bash
# I/O threads, measured: for each I/O thread count, wsev-echo's throughput and CPU per
# message split between the dispatcher (the application's thread: the serial part) and
# the I/O threads, on ws 32 B echo, ws 64 KiB echo and wss 64 KiB echo (load from
# wsev-client-load), and full TLS handshakes per second (openssl s_time). Then the
# overhead of 1 I/O thread against inline at the same load, and a projection for more
# cores from the measured costs. The thread counts run in turn in every repetition
# (one server each, started first), and the median repetition of each is reported.
# Release build in build-bench/.
#
#   scripts/bench-threads.sh [--threads "0 1"] [--server-cores 0] [--client-cores 1]
#                            [--seconds S] [--reps N]
# On a larger machine give more threads and cores, e.g.
#   --threads "0 1 3 7" --server-cores 0-7 --client-cores 8-15
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-common.sh
threads="0 1"
server_cores=0
client_cores=1
seconds=4
reps=3
while [ $# -gt 0 ]; do
  case "$1" in
  --threads) threads=$2; shift ;;
  --server-cores) server_cores=$2; shift ;;
  --client-cores) client_cores=$2; shift ;;
  --seconds) seconds=$2; shift ;;
  --reps) reps=$2; shift ;;
  *) sed -n '2,13p' "$0" >&2; exit 2 ;;
  esac
  shift
done

BUILD=build-bench
release_build $BUILD sample/wsev-echo test/bench/wsev-client-load
work=$(mktemp -d)
server=""
servers=""
trap 'for p in $servers; do kill "$p" 2>/dev/null; done; rm -rf "$work"' EXIT
scripts/make-cert.sh "$work" >/dev/null
ticks=$(getconf CLK_TCK)

# CPU ticks of the server's main thread and of all its other threads: "main others".
thread_ticks() {
  local main=0 others=0 t v
  for t in /proc/$server/task/*; do
    v=$(awk '{ print $14 + $15 }' "$t/stat" 2>/dev/null || echo 0)
    if [ "${t##*/}" = "$server" ]; then main=$((main + v)); else others=$((others + v)); fi
  done
  echo "$main $others"
}

# run URL CONNS IN_FLIGHT SIZE -> "rate total_us dispatcher_us io_us" per message. The
# total is the server's CPU over the generator's measurement window; its split between
# the main thread and the I/O threads is the ratio over the whole run.
run() {
  local out m0 o0 m1 o1
  read -r m0 o0 < <(thread_ticks)
  out=$(taskset -c "$client_cores" $BUILD/test/bench/wsev-client-load "$1" "$2" "$3" "$4" \
    "$seconds" $(($2 / 150 + 1)) --ca "$work/ca.crt" --server-pid $server)
  read -r m1 o1 < <(thread_ticks)
  awk -v r="$(sed -n 's/.*rate=\([0-9]*\).*/\1/p' <<<"$out")" \
    -v m="$(sed -n 's/.*msgs=\([0-9]*\).*/\1/p' <<<"$out")" \
    -v c="$(sed -n 's/.*server_cpu=\([0-9.]*\).*/\1/p' <<<"$out")" \
    -v dm=$((m1 - m0)) -v dother=$((o1 - o0)) \
    'BEGIN { t = m ? c * 1e6 / m : 0; f = dm + dother ? dm / (dm + dother) : 1;
             printf "%d %.2f %.2f %.2f\n", r, t, t * f, t * (1 - f) }'
}


handshakes() { # PORT: full handshakes per second of wall-clock time
  local t0 t1 n
  t0=$(date +%s.%N)
  n=$(taskset -c "$client_cores" openssl s_time -connect "127.0.0.1:$1" -new \
    -time "$seconds" 2>/dev/null | sed -n 's/^\([0-9]*\) connections in [0-9.]*s;.*/\1/p')
  t1=$(date +%s.%N)
  awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN { printf "%d\n", n / (b - a) }'
}

results="$work/results"
: >"$results"
printf "%-8s %-24s %12s %10s %12s %10s\n" threads workload "msg/s" "us/msg" "dispatcher" "I/O"
# One server per thread count, all started first, so that each repetition runs every
# thread count one after the other: this machine's speed drifts over minutes, and
# interleaving keeps the ratios fair. An idle server costs nothing.
declare -A pid ws_port wss_port
servers=""
for n in $threads; do
  taskset -c "$server_cores" $BUILD/sample/wsev-echo 0 --io-threads "$n" --tls-port 0 \
    --cert "$work/localhost.crt" --key "$work/localhost.key" >"$work/out$n" &
  pid[$n]=$!
  servers="$servers $!"
  for _ in $(seq 50); do grep -q TLS "$work/out$n" 2>/dev/null && break; sleep 0.1; done
  ws_port[$n]=$(sed -n 's/.*listening on port \([0-9]*\).*/\1/p' "$work/out$n")
  wss_port[$n]=$(sed -n 's/.*listening for TLS on port \([0-9]*\).*/\1/p' "$work/out$n")
done
for w in "ws 100 10 32" "ws 10 1 65536" "wss 10 1 65536"; do
  set -- $w
  for n in $threads; do : >"$work/reps$n"; done
  for _ in $(seq "$reps"); do
    for n in $threads; do
      server=${pid[$n]}
      port=${ws_port[$n]}
      [ "$1" = wss ] && port=${wss_port[$n]}
      run "$1://localhost:$port/" "$2" "$3" "$4" >>"$work/reps$n"
    done
  done
  for n in $threads; do
    # The repetition with the median rate, whole.
    line=$(sort -n "$work/reps$n" | sed -n "$(((reps + 1) / 2))p")
    name="$1 echo $2x$3x$4"
    read -r r t d i <<<"$line"
    printf "%-8s %-24s %12s %10s %12s %10s\n" "$n" "$name" "$r" "$t" "$d" "$i"
    echo "$n|$name|$r|$t|$d|$i" >>"$results"
  done
done
for n in $threads; do : >"$work/hs$n"; done
for _ in $(seq "$reps"); do
  for n in $threads; do
    handshakes "${wss_port[$n]}" >>"$work/hs$n"
  done
done
for n in $threads; do
  hs=$(median <"$work/hs$n")
  printf "%-8s %-24s %12s\n" "$n" "TLS full handshakes/s" "$hs"
  echo "$n|handshakes|$hs|||" >>"$results"
done
for p in $servers; do kill -INT "$p"; wait "$p" 2>/dev/null || true; done
servers=""

# Overhead of one I/O thread against inline, and a projection from the measured costs:
# with C cores, one runs the dispatcher and C-1 run I/O threads, so messages/s is at
# most min(1/dispatcher, (C-1)/io) (Amdahl with the dispatcher as the serial part).
# One-App-per-thread servers (uWS) scale as C x their one-core rate but share no state.
if grep -q '^0|' "$results" && grep -q '^1|' "$results"; then
  echo
  printf "%-24s %14s %14s %10s\n" workload "inline us/msg" "1 thread us/msg" overhead
  for name in "ws echo 100x10x32" "ws echo 10x1x65536" "wss echo 10x1x65536"; do
    a=$(awk -F'|' -v n="$name" '$1 == 0 && $2 == n { print $4 }' "$results")
    b=$(awk -F'|' -v n="$name" '$1 == 1 && $2 == n { print $4 }' "$results")
    printf "%-24s %14s %14s %9.0f%%\n" "$name" "$a" "$b" \
      "$(awk -v a="$a" -v b="$b" 'BEGIN { print a ? (b / a - 1) * 100 : 0 }')"
  done
  echo
  printf "%-24s %12s %14s %14s %14s %16s\n" workload "dispatcher" "4 cores" "16 cores" \
    "64 cores" "64 x inline/core"
  for name in "ws echo 100x10x32" "ws echo 10x1x65536" "wss echo 10x1x65536"; do
    awk -F'|' -v n="$name" '
      $1 == 1 && $2 == n { d = $5; io = $6 }
      $1 == 0 && $2 == n { inl = $4 }
      END {
        cap = d > 0 ? 1e6 / d : 0
        for (k = 0; k < 3; k++) {
          c = k == 0 ? 4 : k == 1 ? 16 : 64
          par = io > 0 ? (c - 1) * 1e6 / io : 0
          p[k] = cap < par ? cap : par
        }
        per_core = inl > 0 ? 64 * 1e6 / inl : 0
        printf "%-24s %10.0f/s %12.0f/s %12.0f/s %12.0f/s %14.0f/s\n", n, cap, p[0], p[1], p[2],
          per_core
      }' "$results"
  done
fi
