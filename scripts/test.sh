#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test (unit suites and the
# ONNX conformance suite) with ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
ctest --test-dir "${KILN_BUILD_DIR:-build}" --output-on-failure -j "$(nproc)"
