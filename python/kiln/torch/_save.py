"""kiln.torch.save / kiln.torch.load: a compiled module as a torch.export
ExportedProgram. Each engine is a ``kiln::execute`` call whose plan is a uint8
tensor constant of the program, so the file holds no opaque Python objects."""

from __future__ import annotations

import os

import torch

from ..runtime import RuntimeSettings
from ._compile import CompiledModule, _dynamic_shapes, attach
from ._engine import call_engine, register_runner
from ._input import Input


def save(module: CompiledModule, path: str | os.PathLike, inputs=None) -> None:
    """Writes `module` (from kiln.torch.compile) to `path` (a torch.export .pt2 archive).
    `inputs` defaults to the ones it was compiled with."""
    if not isinstance(module, CompiledModule):
        raise TypeError(f"kiln.torch.save takes a module from kiln.torch.compile; got {type(module).__name__}")
    inputs = list(inputs if inputs is not None else module.__dict__.get("_kiln_inputs", []))
    device = next((r.spec["device"] for r in module.engines), "cpu")
    device = "cpu" if device == "cpu" else f"cuda:{torch.cuda.current_device()}"
    examples = tuple(i.example(torch.device(device)) if isinstance(i, Input) else i for i in inputs)
    with torch.no_grad():
        program = torch.export.export(module, examples, dynamic_shapes=_dynamic_shapes(inputs), strict=False)
    torch.export.save(program, os.fspath(path))


def load(path: str | os.PathLike, runtime_settings: RuntimeSettings | None = None) -> CompiledModule:
    """Reads a module written by kiln.torch.save; its engines run with `runtime_settings`."""
    settings = runtime_settings or RuntimeSettings()
    if not isinstance(settings, RuntimeSettings):
        raise TypeError(f"runtime_settings must be kiln.runtime.RuntimeSettings; got {type(settings).__name__}")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"kiln.torch.load: no file {path}")
    program = torch.export.load(path)
    gm = program.module()
    runners = []
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target is torch.ops.kiln.execute.default:
            plan_node, engine_inputs, spec = node.args
            plan = _constant(gm, plan_node)
            runners.append(register_runner(spec, plan.detach().cpu().numpy().tobytes(), settings))
            node.target = call_engine  # the fast path for plain tensors; the custom op when traced
    if not runners:
        raise ValueError(f"kiln.torch.load: {path} holds no kiln engines (was it written by kiln.torch.save?)")
    gm.recompile()
    return attach(gm, runners, settings, [])


def _constant(gm: torch.nn.Module, node) -> torch.Tensor:
    if not (isinstance(node, torch.fx.Node) and node.op == "get_attr"):
        raise ValueError("a kiln::execute call whose plan is not a constant of the program")
    obj = gm
    for part in node.target.split("."):
        obj = getattr(obj, part)
    return obj
