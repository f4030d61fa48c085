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
from .._streams import stream_accessor
from ..runtime import MODE, RuntimeSettings, runtime_cache
from ._translate import evaluate_dim

# Bound once: module attribute lookups on the per-call path add up.
_get_ident = threading.get_ident
_empty = torch.empty
_raw_stream = stream_accessor()


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
    """One thread's execution context (None on the reference interpreter) and
    what its last inputs were validated as: the per-call path compares a call's
    inputs with that and skips every other step when they match."""

    __slots__ = ("context", "strategy", "shapes", "device", "outputs", "matched", "validated")

    def __init__(self, context):
        self.context = context
        self.strategy = None
        self.shapes = None  # the validated inputs' shapes (torch.Size), None until a call validated some
        self.device = None  # the engine's torch.device, which they were on
        self.outputs = ()  # (dims, torch dtype) per output at those shapes
        self.matched = 0  # calls whose inputs matched the validated ones
        self.validated = 0  # calls that went through validation


class EngineRunner:
    """Runs one engine: on the GPU (a context per thread, outputs from torch's
    allocator, queued on torch's current stream) or on the reference interpreter."""

    def __init__(self, spec: str, plan_bytes: bytes, settings: RuntimeSettings):
        self.spec = parse_spec(spec)
        self.name = self.spec["name"]
        self._plan = _C.Plan.deserialize(plan_bytes)
        self._output_dtypes = [_dtypes.torch_dtype(o["dtype"]) for o in self.spec["outputs"]]
        self._input_dtypes = tuple(_dtypes.torch_dtype(i["dtype"]) for i in self.spec["inputs"])
        self._on_cpu = self.spec["device"] == "cpu"
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

    # --- the per-call path -----------------------------------------------------------------------
    def run(self, inputs) -> list[torch.Tensor]:
        """Runs the engine on plain tensors (a list or tuple, one per engine input).

        Every line here costs latency on every call: a call whose inputs have the
        shapes, dtypes and device this thread's last validated call had (and are
        contiguous) goes straight to output allocation and one binding call; any
        other goes through validation first, which raises naming the input."""
        tc = self._contexts.get(_get_ident())
        if tc is None:
            tc = self._thread_context()
        shapes = tc.shapes
        if shapes is not None and len(inputs) == len(shapes):
            device = tc.device
            for t, shape, dtype in zip(inputs, shapes, self._input_dtypes):
                if t.shape != shape or t.dtype is not dtype or t.device != device or not t.is_contiguous():
                    break
            else:
                tc.matched += 1
                return self._run_reference(inputs, tc) if self._on_cpu else self._run_cuda(inputs, tc)
        inputs = self._validate(inputs, tc)
        tc.validated += 1
        return self._run_reference(inputs, tc) if self._on_cpu else self._run_cuda(inputs, tc)

    def _thread_context(self) -> _ThreadContext:
        """This thread's state, with its execution context on the GPU (made on first use, outside any capture)."""
        with self._lock:
            tc = self._contexts.get(_get_ident())
            if tc is None:
                if not self._on_cpu and self._engine is None:
                    self._start(torch.cuda.current_device())
                tc = _ThreadContext(None if self._on_cpu else self._engine.create_context())
                self._contexts[_get_ident()] = tc
            return tc

    def _validate(self, inputs, tc: _ThreadContext) -> list[torch.Tensor]:
        """Checks the inputs (count, dtype, device; shapes on the GPU through the context,
        naming the input and the range), makes them contiguous and remembers what they were."""
        tc.shapes = None  # until every check below passed
        infos = self.spec["inputs"]
        if len(inputs) != len(infos):
            raise ValueError(f"kiln engine '{self.name}' takes {len(infos)} inputs; got {len(inputs)}")
        device = torch.device("cpu") if self._on_cpu else torch.device("cuda", self._device)
        out = []
        for info, t, dtype in zip(infos, inputs, self._input_dtypes):
            if t.dtype is not dtype:
                raise TypeError(f"kiln engine '{self.name}': input '{info['name']}' must be {info['dtype']}; got {t.dtype}")
            if t.device != device:
                raise ValueError(f"kiln engine '{self.name}': input '{info['name']}' is on {t.device}; the engine runs on {device}")
            out.append(t if t.is_contiguous() else t.contiguous())
        shapes = [t.shape for t in out]
        if not self._on_cpu:  # the reference interpreter checks the shapes itself, on every call
            dims = tc.context.set_input_shapes([list(s) for s in shapes])  # raises naming the input, dim and range
            tc.outputs = tuple((tuple(d), dtype) for d, dtype in zip(dims, self._output_dtypes))
        tc.device = device
        tc.shapes = shapes
        return out

    def _run_reference(self, inputs, tc: _ThreadContext) -> list[torch.Tensor]:
        feeds = []
        for info, t in zip(self.spec["inputs"], inputs):
            t = t.detach()
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
        self._device = device_index
        self._engine = _C.Engine.create(
            self._plan,
            cuda_graph_strategy=s.cuda_graph_strategy,
            kernel_specialization=s.dynamic_shapes_kernel_specialization_strategy,
            cache=runtime_cache(s.runtime_cache, s.runtime_cache_shared),
            device=device_index,
        )

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

    def _run_cuda(self, inputs, tc: _ThreadContext) -> list[torch.Tensor]:
        strategy = self._settings.cuda_graph_strategy if not (MODE.whole or MODE.subgraph) else self.graph_strategy()
        if tc.strategy != strategy:
            tc.context.set_cuda_graph_strategy(strategy)
            tc.strategy = strategy
        device = tc.device
        outputs = [_empty(dims, dtype=dtype, device=device) for dims, dtype in tc.outputs]
        addresses = [t.data_ptr() for t in inputs]
        for o in outputs:
            addresses.append(o.data_ptr())
        tc.context.enqueue(addresses, _raw_stream(self._device))
        return outputs

    # --- what kiln.runtime.stats reports ------------------------------------------------------------
    def stats(self) -> dict:
        states = list(self._contexts.values())
        contexts = [tc.context for tc in states if tc.context is not None]
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
            # The per-call path: calls that matched the inputs validated last (per thread), calls validated.
            "per_call": {"matched": sum(tc.matched for tc in states), "validated": sum(tc.validated for tc in states)},
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
    return runner_for(plan, spec).run(inputs)


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
    return runner_for(plan, spec).run(inputs)
