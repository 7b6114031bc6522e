#!/bin/sh
# Builds the release binary of dataplane: static (no cgo), without local
# paths or debug symbols, with the version stamped in. The Dockerfile builds
# the image's binary with exactly this script, and scripts/test.sh builds
# and runs it the same way, so what CI checks is what the image ships.
#
#   scripts/build-static.sh OUT [VERSION]
#
# VERSION (default: from the build info, "(devel)" for a checkout) is what
# `dataplane version` prints. GOOS and GOARCH from the environment
# cross-compile.
set -eu
out="${1:?usage: scripts/build-static.sh OUT [VERSION]}"
version="${2:-}"
cd "$(dirname "$0")/.."
CGO_ENABLED=0 exec go build -trimpath -buildvcs=false \
  -ldflags "-s -w -X main.version=$version" \
  -o "$out" ./cmd/dataplane
