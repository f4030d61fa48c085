"""The ``kiln::execute`` custom op: one kiln engine inside a PyTorch graph.

A call site holds the engine's plan as a uint8 tensor (so a saved program is
self-contained) and a spec string (JSON: the engine's id and name, its output
dtypes and output dims as expressions over the inputs' dims). Runners, one per
engine id, are made on first use and kept by the compiled module.
"""

from __future__ import annotations

import functools
import json
import threading
import uuid
import warnings
import weakref

import numpy as np
import torch

from .. import _C, _dtypes
from .._streams import current_raw_stream
from ..runtime import MODE, RuntimeSettings, runtime_cache
from ._translate import evaluate_dim


@functools.lru_cache(maxsize=1024)
def parse_spec(spec: str) -> dict:
    return json.loads(spec)


def make_spec(name: str, network, symbols_where: dict, device: str) -> str:
    outputs = [{"name": n, "dtype": dtype, "dims": list(dims)} for n, dtype, dims in network.outputs]
    inputs = [{"name": n, "dtype": dtype} for n, dtype, _ in network.inputs]
    return json.dumps(
        {"id": uuid.uuid4().hex, "name": name, "device": device, "inputs": inputs, "outputs": outputs, "symbols": symbols_where},
        sort_keys=True,
    )


def output_shapes(spec: dict, inputs: list) -> list[list]:
    """Each output's dims for these inputs (ints or SymInts), from the spec's expressions."""
    where = spec["symbols"]

    def lookup(symbol):
        position, axis = where[symbol]
        return inputs[position].shape[axis]

    return [[d if isinstance(d, int) else evaluate_dim(d, lookup) for d in out["dims"]] for out in spec["outputs"]]


class _ThreadContext:
    """One thread's execution context with what it was last given."""

    __slots__ = ("context", "strategy", "dims", "out_dims")

    def __init__(self, context):
        self.context = context
        self.strategy = None
        self.dims = None
        self.out_dims = None


