"""``torch.compile(model, backend="kiln")``: the graph TorchDynamo captures is
compiled by kiln.torch.compile at the example inputs' (static) shapes; the
module's parameters are frozen into the engines, as the reference system does."""

from __future__ import annotations

import warnings

import torch

_warned_dynamic = False


class _Frozen(torch.nn.Module):
    """Dynamo's graph with its parameter and buffer inputs held as constants."""

    def __init__(self, gm: torch.fx.GraphModule, frozen: dict[int, torch.Tensor], count: int):
        super().__init__()
        self.gm = gm
        self.count = count
        self.positions = sorted(frozen)
        for i, t in frozen.items():
            self.register_buffer(f"frozen_{i}", t.detach(), persistent=False)

    def forward(self, *args):
        it = iter(args)
        full = [getattr(self, f"frozen_{i}") if i in self.positions else next(it) for i in range(self.count)]
        return self.gm(*full)


def kiln_backend(gm: torch.fx.GraphModule, example_inputs):
    from . import compile as kiln_compile

    global _warned_dynamic
    if not all(isinstance(x, torch.Tensor) for x in example_inputs) or any(
        isinstance(d, torch.SymInt) for x in example_inputs for d in x.shape
    ):
        if not _warned_dynamic:
            _warned_dynamic = True
            warnings.warn(
                "backend='kiln' compiles static shapes; this graph has symbolic sizes and runs in PyTorch "
                "(use kiln.torch.compile with kiln.torch.Input ranges for dynamic shapes)",
                RuntimeWarning,
                stacklevel=2,
            )
        return gm.forward
    frozen = {i: x for i, x in enumerate(example_inputs) if isinstance(x, torch.nn.Parameter) or getattr(x, "_is_param", False)}
    runtime = [x for i, x in enumerate(example_inputs) if i not in frozen]
    device = "cuda" if any(x.is_cuda for x in example_inputs) else "cpu"
    compiled = kiln_compile(_Frozen(gm, frozen, len(example_inputs)), [x.detach().clone() for x in runtime], device=device)

    def run(*args):
        return compiled(*[a for i, a in enumerate(args) if i not in frozen])

    run.kiln_module = compiled
    return run


def register() -> None:
    """Makes backend="kiln" known to torch.compile (also done by the package's entry point)."""
    from torch._dynamo import list_backends, register_backend

    if "kiln" not in list_backends(exclude_tags=()):
        register_backend(name="kiln")(kiln_backend)
