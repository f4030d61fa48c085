"""ONNX export of zoo models with the batch as a dynamic dim, so one kiln plan
covers batch 1 and 8 (kiln build --profile NAME:MIN/OPT/MAX).

Each zoo entry names its exporter, the one whose graph kiln can plan with a
symbolic batch (checked with `kiln build` on every zoo model):
- "torchscript" (torch.onnx.export dynamo=False, opset 17) for the CNNs,
  DistilBERT and the T5 encoder (the dynamo exporter cannot decompose T5's
  relative position buckets, and gives ConvNeXt a Range over the batch);
- "dynamo" (torch.export, opset 18) for ViT, Swin, BERT, GPT-2 and Llama: the
  TorchScript exporter writes their batch-sized Expand shapes through
  Where/Max of shape values, which kiln takes for data-dependent sizes.
"""
import torch

from .models import ZOO

OPSETS = {"torchscript": 17, "dynamo": 18}


def export(name, module, inputs, path, output="y"):
    """Writes module(*inputs.values()) as ONNX to path; dim 0 of every input and of the output is "batch"."""
    names = list(inputs)
    exporter = ZOO[name].exporter
    if exporter == "dynamo":
        # torch.export specializes dims of size 1: trace at batch 2.
        args = tuple(t.expand(2, *t.shape[1:]).contiguous() for t in inputs.values())
        batch = torch.export.Dim("batch", min=1, max=64)
        torch.onnx.export(module, args, path, input_names=names, output_names=[output], dynamo=True,
                          dynamic_shapes=tuple({0: batch} for _ in names), opset_version=OPSETS[exporter],
                          external_data=False)
    else:
        axes = {n: {0: "batch"} for n in names + [output]}
        # Not under no_grad: there nn.MultiheadAttention takes its fused fast path, which has no ONNX export.
        torch.onnx.export(module, tuple(inputs.values()), path, input_names=names, output_names=[output],
                          dynamic_axes=axes, opset_version=OPSETS[exporter], dynamo=False, do_constant_folding=True)
    return path


def profile(inputs, batches=(1, 8), opt=None):
    """{input: (min, opt, max) shapes} covering `batches` (opt: the smallest unless given)."""
    low, high = min(batches), max(batches)
    opt = low if opt is None else opt
    return {n: tuple((b,) + tuple(t.shape[1:]) for b in (low, opt, high)) for n, t in inputs.items()}


def profile_flags(inputs, batches=(1, 8), opt=None):
    """The same as `kiln build --profile` flags."""
    flags = []
    for n, shapes in profile(inputs, batches, opt).items():
        flags += ["--profile", f"{n}:" + "/".join("x".join(str(d) for d in s) for s in shapes)]
    return flags
