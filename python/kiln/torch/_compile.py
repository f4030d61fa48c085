"""kiln.torch.compile: torch.export -> ATen graph -> kiln engines + PyTorch."""

from __future__ import annotations

import operator
import os
import sys
from typing import Sequence

import torch
import torch.fx

from .. import _C
from ..runtime import RuntimeSettings
from . import _aten  # noqa: F401  (registers the translations)
from ._engine import call_engine, make_spec, register_runner
from ._fast import install as install_fast_path
from ._input import Input
from ._partition import ENGINE_PREFIX, partition
from ._translate import TARGET, Translator, fake

_PRECISIONS = (None, "fp32", "fp16", "bf16")
# ATen ops kept whole through decomposition because kiln runs them better whole.
_KEEP = ("scaled_dot_product_attention.default", "linear.default")


def _parse_device(device) -> str:
    device = str(device)
    if device == "cpu" or device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit()):
        return device
    raise ValueError(f"device must be 'cuda', 'cuda:N' or 'cpu'; got {device!r}")


def _dynamic_shapes(inputs: list):
    specs, any_dynamic = [], False
    for i, inp in enumerate(inputs):
        if not isinstance(inp, Input) or not inp.dynamic_dims:
            specs.append(None)
            continue
        any_dynamic = True
        dims = {}
        for d in inp.dynamic_dims:
            name = f"{inp.name or f'input{i}'}_dim{d}".replace(".", "_")
            dims[d] = torch.export.Dim(name, min=max(inp.min_shape[d], 1), max=inp.max_shape[d])
        specs.append(dims)
    return tuple(specs) if any_dynamic else None


def _decompositions():
    table = torch.export.default_decompositions()
    aten = torch.ops.aten
    for name in _KEEP:
        packet, overload = name.split(".")
        op = getattr(getattr(aten, packet), overload, None)
        if op is not None:
            table.pop(op, None)
    return table


def export(module: torch.nn.Module, inputs: list, device: str) -> torch.fx.GraphModule:
    """The module as an ATen graph (parameters as get_attr), traced at the inputs' opt shapes."""
    examples = tuple(inp.example(torch.device(device)) if isinstance(inp, Input) else inp.to(device) for inp in inputs)
    with torch.no_grad():
        program = torch.export.export(module, examples, dynamic_shapes=_dynamic_shapes(inputs), strict=False)
        program = program.run_decompositions(_decompositions())
    return program.module()


# Folded results larger than this stay computed at run time (an expanded mask is not worth its memory).
_FOLD_LIMIT_ELEMENTS = 1 << 24


def fold_constants(gm: torch.fx.GraphModule) -> int:
    """Evaluates, once, every node that depends on no module input (a causal
    mask from arange/full, a transposed weight) and stores its result as a
    constant, so engines see constants they can fold and fuse. Random ops and
    results with symbolic sizes stay."""
    known: dict[torch.fx.Node, torch.Tensor] = {}
    folded = []
    for node in gm.graph.nodes:
        if node.op == "get_attr":
            value = _attr(gm, node.target)
            if isinstance(value, torch.Tensor):
                known[node] = value
            continue
        if node.op != "call_function" or not isinstance(node.target, torch._ops.OpOverload):
            continue
        if torch.Tag.nondeterministic_seeded in node.target.tags or any(n not in known for n in node.all_input_nodes):
            continue
        val = fake(node)
        if not isinstance(val, torch.Tensor) or any(not isinstance(d, int) for d in val.shape) or val.numel() > _FOLD_LIMIT_ELEMENTS:
            continue
        args, kwargs = torch.fx.node.map_arg((node.args, node.kwargs), lambda n: known[n])
        if any(isinstance(a, torch.SymInt) for a in torch.utils._pytree.tree_leaves((args, kwargs))):
            continue
        with torch.no_grad():
            known[node] = node.target(*args, **kwargs)
        folded.append(node)
    replaced = 0
    for node in folded:
        if all(user in known for user in node.users):
            continue  # only feeds other folded nodes
        name = f"_kiln_folded_{replaced}"
        gm.register_buffer(name, known[node].detach().clone(), persistent=True)
        with gm.graph.inserting_before(node):
            constant = gm.graph.get_attr(name)
        constant.meta = dict(node.meta)
        node.replace_all_uses_with(constant)
        replaced += 1
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return replaced


