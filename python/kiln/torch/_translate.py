"""Direct translation of ATen graphs into kiln networks (no ONNX round trip).

Each supported ATen op has one translation function, registered with
``@translates(op, ..., check=...)``: ``check(node)`` says why a node cannot run
in kiln (or None), and the function emits kiln ops through a ``Translator``.
Dtypes and shapes come from the FX nodes' fake tensors (``node.meta["val"]``).
"""

from __future__ import annotations

import ast
import operator
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.fx

from .. import _C, _dtypes

# Dtypes kiln engines take (float64 stays in PyTorch: kiln's GPU kernels have none).
ENGINE_DTYPES = {torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.bool, torch.int8, torch.uint8}

NO_VALUE = -1  # an omitted optional input or output


class _Target:
    """Where the engines being translated will run (set by compile): checks
    refuse, for the GPU, what kiln's GPU runtime has no kernel for yet."""

    device = "cuda"


TARGET = _Target()


def gpu_target() -> bool:
    return TARGET.device != "cpu"


def gpu_floats_only(node) -> str | None:
    """For reductions and scans: kiln's GPU kernels for them take floating-point tensors."""
    x = node.args[0]
    if gpu_target() and isinstance(x, torch.fx.Node) and not fake(x).dtype.is_floating_point:
        return f"kiln's GPU runtime reduces floating-point tensors only (this one is {fake(x).dtype})"
    return None


@dataclass
class Translation:
    fn: Callable
    check: Callable | None


REGISTRY: dict[Any, Translation] = {}


def translates(*targets, check: Callable | None = None):
    """Registers a translation for ATen overloads (``torch.ops.aten.relu.default``)."""

    def register(fn):
        for target in targets:
            if target is not None:
                REGISTRY[target] = Translation(fn, check)
        return fn

    return register


def op_name(target) -> str:
    return target.name() if hasattr(target, "name") else getattr(target, "__name__", str(target))


def fake(node) -> Any:
    return node.meta.get("val") if isinstance(node, torch.fx.Node) else None


def _tensor_dtypes(node: torch.fx.Node):
    vals = [fake(node)] + [fake(a) for a in node.all_input_nodes]
    for v in vals:
        for t in v if isinstance(v, (list, tuple)) else [v]:
            if isinstance(t, torch.Tensor):
                yield t.dtype


def support_reason(node: torch.fx.Node) -> str | None:
    """Why kiln cannot run this call_function node (None: it can)."""
    if node.target is operator.getitem:
        source = node.args[0]
        return None if isinstance(source, torch.fx.Node) and source.target in REGISTRY else "getitem of an op kiln does not run"
    translation = REGISTRY.get(node.target)
    if translation is None:
        return f"kiln has no translation for {op_name(node.target)}"
    if "val" not in node.meta:
        return "the node has no shape information"
    for dtype in _tensor_dtypes(node):
        if dtype not in ENGINE_DTYPES:
            return f"dtype {dtype} is not supported by kiln engines"
    if translation.check is not None:
        return translation.check(node)
    return None


class SymbolTable:
    """kiln symbols for torch's symbolic sizes: a plain size variable keeps its
    name (s0, s1, ...); any other expression gets a fresh symbol of its own."""

    def __init__(self, user_ranges: dict | None = None):
        # torch size variables the user gave ranges for (kiln.torch.Input): name -> (min, opt, max)
        self.user_ranges = user_ranges or {}
        self.names: dict[str, str] = {}  # str(sympy expr) -> kiln symbol
        self.ranges: dict[str, tuple[int, int, int]] = {}
        self.where: dict[str, tuple[int, int]] = {}  # kiln symbol -> (input position, dim)

    def dim(self, d, position: int, axis: int):
        if isinstance(d, int):
            return d
        if not isinstance(d, torch.SymInt):
            return int(d)
        expr = d.node.expr
        key = str(expr)
        name = self.names.get(key)
        if name is None:
            name = key if expr.is_Symbol else f"e{len(self.names)}"
            self.names[key] = name
            self.ranges[name] = _sym_range(d, self.user_ranges)
        self.where.setdefault(name, (position, axis))
        return name


