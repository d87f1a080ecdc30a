#!/usr/bin/env bash
# One gRPC call through the running demo (bash scripts/demo.sh): unary
# chat.Chat/Echo with the message Msg{text="hello gRPC"}, sent by curl over
# HTTP/2 and printed back with its trailers (grpc-status: 0) and the
# backend that answered (x-backend: 9101 or 9102).
set -euo pipefail
port=${1:-8080}
text="hello gRPC"
# A gRPC message: flag 0, 4-byte length, then protobuf field 1 (0x0a), length, text.
body_len=$(( ${#text} + 2 ))
printf "\\x00\\x00\\x00\\x00\\x$(printf %02x $body_len)\\x0a\\x$(printf %02x ${#text})%s" "$text" |
  curl -sS --http2-prior-knowledge -D - -H 'content-type: application/grpc' -H 'te: trailers' \
       --data-binary @- "http://127.0.0.1:$port/chat.Chat/Echo" -o - | tr -c '[:print:]\n' '.'
echo
