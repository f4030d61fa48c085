#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test: the C++ suites and the
# ONNX conformance suite with ctest, then the Python package's tests with pytest,
# then the Triton backend inside a real Triton server (and its load test, briefly).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
build_dir=${KILN_BUILD_DIR:-build}
ctest --test-dir "$build_dir" --output-on-failure -j "$(nproc)"
PYTHONPATH="$PWD/$build_dir/python" python3 -m pytest -q python/tests --ignore=python/tests/test_triton_backend.py --ignore=python/tests/test_serving_load.py
# The Triton backend inside a real server: the server binary from the
# nvidia-pytriton wheel and tritonclient, installed into a folder of their own
# (the wheel pins numpy < 2, which the other tests must not get). Without PyPI
# the test skips and says why.
triton_python="$PWD/$build_dir/triton-python"
if [[ ! -d $triton_python/tritonclient ]]; then
  echo "test: installing nvidia-pytriton (its tritonserver) and tritonclient into $triton_python"
  python3 -m pip install -q --disable-pip-version-check --target "$triton_python" --no-deps nvidia-pytriton==0.7.0 &&
    python3 -m pip install -q --disable-pip-version-check --target "$triton_python" "tritonclient[http,grpc]==2.73.0" ||
    echo "test: could not install them; the Triton server test will skip"
fi
PYTHONPATH="$PWD/$build_dir/python:$triton_python" KILN_BUILD_DIR="$build_dir" \
  python3 -m pytest -q python/tests/test_triton_backend.py python/tests/test_serving_load.py
