#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test: the C++ suites and the
# ONNX conformance suite with ctest, then the Python package's tests with pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
build_dir=${KILN_BUILD_DIR:-build}
ctest --test-dir "$build_dir" --output-on-failure -j "$(nproc)"
PYTHONPATH="$PWD/$build_dir/python" python3 -m pytest -q python/tests
