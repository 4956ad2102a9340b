#!/usr/bin/env bash
# Install what is missing, build, and run the publish/subscribe sample: ws on port
# 9000 and wss on 9001, with a self-signed localhost.crt / localhost.key made here on
# the first run. Extra arguments go to wsev-pubsub (e.g. --port 9100 --quiet).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
[ -d build ] || meson setup build
ninja -C build
scripts/make-cert.sh --self-signed .
exec build/sample/wsev-pubsub "$@"