def engine_precision(network_dtypes: set[str]) -> str:
    """precision=None: the engine computes in the float type its tensors have."""
    floats = network_dtypes & {"float32", "float16", "bfloat16"}
    if floats == {"float16"}:
        return "fp16"
    if floats == {"bfloat16"}:
        return "bf16"
    return "fp32"


def _attr(gm: torch.nn.Module, target: str):
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def user_ranges(gm: torch.fx.GraphModule, inputs: list) -> dict:
    """torch size variable -> (min, opt, max) from the user's kiln.torch.Input ranges."""
    ranges = {}
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    for node, inp in zip(placeholders, inputs):
        if not isinstance(inp, Input):
            continue
        for d in inp.dynamic_dims:
            size = fake(node).shape[d]
            if isinstance(size, torch.SymInt) and size.node.expr.is_Symbol:
                ranges[str(size.node.expr)] = (inp.min_shape[d], inp.opt_shape[d], inp.max_shape[d])
    return ranges


def _translate_engine(gm, call: torch.fx.Node, sub: torch.fx.GraphModule, name: str, ranges: dict):
    """A kiln network for one fused region: get_attr arguments become weights, the rest inputs."""
    from ._translate import REGISTRY

    tr = Translator(name, ranges)
    engine_args = []
    placeholders = [n for n in sub.graph.nodes if n.op == "placeholder"]
    for ph, arg in zip(placeholders, call.args):
        if isinstance(arg, torch.fx.Node) and arg.op == "get_attr":
            tr.add_weight(ph, arg.target.replace(".", "_"), _attr(gm, arg.target))
        elif not isinstance(fake(ph), torch.Tensor):
            # A symbolic size computed in PyTorch (sym_size): the translations read it from
            # the engine inputs' shapes, so it is no engine input.
            tr.values[ph] = fake(ph)
        else:
            tr.add_input(ph, f"in{len(engine_args)}")
            engine_args.append(arg)
    for ph, arg in zip(placeholders, call.args):
        _add_size_sources(tr, fake(ph), arg, engine_args)
    outputs = []
    for node in sub.graph.nodes:
        if node.op == "call_function":
            if node.target is operator.getitem:
                tr.values[node] = tr.values[node.args[0]][node.args[1]]
            else:
                try:
                    tr.values[node] = REGISTRY[node.target].fn(tr, node)
                except Exception as e:  # name the node: the user sees which op failed
                    raise RuntimeError(f"kiln: translating {node.name} ({node.target}) failed: {e}") from e
        elif node.op == "output":
            results = node.args[0] if isinstance(node.args[0], (list, tuple)) else [node.args[0]]
            seen = set()
            for r in results:
                vid = tr.value(r)
                if vid in seen or vid in tr.input_values:
                    vid = tr.op1("Identity", [vid])
                seen.add(vid)
                outputs.append(vid)
    return tr, tr.finish(outputs), engine_args


def _add_size_sources(tr: Translator, size, arg, engine_args: list) -> None:
    """A size computed in PyTorch whose symbols no engine input carries: the tensors it
    was read from (sym_size) become extra engine inputs, read only for their shapes."""
    from ._translate import ENGINE_DTYPES

    if not isinstance(size, torch.SymInt):
        return
    missing = {str(s) for s in size.node.expr.free_symbols} - set(tr.symbols.where)
    pending, seen = [arg], set()
    while missing and pending:
        node = pending.pop()
        if not isinstance(node, torch.fx.Node) or node in seen:
            continue
        seen.add(node)
        if node.target is torch.ops.aten.sym_size.int:
            source = node.args[0]
            t = fake(source)
            dims = {str(d.node.expr) for d in t.shape if isinstance(d, torch.SymInt)} if isinstance(t, torch.Tensor) else set()
            if dims & missing and t.dtype in ENGINE_DTYPES and source not in tr.values:
                tr.add_input(source, f"in{len(engine_args)}")
                engine_args.append(source)
                missing -= set(tr.symbols.where)
        elif not isinstance(fake(node), torch.Tensor):
            pending.extend(node.all_input_nodes)


