#!/usr/bin/env bash
# permessage-deflate side by side, in one run: wsev-echo without compression (the
# baseline), with --deflate=shared, --deflate=dedicated, dedicated at level 9 (fewest
# bytes) and dedicated on a budget (--deflate-window 10 --deflate-mem-level 4), Node's ws (perMessageDeflate with its
# defaults, threshold 128 B) and uWebSockets in Bun (perMessageDeflate: true), each an
# echo server pinned to CPU 0, a fresh process for every run.
#   - echo of 1 KiB JSON text messages (different ones, from wsev-client-load --text on
#     CPU 1, which offers "permessage-deflate; client_max_window_bits" as browsers do,
#     keeps its context where the server allows, and compresses every message at
#     zlib's level 6): messages/s, bytes on the wire per message each way (the
#     generator's TCP counters), the server's CPU per message, the generator's CPU;
#   - resident memory per idle connection after one compressed message each way
#     (test/bench/idle-deflate.py, 1000 connections), and what each server answered.
# Release build in build-bench-deflate/. Prints markdown tables of the medians of
# --reps runs, and wsev's ratios to uWS and to ws.
#
#   scripts/bench-deflate.sh [--reps N] [--seconds S] [--memory-only] [--no-install]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-common.sh
ROOT=$PWD
reps=3
seconds=5
memory_only=0
install=1
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) reps=$2; shift ;;
    --seconds) seconds=$2; shift ;;
    --memory-only) memory_only=1 ;;
    --no-install) install=0 ;;
    *) echo "usage: $0 [--reps N] [--seconds S] [--memory-only] [--no-install]" >&2; exit 2 ;;
  esac
  shift
done

BENCH=test/bench
[ $install = 0 ] || bench_install python3 util-linux procps
BUILD=build-bench-deflate
release_build $BUILD sample/wsev-echo test/bench/wsev-client-load
ECHO=$ROOT/$BUILD/sample/wsev-echo
LOAD=$ROOT/$BUILD/test/bench/wsev-client-load
BUN=$ROOT/$BENCH/node_modules/.bin/bun

work=$(mktemp -d)
trap 'stop_server; rm -rf "$work"' EXIT

servers=(off shared dedicated dense budget ws uws)
label() {
  case $1 in
    off) echo "wsev, no deflate" ;;
    shared) echo "wsev shared" ;;
    dedicated) echo "wsev dedicated" ;;
    dense) echo "wsev dedicated, level 9" ;;
    budget) echo "wsev dedicated, window 10, mem 4" ;;
    ws) echo "Node ws $(node -p 'require("'"$ROOT/$BENCH"'/node_modules/ws/package.json").version')" ;;
    uws) echo "uWS (Bun $("$BUN" --version))" ;;
  esac
}
command_of() {
  case $1 in
    off) echo "$ECHO 0" ;;
    shared) echo "$ECHO 0 --deflate=shared" ;;
    dedicated) echo "$ECHO 0 --deflate=dedicated" ;;
    dense) echo "$ECHO 0 --deflate=dedicated --deflate-level 9" ;;
    budget) echo "$ECHO 0 --deflate=dedicated --deflate-window 10 --deflate-mem-level 4" ;;
    ws) echo "node $ROOT/$BENCH/ws-server.mjs 0 echo --deflate" ;;
    uws) echo "$BUN $ROOT/$BENCH/bun-server.js 0 echo --deflate" ;;
  esac
}

# start NAME: the server on CPU 0; sets SRV_PID and $port.
start() { start_pinned "$work/out" "listening on port" "$1" "$(command_of "$1")"; }

# echo_load CONNS IN_FLIGHT -> "rate from_B/msg to_B/msg server_us/msg generator_%"; a
# run whose echoes were not all right or whose connections did not all open is told
# on stderr and kept out ("NA").
echo_load() {
  local out
  out=$(taskset -c 1 "$LOAD" "ws://127.0.0.1:$port/" "$1" "$2" 1024 "$seconds" \
    $(($1 / 500 + 1)) --text --deflate dedicated --stats --server-pid "$SRV_PID") || true
  field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p; s/^$1=\([0-9.]*\).*/\1/p" <<<"$out"; }
  if [ "$(field open)" != "$1" ] || [ "$(field failed)" != 0 ] || [ "$(field bad)" != 0 ] ||
    [ -z "$(field from_server)" ]; then
    echo "  run failed: $out" >&2
    echo "NA NA NA NA NA"
    return
  fi
  awk -v m="$(field msgs)" -v s="$(field seconds)" -v r="$(field rate)" \
    -v f="$(field from_server)" -v t="$(field to_server)" -v c="$(field server_cpu)" \
    -v g="$(field client_cpu)" \
    'BEGIN { if (!m) { print "NA NA NA NA NA"; exit }
             printf "%d %.1f %.1f %.2f %.0f\n", r, f / m, t / m, c * 1e6 / m, 100 * g / s }'
}

loads=("100 10" "1000 1")
load_titles=("100 connections × 10 in flight" "1000 connections × 1 in flight")
figures=(rate from to us gen)
declare -A runs   # [server,load,figure] -> one value a line
declare -A answer # [server] -> the server's Sec-WebSocket-Extensions answer
declare -A rss    # [server] -> values, one a line
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date -u '+%Y-%m-%d %H:%M UTC')

