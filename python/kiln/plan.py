"""Plans: a model built ahead of time (fused, folded, in its precision), portable across GPUs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from . import _C

_PRECISIONS = ("fp32", "fp16", "bf16")


@dataclass(frozen=True)
class TensorInfo:
    """An input or output: its name, kiln dtype name and shape (ints, or strings for symbolic dims)."""

    name: str
    dtype: str
    shape: tuple

    @property
    def type(self) -> str:  # onnxruntime's NodeArg spelling
        return self.dtype


def _infos(described) -> list[TensorInfo]:
    return [TensorInfo(name, dtype, tuple(shape)) for name, dtype, shape in described]


class Plan:
    """A built model. ``Plan.load(path)`` reads a .kiln file; ``plan.save(path)`` writes one."""

    def __init__(self, native: _C.Plan):
        self._native = native

    @staticmethod
    def load(path: str | os.PathLike) -> Plan:
        return Plan(_C.Plan.load(os.fspath(path)))

    @staticmethod
    def from_bytes(data: bytes) -> Plan:
        return Plan(_C.Plan.deserialize(bytes(data)))

    def save(self, path: str | os.PathLike) -> None:
        self._native.save(os.fspath(path))

    def to_bytes(self) -> bytes:
        return self._native.serialize()

    @property
    def inputs(self) -> list[TensorInfo]:
        return _infos(self._native.network.inputs)

    @property
    def outputs(self) -> list[TensorInfo]:
        return _infos(self._native.network.outputs)

    @property
    def precision(self) -> str:
        return self._native.precision

    @property
    def ranges(self) -> dict[str, tuple[int, int, int]]:
        """(min, opt, max) of every symbolic dim."""
        return dict(self._native.network.ranges)

    def __repr__(self) -> str:
        ins = ", ".join(f"{t.name}: {t.dtype}{list(t.shape)}" for t in self.inputs)
        outs = ", ".join(f"{t.name}: {t.dtype}{list(t.shape)}" for t in self.outputs)
        return f"<kiln.Plan {self.precision} ({ins}) -> ({outs})>"


Profile = tuple[Sequence[int], Sequence[int], Sequence[int]]


def _check_profiles(profiles: Mapping[str, Profile] | None) -> dict:
    out = {}
    for name, shapes in (profiles or {}).items():
        if not isinstance(shapes, (tuple, list)) or len(shapes) != 3:
            raise ValueError(f"profile for '{name}' must be (min_shape, opt_shape, max_shape); got {shapes!r}")
        out[str(name)] = tuple([int(d) for d in shape] for shape in shapes)
    return out


def build(
    model: str | os.PathLike,
    profiles: Mapping[str, Profile] | None = None,
    precision: str = "fp32",
    progress: Callable[[str], None] | None = None,
) -> Plan:
    """Builds an ONNX model into a plan, without a GPU.

    ``profiles`` gives (min, opt, max) shapes for inputs with symbolic dims, e.g.
    ``{"x": ((1, 64), (8, 64), (32, 64))}``; ``precision`` is fp32, fp16 or bf16
    (inputs and outputs keep their dtypes); ``progress`` receives one line per pass.
    """
    if precision not in _PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(_PRECISIONS)}; got {precision!r}")
    path = os.fspath(model)
    network = _C.load_onnx(path)
    return Plan(_C.build(network, _check_profiles(profiles), precision, path, progress))