def _sym_range(d: torch.SymInt, user_ranges: dict) -> tuple[int, int, int]:
    shape_env = d.node.shape_env
    expr = d.node.expr
    free = {str(s): s for s in expr.free_symbols}
    if free and all(name in user_ranges for name in free):
        # The user's ranges (torch.export itself assumes sizes of at least 2); derived sizes grow with their symbols.
        lo, opt, hi = (int(expr.subs({free[n]: user_ranges[n][k] for n in free})) for k in range(3))
        return max(lo, 1), max(opt, 1), max(hi, 1)
    bounds = shape_env.bound_sympy(expr)
    hint = shape_env.size_hint(expr)
    lower = max(1, int(bounds.lower)) if bounds.lower.is_finite else 1
    upper = int(bounds.upper) if bounds.upper.is_finite else max(int(hint), lower) * 64
    opt = min(max(int(hint), lower), upper)
    return lower, opt, upper


class Translator:
    """Builds one kiln network from FX nodes."""

    def __init__(self, name: str, user_ranges: dict | None = None):
        self.builder = _C.NetworkBuilder(name)
        self.values: dict[torch.fx.Node, Any] = {}
        self.symbols = SymbolTable(user_ranges)
        self.input_values: list[int] = []  # kiln ids of the network inputs, in order
        self.float_dtypes: set[str] = set()  # float dtypes of the inputs and weights (the engine's precision)
        self._constants: dict[tuple, int] = {}
        self._shape_parts: dict[tuple, int] = {}
        self._counter = 0

    # --- graph boundary -------------------------------------------------------------------
    def add_input(self, node: torch.fx.Node, name: str) -> int:
        t = fake(node)
        position = len(self.input_values)
        dims = [self.symbols.dim(d, position, i) for i, d in enumerate(t.shape)]
        dtype = _dtypes.from_torch(t.dtype)
        self.float_dtypes.add(dtype)
        vid = self.builder.add_input(name, dtype, dims)
        self.values[node] = vid
        self.input_values.append(vid)
        return vid

    def add_weight(self, node: torch.fx.Node | None, name: str, tensor: torch.Tensor) -> int:
        data = tensor_data(tensor)
        if node is not None or tensor.numel() > 1:  # scalars made by translations do not decide the precision
            self.float_dtypes.add(data.dtype)
        vid = self.builder.add_weight(name, data)
        if node is not None:
            self.values[node] = vid
        return vid

    def finish(self, outputs: list[int]):
        for vid in outputs:
            self.builder.add_output(vid)
        for name, (lo, opt, hi) in self.symbols.ranges.items():
            self.builder.set_dim_range(name, lo, opt, hi)
        return self.builder.finalize()

    # --- values -----------------------------------------------------------------------------
    def value(self, arg) -> int:
        """The kiln value of an FX tensor argument."""
        if isinstance(arg, torch.fx.Node):
            v = self.values[arg]
            if isinstance(v, (list, tuple)):
                raise TypeError(f"{arg} is a tuple of values; index it first")
            return v
        raise TypeError(f"expected a tensor node, got {arg!r}")

    def const(self, value, dtype: torch.dtype, dims: tuple = ()) -> int:
        """A constant tensor filled with `value` (a scalar weight by default)."""
        key = (float(value) if isinstance(value, float) else value, dtype, tuple(dims))
        vid = self._constants.get(key)
        if vid is None:
            vid = self.add_weight(None, self.fresh("const"), torch.full(dims, value, dtype=dtype))
            self._constants[key] = vid
        return vid

    def const_tensor(self, tensor: torch.Tensor) -> int:
        return self.add_weight(None, self.fresh("const"), tensor)

    def ints(self, values) -> int:
        """A constant int64 1-D tensor (axes, static shapes, pads)."""
        values = [int(v) for v in values]
        key = ("ints", tuple(values))
        vid = self._constants.get(key)
        if vid is None:
            vid = self.add_weight(None, self.fresh("ints"), torch.tensor(values, dtype=torch.int64))
            self._constants[key] = vid
        return vid

    def fresh(self, stem: str) -> str:
        self._counter += 1
        return f"{stem}_{self._counter}"

    def op(self, kind: str, inputs: list, attrs: dict | None = None, num_outputs: int = 1) -> list[int]:
        return self.builder.add_op(kind, [NO_VALUE if i is None else i for i in inputs], attrs or {}, num_outputs)

    def op1(self, kind: str, inputs: list, attrs: dict | None = None) -> int:
        return self.op(kind, inputs, attrs)[0]

    def cast(self, vid: int, dtype: torch.dtype) -> int:
        return self.op1("Cast", [vid], {"to": _C.DTYPE_CODES[_dtypes.from_torch(dtype)]})

    # --- symbolic sizes ---------------------------------------------------------------------
    def sizes(self, sizes) -> int:
        """An int64 1-D tensor holding `sizes` (ints or SymInts), for Reshape/Expand/ConstantOfShape."""
        if all(isinstance(s, int) for s in sizes):
            return self.ints(sizes)
        parts = [self.ints([s]) if isinstance(s, int) else self.sym_int(s) for s in sizes]
        return self.op1("Concat", parts, {"axis": 0})

    def sym_int(self, s: torch.SymInt) -> int:
        """A 1-element int64 tensor computing a symbolic size from the network inputs' shapes."""
        return self._expr(s.node.expr)

    def _expr(self, expr) -> int:
        import sympy

        key = ("expr", str(expr))
        if key in self._shape_parts:
            return self._shape_parts[key]
        if expr.is_Integer:
            vid = self.ints([int(expr)])
        elif expr.is_Symbol or str(expr) in self.symbols.names:
            name = self.symbols.names.get(str(expr))
            if name is None or name not in self.symbols.where:
                raise NotImplementedError(f"symbolic size {expr} is not a dim of any engine input")
            position, axis = self.symbols.where[name]
            vid = self.op1("Shape", [self.input_values[position]], {"start": axis, "end": axis + 1})
        elif isinstance(expr, sympy.Add):
            vid = self._expr(expr.args[0])
            for term in expr.args[1:]:
                vid = self.op1("Add", [vid, self._expr(term)])
        elif isinstance(expr, sympy.Mul):
            vid = self._expr(expr.args[0])
            for term in expr.args[1:]:
                vid = self.op1("Mul", [vid, self._expr(term)])
        elif type(expr).__name__ == "FloorDiv":
            vid = self.op1("Div", [self._expr(expr.args[0]), self._expr(expr.args[1])])
        else:
            raise NotImplementedError(f"symbolic size {expr} ({type(expr).__name__}) has no kiln translation")
        self._shape_parts[key] = vid
        return vid


