#!/usr/bin/env bash
# wss side by side, in one run: wsev over mbedTLS, wsev over OpenSSL, uWebSockets (in
# Bun, BoringSSL) and Node's ws (OpenSSL), each an echo server pinned to CPU 0.
#   - echo throughput and the server's CPU time per message, generated on CPU 1 by
#     wsev-client-load built over OpenSSL (so that the generator is not the limit);
#   - TLS handshakes per second with openssl s_time: full ones (each server's best
#     version: TLS 1.3, or 1.2 for mbedTLS), and resumed ones over TLS 1.2 tickets
#     (s_time cannot resume TLS 1.3, whose tickets come after the handshake);
#   - resident memory per idle wss connection (test/bench/idle-wss.py, 1000 of them).
# Release builds in build-bench/ (mbedTLS) and build-bench-openssl/. Prints a table,
# medians of --reps runs, and every row as a ratio to uWS.
#
#   scripts/bench-tls.sh [--reps N] [--seconds S] [--no-install]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-common.sh
ROOT=$PWD
reps=3
seconds=4
install=1
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) reps=$2; shift ;;
    --seconds) seconds=$2; shift ;;
    --no-install) install=0 ;;
    *) echo "usage: $0 [--reps N] [--seconds S] [--no-install]" >&2; exit 2 ;;
  esac
  shift
done

BENCH=test/bench
[ $install = 0 ] || bench_install python3 util-linux procps
release_build build-bench sample/wsev-echo test/bench/wsev-client-load
release_build build-bench-openssl -Dtls=openssl sample/wsev-echo test/bench/wsev-client-load
LOAD=$ROOT/build-bench-openssl/test/bench/wsev-client-load
BUN=$ROOT/$BENCH/node_modules/.bin/bun

certs=$(mktemp -d)
trap 'stop_server; rm -rf "$certs"' EXIT
scripts/make-cert.sh "$certs" >/dev/null

servers=(wsev-mbedtls wsev-openssl uws ws)
label() {
  case $1 in
    wsev-mbedtls) echo "wsev (mbedTLS)" ;;
    wsev-openssl) echo "wsev (OpenSSL)" ;;
    uws) echo "uWS (Bun $("$BUN" --version))" ;;
    ws) echo "Node ws $(node -p 'require("'"$ROOT/$BENCH"'/node_modules/ws/package.json").version')" ;;
  esac
}
command_of() {
  local tls=(--tls-port 0 --cert "$certs/localhost.crt" --key "$certs/localhost.key")
  case $1 in
    wsev-mbedtls) echo "$ROOT/build-bench/sample/wsev-echo 0 ${tls[*]}" ;;
    wsev-openssl) echo "$ROOT/build-bench-openssl/sample/wsev-echo 0 ${tls[*]}" ;;
    uws) echo "$BUN $ROOT/$BENCH/bun-server.js 0 echo $certs/localhost.crt $certs/localhost.key" ;;
    ws) echo "node $ROOT/$BENCH/ws-server.mjs 0 echo $certs/localhost.crt $certs/localhost.key" ;;
  esac
}

# start NAME: the server on CPU 0; sets SRV_PID and $port (its wss port).
start() { start_pinned "$certs/out" "listening for TLS on port" "$1" "$(command_of "$1")"; }

# echo CONNS IN_FLIGHT SIZE -> "rate server_us_per_msg" (the server's CPU over the
# measurement window only, not the warm-up's handshakes).
echo_load() {
  local out
  out=$(taskset -c 1 "$LOAD" "wss://localhost:$port/" "$1" "$2" "$3" "$seconds" \
    $(($1 / 150 + 1)) --ca "$certs/ca.crt" --server-pid "$SRV_PID")
  awk -v r="$(sed -n 's/.*rate=\([0-9]*\).*/\1/p' <<<"$out")" \
    -v m="$(sed -n 's/.*msgs=\([0-9]*\).*/\1/p' <<<"$out")" \
    -v c="$(sed -n 's/.*server_cpu=\([0-9.]*\).*/\1/p' <<<"$out")" \
    'BEGIN { printf "%d %.1f\n", r, m ? c * 1e6 / m : 0 }'
}

