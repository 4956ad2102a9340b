#!/usr/bin/env bash
# Install what building and testing wsev needs on Debian 12, only what is missing.
# Idempotent and non-interactive.
#   scripts/deps.sh [--test] [PACKAGE...]
# --test adds what the test suite needs; further Debian packages may be named (the
# fuzzing and benchmark scripts name theirs).
set -euo pipefail
cd "$(dirname "$0")/.."

test=0
if [ "${1:-}" = "--test" ]; then
  test=1
  shift
fi
# openssl makes the pubsub sample's self-signed pair; ca-certificates is the bundle
# wss clients verify servers with; libhiredis-dev federates topics through Redis;
# libssl-dev is the second TLS backend (meson -Dtls=openssl); zlib1g-dev is
# permessage-deflate (libdeflate-dev makes its shared mode faster).
packages=(gcc pkg-config meson ninja-build libuv1-dev libmbedtls-dev libssl-dev node-llhttp
  openssl ca-certificates libhiredis-dev zlib1g-dev libdeflate-dev "$@")
if [ $test = 1 ]; then
  # redis-server (with redis-cli) for test/redis, which starts its own on a free port;
  # nginx, haproxy and tinyproxy for test/deploy, which start theirs the same way;
  # iproute2 and nftables build the network namespace of the Happy Eyeballs test.
  packages+=(python3 python3-websockets valgrind util-linux chromium redis-server
    nginx-light haproxy tinyproxy iproute2 nftables)
  command -v node >/dev/null 2>&1 || packages+=(nodejs)
  command -v npm >/dev/null 2>&1 || packages+=(npm)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q
  # Servers are installed for the tests to start on free ports, never as services: a
  # policy-rc.d that says no keeps their packages from starting them.
  policy=/usr/sbin/policy-rc.d
  added_policy=0
  if [ ! -e $policy ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee $policy >/dev/null
    $sudo chmod 755 $policy
    added_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
  [ $added_policy = 0 ] || $sudo rm -f $policy
fi

if [ $test = 1 ]; then
  # Node peers and the browser driver, pinned by their lockfiles.
  for dir in test/node test/browser; do
    if [ -f "$dir/package-lock.json" ] && [ ! -d "$dir/node_modules" ]; then
      npm ci --prefix "$dir" --no-audit --no-fund
    fi
  done
fi