def tensor_data(tensor: torch.Tensor) -> _C.TensorData:
    """A copy of a tensor's values for kiln (bfloat16 crosses as raw 16-bit words)."""
    t = tensor.detach().to("cpu").contiguous()
    name = _dtypes.from_torch(t.dtype)
    if t.dtype == torch.bfloat16:
        array = t.view(torch.int16).numpy().view(np.uint16)
    else:
        array = t.numpy()
    return _C.TensorData(name, list(t.shape), array.reshape(-1).view(np.uint8))


# --- output shapes as expressions over input dims (for the custom op's fake implementation) ----
_FUNCS = {"floor_div": operator.floordiv, "mod": operator.mod, "max": None, "min": None}


def evaluate_dim(text: str, lookup: Callable[[str], Any]):
    """Evaluates a kiln dim expression ("2*s0 + 1", "floor_div(s0, 2)") with symbols from `lookup`."""

    def walk(n):
        if isinstance(n, ast.Expression):
            return walk(n.body)
        if isinstance(n, ast.Constant) and isinstance(n.value, int):
            return n.value
        if isinstance(n, ast.Name):
            return lookup(n.id)
        if isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.USub):
            return -walk(n.operand)
        if isinstance(n, ast.BinOp) and type(n.op) in (ast.Add, ast.Sub, ast.Mult):
            a, b = walk(n.left), walk(n.right)
            return a + b if isinstance(n.op, ast.Add) else a - b if isinstance(n.op, ast.Sub) else a * b
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in _FUNCS and len(n.args) == 2:
            a, b = walk(n.args[0]), walk(n.args[1])
            if n.func.id == "max":
                return torch.sym_max(a, b)
            if n.func.id == "min":
                return torch.sym_min(a, b)
            return _FUNCS[n.func.id](a, b)
        raise ValueError(f"not a kiln dim expression: {text!r}")

    return walk(ast.parse(text, mode="eval"))