# handshakes -new|-reuse [s_time options] -> "per_second server_us_per_handshake":
# s_time makes one connection at a time, so the rate is a latency figure of client and
# server together; the server's CPU per handshake is its cost.
handshakes() {
  local t0 t1 c0 c1 n
  t0=$(date +%s.%N)
  c0=$(cpu_seconds "$SRV_PID")
  n=$(taskset -c 1 openssl s_time -connect "127.0.0.1:$port" "$@" -time "$seconds" 2>/dev/null |
    sed -n 's/^\([0-9]*\) connections in [0-9.]*s;.*/\1/p' | head -1)
  c1=$(cpu_seconds "$SRV_PID")
  t1=$(date +%s.%N)
  awk -v n="${n:-0}" -v a="$t0" -v b="$t1" -v c="$c0" -v d="$c1" \
    'BEGIN { printf "%d %.0f\n", n / (b - a), (n ? (d - c) * 1e6 / n : 0) }'
}

rows=("echo 10 x 1 x 64 KiB" "echo 100 x 10 x 32 B" "echo 1000 x 1 x 32 B")
loads=("10 1 65536" "100 10 32" "1000 1 32")
declare -A result # [server,row] -> "value" ; rows: msg/s and us/msg per load, hs, rss
for s in "${servers[@]}"; do
  echo "measuring $(label "$s") ..." >&2
  start "$s"
  for i in "${!loads[@]}"; do
    rates=() cpus=()
    for _ in $(seq "$reps"); do
      # shellcheck disable=SC2086
      read -r r c < <(echo_load ${loads[$i]})
      rates+=("$r")
      cpus+=("$c")
    done
    result[$s,rate$i]=$(printf "%s\n" "${rates[@]}" | median)
    result[$s,cpu$i]=$(printf "%s\n" "${cpus[@]}" | median)
  done
  full=() full_cpu=() resumed=() resumed_cpu=()
  for _ in $(seq "$reps"); do
    read -r r c < <(handshakes -new)
    full+=("$r")
    full_cpu+=("$c")
    read -r r c < <(handshakes -reuse -tls1_2)
    resumed+=("$r")
    resumed_cpu+=("$c")
  done
  result[$s,full]=$(printf "%s\n" "${full[@]}" | median)
  result[$s,full_cpu]=$(printf "%s\n" "${full_cpu[@]}" | median)
  result[$s,resumed]=$(printf "%s\n" "${resumed[@]}" | median)
  result[$s,resumed_cpu]=$(printf "%s\n" "${resumed_cpu[@]}" | median)
  stop_server
  # Memory on a fresh server: after the loads, freed memory would be reused unseen.
  start "$s"
  result[$s,rss]=$(python3 $BENCH/idle-wss.py "$port" "$SRV_PID" 1000 "$certs/ca.crt" |
    sed -n 's/bytes_per_conn=//p')
  stop_server
done

# One row: the figure of each server, then each one's ratio to uWS (higher is better
# for rates, lower for costs).
row() { # title key
  local line ratios=""
  line=$(printf "%-32s" "$1")
  for s in "${servers[@]}"; do line+=$(printf " %14s" "${result[$s,$2]}"); done
  for s in wsev-mbedtls wsev-openssl ws; do
    ratios+=$(awk -v a="${result[$s,$2]}" -v u="${result[uws,$2]}" \
      'BEGIN { printf " %7.2fx", (u > 0 ? a / u : 0) }')
  done
  echo "$line  $ratios"
}
echo
printf "%-32s" "wss, server on 1 core"
for s in "${servers[@]}"; do printf " %14s" "$(label "$s" | cut -c1-14)"; done
echo "   vs uWS: wsev-mbedtls wsev-openssl ws"
for i in "${!rows[@]}"; do
  row "${rows[$i]} (msg/s)" "rate$i"
  row "${rows[$i]} (server us/msg)" "cpu$i"
done
row "full handshakes/s" full
row "full handshake (server us)" full_cpu
row "resumed handshakes/s (TLS 1.2)" resumed
row "resumed handshake (server us)" resumed_cpu
row "RSS per idle wss connection (B)" rss
echo "($(label uws); $(label ws); load: wsev-client-load over OpenSSL $(openssl version | cut -d' ' -f2)," \
  "medians of $reps runs of ${seconds} s)"
