"""Cudagraphs mode whole_graph for modules with PyTorch segments between kiln
engines: the whole forward captured into one CUDA graph per input-shape key,
with static staging buffers; the engines' own graphs are off inside it."""

from __future__ import annotations

import threading

import torch

from .. import _C
from ..runtime import MODE


class WholeGraphModule(torch.nn.Module):
    """Wraps a kiln-compiled module (what ``kiln.runtime.enable_cudagraphs`` returns
    when PyTorch runs between engines). Outputs are the caller's own tensors
    (copied out of the graph's static buffers), so they survive the next call."""

    def __init__(self, compiled):
        super().__init__()
        self.compiled = compiled
        runners = compiled.engines
        _, _, warnings_, error = _C.plan_module("whole_graph", [r.facts() for r in runners])
        if error:
            raise RuntimeError(error)
        self._graphs: dict[tuple, tuple] = {}  # input-shape key -> (graph, static inputs, static outputs)
        self._pool = None
        self._lock = threading.Lock()
        self.captures = 0
        self.replays = 0

    @staticmethod
    def _key(args) -> tuple:
        return tuple((tuple(a.shape), a.dtype, a.device) if isinstance(a, torch.Tensor) else ("value", a) for a in args)

    def forward(self, *args):
        if not all(isinstance(a, torch.Tensor) and a.is_cuda for a in args):
            raise TypeError("cudagraphs mode whole_graph runs on CUDA tensors only; every argument must be one")
        key = self._key(args)
        with self._lock:
            entry = self._graphs.get(key)
            if entry is None:
                entry = self._capture(args)
                self._graphs[key] = entry
            else:
                graph, static_inputs, _ = entry
                for dst, src in zip(static_inputs, args):
                    dst.copy_(src)
                graph.replay()
                self.replays += 1
            _, _, static_outputs = entry
            return _clone_outputs(static_outputs)

    def _capture(self, args):
        static_inputs = [a.clone() for a in args]
        MODE.whole += 1
        try:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):  # warm-up: kernels prepared, library workspaces made, outside the capture
                self.compiled(*static_inputs)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self._pool):
                static_outputs = self.compiled(*static_inputs)
            if self._pool is None:
                self._pool = graph.pool()
        finally:
            MODE.whole -= 1
        graph.replay()
        self.captures += 1
        return graph, static_inputs, static_outputs

    def release(self) -> None:
        """Drops every captured graph and its buffers."""
        with self._lock:
            self._graphs.clear()

    def kiln_stats(self) -> dict:
        out = self.compiled.kiln_stats()
        out["whole_graph"] = {"captures": self.captures, "replays": self.replays, "graphs": len(self._graphs)}
        return out


def _clone_outputs(outputs):
    if isinstance(outputs, torch.Tensor):
        return outputs.clone()
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(_clone_outputs(o) for o in outputs)
    if isinstance(outputs, dict):
        return {k: _clone_outputs(v) for k, v in outputs.items()}
    return outputs