# Repetitions outside, servers interleaved inside: a noisy moment spreads over all.
for rep in $(seq "$reps"); do
  for s in "${servers[@]}"; do
    if [ "$s" != off ]; then
      echo "rep $rep/$reps: $(label "$s"): idle memory ..." >&2
      start "$s"
      out=$(python3 $BENCH/idle-deflate.py "$port" "$SRV_PID" 1000) ||
        { echo "idle-deflate.py failed against $s" >&2; exit 1; }
      stop_server
      rss[$s]+="$(sed -n 's/.*bytes_per_conn=\([0-9]*\).*/\1/p' <<<"$out")"$'\n'
      answer[$s]=$(sed -n 's/.*extension=//p' <<<"$out" | sed 's/;/; /g')
    fi
    [ $memory_only = 1 ] && continue
    for i in "${!loads[@]}"; do
      echo "rep $rep/$reps: $(label "$s"): echo ${loads[$i]} ..." >&2
      start "$s"
      # shellcheck disable=SC2086
      read -r -a v < <(echo_load ${loads[$i]})
      stop_server
      for f in "${!figures[@]}"; do
        [ "${v[$f]}" = NA ] || runs[$s,$i,${figures[$f]}]+="${v[$f]}"$'\n'
      done
    done
  done
done

med() { printf "%s" "${1:-}" | { grep -v '^$' || true; } | median; }
# fmt FIGURE VALUE: as printed in the tables.
fmt() {
  [ "$2" = NA ] && { echo "–"; return; }
  case $1 in
    rate) awk -v v="$2" 'BEGIN { printf (v >= 1e6 ? "%.2f M" : v >= 1e3 ? "%.1f k" : "%d"),
                                  (v >= 1e6 ? v / 1e6 : v >= 1e3 ? v / 1e3 : v) }' ;;
    from | to) printf "%.0f B" "$2" ;;
    rss) awk -v v="$2" 'BEGIN { if (v >= 10240) printf "%.1f KiB\n", v / 1024; else printf "%d B\n", v }' ;;
    us) printf "%.1f µs" "$2" ;;
    gen) printf "%.0f %%" "$2" ;;
  esac
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "NA" || b == "NA" || b == 0) print "–";
                                          else printf (a / b < 0.095 ? "%.3f×\n" : "%.2f×\n"), a / b }'; }
declare -A M # medians: [server,load,figure] and [server,rss]
for s in "${servers[@]}"; do
  M[$s,rss]=$(med "${rss[$s]:-}")
  for i in "${!loads[@]}"; do
    for f in "${figures[@]}"; do M[$s,$i,$f]=$(med "${runs[$s,$i,$f]:-}"); done
  done
done
pairs=("shared uws" "shared ws" "dedicated uws" "dedicated ws" "dense ws" "budget uws" "budget ws")
short() { case $1 in uws) echo uWS ;; ws) echo ws ;; dense) echo "wsev dedicated level 9" ;; *) echo "wsev $1" ;; esac; }

echo
if [ $memory_only = 0 ]; then
  for i in "${!loads[@]}"; do
    echo "### Echo of 1 KiB JSON text, ${load_titles[$i]}"
    echo
    echo "| server | msg/s | wire B/msg to client | wire B/msg to server | server CPU/msg | generator CPU |"
    echo "|---|---|---|---|---|---|"
    for s in "${servers[@]}"; do
      line="| $(label "$s")"
      for f in "${figures[@]}"; do line+=" | $(fmt "$f" "${M[$s,$i,$f]}")"; done
      echo "$line |"
    done
    echo
    echo "| ratio | msg/s (higher is better) | B/msg to client (lower) | B/msg to server (lower) | server CPU/msg (lower) |"
    echo "|---|---|---|---|---|"
    for p in "${pairs[@]}"; do
      read -r a b <<<"$p"
      line="| $(short "$a") / $(short "$b")"
      for f in rate from to us; do line+=" | $(ratio "${M[$a,$i,$f]}" "${M[$b,$i,$f]}")"; done
      echo "$line |"
    done
    echo
  done
fi
echo "### Memory per idle connection (1000 connections, one compressed 1 KiB message each way)"
echo
echo "| server | answer to \"permessage-deflate; client_max_window_bits\" | RSS per idle connection | / uWS | / ws |"
echo "|---|---|---|---|---|"
for s in "${servers[@]}"; do
  [ "$s" = off ] && continue
  echo "| $(label "$s") | \`${answer[$s]}\` | $(fmt rss "${M[$s,rss]}") |" \
    "$(ratio "${M[$s,rss]}" "${M[uws,rss]}") | $(ratio "${M[$s,rss]}" "${M[ws,rss]}") |"
done
echo
echo "($started, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'); medians of $reps" \
  "runs$([ $memory_only = 1 ] || echo " of $seconds s after a warm-up"); server on CPU 0, generator" \
  "on CPU 1; $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'))," \
  "kernel $(uname -r); wsev on zlib $(dpkg-query -W -f='${Version}' zlib1g 2>/dev/null | sed 's/.*://;s/[-.]dfsg.*//')," \
  "Node $(node --version) (zlib $(node -p process.versions.zlib)), $(label uws); load average" \
  "$load_before before, $(cut -d' ' -f1-3 /proc/loadavg) after)"
