"""kiln.torch.Input: the shape (or range of shapes) and dtype of one model input."""

from __future__ import annotations

from typing import Sequence

import torch


class Input:
    """One input of the module given to ``kiln.torch.compile``.

    ``Input(shape)`` is a static shape; ``Input(min_shape=, opt_shape=, max_shape=)``
    a range: every dim where min and max differ is dynamic (an engine profile
    and a ``torch.export`` dim), and ``opt_shape`` is the shape kernels are tuned for.
    """

    def __init__(
        self,
        shape: Sequence[int] | None = None,
        *,
        min_shape: Sequence[int] | None = None,
        opt_shape: Sequence[int] | None = None,
        max_shape: Sequence[int] | None = None,
        dtype: torch.dtype = torch.float32,
        name: str | None = None,
    ):
        ranged = (min_shape, opt_shape, max_shape)
        if shape is not None:
            if any(s is not None for s in ranged):
                raise ValueError("Input takes either shape or min_shape/opt_shape/max_shape, not both")
            min_shape = opt_shape = max_shape = shape
        elif any(s is None for s in ranged):
            raise ValueError("Input needs shape, or all of min_shape, opt_shape and max_shape")
        self.min_shape, self.opt_shape, self.max_shape = (tuple(int(d) for d in s) for s in (min_shape, opt_shape, max_shape))
        if not (len(self.min_shape) == len(self.opt_shape) == len(self.max_shape)):
            raise ValueError(f"min_shape, opt_shape and max_shape must have the same rank; got {ranged}")
        for lo, mid, hi in zip(self.min_shape, self.opt_shape, self.max_shape):
            if not (0 <= lo <= mid <= hi):
                raise ValueError(f"each dim must satisfy 0 <= min <= opt <= max; got {self.min_shape}, {self.opt_shape}, {self.max_shape}")
        if not isinstance(dtype, torch.dtype):
            raise TypeError(f"dtype must be a torch.dtype; got {dtype!r}")
        self.dtype = dtype
        self.name = name

    @property
    def dynamic_dims(self) -> list[int]:
        return [i for i, (lo, hi) in enumerate(zip(self.min_shape, self.max_shape)) if lo != hi]

    def example(self, device: torch.device) -> torch.Tensor:
        """A random tensor of the opt shape (what torch.export traces with)."""
        if self.dtype.is_floating_point:
            return torch.randn(self.opt_shape, dtype=self.dtype, device=device)
        if self.dtype == torch.bool:
            return torch.ones(self.opt_shape, dtype=torch.bool, device=device)
        return torch.ones(self.opt_shape, dtype=self.dtype, device=device)

    def __repr__(self) -> str:
        if self.min_shape == self.max_shape:
            return f"Input(shape={self.min_shape}, dtype={self.dtype})"
        return f"Input(min_shape={self.min_shape}, opt_shape={self.opt_shape}, max_shape={self.max_shape}, dtype={self.dtype})"
