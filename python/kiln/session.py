"""InferenceSession: run an ONNX model or a kiln plan, onnxruntime-style."""

from __future__ import annotations

import math
import os
import sys
from typing import Any, Mapping, Sequence

import numpy as np

from . import _C, _dtypes
from .plan import Plan, TensorInfo, _infos, build
from ._streams import stream_accessor
from .runtime import RuntimeSettings, runtime_cache


def _parse_device(device: str) -> tuple[str, int]:
    if device == "cpu":
        return "cpu", -1
    if device == "cuda":
        return "cuda", -1
    if device.startswith("cuda:") and device[5:].isdigit():
        return "cuda", int(device[5:])
    raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N'; got {device!r}")


# Bound by the first torch run (numpy users never import torch): torch.empty and torch's raw stream accessor.
_empty = None
_raw_stream = None


def _is_torch_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "data_ptr")


class InferenceSession:
    """Runs a model (.onnx), a plan (.kiln) or a ``kiln.Plan``.

    ``device="cuda"`` (or ``"cuda:N"``) runs on the GPU: an ONNX model is built
    first (``profiles``/``precision`` as in ``kiln.build``). ``device="cpu"`` runs
    the exact CPU reference interpreter (slow; for tests and machines without a GPU).
    ``run`` takes numpy arrays or torch tensors; CUDA torch tensors stay on the
    device (no copies) and the outputs are torch tensors on it, queued on torch's
    current stream (or ``stream``). String tensors are numpy arrays of str or
    object (str elements) in, and numpy object arrays of str out, on either
    device: on the GPU they stay in host memory and the nodes on them run on the
    host inside the engine. ``profile_index`` selects the plan's optimization
    profile whose input shapes the session runs (``profile_index`` can be set later too).
    """

    def __init__(
        self,
        path_or_plan: str | os.PathLike | Plan,
        device: str = "cuda",
        runtime_settings: RuntimeSettings | None = None,
        *,
        profiles: Mapping | Sequence[Mapping] | None = None,
        precision: str | None = None,
        profile_index: int = 0,
    ):
        self._kind, self._device = _parse_device(device)
        if runtime_settings is None:
            runtime_settings = RuntimeSettings()
        if not isinstance(runtime_settings, RuntimeSettings):
            raise TypeError(f"runtime_settings must be a kiln.runtime.RuntimeSettings; got {type(runtime_settings).__name__}")
        self._settings = runtime_settings
        self._plan: Plan | None = None
        if isinstance(path_or_plan, Plan):
            self._plan = path_or_plan
        else:
            path = os.fspath(path_or_plan)
            if path.endswith(".onnx") and self._kind == "cpu" and profiles is None and precision is None:
                self._network = _C.load_onnx(path)  # the model itself, exactly as written
            elif path.endswith(".onnx"):
                self._plan = build(path, profiles=profiles, precision=precision or "fp32")
            else:
                self._plan = Plan.load(path)
        if self._plan is not None:
            self._network = self._plan._native.network
        self._inputs = _infos(self._network.inputs)
        self._outputs = _infos(self._network.outputs)
        self._output_index = {t.name: i for i, t in enumerate(self._outputs)}
        self._input_names = tuple(t.name for t in self._inputs)
        # String tensors never cross as torch tensors: such a network runs through host arrays.
        self._has_strings = any(t.dtype == "string" for t in (*self._inputs, *self._outputs))
        self._all_outputs = list(range(len(self._outputs)))
        self._torch_types = None  # (input dtypes, output dtypes) as torch dtypes, on the first torch run
        self._last_dims = None  # the input shapes the context was last given, and its output dims then
        self._out_dims = None
        self._out_device = None
        # The per-call path: (torch.Tensor, input names, dtypes, shapes, device) of the last validated torch
        # feeds; a call whose feeds match them skips validation. Calls matched and validated.
        self._hot = None
        self._per_call = {"matched": 0, "validated": 0}
        self._context = None
        self._profile_index = 0
        if self._kind == "cuda":
            self._start_engine()
        self.set_profile_index(profile_index)

    def _start_engine(self) -> None:
        s = self._settings
        engine = _C.Engine.create(
            self._plan._native,
            cuda_graph_strategy=s.cuda_graph_strategy,
            kernel_specialization=s.dynamic_shapes_kernel_specialization_strategy,
            cache=runtime_cache(s.runtime_cache, s.runtime_cache_shared),
            device=self._device,
        )
        self._engine = engine
        self._context = engine.create_context()
        # Outputs whose size depends on data (NonZero's count and the like): allocated at the bound the plan
        # holds and narrowed to the size enqueue found.
        self._data_dependent = [i for i, d in enumerate(self._context.data_dependent_outputs) if d]
        self._stream = None  # made on the first numpy run
        self._memory: list = [None] * self._context.io_count

    # onnxruntime spellings
    def get_inputs(self) -> list[TensorInfo]:
        return list(self._inputs)

    def get_outputs(self) -> list[TensorInfo]:
        return list(self._outputs)

    @property
    def runtime_settings(self) -> RuntimeSettings:
        return self._settings

    @property
    def plan(self) -> Plan | None:
        return self._plan

    @property
    def profile_index(self) -> int:
        """The optimization profile whose input shapes this session runs (see ``Plan.profiles``)."""
        return self._profile_index

    @profile_index.setter
    def profile_index(self, index: int) -> None:
        self.set_profile_index(index)

    def set_profile_index(self, index: int, *, stream: int | None = None) -> None:
        """Selects the plan's optimization profile ``index`` for the following runs.

        On the GPU this warms the session up at the profile's opt shapes (unless it ran them before), so it is
        refused while ``stream`` (default: torch's current stream when torch is in use) is being captured.
        """
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"profile_index must be an int; got {type(index).__name__}")
        count = len(self._plan.profiles) if self._plan is not None else 1
        if not 0 <= index < count:
            which = "profile (0)" if count == 1 else f"profiles (0 to {count - 1})"
            raise ValueError(f"profile_index {index} does not exist: the plan has {count} optimization {which}")
        if self._context is not None:
            self._context.set_optimization_profile(index, self._caller_stream(stream))
            self._last_dims = None  # a new profile may unset the input shapes
            self._hot = None
        self._profile_index = index

    def _caller_stream(self, stream: int | None) -> int:
        if stream is not None:
            return stream
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_initialized():
            return torch.cuda.current_stream(None if self._device < 0 else self._device).cuda_stream
        return 0  # the legacy stream: CUDA reports it captured while a global-mode capture is open anywhere

    def stats(self) -> dict:
        """Native graph counters and, per prepared shape, generic/specialized kernel counts; per_call: runs
        whose torch feeds matched the last validated ones (shapes, dtypes, device) and runs validated."""
        if self._context is None:
            return {"per_call": dict(self._per_call)}
        return {
            "per_call": dict(self._per_call),
            "graphs": self._context.graph_stats(),
            "shapes": self._context.specialization_stats(),
            "kernels": {"compiled": self._engine.kernel_count, "from_runtime_cache": self._engine.cached_kernel_count},
        }

    def run(self, output_names: Sequence[str] | None, feeds: Mapping[str, Any], *, stream: int | None = None) -> list:
        """Runs the network on ``feeds`` (input name -> array) and returns the named outputs (all when None)."""
        hot = self._hot
        if hot is not None and len(feeds) == len(hot[1]):
            tensor, names, dtypes, shapes, device = hot
            ordered = []
            for name, dtype, shape in zip(names, dtypes, shapes):
                x = feeds.get(name)
                if type(x) is not tensor or x.dtype is not dtype or x.shape != shape or x.device != device or not x.is_contiguous():
                    break
                ordered.append(x)
            else:
                wanted = None if output_names is None else self._select_outputs(output_names)
                self._per_call["matched"] += 1
                results = self._run_reference(ordered) if self._kind == "cpu" else self._enqueue_torch(ordered, stream)
                return results if wanted is None else [results[i] for i in wanted]
        wanted = self._all_outputs if output_names is None else self._select_outputs(output_names)
        self._hot = None
        ordered = self._order_feeds(feeds)
        self._per_call["validated"] += 1
        if self._kind == "cpu":
            results = self._run_reference(ordered)
            self._remember(ordered)
        elif not self._has_strings and all(_is_torch_tensor(x) and x.is_cuda for x in ordered):
            results = self._run_torch_cuda(ordered, stream)
            self._remember(ordered)
        else:
            results = self._run_host(ordered, stream)
        return [results[i] for i in wanted]

    def _remember(self, ordered: list) -> None:
        """After a validated run: plain contiguous torch tensors on one device are what the next calls match."""
        torch = sys.modules.get("torch")
        if torch is None or not ordered or not all(type(x) is torch.Tensor and x.is_contiguous() for x in ordered):
            return
        device = ordered[0].device
        if all(x.device == device for x in ordered):
            self._hot = (torch.Tensor, self._input_names, tuple(x.dtype for x in ordered), tuple(x.shape for x in ordered), device)

    def _select_outputs(self, names: Sequence[str] | None) -> list[int]:
        if names is None:
            return list(range(len(self._outputs)))
        if isinstance(names, str):
            raise TypeError("output_names must be a list of names or None, not a string")
        out = []
        for name in names:
            if name not in self._output_index:
                raise ValueError(f"'{name}' is not an output; the outputs are {', '.join(self._output_index)}")
            out.append(self._output_index[name])
        return out

    def _order_feeds(self, feeds: Mapping[str, Any]) -> list:
        names = self._input_names
        if len(feeds) == len(names) and self._torch_types is not None:  # the per-call path: torch tensors as last time
            try:
                ordered = [feeds[n] for n in names]
            except KeyError:
                ordered = None
            if ordered is not None and all(type(x).__module__ == "torch" and x.dtype is t
                                           for x, t in zip(ordered, self._torch_types[0])):
                return ordered
        unknown = [k for k in feeds if k not in names]
        if unknown:
            raise ValueError(f"{', '.join(map(repr, unknown))} is not an input; the inputs are {', '.join(names)}")
        missing = [n for n in names if n not in feeds]
        if missing:
            raise ValueError(f"missing input {', '.join(map(repr, missing))}")
        ordered = [feeds[n] for n in names]
        for info, x in zip(self._inputs, ordered):
            got = _dtypes.from_torch(x.dtype) if _is_torch_tensor(x) else _dtypes.from_numpy(np.asarray(x).dtype)
            if got != info.dtype:
                raise TypeError(f"input '{info.name}' must be {info.dtype}; got {got}")
        return ordered

    @staticmethod
    def _strings(a: np.ndarray) -> list:
        """A string tensor's elements, row-major, as a list of str."""
        values = a.reshape(-1).tolist()
        for v in values:
            if not isinstance(v, str):
                raise TypeError(f"a string tensor's elements must be str; got {type(v).__name__}")
        return values

    @staticmethod
    def _string_result(values: list, dims) -> np.ndarray:
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out.reshape(dims)

    @staticmethod
    def _host_array(x: Any) -> np.ndarray:
        if _is_torch_tensor(x):
            t = x.detach().cpu().contiguous()
            if str(t.dtype) == "torch.bfloat16":
                import torch

                return t.view(torch.int16).numpy().view(np.uint16)
            return t.numpy()
        return np.ascontiguousarray(x)

    def _wants_torch(self, ordered: list) -> bool:
        return any(_is_torch_tensor(x) for x in ordered)

    def _run_reference(self, ordered: list) -> list:
        feeds = []
        for info, x in zip(self._inputs, ordered):
            a = self._host_array(x)
            if self._plan is not None:  # the shapes the selected profile accepts, as on the GPU
                self._plan._native.check_input_shape(self._profile_index, info.name, list(a.shape))
            elements = self._strings(a) if info.dtype == "string" else a.reshape(-1).view(np.uint8)
            feeds.append((info.name, info.dtype, list(a.shape), elements))
        results = []
        for name, dtype, dims, data in _C.reference_run(self._network, feeds):
            if dtype == "string":
                results.append(self._string_result(data, dims))
                continue
            results.append(self._to_host_result(dtype, dims, np.frombuffer(data, dtype=_dtypes.NUMPY[dtype]).copy(), ordered))
        return results

    def _to_host_result(self, dtype: str, dims, flat: np.ndarray, ordered: list):
        array = flat.reshape(dims)
        if self._wants_torch(ordered):
            import torch

            if dtype == "bfloat16":
                return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
            return torch.from_numpy(array)
        if dtype == "bfloat16":  # numpy has no bfloat16: the values as float32
            return _dtypes.bfloat16_words_to_float32(array)
        return array

    def _run_torch_cuda(self, ordered: list, stream: int | None) -> list:
        import torch

        if self._torch_types is None:
            self._torch_types = ([_dtypes.torch_dtype(t.dtype) for t in self._inputs],
                                 [_dtypes.torch_dtype(t.dtype) for t in self._outputs])
        device = ordered[0].get_device()
        for info, x in zip(self._inputs, ordered):
            if not x.is_contiguous():
                raise ValueError(f"input '{info.name}' must be contiguous; call .contiguous() first")
            if x.get_device() != device:
                raise ValueError(f"input '{info.name}' is on {x.device}; the other inputs are on {ordered[0].device}")
        dims = [x.shape for x in ordered]
        if dims != self._last_dims:  # unchanged shapes cost a comparison
            out_dims = self._context.set_input_shapes([list(d) for d in dims])
            self._out_dims = [(tuple(d), t) for d, t in zip(out_dims, self._torch_types[1])]
            self._last_dims = dims
        self._out_device = ordered[0].device
        global _empty, _raw_stream
        if _empty is None:
            _empty, _raw_stream = torch.empty, stream_accessor()
        return self._enqueue_torch(ordered, stream)

    def _enqueue_torch(self, ordered: list, stream: int | None) -> list:
        """Outputs for the shapes set last, and one binding call (the per-call path)."""
        device = self._out_device
        outputs = [_empty(d, dtype=t, device=device) for d, t in self._out_dims]
        addresses = [x.data_ptr() for x in ordered]
        for y in outputs:
            addresses.append(y.data_ptr())
        self._context.enqueue(addresses, _raw_stream(device.index) if stream is None else stream)
        if self._data_dependent:
            shapes = self._context.output_shapes()
            for i in self._data_dependent:
                outputs[i] = outputs[i].view(-1)[: math.prod(shapes[i])].view(shapes[i])
        return outputs

    def _device_memory(self, index: int, nbytes: int):
        held = self._memory[index]
        if held is None or held.bytes < nbytes:
            held = _C.DeviceMemory(nbytes)
            self._memory[index] = held
        return held

    def _run_host(self, ordered: list, stream: int | None) -> list:
        if self._stream is None:
            self._stream = _C.Stream(self._device)
        handle = self._stream.handle if stream is None else stream
        arrays = [self._host_array(x) for x in ordered]
        out_dims = self._context.set_input_shapes([list(a.shape) for a in arrays])
        self._last_dims = None  # the torch path's cached shapes no longer hold
        self._hot = None
        addresses = []
        strings = {}  # io index -> the host memory of a string tensor, bound for this call
        for i, (a, info) in enumerate(zip(arrays, self._inputs)):
            if info.dtype == "string":
                strings[i] = _C.HostStrings(self._strings(a))
                addresses.append(strings[i].ptr)
                continue
            memory = self._device_memory(i, a.nbytes)
            memory.upload(a.reshape(-1).view(np.uint8), handle)
            addresses.append(memory.ptr)
        for j, (dims, info) in enumerate(zip(out_dims, self._outputs)):
            if info.dtype == "string":
                strings[len(arrays) + j] = _C.HostStrings(math.prod(dims))
                addresses.append(strings[len(arrays) + j].ptr)
                continue
            nbytes = math.prod(dims) * np.dtype(_dtypes.NUMPY[info.dtype]).itemsize
            addresses.append(self._device_memory(len(arrays) + j, nbytes).ptr)
        self._context.enqueue(addresses, handle)
        if self._data_dependent:  # the sizes enqueue found
            out_dims = self._context.output_shapes()
        results = []
        for j, (dims, info) in enumerate(zip(out_dims, self._outputs)):
            if info.dtype == "string":  # written by the time enqueue returned
                results.append(self._string_result(strings[len(arrays) + j].values(math.prod(dims)), dims))
                continue
            host = np.empty(dims, dtype=_dtypes.NUMPY[info.dtype])
            self._memory[len(arrays) + j].download(host.reshape(-1).view(np.uint8), handle)
            results.append(self._to_host_result(info.dtype, host.shape, host.reshape(-1), ordered))
        return results
