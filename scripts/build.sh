#!/usr/bin/env bash
# Configures and builds kiln into build/ (or $KILN_BUILD_DIR) with Ninja; with
# the Python extension when the python3 on PATH has nanobind, and through
# ccache when it is installed. The ONNX schema comes from the python3 on PATH
# (scripts/setup.sh installs onnx there) unless another python3 has a newer onnx.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${KILN_BUILD_DIR:-build}
options=("-DPython3_EXECUTABLE=$(command -v python3)")
if python3 -c "import nanobind" 2>/dev/null; then
  options+=(-DKILN_BUILD_PYTHON=ON "-DPython_EXECUTABLE=$(command -v python3)")
fi
if command -v ccache >/dev/null; then
  export CCACHE_BASEDIR=$PWD
  export CCACHE_NOHASHDIR=1  # debug builds of other checkouts (git worktrees) share the cache
  options+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
fi
cmake -S . -B "$build_dir" -G Ninja --no-warn-unused-cli "${options[@]}" "$@" >/dev/null
cmake --build "$build_dir"
