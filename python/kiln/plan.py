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
        """(min, opt, max) of every symbolic dim: the union of the profiles (profile 0's opt)."""
        return dict(self._native.network.ranges)

    @property
    def profiles(self) -> list[dict[str, tuple[int, int, int]]]:
        """The optimization profiles: per profile, (min, opt, max) of every symbolic dim.

        A session runs the input shapes of the profile it selects (``InferenceSession(profile_index=)``).
        """
        return [dict(p) for p in self._native.profiles]

    def __repr__(self) -> str:
        ins = ", ".join(f"{t.name}: {t.dtype}{list(t.shape)}" for t in self.inputs)
        outs = ", ".join(f"{t.name}: {t.dtype}{list(t.shape)}" for t in self.outputs)
        return f"<kiln.Plan {self.precision} ({ins}) -> ({outs})>"


Profile = tuple[Sequence[int], Sequence[int], Sequence[int]]


def _check_profiles(profiles: Mapping[str, Profile] | Sequence[Mapping[str, Profile]] | None) -> list[dict]:
    """One profile (a dict) or several (a list of dicts) as a list of {input: (min, opt, max)}."""
    if profiles is None:
        return []
    several = not isinstance(profiles, Mapping)
    if several and not isinstance(profiles, (list, tuple)):
        raise TypeError(
            "profiles must be a dict of input name -> (min_shape, opt_shape, max_shape) (one profile) "
            f"or a list of such dicts (several); got {type(profiles).__name__}"
        )
    out = []
    for k, profile in enumerate(profiles if several else [profiles]):
        where = f" in profile {k}" if several else ""
        if not isinstance(profile, Mapping):
            raise TypeError(f"profile {k} must be a dict of input name -> (min_shape, opt_shape, max_shape); got {type(profile).__name__}")
        shapes_of = {}
        for name, shapes in profile.items():
            if not isinstance(shapes, (tuple, list)) or len(shapes) != 3:
                raise ValueError(f"profile for '{name}'{where} must be (min_shape, opt_shape, max_shape); got {shapes!r}")
            shapes_of[str(name)] = tuple([int(d) for d in shape] for shape in shapes)
        out.append(shapes_of)
    return out


def build(
    model: str | os.PathLike,
    profiles: Mapping[str, Profile] | Sequence[Mapping[str, Profile]] | None = None,
    precision: str = "fp32",
    progress: Callable[[str], None] | None = None,
    data_dependent_bounds: Mapping[str, int] | None = None,
) -> Plan:
    """Builds an ONNX model into a plan, without a GPU.

    ``profiles`` gives (min, opt, max) shapes for inputs with symbolic dims, e.g.
    ``{"x": ((1, 64), (8, 64), (32, 64))}``, or a list of such dicts for a plan with several
    optimization profiles (``[{"x": ((1, 64), (4, 64), (8, 64))}, {"x": ((9, 64), (32, 64), (64, 64))}]``):
    every profile needs shapes for every input with symbolic dims, and a session runs the shapes of the
    profile it selects. ``precision`` is fp32, fp16 or bf16 (inputs and outputs keep their dtypes);
    ``progress`` receives one line per pass. ``data_dependent_bounds`` gives upper bounds of sizes that
    depend on data, by the name of the tensor whose size does (``{"boxes": 1000}``), where the largest
    input shapes imply none (a NonZero's count is bounded by its input's elements without one); a run
    beyond a bound raises naming the tensor.
    """
    if precision not in _PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(_PRECISIONS)}; got {precision!r}")
    path = os.fspath(model)
    network = _C.load_onnx(path)
    bounds = dict(data_dependent_bounds or {})
    for name, bound in bounds.items():
        if not isinstance(bound, int) or isinstance(bound, bool) or bound < 0:
            raise ValueError(f"data_dependent_bounds['{name}'] must be a non-negative int; got {bound!r}")
    return Plan(_C.build(network, _check_profiles(profiles), precision, path, progress, bounds))