class CompiledModule(torch.fx.GraphModule):
    """A module compiled by kiln: kiln engines (calls of the kiln::execute op) between PyTorch ops."""

    @property
    def runtime_settings(self) -> RuntimeSettings:
        runners = self.__dict__.get("_kiln_runners", [])
        return runners[0].settings if runners else self.__dict__.get("_kiln_settings", RuntimeSettings())

    @runtime_settings.setter
    def runtime_settings(self, settings: RuntimeSettings) -> None:
        if not isinstance(settings, RuntimeSettings):
            raise TypeError(f"runtime_settings must be kiln.runtime.RuntimeSettings; got {type(settings).__name__}")
        for runner in self.__dict__.get("_kiln_runners", []):
            runner.settings = settings
        self.__dict__["_kiln_settings"] = settings

    @property
    def engines(self) -> list:
        return list(self.__dict__.get("_kiln_runners", []))

    def kiln_stats(self) -> dict:
        """What kiln.runtime.stats returns: per-engine counters and the cudagraphs mode."""
        from ..runtime import get_cudagraphs_mode, get_whole_cudagraphs_mode

        return {
            "cudagraphs_mode": "whole_graph" if get_whole_cudagraphs_mode() else "subgraph" if get_cudagraphs_mode() else "standard",
            # Calls skip the FX module and go straight to the engines (kiln/torch/_fast.py).
            "engines_only_fast_path": getattr(type(self).__call__, "engines_only", None) is not None,
            "engines": [r.stats() for r in self.engines],
        }

    @property
    def has_torch_segments(self) -> bool:
        """Whether PyTorch computes anything between or around the engines."""
        from ._partition import compute_node_count

        return compute_node_count(n for n in self.graph.nodes if n.op == "call_function" and n.target is not call_engine) > 0


def _plain_calling_convention(gm: torch.fx.GraphModule) -> None:
    """Drops what torch.export wraps around the graph when nothing needs it: its
    input guards (kiln checks every engine input's shape against its profile
    itself, naming the input) and the pytree flattening of positional tensor
    inputs and of a tensor or tuple output. Both cost more per call than an engine launch."""
    from torch.utils import _pytree as pytree

    for node in list(gm.graph.nodes):
        if node.op == "call_module" and node.target == "_guards_fn" and not node.users:
            gm.graph.erase_node(node)
            gm.delete_submodule("_guards_fn")
    codegen = gm.graph._codegen
    info = getattr(codegen, "pytree_info", None)
    if info is None:
        return
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    output = next(n for n in gm.graph.nodes if n.op == "output")
    flat = output.args[0]
    if not isinstance(flat, (list, tuple)) or info.in_spec != pytree.tree_structure((tuple(range(len(placeholders))), {})):
        return
    if info.out_spec == pytree.tree_structure(0) and len(flat) == 1:
        result = flat[0]
    elif info.out_spec == pytree.tree_structure(tuple(range(len(flat)))):
        result = tuple(flat)
    else:
        return
    gm.graph._codegen = torch.fx.graph.CodeGen()
    output.args = (result,)


def attach(gm: torch.fx.GraphModule, runners: list, settings: RuntimeSettings, inputs: list) -> CompiledModule:
    compiled = CompiledModule(gm, gm.graph, class_name="KilnCompiledModule")
    compiled.__dict__["_kiln_runners"] = runners
    compiled.__dict__["_kiln_settings"] = settings
    compiled.__dict__["_kiln_inputs"] = inputs  # what kiln.torch.save traces with
    install_fast_path(compiled)
    return compiled


