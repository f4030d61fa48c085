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


def set_log_level(level: str) -> None:
    """How much of kiln's log reaches stderr: ``"error"``, ``"warning"`` (the default),
    ``"info"`` (also progress: passes, kernels compiling) or ``"verbose"`` (also runtime
    cache loads and saves)."""
    _C.set_log_level(level)


def log_level() -> str:
    """The level ``set_log_level`` set last (``"warning"`` until then)."""
    return _C.log_level()


__all__ = [
    "Error",
    "InferenceSession",
    "Plan",
    "TensorInfo",
    "build",
    "log_level",
    "runtime",
    "set_log_level",
    "__version__",
]
