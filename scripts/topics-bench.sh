#!/usr/bin/env bash
# Local publish fan-out: wsev's topics (wsev-pubsub today) against the wsev_broadcast
# path they replaced (wsev-pubsub as of commit 17cb095: its own channel map, one
# wsev_broadcast per publish, built from git history against the same library) and
# against uWebSockets' native topics (Bun.serve: ws.subscribe / server.publish).
#
#   scripts/topics-bench.sh [--reps N] [--seconds S]
#   scripts/topics-bench.sh --callgrind   instructions per delivery (valgrind), topics
#                                         against broadcast: deterministic, unlike the
#                                         rates on a shared machine
#   scripts/topics-bench.sh --redis       across instances through one redis-server (on
#                                         a free port): 2 wsev-pubsub --redis against 2
#                                         Socket.IO servers with @socket.io/redis-adapter
#                                         (test/bench-redis, npm ci there); 100
#                                         subscribers on one, 1 publisher on the other,
#                                         10 publishes in flight; the same Node client
#                                         (test/bench-redis/cross.mjs) drives both, and
#                                         wsev-cross-load (C, on wsev) drives wsev too
#                                         (wsev-c), to measure the servers
#
# Workloads as in test/bench/README.md: pubsub_1to1000 (1 publisher, 1000 subscribers
# on one channel) and pubsub_10x100 (10 publishers, 1000 subscribers over 100
# channels), 32-byte bodies, 10 publishes in flight per publisher; figures are
# deliveries/s and publish-to-delivery p50/p99 from test/bench's wsev-loadgen. Server
# on CPU 0, load generator on CPU 1, loopback only; a fresh server per run; medians
# over the repetitions (default 3, servers interleaved). Release build in
# build-topics-rel/; Bun from test/bench/node_modules (npm ci --prefix test/bench).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=build-topics-rel
reps=3
secs=3
callgrind=0
redis=0
while [ $# -gt 0 ]; do
  case "$1" in
    --redis) redis=1 ;;
    --callgrind) callgrind=1 ;;
    --reps) reps=$2; shift ;;
    --seconds) secs=$2; shift ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "topics-bench: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

[ -f $BUILD/build.ninja ] || meson setup $BUILD --buildtype=release >/dev/null
ninja -C $BUILD >/dev/null
[ -x test/bench/node_modules/.bin/bun ] || npm ci --prefix test/bench --no-audit --no-fund
BUN=$ROOT/test/bench/node_modules/.bin/bun
LOADGEN=$ROOT/$BUILD/test/bench/wsev-loadgen

. scripts/bench-common.sh
TMP=$(mktemp -d)
trap 'stop_server; rm -rf "$TMP"' EXIT

# The wsev_broadcast path: the sample before topics, against today's library.
BASE=17cb095
mkdir -p "$TMP/old"
for f in pubsub.c channels.c channels.h; do git show "$BASE:sample/$f" >"$TMP/old/$f"; done
cc -O2 -std=gnu11 -I include -o "$TMP/wsev-pubsub-broadcast" "$TMP/old/pubsub.c" \
  "$TMP/old/channels.c" -L $BUILD/lib -lwsev $(pkg-config --cflags --libs libuv) \
  -Wl,-rpath,"$ROOT/$BUILD/lib"

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

server_cmd() { # NAME PORT
  case $1 in
    topics) echo "$ROOT/$BUILD/sample/wsev-pubsub --port $2 --no-tls --quiet" ;;
    broadcast) echo "$TMP/wsev-pubsub-broadcast --port $2 --no-tls --quiet" ;;
    uws) echo "$BUN $ROOT/test/bench/bun-server.js $2 pubsub" ;;
  esac
}
wl_args() {
  case $1 in
    pubsub_1to1000) echo "--publishers 1 --subscribers 1000 --channels 1 -k 10 -s 32" ;;
    pubsub_10x100) echo "--publishers 10 --subscribers 1000 --channels 100 -k 10 -s 32" ;;
  esac
}
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

port=19100

