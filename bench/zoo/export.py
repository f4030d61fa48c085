"""ONNX export of zoo models with the batch as a dynamic dim, so one kiln plan
covers batch 1 and 8 (kiln build --profile NAME:MIN/OPT/MAX).

The TorchScript exporter (dynamo=False) at opset 17 exports every zoo family;
opset 17 is inside the range kiln reads (7-28) and has LayerNormalization.
"""
import torch

OPSET = 17


def export(module, inputs, path, output="y"):
    """Writes module(*inputs.values()) as ONNX to path; dim 0 of every input and of the output is "batch"."""
    names = list(inputs)
    axes = {n: {0: "batch"} for n in names + [output]}
    # Not under no_grad: there nn.MultiheadAttention (ViT) takes its fused fast path, which has no ONNX export.
    torch.onnx.export(module, tuple(inputs.values()), path, input_names=names, output_names=[output],
                      dynamic_axes=axes, opset_version=OPSET, dynamo=False, do_constant_folding=True)
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