class EngineRunner:
    """Runs one engine: on the GPU (a context per thread, outputs from torch's
    allocator, queued on torch's current stream) or on the reference interpreter."""

    def __init__(self, spec: str, plan_bytes: bytes, settings: RuntimeSettings):
        self.spec = parse_spec(spec)
        self.name = self.spec["name"]
        self._plan = _C.Plan.deserialize(plan_bytes)
        self._output_dtypes = [_dtypes.torch_dtype(o["dtype"]) for o in self.spec["outputs"]]
        self._lock = threading.Lock()
        self._engine = None
        self._contexts: dict[int, _ThreadContext] = {}  # by thread
        self._warned: set[str] = set()
        self.settings = settings

    # Settings apply to every context; a context is never rebuilt while a capture is open.
    @property
    def settings(self) -> RuntimeSettings:
        return self._settings

    @settings.setter
    def settings(self, settings: RuntimeSettings) -> None:
        if not isinstance(settings, RuntimeSettings):
            raise TypeError(f"runtime settings must be kiln.runtime.RuntimeSettings; got {type(settings).__name__}")
        with self._lock:
            if self._engine is not None and torch.cuda.is_available() and torch.cuda.is_current_stream_capturing():
                raise RuntimeError(f"kiln engine '{self.name}': runtime settings cannot change while a CUDA graph capture is open")
            old = getattr(self, "_settings", None)
            self._settings = settings
            if old is not None and old != settings:
                from ..runtime import save_runtime_caches

                save_runtime_caches()
                self._engine = None  # rebuilt on the next call with the new settings
                self._contexts = {}

    @property
    def network(self):
        return self._plan.network

    def plan_bytes(self) -> bytes:
        return self._plan.serialize()

    # --- reference interpreter ------------------------------------------------------------------
    def run_reference(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        feeds = []
        for info, t in zip(self.spec["inputs"], inputs):
            t = t.detach().to("cpu").contiguous()
            a = t.view(torch.int16).numpy().view(np.uint16) if t.dtype == torch.bfloat16 else t.numpy()
            feeds.append((info["name"], info["dtype"], list(t.shape), a.reshape(-1).view(np.uint8)))
        out = []
        for (_, dtype, dims, data), want in zip(_C.reference_run(self.network, feeds), self._output_dtypes):
            array = np.frombuffer(data, dtype=_dtypes.NUMPY[dtype]).copy().reshape(dims)
            t = torch.from_numpy(array.view(np.int16)).view(torch.bfloat16) if dtype == "bfloat16" else torch.from_numpy(array)
            out.append(t)
        return out

    # --- GPU ------------------------------------------------------------------------------------------
    def _start(self, device_index: int):
        s = self._settings
        self._engine = _C.Engine.create(
            self._plan,
            cuda_graph_strategy=s.cuda_graph_strategy,
            kernel_specialization=s.dynamic_shapes_kernel_specialization_strategy,
            cache=runtime_cache(s.runtime_cache, s.runtime_cache_shared),
            device=device_index,
        )

    def context(self) -> "_ThreadContext":
        """This thread's execution context (made on first use, outside any capture)."""
        key = threading.get_ident()
        tc = self._contexts.get(key)
        if tc is None:
            with self._lock:
                if self._engine is None:
                    self._start(torch.cuda.current_device())
                tc = _ThreadContext(self._engine.create_context())
                self._contexts[key] = tc
        return tc

    def graph_strategy(self, warn: bool = True) -> str:
        """What this engine's contexts run with now, under the process's cudagraphs mode."""
        if MODE.whole:
            return "disabled"  # the whole-graph wrapper's own capture holds the engine
        if MODE.subgraph:
            if warn and self._settings.cuda_graph_strategy == "disabled" and "subgraph" not in self._warned:
                self._warned.add("subgraph")
                warnings.warn(
                    f"kiln engine '{self.name}': cuda_graph_strategy disabled is switched to whole_graph_capture "
                    "for cudagraphs mode subgraph",
                    RuntimeWarning,
                    stacklevel=4,
                )
            return "whole_graph_capture"
        return self._settings.cuda_graph_strategy

    def run_cuda(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        # The per-call path: every line here costs latency on every call.
        tc = self._contexts.get(threading.get_ident()) or self.context()
        strategy = self._settings.cuda_graph_strategy if not (MODE.whole or MODE.subgraph) else self.graph_strategy()
        if tc.strategy != strategy:
            tc.context.set_cuda_graph_strategy(strategy)
            tc.strategy = strategy
        for i, t in enumerate(inputs):
            if not t.is_contiguous():
                inputs[i] = t.contiguous()
        dims = [t.shape for t in inputs]
        if dims != tc.dims:
            tc.out_dims = tc.context.set_input_shapes([list(d) for d in dims])
            tc.dims = dims
        device = inputs[0].get_device() if inputs else torch.cuda.current_device()
        outputs = [torch.empty(d, dtype=t, device=device) for d, t in zip(tc.out_dims, self._output_dtypes)]
        addresses = [t.data_ptr() for t in inputs]
        for o in outputs:
            addresses.append(o.data_ptr())
        tc.context.enqueue(addresses, current_raw_stream(device))
        return outputs

    def run(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        if self.spec["device"] == "cpu":
            return self.run_reference(inputs)
        return self.run_cuda(inputs)

    # --- what kiln.runtime.stats reports ------------------------------------------------------------
    def stats(self) -> dict:
        contexts = [tc.context for tc in self._contexts.values()]
        graphs: dict = {}
        for c in contexts:
            for key, value in c.graph_stats().items():
                if isinstance(value, dict):
                    merged = graphs.setdefault(key, {})
                    for reason, count in value.items():
                        merged[reason] = merged.get(reason, 0) + count
                else:
                    graphs[key] = graphs.get(key, 0) + value
        return {
            "name": self.name,
            "device": self.spec["device"],
            "cuda_graph_strategy": self.graph_strategy(warn=False) if self.spec["device"] != "cpu" else "disabled",
            "settings": self._settings,
            "contexts": len(contexts),
            "graphs": graphs,
            "shapes": [s for c in contexts for s in c.specialization_stats()],
            "kernels": {"compiled": 0, "from_runtime_cache": 0} if self._engine is None else {
                "compiled": self._engine.kernel_count, "from_runtime_cache": self._engine.cached_kernel_count},
        }

    def facts(self) -> tuple:
        """(name, native graphs, lazy, dynamic inputs, capturable) for the behavior matrix
        (kiln._C.plan_module). Engines on the reference interpreter cannot be captured."""
        s = self._settings
        dynamic = any(isinstance(d, str) for _, _, dims in self.network.inputs for d in dims)
        return (self.name, s.cuda_graph_strategy == "whole_graph_capture",
                s.dynamic_shapes_kernel_specialization_strategy == "lazy", dynamic, self.spec["device"] != "cpu")


# Runners by engine id. Compiled modules hold theirs; a program loaded without
# kiln.torch.load makes its runners on first call with default settings.
_runners: "weakref.WeakValueDictionary[str, EngineRunner]" = weakref.WeakValueDictionary()
_orphans: dict[str, EngineRunner] = {}
_runner_by_spec: "weakref.WeakValueDictionary[str, EngineRunner]" = weakref.WeakValueDictionary()
_runners_lock = threading.Lock()


def register_runner(spec: str, plan_bytes: bytes, settings: RuntimeSettings) -> EngineRunner:
    runner = EngineRunner(spec, plan_bytes, settings)
    with _runners_lock:
        _runners[runner.spec["id"]] = runner
        _runner_by_spec[spec] = runner
    return runner


def runner_for(plan: torch.Tensor, spec: str) -> EngineRunner:
    runner = _runner_by_spec.get(spec)  # the per-call path: one dict lookup (a str caches its hash)
    if runner is not None:
        return runner
    engine_id = parse_spec(spec)["id"]
    with _runners_lock:
        runner = _runners.get(engine_id)
        if runner is None:
            runner = EngineRunner(spec, plan.detach().cpu().numpy().tobytes(), RuntimeSettings())
            _orphans[engine_id] = runner
            _runners[engine_id] = runner
    _runner_by_spec[spec] = runner
    return runner


@torch.library.custom_op("kiln::execute", mutates_args=())
def execute(plan: torch.Tensor, inputs: list[torch.Tensor], spec: str) -> list[torch.Tensor]:
    """Runs a kiln engine (the plan's bytes, its spec) on `inputs`."""
    return runner_for(plan, spec).run(list(inputs))


@execute.register_fake
def _execute_fake(plan, inputs, spec):
    s = parse_spec(spec)
    device = inputs[0].device if inputs else torch.device(s["device"])
    return [
        torch.empty(dims, dtype=_dtypes.torch_dtype(o["dtype"]), device=device)
        for dims, o in zip(output_shapes(s, inputs), s["outputs"])
    ]


def call_engine(plan: torch.Tensor, inputs: list[torch.Tensor], spec: str) -> list[torch.Tensor]:
    """What a compiled module's graph calls: the engine itself when the inputs
    are plain tensors (the fast path), the custom op when anything traces it."""
    if torch.compiler.is_compiling() or type(plan) is not torch.Tensor:
        return torch.ops.kiln.execute(plan, inputs, spec)
    for t in inputs:  # a loop, not a generator: TorchDynamo may read this function
        if type(t) is not torch.Tensor:
            return torch.ops.kiln.execute(plan, inputs, spec)
    return runner_for(plan, spec).run(list(inputs))
