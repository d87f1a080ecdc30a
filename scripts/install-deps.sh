#!/usr/bin/env bash
# Install what streamgate needs to build and test on Debian 12 (run as root).
#   bash scripts/install-deps.sh          build + test dependencies
#   bash scripts/install-deps.sh bench    also HAProxy, the other benchmark peer (nginx is a test peer already)
# Idempotent: when every package is already installed, apt-get is not run at all.
set -euo pipefail

PKGS=(gcc make pkg-config clang libclang-rt-14-dev
      libpcre2-dev libnghttp2-dev libssl-dev libc-ares-dev libcriterion-dev zlib1g-dev
      python3 python3-pytest python3-requests
      curl wrk ca-certificates procps iproute2 openssl
      nginx-light libnginx-mod-stream  # a real nginx: access-log lines and stream hash choices are checked against its own
      # real peers for HTTP/2, gRPC and WebSocket tests (../shared/TESTING.md)
      python3-websockets python3-h2 python3-grpcio nghttp2-client nghttp2-server
      chromium
      python3-prometheus-client  # tests/integration/test_metrics.py parses the metrics endpoint with it
      # nginx's own test suite (../shared/nginx-tests), run as a ratchet by scripts/test.sh
      perl libio-socket-ssl-perl libnet-ssleay-perl libprotocol-websocket-perl)
if [[ "${1:-}" == "bench" ]]; then
    PKGS+=(haproxy)
fi

missing=()
for p in "${PKGS[@]}"; do
    # dpkg -s alone also succeeds for removed-but-configured packages: check the status.
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "install-deps: all ${#PKGS[@]} packages present"
    exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=()
if [[ $(id -u) -ne 0 ]]; then SUDO=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update
"${SUDO[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
