"""kiln: an open JIT inference runtime for NVIDIA GPUs.

ONNX users: ``kiln.build`` turns a model into a portable plan (no GPU needed),
``kiln.InferenceSession`` runs a model or plan on the GPU or on the exact CPU
reference interpreter. Runtime settings (native CUDA graphs, kernel
specialization, the runtime cache) live in ``kiln.runtime``.
"""

from . import _C, runtime
from ._C import Error
from .plan import Plan, TensorInfo, build
from .session import InferenceSession

__version__ = _C.__version__

__all__ = ["Error", "InferenceSession", "Plan", "TensorInfo", "build", "runtime", "__version__"]
