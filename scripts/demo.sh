#!/usr/bin/env bash
# Build streamgate and run its built-in demo: http://127.0.0.1:8080/ is proxied,
# round robin, to two sgback backends on 127.0.0.1:9001 and 127.0.0.1:9002.
# Try it from another shell:  curl http://127.0.0.1:8080/   (Ctrl-C stops the demo)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
make -j2
echo "demo: try  curl http://127.0.0.1:8080/  (answers alternate between sgback 9001 and 9002)"
exec build/streamgate
