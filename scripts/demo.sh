#!/usr/bin/env bash
# The main job on a fresh machine: install what is missing, build, and run the
# bundled example models through kiln.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
kiln=build/tools/kiln/kiln
"$kiln" inspect build/examples/tiny_cnn.onnx
echo
"$kiln" run build/examples/tiny_cnn.onnx --device cpu --shapes image:4x3x32x32 --output-dir build/demo-outputs
echo
"$kiln" run build/examples/mlp.onnx --device cpu --shapes x:8x64 --output-dir build/demo-outputs
if [[ -d build/python/kiln ]]; then  # the Python package (built where the python3 on PATH has nanobind)
  echo
  PYTHONPATH="$PWD/build/python" python3 examples/python/onnx_session.py build/examples/mlp.onnx
  if python3 -c "import torch" 2>/dev/null; then  # and its PyTorch front end
    echo
    PYTHONPATH="$PWD/build/python" python3 examples/python/torch_compile.py
  fi
fi