if [ $redis = 1 ]; then
  [ -d test/bench-redis/node_modules ] || npm ci --prefix test/bench-redis --no-audit --no-fund
  RP=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  redis-server --port "$RP" --bind 127.0.0.1 --save "" --appendonly no --dir "$TMP" \
    --loglevel warning >/dev/null &
  REDIS_PID=$!
  trap 'stop_server; kill $REDIS_PID $B_PID 2>/dev/null || true; rm -rf "$TMP"' EXIT
  sleep 0.5
  B_PID=""
  cross_cmd() { # NAME PORT
    case $1 in
      wsev|wsev-c) echo "$ROOT/$BUILD/sample/wsev-pubsub --port $2 --no-tls --quiet --redis redis://127.0.0.1:$RP" ;;
      socketio) echo "node $ROOT/test/bench-redis/sio-server.mjs $2 redis://127.0.0.1:$RP" ;;
    esac
  }
  for rep in $(seq "$reps"); do
    for s in wsev wsev-c socketio; do
      pa=$((port + 1)); pb=$((port + 2)); port=$((port + 2))
      # shellcheck disable=SC2046
      $(cross_cmd $s $pa) >"$TMP/a.log" 2>&1 &
      SRV_PID=$!
      # shellcheck disable=SC2046
      $(cross_cmd $s $pb) >"$TMP/b.log" 2>&1 &
      B_PID=$!
      for p in $pa $pb; do
        for _ in $(seq 100); do
          (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null && break
          sleep 0.05
        done
      done
      sleep 0.5
      case $s in
        wsev) out=$(node test/bench-redis/cross.mjs wsev $pa $pb 100 1 10 "$secs" | grep '^RESULT' || true) ;;
        wsev-c) out=$("$ROOT/$BUILD/test/bench-redis/wsev-cross-load" $pa $pb 100 1 10 "$secs" |
          grep '^RESULT' || true) ;;
        socketio) out=$(node test/bench-redis/cross.mjs sio $pa $pb 100 1 10 "$secs" | grep '^RESULT' || true) ;;
      esac
      kill $B_PID 2>/dev/null || true; wait $B_PID 2>/dev/null || true
      stop_server
      printf 'cross\t%s\t%s\t%s\t%s\n' "$s" "$(field rate "$out")" "$(field p50_us "$out")" \
        "$(field p99_us "$out")" >>"$TMP/cross.tsv"
      echo "rep $rep cross $s: $(field rate "$out") deliveries/s, p50 $(field p50_us "$out") us, p99 $(field p99_us "$out") us" >&2
    done
  done
  echo "| across 2 instances via Redis | deliveries/s | p50 µs | p99 µs |"
  echo "|---|---|---|---|"
  for s in wsev wsev-c socketio; do
    r=$(awk -F'\t' -v s=$s '$2==s {print $3}' "$TMP/cross.tsv" | median)
    p50=$(awk -F'\t' -v s=$s '$2==s {print $4}' "$TMP/cross.tsv" | median)
    p99=$(awk -F'\t' -v s=$s '$2==s {print $5}' "$TMP/cross.tsv" | median)
    printf '| %s | %.0f | %.0f | %.0f |\n' "$s" "$r" "$p50" "$p99"
  done
  exit 0
fi

if [ $callgrind = 1 ]; then
  # Total instructions of a server run with N publishes, minus the same run with 0,
  # divided by the deliveries: the cost of one delivery, publish included.
  cg_run() { # SERVER COUNT LOADGEN-ARGS...
    local s=$1 count=$2; shift 2
    port=$((port + 1))
    # shellcheck disable=SC2046
    valgrind --tool=callgrind --callgrind-out-file="$TMP/cg.out" $(server_cmd $s $port) \
      >"$TMP/server.log" 2>&1 &
    SRV_PID=$!
    for _ in $(seq 200); do
      (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
      sleep 0.05
    done
    "$LOADGEN" pubsub "$@" --count "$count" -d 120 --port $port >"$TMP/lg.log"
    grep -q "ok=1" "$TMP/lg.log" || { cat "$TMP/lg.log" >&2; exit 1; }
    kill -TERM $SRV_PID; wait $SRV_PID 2>/dev/null || true; SRV_PID=""
    awk '/^summary:|^totals:/ {print $2; exit}' "$TMP/cg.out"
  }
  echo "| workload | server | instructions per delivery |"
  echo "|---|---|---|"
  # name:loadgen args:deliveries per publish:publishes (20,000 deliveries each, so that
  # the noise of connection setup in both runs stays small against them)
  for wl in "1to100:--publishers 1 --subscribers 100 --channels 1 -k 4 -s 32:100:200" \
            "10x100:--publishers 10 --subscribers 1000 --channels 100 -k 4 -s 32:10:2000"; do
    IFS=: read -r name args per_pub N <<<"$wl"
    for s in topics broadcast; do
      # shellcheck disable=SC2086
      c0=$(cg_run $s 0 $args)
      # shellcheck disable=SC2086
      c1=$(cg_run $s $N $args)
      echo "  $name $s: $c0 instructions with 0 publishes, $c1 with $N" >&2
      echo "| $name | $s | $(( (c1 - c0) / (N * per_pub) )) |"
    done
  done
  exit 0
fi

RAW=$TMP/raw.tsv
for rep in $(seq "$reps"); do
  for wl in pubsub_1to1000 pubsub_10x100; do
    for s in topics broadcast uws; do
      port=$((port + 1))
      # shellcheck disable=SC2046
      taskset -c 0 $(server_cmd $s $port) >"$TMP/server.log" 2>&1 &
      SRV_PID=$!
      for _ in $(seq 100); do
        (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
        sleep 0.05
      done
      sleep 0.3
      # shellcheck disable=SC2046
      out=$(taskset -c 1 "$LOADGEN" pubsub $(wl_args $wl) -d "$secs" -w 1 --port $port |
        grep '^RESULT' || true)
      stop_server
      printf '%s\t%s\t%s\t%s\t%s\n' "$wl" "$s" "$(field rate "$out")" "$(field p50_us "$out")" \
        "$(field p99_us "$out")" >>"$RAW"
      echo "rep $rep $wl $s: $(field rate "$out") deliveries/s, p50 $(field p50_us "$out") us, p99 $(field p99_us "$out") us" >&2
    done
  done
done

echo
echo "| workload | server | deliveries/s | p50 µs | p99 µs |"
echo "|---|---|---|---|---|"
for wl in pubsub_1to1000 pubsub_10x100; do
  for s in topics broadcast uws; do
    r=$(awk -F'\t' -v w=$wl -v s=$s '$1==w && $2==s {print $3}' "$RAW" | median)
    p50=$(awk -F'\t' -v w=$wl -v s=$s '$1==w && $2==s {print $4}' "$RAW" | median)
    p99=$(awk -F'\t' -v w=$wl -v s=$s '$1==w && $2==s {print $5}' "$RAW" | median)
    printf '| %s | %s | %.0f | %.0f | %.0f |\n' "$wl" "$s" "$r" "$p50" "$p99"
  done
done
