#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build and test kiln. Idempotent and quiet; run as root.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  protobuf-compiler libprotobuf-dev        # ONNX model parsing
  python3 python3-onnx python3-numpy       # example models, .npy checks (PyPI's onnx joins below)
  python3-pip                              # the Python packages below
  libonnx-testdata                         # ONNX backend node tests (conformance suite)
  libgtest-dev libgmock-dev libbenchmark-dev
  libxxhash-dev                            # XXH3 checksums and runtime cache keys
  clang libclang-rt-14-dev                 # libFuzzer target and its runtime
  ccache                                   # compiler cache (rebuilds of unchanged files are free)
  libcli11-dev nlohmann-json3-dev          # the kiln CLI: command-line parser, --json output
  libjpeg-dev libpng-dev libtiff-dev libwebp-dev libopenjp2-7-dev  # ImageDecoder's codecs (each optional to the build)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing packages: ${missing[*]} (run this script as root)" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ ! -x /usr/local/cuda/bin/nvcc ]]; then
  echo "setup: the CUDA 13 toolkit is required at /usr/local/cuda (NVRTC compiles kernels even without a GPU)" >&2
  exit 1
fi
# The Python package (kiln._C through nanobind) and its tests, for the python3 on PATH.
python_packages=(nanobind scikit-build-core numpy pytest)
if ! python3 -c "import nanobind, numpy, pytest" 2>/dev/null; then
  echo "setup: installing Python packages ${python_packages[*]}"
  PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install -q --disable-pip-version-check "${python_packages[@]}"
fi
# matplotlib for the benchmark charts (bench/plots.py) and their test.
if ! python3 -c "import matplotlib" 2>/dev/null; then
  echo "setup: installing matplotlib from PyPI"
  PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install -q --disable-pip-version-check matplotlib
fi
# ONNX from PyPI for the python3 the build uses: its onnx.proto is compiled in and its
# node tests (opsets to 28) join Debian's in the conformance suite. The version is the
# one kiln's opsets were checked against; Debian's python3-onnx (1.12) stays beside it.
onnx_version=1.23.2
if ! python3 -c "import onnx, sys; sys.exit(onnx.__version__ != '$onnx_version')" 2>/dev/null; then
  echo "setup: installing onnx $onnx_version from PyPI"
  PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install -q --disable-pip-version-check "onnx==$onnx_version"
fi
# onnxruntime: the independent oracle of kiln debug --reference onnxruntime (and its test).
if ! python3 -c "import onnxruntime" 2>/dev/null; then
  echo "setup: installing onnxruntime from PyPI"
  PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install -q --disable-pip-version-check onnxruntime ||
    echo "setup: could not install it; kiln debug --reference onnxruntime and its test will say why"
fi
# PyTorch for kiln.torch and its tests (without a GPU they run the engines on the reference interpreter).
if ! python3 -c "import torch" 2>/dev/null; then
  echo "setup: installing torch from PyPI (a few minutes)"
  PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install -q --disable-pip-version-check torch
fi
# The model zoo's definitions (bench/zoo; python/tests/test_zoo.py runs tiny ones on the CPU reference):
# torchvision built for the installed torch, transformers, and onnxscript for the dynamo ONNX exporter.
if ! python3 -c "import torchvision, transformers, onnxscript" 2>/dev/null; then
  echo "setup: installing torchvision, transformers and onnxscript from PyPI"
  torch_version=$(python3 -c "import torch; print(torch.__version__.split('+')[0])")
  PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install -q --disable-pip-version-check "torch==$torch_version" torchvision \
    transformers onnxscript "onnx==$onnx_version" ||
    echo "setup: could not install them; the zoo tests will skip and say why"
fi
echo "setup: ok"
