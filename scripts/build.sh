#!/usr/bin/env bash
# Configures and builds kiln into build/ (or $KILN_BUILD_DIR) with Ninja.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${KILN_BUILD_DIR:-build}
cmake -S . -B "$build_dir" -G Ninja -DPython3_EXECUTABLE=/usr/bin/python3 "$@" >/dev/null
cmake --build "$build_dir"
