"""Runtime settings, shared by every engine of a process.

Names follow the reference system so its users feel at home:
``cuda_graph_strategy`` (disabled / whole_graph_capture),
``dynamic_shapes_kernel_specialization_strategy`` (lazy / eager / none) and
``runtime_cache`` (a file path, or None for no cache).
"""

from __future__ import annotations

import atexit
import os
import threading
from dataclasses import dataclass

from . import _C

CUDA_GRAPH_STRATEGIES = ("disabled", "whole_graph_capture")
KERNEL_SPECIALIZATION_STRATEGIES = ("lazy", "eager", "none")


@dataclass(frozen=True)
class RuntimeSettings:
    """How engines run. Frozen: make a new one (``dataclasses.replace``) to change a setting."""

    cuda_graph_strategy: str = "disabled"
    dynamic_shapes_kernel_specialization_strategy: str = "lazy"
    runtime_cache: str | os.PathLike | None = None
    # Trust a cache file or folder that other users own or can write (a cache a
    # team shares on purpose); otherwise such a file is neither read nor written.
    runtime_cache_shared: bool = False

    def __post_init__(self):
        if self.cuda_graph_strategy not in CUDA_GRAPH_STRATEGIES:
            raise ValueError(
                f"cuda_graph_strategy must be one of {', '.join(CUDA_GRAPH_STRATEGIES)}; got {self.cuda_graph_strategy!r}"
            )
        if self.dynamic_shapes_kernel_specialization_strategy not in KERNEL_SPECIALIZATION_STRATEGIES:
            raise ValueError(
                "dynamic_shapes_kernel_specialization_strategy must be one of "
                f"{', '.join(KERNEL_SPECIALIZATION_STRATEGIES)}; got {self.dynamic_shapes_kernel_specialization_strategy!r}"
            )
        if self.runtime_cache is not None:
            path = os.fspath(self.runtime_cache)
            if not path:
                raise ValueError("runtime_cache must be a file path or None")
            object.__setattr__(self, "runtime_cache", path)


# One RuntimeCache per file for the whole process, saved (merged with what other
# processes wrote) at exit (save_runtime_caches).
_caches: dict[str, _C.RuntimeCache] = {}
_caches_lock = threading.Lock()


def runtime_cache(path: str | None, shared: bool = False) -> _C.RuntimeCache | None:
    """The process's cache for `path` (loaded on first use), or None."""
    if path is None:
        return None
    path = os.path.abspath(path)
    with _caches_lock:
        cache = _caches.get(path)
        if cache is None:
            cache = _C.RuntimeCache(shared=shared)
            cache.load_file(path)  # problems go to kiln's log as warnings (kiln.set_log_level)
            _caches[path] = cache
        return cache


def save_runtime_caches() -> None:
    """Writes every cache that gained kernels since it was last saved."""
    with _caches_lock:
        items = list(_caches.items())
    for path, cache in items:
        if cache.has_unsaved_entries:
            cache.save_file(path)  # problems go to kiln's log as warnings


atexit.register(save_runtime_caches)


# --- cudagraphs modes (process-wide, as in the reference system) ------------------------------------


class _CudagraphsMode:
    subgraph = False  # every engine with native graphs (a disabled one switched on, with one warning)
    whole = 0  # > 0 while a whole-graph wrapper warms up or captures its module (engines' graphs off inside)


MODE = _CudagraphsMode()


def set_cudagraphs_mode(enabled: bool) -> None:
    """True: every kiln engine runs with native CUDA graphs (cudagraphs mode subgraph);
    PyTorch ops between engines run directly. False: each engine as its settings say."""
    if not isinstance(enabled, bool):
        raise TypeError(f"set_cudagraphs_mode takes a bool; got {type(enabled).__name__}")
    MODE.subgraph = enabled


def get_cudagraphs_mode() -> bool:
    """Whether a cudagraphs mode (subgraph or whole graph) is on."""
    return MODE.subgraph or _whole_graph_modules > 0


def get_whole_cudagraphs_mode() -> bool:
    """Whether a whole-graph wrapper (``enable_cudagraphs`` on a module with PyTorch segments) is active."""
    return _whole_graph_modules > 0


_whole_graph_modules = 0


class enable_cudagraphs:  # noqa: N801 - a context manager named like the reference system's
    """``with kiln.runtime.enable_cudagraphs(compiled) as m:`` runs ``m`` with CUDA graphs.

    A module made only of kiln engines gets cudagraphs mode subgraph (every
    engine with native graphs) and ``m`` is the module itself. A module with
    PyTorch segments between engines gets a whole-graph wrapper: the whole
    forward captured once per input-shape key into one CUDA graph with static
    staging buffers (refused, before anything is captured, when an engine
    cannot be captured as one piece). Leaving the block restores the mode.
    """

    def __init__(self, module):
        self.module = module
        self._wrapper = None
        self._previous = None

    def __enter__(self):
        global _whole_graph_modules
        self._previous = MODE.subgraph
        if getattr(self.module, "has_torch_segments", False):
            from .torch._cudagraphs import WholeGraphModule

            self._wrapper = WholeGraphModule(self.module)
            _whole_graph_modules += 1
            return self._wrapper
        MODE.subgraph = True
        return self.module

    def __exit__(self, *exc):
        global _whole_graph_modules
        MODE.subgraph = self._previous
        if self._wrapper is not None:
            _whole_graph_modules -= 1
            self._wrapper.release()
        return False


def stats(module) -> dict:
    """Counters of a compiled module, whole-graph wrapper or InferenceSession:
    per engine, its native graph counters (captures, replays, pointer repairs,
    kernel swaps, fallbacks by reason) summed over its contexts, generic and
    specialized kernel launches per prepared shape, and compiled/cached kernels."""
    if hasattr(module, "kiln_stats"):
        return module.kiln_stats()
    raise TypeError(f"kiln.runtime.stats takes a kiln.torch compiled module, a whole-graph wrapper or a kiln.InferenceSession; got {type(module).__name__}")


def cuda_available() -> tuple[bool, str]:
    """(True, "") when a CUDA device can be used; otherwise (False, why not)."""
    ok, reason = _C.cuda_available()
    return bool(ok), reason
