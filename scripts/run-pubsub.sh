#!/usr/bin/env bash
# Install what is missing, build, and run the publish/subscribe sample on port 9000.
# Extra arguments go to wsev-pubsub (e.g. --port 9100 --quiet).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
[ -d build ] || meson setup build
ninja -C build
exec build/sample/wsev-pubsub "$@"
