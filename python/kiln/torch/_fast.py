"""The per-call path of a compiled module made only of kiln engines.

Such a module's FX graph does nothing but pass tensors between engines, yet a
call through it costs several Python frames before an engine runs: FX's call
wrapper, nn.Module's call machinery, the generated forward, the plan buffer's
attribute lookup and call_engine's checks. Here the graph becomes a generated
function calling the engines' runners directly, and the module's class calls
it when nothing else needs the general path: plain tensors, no keywords, no
hooks, no tracing or compiling (torch.compile and torch.export still see the
kiln::execute custom op through the FX forward).
"""

from __future__ import annotations

import operator

import torch
import torch.fx
from torch.nn.modules import module as _nn_module

from ._engine import call_engine, runner_for

_Tensor = torch.Tensor
_is_compiling = torch.compiler.is_compiling
_module_call = torch.nn.Module.__call__
# nn.Module's process-wide hooks: dicts changed in place, so bound once.
_global_hooks = (_nn_module._global_forward_hooks, _nn_module._global_forward_pre_hooks,
                 _nn_module._global_backward_hooks, _nn_module._global_backward_pre_hooks)


def engines_only_function(gm: torch.fx.GraphModule):
    """The graph as a plain function of its positional inputs calling each engine's
    runner, or None when the graph does anything else (PyTorch ops, pytree
    flattening, defaults)."""
    if type(gm.graph._codegen) is not torch.fx.graph.CodeGen:
        return None
    names: dict[torch.fx.Node, str] = {}
    params, lines, scope = [], [], {}
    plan_nodes = set()
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            if node.args or node.target.startswith("*"):
                return None
            names[node] = f"a{len(params)}"
            params.append(names[node])
        elif node.op == "get_attr":
            plan_nodes.add(node)
        elif node.op == "call_function" and node.target is call_engine:
            plan, inputs, spec = node.args
            if plan not in plan_nodes or not all(isinstance(i, torch.fx.Node) and i in names for i in inputs):
                return None
            runner = f"run{len(scope)}"
            scope[runner] = runner_for(operator.attrgetter(plan.target)(gm), spec).run
            names[node] = f"r{len(scope)}"
            lines.append(f"    {names[node]} = {runner}(({''.join(names[i] + ', ' for i in inputs)}))")
        elif node.op == "call_function" and node.target is operator.getitem:
            source, index = node.args
            if source not in names or not isinstance(index, int) or source.target is not call_engine:
                return None
            names[node] = f"v{len(names)}"
            lines.append(f"    {names[node]} = {names[source]}[{index}]")
        elif node.op == "output":
            result = node.args[0]
            if isinstance(result, torch.fx.Node) and result in names:
                lines.append(f"    return {names[result]}")
            elif isinstance(result, (tuple, list)) and all(isinstance(r, torch.fx.Node) and r in names for r in result):
                items = "".join(names[r] + ", " for r in result)
                lines.append(f"    return ({items})" if isinstance(result, tuple) else f"    return [{items}]")
            else:
                return None
        else:
            return None
    if any(user.target is not call_engine for p in plan_nodes for user in p.users):
        return None
    source = f"def engines_only({', '.join(params)}):\n" + "\n".join(lines) + "\n"
    exec(compile(source, f"<kiln engines-only forward of {type(gm).__name__}>", "exec"), scope)
    function = scope["engines_only"]
    function.source = source
    return function


def install(gm: torch.fx.GraphModule) -> bool:
    """Makes calls of `gm` (from kiln.torch.compile) take its engines-only function
    when they can; returns whether the module has one. Each GraphModule has a
    class of its own, whose __call__ FX sets on every recompile: a recompiled
    module takes the general path again."""
    function = engines_only_function(gm)
    if function is None:
        return False
    cls = type(gm)
    general = cls.__call__
    count = function.__code__.co_argcount

    def __call__(self, *args, **kwargs):
        if _is_compiling():  # TorchDynamo traces nn.Module's call, not FX's wrapper of it
            return _module_call(self, *args, **kwargs)
        if (kwargs or len(args) != count or self._forward_hooks or self._forward_pre_hooks
                or self._backward_hooks or self._backward_pre_hooks or any(_global_hooks)):
            return general(self, *args, **kwargs)
        for a in args:
            if type(a) is not _Tensor:  # FakeTensors, tensor subclasses: the custom op's way
                return general(self, *args, **kwargs)
        return function(*args)

    __call__.engines_only = function  # what kiln.runtime.stats looks for
    cls.__call__ = __call__
    return True
