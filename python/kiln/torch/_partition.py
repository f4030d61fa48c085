"""Capability-based partitioning: regions of ATen nodes kiln can run become
engines; everything else stays PyTorch."""

from __future__ import annotations

import inspect
import operator

import torch
import torch.fx
from torch.fx.passes.infra.partitioner import CapabilityBasedPartitioner
from torch.fx.passes.operator_support import OperatorSupportBase
from torch.fx.passes.utils.fuser_utils import fuse_by_partitions

from ._translate import op_name, support_reason

ENGINE_PREFIX = "kiln_engine_"

def normalize_ops(ops) -> set[str]:
    """torch_executed_ops as names ("aten.relu.default" / "aten.relu" / an op overload or packet)."""
    names = set()
    for op in ops or ():
        if isinstance(op, str):
            names.add(op.removeprefix("torch.ops.").replace("::", "."))
        elif hasattr(op, "name") and callable(op.name):  # OpOverload
            names.add(op.name().replace("::", "."))
        elif hasattr(op, "_qualified_op_name"):  # OpOverloadPacket
            names.add(op._qualified_op_name.replace("::", "."))
        else:
            raise TypeError(f"torch_executed_ops takes op overloads, packets or names; got {op!r}")
    return names


def _forced_to_torch(node: torch.fx.Node, forced: set[str]) -> bool:
    if not forced:
        return False
    name = op_name(node.target).replace("::", ".")
    packet = name.rsplit(".", 1)[0] if name.count(".") >= 2 else name
    return name in forced or packet in forced or f"{name}.default" in forced


class KilnSupport(OperatorSupportBase):
    def __init__(self, forced: set[str]):
        self.forced = forced
        self.reasons: dict[torch.fx.Node, str] = {}

    def is_node_supported(self, submodules, node: torch.fx.Node) -> bool:
        if node.op != "call_function":
            return False
        if node.target is not operator.getitem and _forced_to_torch(node, self.forced):
            self.reasons[node] = "in torch_executed_ops"
            return False
        reason = support_reason(node)
        if reason is not None:
            self.reasons[node] = reason
            return False
        return True


def is_size_node(node: torch.fx.Node) -> bool:
    """A node computing a Python number (sym_size, SymInt arithmetic), not a tensor."""
    val = node.meta.get("val")
    return isinstance(val, (torch.SymInt, torch.SymFloat, torch.SymBool, int, float, bool))


def compute_node_count(nodes) -> int:
    """ATen nodes (tuple indexing and size arithmetic aside): what min_block_size counts, as in the reference system."""
    return sum(1 for n in nodes if n.target is not operator.getitem and not is_size_node(n))


def drop_metadata_asserts(gm: torch.fx.GraphModule) -> None:
    """Removes aten._assert_tensor_metadata checks: they assert dtypes/devices the traced
    fake tensors already fix, compute nothing, and would split kiln regions."""
    target = getattr(getattr(torch.ops.aten, "_assert_tensor_metadata", None), "default", None)
    if target is None:
        return
    for node in list(gm.graph.nodes):
        if node.op == "call_function" and node.target is target and not node.users:
            gm.graph.erase_node(node)


def partition(gm: torch.fx.GraphModule, forced_ops, min_block_size: int, require_full_compilation: bool):
    """Fuses every kiln-capable region of at least `min_block_size` compute nodes
    into a submodule named kiln_engine_N; returns the graph module and a report."""
    drop_metadata_asserts(gm)
    support = KilnSupport(normalize_ops(forced_ops))
    partitioner = CapabilityBasedPartitioner(gm, support, allows_single_node_partition=True, non_compute_ops=["operator.getitem"])
    proposed = partitioner.propose_partitions()
    kept, dropped = [], []
    for p in proposed:
        (kept if compute_node_count(p.nodes) >= min_block_size else dropped).append(p)
    unsupported = {n: r for n, r in support.reasons.items() if n.graph is gm.graph}
    if require_full_compilation:
        problems = [f"{n.name} ({op_name(n.target)}): {r}" for n, r in unsupported.items()
                    if n.target is not operator.getitem and not is_size_node(n)]
        problems += [f"a region of {compute_node_count(p.nodes)} nodes is below min_block_size={min_block_size}" for p in dropped]
        if problems:
            raise ValueError("require_full_compilation=True but parts of the module would run in PyTorch:\n  " + "\n  ".join(problems))
    kwargs = {"prefix": ENGINE_PREFIX}
    if "always_return_tuple" in inspect.signature(fuse_by_partitions).parameters:
        kwargs["always_return_tuple"] = True
    fused = fuse_by_partitions(gm, [p.nodes for p in kept], **kwargs) if kept else gm
    report = {
        "engines": len(kept),
        "below_min_block_size": len(dropped),
        "torch_ops": sorted({f"{op_name(n.target)}: {r}" for n, r in unsupported.items() if n.target is not operator.getitem}),
    }
    return fused, report