def compile(  # noqa: A001 - the reference system's name
    module: torch.nn.Module,
    inputs: Sequence[Input | torch.Tensor] = (),
    *,
    precision: str | None = None,
    min_block_size: int = 5,
    torch_executed_ops: set = frozenset(),
    require_full_compilation: bool = False,
    cuda_graph_strategy: str = "disabled",
    dynamic_shapes_kernel_specialization_strategy: str = "lazy",
    runtime_cache_path: str | os.PathLike | None = None,
    runtime_cache_shared: bool = False,
    device: str = "cuda",
    verbose: bool = False,
) -> CompiledModule:
    """Compiles `module` for the given inputs: regions kiln supports become kiln
    engines, the rest stays PyTorch. ``device="cpu"`` runs the engines on kiln's
    exact reference interpreter (slow; for tests and machines without a GPU)."""
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module must be a torch.nn.Module; got {type(module).__name__}")
    if precision not in _PRECISIONS:
        raise ValueError(f"precision must be None, 'fp32', 'fp16' or 'bf16'; got {precision!r}")
    if not isinstance(min_block_size, int) or min_block_size < 1:
        raise ValueError(f"min_block_size must be a positive int; got {min_block_size!r}")
    device = _parse_device(device)
    settings = RuntimeSettings(cuda_graph_strategy, dynamic_shapes_kernel_specialization_strategy, runtime_cache_path,
                               runtime_cache_shared)
    inputs = list(inputs)
    if not inputs:
        raise ValueError("inputs must list one kiln.torch.Input or example tensor per positional argument of forward")
    for i, inp in enumerate(inputs):
        if not isinstance(inp, (Input, torch.Tensor)):
            raise TypeError(f"inputs[{i}] must be a kiln.torch.Input or a torch.Tensor; got {type(inp).__name__}")

    def say(message: str) -> None:
        if verbose:
            print(f"kiln: {message}", file=sys.stderr, flush=True)

    module = module.eval()
    TARGET.device = "cpu" if device == "cpu" else "cuda"
    say("exporting the module with torch.export")
    gm = export(module, inputs, device)
    ranges = user_ranges(gm, inputs)
    say(f"folded {fold_constants(gm)} constant subgraph(s)")
    gm, report = partition(gm, torch_executed_ops, min_block_size, require_full_compilation)
    say(f"{report['engines']} kiln engine(s), {report['below_min_block_size']} region(s) below min_block_size left to PyTorch")
    for line in report["torch_ops"]:
        say(f"  PyTorch runs {line}")

    runners = []
    graph = gm.graph
    for call in [n for n in graph.nodes if n.op == "call_module" and n.target.startswith(ENGINE_PREFIX)]:
        index = len(runners)
        name = f"engine{index}"
        sub = gm.get_submodule(call.target)
        tr, network, engine_args = _translate_engine(gm, call, sub, name, ranges)
        say(f"building {name}: {sum(network.op_counts.values())} kiln ops, {len(engine_args)} inputs")
        plan = _C.build(network, [], precision or engine_precision(tr.float_dtypes), f"kiln.torch:{type(module).__name__}:{name}", None, {})
        plan_bytes = plan.serialize()
        spec = make_spec(name, network, tr.symbols.where, "cpu" if device == "cpu" else "cuda")
        runner = register_runner(spec, plan_bytes, settings)
        runners.append(runner)
        buffer_name = f"_kiln_plan_{index}"
        gm.register_buffer(buffer_name, torch.frombuffer(bytearray(plan_bytes), dtype=torch.uint8), persistent=True)
        with graph.inserting_before(call):
            plan_node = graph.get_attr(buffer_name)
            engine_call = graph.call_function(call_engine, (plan_node, list(engine_args), spec))
        engine_call.meta["val"] = call.meta.get("val")
        call.replace_all_uses_with(engine_call)
        graph.erase_node(call)
        gm.delete_submodule(call.target)
    graph.eliminate_dead_code()
    for node in list(graph.nodes):  # weights now inside plans
        if node.op == "get_attr" and not node.users:
            graph.erase_node(node)
    gm.delete_all_unused_submodules()
    _plain_calling_convention(gm)
    gm.recompile()
    return attach(gm, runners, settings, inputs)
