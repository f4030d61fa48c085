"""Translations of ATen ops into kiln ops (see _translate.py for the registry)."""

from __future__ import annotations

import math
import operator

import torch
import torch.fx

from ._translate import Translator, fake, gpu_floats_only, gpu_target, translates

aten = torch.ops.aten


def _overload(packet: str, name: str):
    """aten.packet.name, or None where this torch version lacks it."""
    return getattr(getattr(aten, packet, None), name, None)


def out_dtype(node) -> torch.dtype:
    v = fake(node)
    return v[0].dtype if isinstance(v, (list, tuple)) else v.dtype


def out_rank(node) -> int:
    v = fake(node)
    return (v[0] if isinstance(v, (list, tuple)) else v).dim()


def rank(arg) -> int:
    return fake(arg).dim()


def operand(tr: Translator, arg, dtype: torch.dtype) -> int:
    """A tensor node or Python scalar as a kiln value of `dtype`."""
    if isinstance(arg, torch.fx.Node) and isinstance(fake(arg), torch.SymInt):
        arg = fake(arg)  # a size PyTorch computed (sym_size): kiln reads it from the input shapes
    if isinstance(arg, torch.fx.Node):
        vid = tr.value(arg)
        return vid if fake(arg).dtype == dtype else tr.cast(vid, dtype)
    if isinstance(arg, torch.SymInt):
        vid = tr.op1("Reshape", [tr.sym_int(arg), tr.ints([])])
        return vid if dtype == torch.int64 else tr.cast(vid, dtype)
    return tr.const(arg, dtype)


def compute_dtype(*args) -> torch.dtype:
    """The dtype PyTorch computes a binary op in (type promotion with scalars)."""
    tensors = [fake(a) if isinstance(a, torch.fx.Node) else a for a in args]
    return torch.result_type(*tensors) if len(tensors) == 2 else tensors[0].dtype


def axis(dim: int, r: int) -> int:
    return dim + r if dim < 0 else dim


# --- elementwise -----------------------------------------------------------------------------

_UNARY = {
    aten.abs.default: "Abs", aten.neg.default: "Neg", aten.sqrt.default: "Sqrt", aten.reciprocal.default: "Reciprocal",
    aten.exp.default: "Exp", aten.log.default: "Log", aten.floor.default: "Floor", aten.ceil.default: "Ceil",
    aten.round.default: "Round", aten.sign.default: "Sign", aten.relu.default: "Relu", aten.sigmoid.default: "Sigmoid",
    aten.tanh.default: "Tanh", aten.erf.default: "Erf", aten.sin.default: "Sin", aten.cos.default: "Cos",
    aten.tan.default: "Tan", aten.asin.default: "Asin", aten.acos.default: "Acos", aten.atan.default: "Atan",
    aten.sinh.default: "Sinh", aten.cosh.default: "Cosh", aten.asinh.default: "Asinh", aten.acosh.default: "Acosh",
    aten.atanh.default: "Atanh", aten.isnan.default: "IsNaN",
    aten.hardswish.default: "HardSwish", aten.clone.default: "Identity", aten.alias.default: "Identity",
    aten.lift_fresh_copy.default: "Identity", aten.detach.default: "Identity",
}


def _float_input(node):
    return None if fake(node.args[0]).dtype.is_floating_point or node.target in (aten.abs.default, aten.neg.default, aten.clone.default, aten.alias.default, aten.lift_fresh_copy.default, aten.detach.default, aten.sign.default) else "kiln computes this op on floating-point tensors only"


@translates(*_UNARY, check=_float_input)
def _unary(tr: Translator, node):
    return tr.op1(_UNARY[node.target], [tr.value(node.args[0])])


@translates(aten.rsqrt.default)
def _rsqrt(tr, node):
    return tr.op1("Reciprocal", [tr.op1("Sqrt", [tr.value(node.args[0])])])


@translates(aten.silu.default)
def _silu(tr, node):
    x = tr.value(node.args[0])
    return tr.op1("Mul", [x, tr.op1("Sigmoid", [x])])


@translates(aten.gelu.default)
def _gelu(tr, node):
    approximate = node.kwargs.get("approximate", node.args[1] if len(node.args) > 1 else "none")
    return tr.op1("Gelu", [tr.value(node.args[0])], {"approximate": approximate})


@translates(aten.hardsigmoid.default)
def _hardsigmoid(tr, node):
    return tr.op1("HardSigmoid", [tr.value(node.args[0])], {"alpha": 1.0 / 6.0, "beta": 0.5})


@translates(aten.leaky_relu.default)
def _leaky_relu(tr, node):
    slope = node.args[1] if len(node.args) > 1 else node.kwargs.get("negative_slope", 0.01)
    return tr.op1("LeakyRelu", [tr.value(node.args[0])], {"alpha": float(slope)})


def _clamp_bounds(node):
    if node.target is aten.hardtanh.default:
        lo = node.args[1] if len(node.args) > 1 else -1.0
        hi = node.args[2] if len(node.args) > 2 else 1.0
    else:
        lo = node.args[1] if len(node.args) > 1 else node.kwargs.get("min")
        hi = node.args[2] if len(node.args) > 2 else node.kwargs.get("max")
    return lo, hi


@translates(aten.clamp.default, aten.hardtanh.default, aten.clamp.Tensor)
def _clamp(tr, node):
    dtype = out_dtype(node)
    lo, hi = _clamp_bounds(node)
    x = operand(tr, node.args[0], dtype)
    if any(isinstance(b, torch.fx.Node) and fake(b).dim() != 0 for b in (lo, hi)):
        # Bounds that are tensors (broadcast per element): Clip takes scalars only.
        if lo is not None:
            x = tr.op1("Max", [x, operand(tr, lo, dtype)])
        return x if hi is None else tr.op1("Min", [x, operand(tr, hi, dtype)])
    return tr.op1("Clip", [x, None if lo is None else operand(tr, lo, dtype), None if hi is None else operand(tr, hi, dtype)])


_BINARY = {
    aten.add.Tensor: "Add", aten.add.Scalar: "Add", aten.sub.Tensor: "Sub", aten.sub.Scalar: "Sub",
    aten.mul.Tensor: "Mul", aten.mul.Scalar: "Mul", aten.div.Tensor: "Div", aten.div.Scalar: "Div",
    aten.pow.Tensor_Scalar: "Pow", aten.pow.Tensor_Tensor: "Pow", aten.maximum.default: "Max",
    aten.minimum.default: "Min", aten.bitwise_and.Tensor: "And", aten.bitwise_or.Tensor: "Or",
    aten.logical_and.default: "And", aten.logical_or.default: "Or",
}


def _binary_check(node):
    if node.target in (aten.bitwise_and.Tensor, aten.bitwise_or.Tensor) and out_dtype(node) != torch.bool:
        return "kiln has bitwise and/or on bool tensors only"
    if node.target in (aten.div.Tensor, aten.div.Scalar) and not out_dtype(node).is_floating_point:
        return "integer true division"
    return None


@translates(*_BINARY, check=_binary_check)
def _binary(tr, node):
    dtype = out_dtype(node)
    kind = _BINARY[node.target]
    a, b = node.args[0], node.args[1]
    if kind == "Pow" and not isinstance(b, torch.fx.Node) and dtype.is_floating_point:
        x = operand(tr, a, dtype)
        if b == 2:
            return tr.op1("Mul", [x, x])
        if b == 0.5:
            return tr.op1("Sqrt", [x])
        if b == 1:
            return tr.op1("Identity", [x])
    bv = operand(tr, b, dtype)
    alpha = node.kwargs.get("alpha", 1)
    if alpha != 1:
        bv = tr.op1("Mul", [bv, tr.const(alpha, dtype)])
    return tr.op1(kind, [operand(tr, a, dtype), bv])


@translates(aten.rsub.Scalar)
def _rsub(tr, node):
    dtype = out_dtype(node)
    return tr.op1("Sub", [operand(tr, node.args[1], dtype), operand(tr, node.args[0], dtype)])


_COMPARE = {
    aten.eq.Tensor: ("Equal", False), aten.eq.Scalar: ("Equal", False), aten.ne.Tensor: ("Equal", True),
    aten.ne.Scalar: ("Equal", True), aten.lt.Tensor: ("Less", False), aten.lt.Scalar: ("Less", False),
    aten.le.Tensor: ("LessOrEqual", False), aten.le.Scalar: ("LessOrEqual", False),
    aten.gt.Tensor: ("Greater", False), aten.gt.Scalar: ("Greater", False),
    aten.ge.Tensor: ("GreaterOrEqual", False), aten.ge.Scalar: ("GreaterOrEqual", False),
}


@translates(*_COMPARE)
def _compare(tr, node):
    kind, negate = _COMPARE[node.target]
    dtype = compute_dtype(node.args[0], node.args[1])
    out = tr.op1(kind, [operand(tr, node.args[0], dtype), operand(tr, node.args[1], dtype)])
    return tr.op1("Not", [out]) if negate else out


@translates(aten.where.self, aten.where.ScalarOther, aten.where.ScalarSelf, aten.where.Scalar)
def _where(tr, node):
    dtype = out_dtype(node)
    cond = operand(tr, node.args[0], torch.bool)
    return tr.op1("Where", [cond, operand(tr, node.args[1], dtype), operand(tr, node.args[2], dtype)])


@translates(aten.masked_fill.Scalar, aten.masked_fill.Tensor)
def _masked_fill(tr, node):
    dtype = out_dtype(node)
    x = operand(tr, node.args[0], dtype)
    return tr.op1("Where", [operand(tr, node.args[1], torch.bool), operand(tr, node.args[2], dtype), x])


@translates(aten._to_copy.default, aten.to.dtype, _overload("_to_dim_order_copy", "default"),
            check=lambda n: None if fake(n).device == fake(n.args[0]).device else "a device copy")
def _to_copy(tr, node):
    x = tr.value(node.args[0])
    dtype = out_dtype(node)
    return x if fake(node.args[0]).dtype == dtype else tr.cast(x, dtype)


# --- linear algebra --------------------------------------------------------------------------


@translates(aten.mm.default, aten.bmm.default, aten.matmul.default)
def _matmul(tr, node):
    return tr.op1("MatMul", [tr.value(node.args[0]), tr.value(node.args[1])])


@translates(aten.addmm.default)
def _addmm(tr, node):
    bias, a, b = node.args[:3]
    beta, alpha = node.kwargs.get("beta", 1), node.kwargs.get("alpha", 1)
    dtype = out_dtype(node)
    product = tr.op1("MatMul", [tr.value(a), tr.value(b)])
    if alpha != 1:
        product = tr.op1("Mul", [product, tr.const(alpha, dtype)])
    bias_v = operand(tr, bias, dtype)
    if beta != 1:
        bias_v = tr.op1("Mul", [bias_v, tr.const(beta, dtype)])
    return tr.op1("Add", [product, bias_v])


@translates(aten.linear.default)
def _linear(tr, node):
    x, w = node.args[0], node.args[1]
    bias = node.args[2] if len(node.args) > 2 else None
    wt = tr.op1("Transpose", [tr.value(w)], {"perm": [1, 0]})
    y = tr.op1("MatMul", [tr.value(x), wt])
    return y if bias is None else tr.op1("Add", [y, tr.value(bias)])


def _conv_check(node):
    r = rank(node.args[0])
    return None if r in (3, 4, 5) else f"convolution of a rank-{r} input"


@translates(aten.convolution.default, check=_conv_check)
def _convolution(tr, node):
    x, w, bias, stride, padding, dilation, transposed, output_padding, groups = node.args[:9]
    spatial = rank(x) - 2
    expand = lambda v: list(v) * spatial if len(v) == 1 else list(v)  # noqa: E731
    pads = expand(padding)
    attrs = {"strides": expand(stride), "pads": pads + pads, "dilations": expand(dilation), "group": int(groups)}
    inputs = [tr.value(x), tr.value(w), None if bias is None else tr.value(bias)]
    if transposed:
        attrs["output_padding"] = expand(output_padding)
        return tr.op1("ConvTranspose", inputs, attrs)
    return tr.op1("Conv", inputs, attrs)


# --- normalization, softmax --------------------------------------------------------------------


def _only_first_output_used(node):
    for user in node.users:
        if user.target is not operator.getitem or user.args[1] != 0:
            return "only the first output of this op is supported (the statistics are used)"
    return None


@translates(aten.native_layer_norm.default, check=_only_first_output_used)
def _layer_norm(tr, node):
    x, normalized_shape, weight, bias, eps = node.args[:5]
    dtype = out_dtype(node)
    r = rank(x)
    n = len(normalized_shape)
    scale = tr.value(weight) if weight is not None else tr.const(1.0, dtype, tuple(normalized_shape))
    shift = tr.value(bias) if bias is not None else None
    out = tr.op1("LayerNormalization", [tr.value(x), scale, shift], {"axis": r - n, "epsilon": float(eps)})
    return (out, None, None)


@translates(aten._native_batch_norm_legit_no_training.default, check=_only_first_output_used)
def _batch_norm(tr, node):
    x, weight, bias, mean, var, momentum, eps = node.args[:7]
    dtype = out_dtype(node)
    channels = fake(x).shape[1]
    scale = tr.value(weight) if weight is not None else tr.const(1.0, dtype, (channels,))
    shift = tr.value(bias) if bias is not None else tr.const(0.0, dtype, (channels,))
    out = tr.op1("BatchNormalization", [tr.value(x), scale, shift, tr.value(mean), tr.value(var)], {"epsilon": float(eps)})
    return (out, None, None)


@translates(aten.native_group_norm.default, check=_only_first_output_used)
def _group_norm(tr, node):
    x, weight, bias, n, c, hw, groups, eps = node.args[:8]
    dtype = out_dtype(node)
    channels = fake(x).shape[1]
    scale = tr.value(weight) if weight is not None else tr.const(1.0, dtype, (channels,))
    shift = tr.value(bias) if bias is not None else tr.const(0.0, dtype, (channels,))
    out = tr.op1("GroupNormalization", [tr.value(x), scale, shift], {"num_groups": int(groups), "epsilon": float(eps)})
    return (out, None, None)


def _softmax_check(node):
    return "half-to-float softmax" if node.args[2] and fake(node.args[0]).dtype != out_dtype(node) else None


@translates(aten._softmax.default, aten._log_softmax.default, check=_softmax_check)
def _softmax(tr, node):
    kind = "Softmax" if node.target is aten._softmax.default else "LogSoftmax"
    return tr.op1(kind, [tr.value(node.args[0])], {"axis": int(node.args[1])})


@translates(aten.scaled_dot_product_attention.default, check=lambda n: _sdpa_check(n))  # noqa: PLW0108 (defined below)
def _sdpa(tr, node):
    q, k, v = node.args[:3]
    mask = node.args[3] if len(node.args) > 3 else node.kwargs.get("attn_mask")
    causal = node.args[5] if len(node.args) > 5 else node.kwargs.get("is_causal", False)
    scale = node.kwargs.get("scale", node.args[6] if len(node.args) > 6 else None)
    dtype = out_dtype(node)
    qf = fake(q)
    head = qf.shape[-1]
    if scale is None:
        scale = 1.0 / math.sqrt(head) if isinstance(head, int) else None
    r = rank(k)
    perm = list(range(r - 2)) + [r - 1, r - 2]
    kv, vv = tr.value(k), tr.value(v)
    gqa = node.kwargs.get("enable_gqa", node.args[7] if len(node.args) > 7 else False)
    if gqa and r >= 3 and fake(k).shape[-3] != qf.shape[-3]:
        kv, vv = _repeat_heads(tr, kv, k, qf.shape[-3]), _repeat_heads(tr, vv, v, qf.shape[-3])
    scores = tr.op1("MatMul", [tr.value(q), tr.op1("Transpose", [kv], {"perm": perm})])
    scores = tr.op1("Mul", [scores, tr.const(scale, dtype)])
    if causal:
        lq, lk = qf.shape[-2], fake(k).shape[-2]
        ones = tr.op1("ConstantOfShape", [tr.sizes([lq, lk])], {"value": _C_bool_tensor()})
        allowed = tr.op1("Trilu", [ones], {"upper": 0})
        scores = tr.op1("Where", [allowed, scores, tr.const(float("-inf"), dtype)])
    if mask is not None:
        if fake(mask).dtype == torch.bool:
            scores = tr.op1("Where", [tr.value(mask), scores, tr.const(float("-inf"), dtype)])
        else:
            scores = tr.op1("Add", [scores, operand(tr, mask, dtype)])
    probs = tr.op1("Softmax", [scores], {"axis": -1})
    return tr.op1("MatMul", [probs, vv])


def _repeat_heads(tr, vid, arg, heads):
    """[..., Hkv, S, D] -> [..., heads, S, D], each key/value head serving heads/Hkv query heads in turn."""
    shape = list(fake(arg).shape)
    groups = heads // shape[-3]
    r = len(shape)
    grown = tr.op1("Unsqueeze", [vid, tr.ints([r - 2])])
    grown = tr.op1("Expand", [grown, tr.sizes(shape[:-2] + [groups] + shape[-2:])])
    return tr.op1("Reshape", [grown, tr.sizes(shape[:-3] + [heads] + shape[-2:])])


def _sdpa_check(node):
    if node.args[4] if len(node.args) > 4 else node.kwargs.get("dropout_p", 0.0):
        return "attention with dropout"
    q, k = fake(node.args[0]), fake(node.args[1])
    scale = node.kwargs.get("scale", node.args[6] if len(node.args) > 6 else None)
    if scale is None and not isinstance(q.shape[-1], int):
        return "attention with a dynamic head size and no explicit scale"
    gqa = node.kwargs.get("enable_gqa", node.args[7] if len(node.args) > 7 else False)
    if gqa and q.dim() >= 3 and k.shape[-3] != q.shape[-3]:
        if not all(isinstance(h, int) for h in (q.shape[-3], k.shape[-3])):
            return "grouped-query attention with a dynamic head count"
    return None


def _C_bool_tensor():
    from ._translate import tensor_data

    return tensor_data(torch.ones(1, dtype=torch.bool))


# --- reductions --------------------------------------------------------------------------------


def _reduce(kind):
    def translate(tr, node):
        x = node.args[0]
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        keep = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
        r = rank(x)
        if dims is None or (isinstance(dims, (list, tuple)) and len(dims) == 0):
            dims = list(range(r))
        if isinstance(dims, int):
            dims = [dims]
        dtype = out_dtype(node)
        xv = operand(tr, x, dtype)
        return tr.op1(kind, [xv, tr.ints([axis(d, r) for d in dims])], {"keepdims": int(bool(keep))})

    return translate


translates(aten.mean.dim)(_reduce("ReduceMean"))
translates(aten.sum.dim_IntList)(_reduce("ReduceSum"))
translates(aten.amax.default, check=gpu_floats_only)(_reduce("ReduceMax"))
translates(aten.amin.default, check=gpu_floats_only)(_reduce("ReduceMin"))


@translates(aten.mean.default, aten.sum.default)
def _reduce_all(tr, node):
    kind = "ReduceMean" if node.target is aten.mean.default else "ReduceSum"
    dtype = out_dtype(node)
    return tr.op1(kind, [operand(tr, node.args[0], dtype), tr.ints(range(rank(node.args[0])))], {"keepdims": 0})


# --- pooling -----------------------------------------------------------------------------------


def _pool_check(node):
    if rank(node.args[0]) != 4:
        return "pooling of a non-4-D input"
    if node.target is aten.max_pool2d_with_indices.default:
        return _only_first_output_used(node)
    return None


@translates(aten.max_pool2d_with_indices.default, aten.max_pool2d.default, check=_pool_check)
def _max_pool(tr, node):
    args = list(node.args) + [None] * 6
    x, kernel, stride, padding, dilation, ceil_mode = args[:6]
    stride = list(stride) if stride else list(kernel)
    pad = list(padding) if padding else [0, 0]
    kernel, stride, pad = [k * 2 if len(k) == 1 else k for k in (list(kernel), stride, pad)]
    attrs = {"kernel_shape": kernel, "strides": stride, "pads": pad + pad, "ceil_mode": int(bool(ceil_mode))}
    if dilation:
        attrs["dilations"] = list(dilation) * (2 if len(dilation) == 1 else 1)
    out = tr.op1("MaxPool", [tr.value(x)], attrs)
    return (out, None) if node.target is aten.max_pool2d_with_indices.default else out


def _avg_pool_check(node):
    args = list(node.args) + [None] * 7
    if rank(node.args[0]) != 4:
        return "pooling of a non-4-D input"
    if args[6] is not None:
        return "avg_pool2d with divisor_override"
    return None


@translates(aten.avg_pool2d.default, check=_avg_pool_check)
def _avg_pool(tr, node):
    args = list(node.args) + [None] * 7
    x, kernel, stride, padding, ceil_mode, count_include_pad = args[:6]
    kernel = list(kernel) * (2 if len(kernel) == 1 else 1)
    stride = list(stride) * (2 if len(stride) == 1 else 1) if stride else kernel
    pad = list(padding) * (2 if len(padding or [0]) == 1 else 1) if padding else [0, 0]
    attrs = {"kernel_shape": kernel, "strides": stride, "pads": pad + pad, "ceil_mode": int(bool(ceil_mode)),
             "count_include_pad": int(True if count_include_pad is None else bool(count_include_pad))}
    return tr.op1("AveragePool", [tr.value(x)], attrs)


# --- shape and data movement ----------------------------------------------------------------------


@translates(aten.view.default, aten._unsafe_view.default, aten.reshape.default)
def _view(tr, node):
    return tr.op1("Reshape", [tr.value(node.args[0]), tr.sizes(list(fake(node).shape))])


@translates(aten.permute.default)
def _permute(tr, node):
    r = rank(node.args[0])
    return tr.op1("Transpose", [tr.value(node.args[0])], {"perm": [axis(d, r) for d in node.args[1]]})


@translates(aten.t.default, aten.transpose.int)
def _transpose(tr, node):
    r = rank(node.args[0])
    if r < 2:
        return tr.op1("Identity", [tr.value(node.args[0])])
    a, b = (0, 1) if node.target is aten.t.default else (axis(node.args[1], r), axis(node.args[2], r))
    perm = list(range(r))
    perm[a], perm[b] = perm[b], perm[a]
    return tr.op1("Transpose", [tr.value(node.args[0])], {"perm": perm})


@translates(aten.unsqueeze.default)
def _unsqueeze(tr, node):
    r = rank(node.args[0]) + 1
    return tr.op1("Unsqueeze", [tr.value(node.args[0]), tr.ints([axis(node.args[1], r)])])


@translates(aten.squeeze.dim, aten.squeeze.dims, aten.squeeze.default)
def _squeeze(tr, node):
    x = node.args[0]
    shape = fake(x).shape
    r = len(shape)
    if node.target is aten.squeeze.default:
        dims = [i for i, d in enumerate(shape) if d == 1]
    else:
        dims = node.args[1] if isinstance(node.args[1], (list, tuple)) else [node.args[1]]
        dims = [axis(d, r) for d in dims if shape[axis(d, r)] == 1]
    if not dims:
        return tr.op1("Identity", [tr.value(x)])
    return tr.op1("Squeeze", [tr.value(x), tr.ints(dims)])


@translates(aten.expand.default)
def _expand(tr, node):
    if list(fake(node.args[0]).shape) == list(fake(node).shape):  # matmul's decomposition expands to the same shape
        return tr.op1("Identity", [tr.value(node.args[0])])
    return tr.op1("Expand", [tr.value(node.args[0]), tr.sizes(list(fake(node).shape))])


@translates(aten.cat.default)
def _cat(tr, node):
    dtype = out_dtype(node)
    tensors = [t for t in node.args[0] if fake(t).numel() != 0 or fake(t).dim() > 1]
    dim = node.args[1] if len(node.args) > 1 else 0
    return tr.op1("Concat", [operand(tr, t, dtype) for t in tensors], {"axis": axis(dim, out_rank(node))})


def _slice_check(node):
    step = node.args[4] if len(node.args) > 4 else 1
    if gpu_target() and isinstance(step, (torch.fx.Node, torch.SymInt)):
        return "a slice with a symbolic step: the positions it gathers have a length kiln cannot derive from shapes"
    return None


@translates(aten.slice.Tensor, check=_slice_check)
def _slice(tr, node):
    args = list(node.args) + [None] * 5
    x, dim, start, end, step = (fake(a) if isinstance(a, torch.fx.Node) and i > 0 else a for i, a in enumerate(args[:5]))
    dim = axis(dim or 0, rank(x))
    start = 0 if start is None else start
    end = 2**62 if end is None else end
    step = 1 if step is None else step
    if isinstance(start, int) and isinstance(end, int):
        return tr.op1("Slice", [tr.value(x), tr.ints([start]), tr.ints([min(end, 2**62)]), tr.ints([dim]), tr.ints([step])])
    # Symbolic bounds: kiln's Slice needs constant ones, so gather the positions
    # start, start + step, ... (as many as PyTorch's output has) instead.
    n = fake(x).shape[dim]
    if isinstance(start, int) and start < 0:
        start = max(n + start, 0) if isinstance(n, int) else n + start
    count = fake(node).shape[dim]
    scalar = lambda v: tr.const(v, torch.int64) if isinstance(v, int) else tr.op1("Reshape", [tr.sym_int(v), tr.ints([])])  # noqa: E731
    positions = tr.op1("Range", [scalar(start), scalar(start + count * step), scalar(step)])
    return tr.op1("Gather", [tr.value(x), positions], {"axis": dim})


@translates(aten.select.int)
def _select(tr, node):
    x, dim, index = node.args[:3]
    index_v = tr.const(int(index), torch.int64) if isinstance(index, int) else operand(tr, index, torch.int64)
    return tr.op1("Gather", [tr.value(x), index_v], {"axis": axis(dim, rank(x))})


@translates(aten.index_select.default)
def _index_select(tr, node):
    x, dim, index = node.args[:3]
    return tr.op1("Gather", [tr.value(x), tr.value(index)], {"axis": axis(dim, rank(x))})


@translates(aten.embedding.default)
def _embedding(tr, node):
    return tr.op1("Gather", [tr.value(node.args[0]), tr.value(node.args[1])], {"axis": 0})


@translates(aten.split_with_sizes.default, aten.split.Tensor)
def _split(tr, node):
    x = node.args[0]
    r = rank(x)
    dim = axis(node.args[2] if len(node.args) > 2 else node.kwargs.get("dim", 0), r)
    sizes = [t.shape[dim] for t in fake(node)]
    if not all(isinstance(s, int) for s in sizes):
        parts = [tr.sym_int(s) if not isinstance(s, int) else tr.ints([s]) for s in sizes]
        split = tr.op1("Concat", parts, {"axis": 0})
    else:
        split = tr.ints(sizes)
    return tuple(tr.op("Split", [tr.value(x), split], {"axis": dim}, num_outputs=len(sizes)))


@translates(aten.constant_pad_nd.default)
def _pad(tr, node):
    x, pad = node.args[0], list(node.args[1])
    value = node.args[2] if len(node.args) > 2 else 0
    r = rank(x)
    begins, ends = [0] * r, [0] * r
    for i in range(len(pad) // 2):  # torch lists pads from the last dim backwards
        begins[r - 1 - i], ends[r - 1 - i] = pad[2 * i], pad[2 * i + 1]
    dtype = out_dtype(node)
    return tr.op1("Pad", [tr.value(x), tr.ints(begins + ends), tr.const(value, dtype)], {"mode": "constant"})


# --- more elementwise ----------------------------------------------------------------------------

LN2 = math.log(2.0)


def _float_only(node):
    return None if fake(node.args[0]).dtype.is_floating_point else "kiln computes this op on floating-point tensors only"


@translates(aten.log1p.default, aten.expm1.default, aten.log2.default, aten.exp2.default, aten.trunc.default,
            check=_float_only)
def _composite_unary(tr, node):
    dtype = out_dtype(node)
    x = tr.value(node.args[0])
    if node.target is aten.log1p.default:
        return tr.op1("Log", [tr.op1("Add", [x, tr.const(1.0, dtype)])])
    if node.target is aten.expm1.default:
        return tr.op1("Sub", [tr.op1("Exp", [x]), tr.const(1.0, dtype)])
    if node.target is aten.log2.default:
        return tr.op1("Mul", [tr.op1("Log", [x]), tr.const(1.0 / LN2, dtype)])
    if node.target is aten.exp2.default:
        return tr.op1("Pow", [tr.const(2.0, dtype), x])
    return _trunc(tr, x)  # trunc


def _trunc(tr, x):
    return tr.op1("Mul", [tr.op1("Sign", [x]), tr.op1("Floor", [tr.op1("Abs", [x])])])


@translates(aten.isinf.default, check=_float_only)
def _isinf(tr, node):
    return tr.op1("IsInf", [tr.value(node.args[0])])


@translates(aten.elu.default, check=_float_only)
def _elu(tr, node):
    args = list(node.args) + [None] * 3
    alpha = 1.0 if args[1] is None else float(args[1])
    scale = float(node.kwargs.get("scale", 1.0 if args[2] is None else args[2]))
    input_scale = float(node.kwargs.get("input_scale", 1.0 if args[3] is None else args[3]))
    dtype = out_dtype(node)
    x = tr.value(node.args[0])
    if input_scale == 1.0:
        y = tr.op1("Elu", [x], {"alpha": alpha})
    else:  # scale * (x if x > 0 else alpha * (exp(input_scale * x) - 1))
        neg = tr.op1("Sub", [tr.op1("Exp", [tr.op1("Mul", [x, tr.const(input_scale, dtype)])]), tr.const(1.0, dtype)])
        neg = tr.op1("Mul", [neg, tr.const(alpha, dtype)])
        y = tr.op1("Where", [tr.op1("Greater", [x, tr.const(0.0, dtype)]), x, neg])
    return y if scale == 1.0 else tr.op1("Mul", [y, tr.const(scale, dtype)])


def _bool_or_int(node):
    dtype = out_dtype(node)
    if dtype == torch.bool or (node.target is aten.bitwise_not.default and not dtype.is_floating_point):
        return None
    return "kiln has bitwise xor on bool tensors only"


@translates(aten.bitwise_not.default, aten.bitwise_xor.Tensor, check=_bool_or_int)
def _bitwise(tr, node):
    dtype = out_dtype(node)
    if node.target is aten.bitwise_xor.Tensor:
        return tr.op1("Xor", [operand(tr, node.args[0], dtype), operand(tr, node.args[1], dtype)])
    x = tr.value(node.args[0])
    if dtype == torch.bool:
        return tr.op1("Not", [x])
    return tr.op1("Sub", [tr.op1("Neg", [x]), tr.const(1, dtype)])  # two's complement: ~x == -x - 1


@translates(aten.logical_not.default)
def _logical_not(tr, node):
    return tr.op1("Not", [_truth(tr, node.args[0])])


@translates(aten.logical_xor.default)
def _logical_xor(tr, node):
    a, b = (_truth(tr, arg) for arg in node.args[:2])
    return tr.op1("Xor", [a, b])


def _truth(tr, arg) -> int:
    """A tensor as bool (nonzero is true)."""
    if not isinstance(arg, torch.fx.Node):
        return tr.const(bool(arg), torch.bool)
    if fake(arg).dtype == torch.bool:
        return tr.value(arg)
    return tr.op1("Not", [tr.op1("Equal", [tr.value(arg), tr.const(0, fake(arg).dtype)])])


@translates(aten.remainder.Scalar, aten.remainder.Tensor, aten.fmod.Scalar, aten.fmod.Tensor)
def _mod(tr, node):
    dtype = out_dtype(node)
    fmod = int(node.target in (aten.fmod.Scalar, aten.fmod.Tensor))
    return tr.op1("Mod", [operand(tr, node.args[0], dtype), operand(tr, node.args[1], dtype)], {"fmod": fmod})


def _div_mode_check(node):
    mode = node.kwargs.get("rounding_mode", node.args[2] if len(node.args) > 2 else None)
    return None if mode in (None, "trunc", "floor") else f"rounding mode {mode!r}"


@translates(aten.div.Tensor_mode, aten.div.Scalar_mode, check=_div_mode_check)
def _div_mode(tr, node):
    mode = node.kwargs.get("rounding_mode", node.args[2] if len(node.args) > 2 else None)
    dtype = out_dtype(node)
    a, b = operand(tr, node.args[0], dtype), operand(tr, node.args[1], dtype)
    if dtype.is_floating_point:
        q = tr.op1("Div", [a, b])
        return q if mode is None else tr.op1("Floor", [q]) if mode == "floor" else _trunc(tr, q)
    if mode == "floor":  # (a - a mod b) / b divides exactly; Mod (fmod=0) takes the divisor's sign
        a = tr.op1("Sub", [a, tr.op1("Mod", [a, b], {"fmod": 0})])
    return tr.op1("Div", [a, b])  # integer Div truncates


# --- constants and index ranges -------------------------------------------------------------------

_SMALL_CONSTANT = 4096  # elements; larger fills are made at run time by ConstantOfShape


def _filled(tr, value, dtype, shape) -> int:
    shape = list(shape)
    if all(isinstance(d, int) for d in shape) and math.prod(shape) <= _SMALL_CONSTANT:
        return tr.const(value, dtype, tuple(shape))
    from ._translate import tensor_data

    return tr.op1("ConstantOfShape", [tr.sizes(shape)], {"value": tensor_data(torch.full((1,), value, dtype=dtype))})


def _scalar_value(v):
    return v.item() if isinstance(v, torch.Tensor) else v


def _const_fill_check(node):
    value = node.args[1] if node.target is not aten.scalar_tensor.default else node.args[0]
    return "a fill value computed at run time" if isinstance(value, (torch.fx.Node, torch.SymInt, torch.SymFloat)) else None


@translates(aten.full.default, aten.full_like.default, aten.scalar_tensor.default, check=_const_fill_check)
def _full(tr, node):
    value = node.args[0] if node.target is aten.scalar_tensor.default else node.args[1]
    return _filled(tr, _scalar_value(value), out_dtype(node), fake(node).shape)


def _arange_args(node):
    args = list(node.args)
    if node.target is aten.arange.default:
        return 0, args[0], 1
    if node.target is aten.arange.start:
        return args[0], args[1], 1
    return args[0], args[1], args[2] if len(args) > 2 else node.kwargs.get("step", 1)


def _arange_check(node):
    args = _arange_args(node)
    if any(isinstance(a, torch.fx.Node) and not isinstance(fake(a), torch.SymInt) for a in args):
        return "arange bounds computed from tensors"
    # kiln derives the length of a range over integers (symbolic or not) with a
    # constant step from shapes; any other length depends on data, which GPU
    # plans cannot hold.
    values = [fake(a) if isinstance(a, torch.fx.Node) else a for a in args]
    symbolic = any(isinstance(a, torch.fx.Node) for a in args)
    if gpu_target() and symbolic and not (_integral(values) and isinstance(args[2], int)):
        return "arange with symbolic bounds that are not integers or a symbolic step has a data-dependent length"
    return None


def _integral(values):
    return all(isinstance(v, (int, torch.SymInt)) and not isinstance(v, bool) for v in values)


@translates(aten.arange.start_step, aten.arange.start, aten.arange.default, check=_arange_check)
def _arange(tr, node):
    start, end, step = (fake(a) if isinstance(a, torch.fx.Node) else a for a in _arange_args(node))
    dtype = out_dtype(node)
    if not any(isinstance(a, (torch.SymInt, torch.SymFloat)) for a in (start, end, step)):
        return tr.const_tensor(torch.arange(start, end, step, dtype=dtype))
    # Integer bounds make an int64 range (its length follows from shapes), cast after.
    range_dtype = dtype if dtype.is_floating_point and not _integral((start, end, step)) else torch.int64
    out = tr.op1("Range", [operand(tr, v, range_dtype) for v in (start, end, step)])
    return out if range_dtype == dtype else tr.cast(out, dtype)


# --- reductions, scans, selection ---------------------------------------------------------------------


def _dims_of(node, position=1, default=None):
    dims = node.args[position] if len(node.args) > position else node.kwargs.get("dim", default)
    r = rank(node.args[0])
    if dims is None or (isinstance(dims, (list, tuple)) and len(dims) == 0):
        return list(range(r))
    if isinstance(dims, int):
        dims = [dims]
    return sorted(axis(d, r) for d in dims)


@translates(aten.var.correction, aten.var_mean.correction, check=_float_only)
def _var(tr, node):
    x = node.args[0]
    dims = _dims_of(node)
    correction = node.kwargs.get("correction", 1)
    correction = 1 if correction is None else correction
    keep = bool(node.kwargs.get("keepdim", False))
    dtype = out_dtype(node)
    xv = tr.value(x)
    axes = tr.ints(dims)
    mean = tr.op1("ReduceMean", [xv, axes], {"keepdims": 1})
    d = tr.op1("Sub", [xv, mean])
    sq = tr.op1("ReduceSum", [tr.op1("Mul", [d, d]), axes], {"keepdims": int(keep)})
    shape = fake(x).shape
    count = 1
    for i in dims:
        count = count * shape[i]
    denominator = count - correction
    if isinstance(denominator, (int, float)):
        denominator = tr.const(float(max(denominator, 0)), dtype)
    else:
        denominator = tr.cast(tr.op1("Reshape", [tr.sym_int(denominator), tr.ints([])]), dtype)
    var = tr.op1("Div", [sq, denominator])
    if node.target is aten.var.correction:
        return var
    return (var, mean if keep else tr.op1("ReduceMean", [xv, axes], {"keepdims": 0}))


translates(aten.prod.dim_int, check=gpu_floats_only)(_reduce("ReduceProd"))


@translates(aten.max.default, aten.min.default, check=gpu_floats_only)
def _reduce_all_extreme(tr, node):
    kind = "ReduceMax" if node.target is aten.max.default else "ReduceMin"
    return tr.op1(kind, [tr.value(node.args[0]), tr.ints(range(rank(node.args[0])))], {"keepdims": 0})


@translates(aten.any.dim, aten.any.dims, aten.any.default)
def _any(tr, node):
    x = tr.cast(_truth(tr, node.args[0]), torch.float32)  # kiln's GPU reductions take floats
    dims = _dims_of(node)
    keep = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
    out = tr.op1("ReduceMax", [x, tr.ints(dims)], {"keepdims": int(bool(keep))})
    return tr.cast(out, torch.bool)


@translates(aten.max.dim, aten.min.dim, check=gpu_floats_only)
def _max_dim(tr, node):
    x = node.args[0]
    dim = axis(node.args[1], rank(x))
    keep = int(bool(node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)))
    is_max = node.target is aten.max.dim
    xv = tr.value(x)
    values = tr.op1("ReduceMax" if is_max else "ReduceMin", [xv, tr.ints([dim])], {"keepdims": keep})
    indices = tr.op1("ArgMax" if is_max else "ArgMin", [xv], {"axis": dim, "keepdims": keep})
    return (values, indices)


@translates(aten.argmax.default, aten.argmin.default, check=gpu_floats_only)
def _argmax(tr, node):
    x = node.args[0]
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    keep = bool(node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False))
    kind = "ArgMax" if node.target is aten.argmax.default else "ArgMin"
    xv = tr.value(x)
    if dim is None:  # over the flattened tensor
        flat = tr.op1("Reshape", [xv, tr.ints([-1])])
        out = tr.op1(kind, [flat], {"axis": 0, "keepdims": 0})
        return tr.op1("Reshape", [out, tr.ints([1] * rank(x) if keep else [])])
    return tr.op1(kind, [xv], {"axis": axis(dim, rank(x)), "keepdims": int(keep)})


@translates(aten.cumsum.default, check=gpu_floats_only)
def _cumsum(tr, node):
    x = node.args[0]
    dtype = out_dtype(node)
    return tr.op1("CumSum", [operand(tr, x, dtype), tr.const(axis(node.args[1], rank(x)), torch.int64)])


def _topk_check(node):
    if gpu_target():
        return "kiln's GPU runtime has no TopK kernel yet"
    if node.target is aten.topk.default:
        args = list(node.args) + [None] * 5
        if args[4] is False or node.kwargs.get("sorted") is False:
            return "topk(sorted=False): PyTorch's order is unspecified"
        if isinstance(args[1], (torch.fx.Node, torch.SymInt)):
            return "topk with k computed at run time"
    return None


@translates(aten.topk.default, aten.sort.default, aten.sort.stable, check=_topk_check)
def _topk(tr, node):
    x = node.args[0]
    r = rank(x)
    if node.target is aten.topk.default:
        args = list(node.args) + [None] * 5
        k = args[1]
        dim = axis(-1 if args[2] is None else args[2], r)
        dim = axis(node.kwargs.get("dim", dim), r)
        largest = node.kwargs.get("largest", True if args[3] is None else args[3])
        kv = tr.ints([k])
    else:  # sort: TopK's sort is stable (equal values keep their order), as sort(stable=True) asks
        if node.target is aten.sort.stable:
            dim, largest = node.kwargs.get("dim", -1), node.kwargs.get("descending", False)
        else:
            dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", -1)
            largest = node.args[2] if len(node.args) > 2 else node.kwargs.get("descending", False)
        dim, largest = axis(dim, r), bool(largest)
        kv = tr.sizes([fake(x).shape[dim]])
    values, indices = tr.op("TopK", [tr.value(x), kv], {"axis": dim, "largest": int(bool(largest)), "sorted": 1}, num_outputs=2)
    return (values, indices)


# --- normalization without statistics (instance norm) -----------------------------------------------


@translates(aten._native_batch_norm_legit.no_stats, check=_only_first_output_used)
def _batch_norm_no_stats(tr, node):
    x, weight, bias = node.args[:3]
    eps = node.args[5] if len(node.args) > 5 else node.kwargs.get("eps", 1e-5)
    dtype = out_dtype(node)
    r = rank(x)
    xv = tr.value(x)
    axes = tr.ints([0] + list(range(2, r)))
    d = tr.op1("Sub", [xv, tr.op1("ReduceMean", [xv, axes], {"keepdims": 1})])
    var = tr.op1("ReduceMean", [tr.op1("Mul", [d, d]), axes], {"keepdims": 1})
    y = tr.op1("Div", [d, tr.op1("Sqrt", [tr.op1("Add", [var, tr.const(float(eps), dtype)])])])
    per_channel = [-1] + [1] * (r - 2)
    if weight is not None:
        y = tr.op1("Mul", [y, tr.op1("Reshape", [tr.value(weight), tr.ints(per_channel)])])
    if bias is not None:
        y = tr.op1("Add", [y, tr.op1("Reshape", [tr.value(bias), tr.ints(per_channel)])])
    return (y, None, None)


# --- resampling ----------------------------------------------------------------------------------------


def _upsample_params(node):
    """(output size or None, scales or None, align_corners) of an upsample node."""
    args = list(node.args) + [None] * 5
    bilinear = "bilinear" in node.target.name()
    if node.target.name().endswith(".vec"):
        size = args[1]
        align = args[2] if bilinear else False
        scales = args[3] if bilinear else args[2]
        return size, scales, bool(align)
    if bilinear:
        align, scales = args[2], [args[3], args[4]]
    else:
        align, scales = False, [args[2], args[3]]
    return args[1], (None if any(s is None for s in scales) else scales), bool(align)


def _upsample_check(node):
    if rank(node.args[0]) != 4:
        return "upsampling of a non-4-D input"
    return None


@translates(aten.upsample_nearest2d.vec, aten.upsample_nearest2d.default, aten.upsample_bilinear2d.vec,
            aten.upsample_bilinear2d.default, check=_upsample_check)
def _upsample(tr, node):
    x = node.args[0]
    size, scales, align = _upsample_params(node)
    linear = "bilinear" in node.target.name()
    attrs = {"mode": "linear" if linear else "nearest"}
    if linear:
        attrs["coordinate_transformation_mode"] = "align_corners" if align else "pytorch_half_pixel"
    else:
        attrs.update(coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    out_shape = list(fake(node).shape)
    if scales is not None and not align:  # PyTorch maps coordinates with the given scales
        scale_v = tr.const_tensor(torch.tensor([1.0, 1.0] + [float(s) for s in scales], dtype=torch.float32))
        return tr.op1("Resize", [tr.value(x), None, scale_v], attrs)
    return tr.op1("Resize", [tr.value(x), None, None, tr.sizes(out_shape)], attrs)


@translates(aten._adaptive_avg_pool2d.default, aten.adaptive_avg_pool2d.default,
            check=lambda n: _adaptive_check(n))  # noqa: PLW0108 (defined below)
def _adaptive_avg_pool(tr, node):
    out = list(node.args[1]) * (2 if len(node.args[1]) == 1 else 1)
    if out == [1, 1]:
        return tr.op1("GlobalAveragePool", [tr.value(node.args[0])])
    h, w = fake(node.args[0]).shape[-2:]
    kernel = [h // out[0], w // out[1]]
    return tr.op1("AveragePool", [tr.value(node.args[0])], {"kernel_shape": kernel, "strides": kernel})


def _adaptive_check(node):
    out = list(node.args[1]) * (2 if len(node.args[1]) == 1 else 1)
    if rank(node.args[0]) != 4:
        return "adaptive pooling of a non-4-D input"
    if out == [1, 1]:
        return None
    h, w = fake(node.args[0]).shape[-2:]
    if not all(isinstance(v, int) for v in (h, w, *out)) or h % out[0] or w % out[1]:
        return "adaptive average pooling to a size that does not divide the input"
    return None


# --- data movement --------------------------------------------------------------------------------------


@translates(aten.flip.default)
def _flip(tr, node):
    x = node.args[0]
    r = rank(x)
    dims = sorted({axis(d, r) for d in node.args[1]})
    if not dims:
        return tr.op1("Identity", [tr.value(x)])
    n = len(dims)
    return tr.op1("Slice", [tr.value(x), tr.ints([-1] * n), tr.ints([-(2**62)] * n), tr.ints(dims), tr.ints([-1] * n)])


@translates(aten.repeat.default)
def _repeat(tr, node):
    x, repeats = node.args[0], list(node.args[1])
    xv = tr.value(x)
    shape = list(fake(x).shape)
    extra = len(repeats) - len(shape)
    if extra > 0:
        xv = tr.op1("Reshape", [xv, tr.sizes([1] * extra + shape)])
    return tr.op1("Tile", [xv, tr.ints(repeats)])


@translates(aten.gather.default)
def _gather(tr, node):
    x, dim, index = node.args[:3]
    return tr.op1("GatherElements", [tr.value(x), operand(tr, index, torch.int64)], {"axis": axis(dim, rank(x))})


def _index_check(node):
    indices = node.args[1]
    present = [t for t in indices if t is not None]
    if not present:
        return "index with no index tensors"
    for t in present:
        if not isinstance(t, torch.fx.Node):
            return "an index that is not a tensor"
        if fake(t).dtype in (torch.bool, torch.uint8):
            return "boolean-mask indexing (its output size depends on the data)"
        if fake(t).dtype not in (torch.int64, torch.int32):
            return f"index tensors of dtype {fake(t).dtype}"
    return None


@translates(aten.index.Tensor, check=_index_check)
def _index(tr, node):
    """x[i0, i1, ...] as one Gather: the indexed dims are flattened into one and the
    index tensors combined (with broadcasting) into a flat index."""
    x, indices = node.args[0], list(node.args[1])
    shape = list(fake(x).shape)
    r = len(shape)
    positions = [i for i, t in enumerate(indices) if t is not None]
    index_nodes = [indices[i] for i in positions]
    xv = tr.value(x)
    if positions != list(range(positions[0], positions[-1] + 1)):
        # Non-adjacent index tensors: PyTorch puts the broadcast index dims first.
        perm = positions + [i for i in range(r) if i not in positions]
        xv = tr.op1("Transpose", [xv], {"perm": perm})
        shape = [shape[p] for p in perm]
        positions = list(range(len(positions)))
    first, k = positions[0], len(positions)
    if k == 1:
        return tr.op1("Gather", [xv, operand(tr, index_nodes[0], torch.int64)], {"axis": first})
    dims = shape[first:first + k]
    flat = 1
    for d in dims:
        flat = flat * d
    xv = tr.op1("Reshape", [xv, tr.sizes(shape[:first] + [flat] + shape[first + k:])])
    linear = None
    for j, t in enumerate(index_nodes):
        iv = operand(tr, t, torch.int64)
        n = operand(tr, dims[j], torch.int64)
        iv = tr.op1("Where", [tr.op1("Less", [iv, tr.const(0, torch.int64)]), tr.op1("Add", [iv, n]), iv])
        stride = 1
        for d in dims[j + 1:]:
            stride = stride * d
        if not (isinstance(stride, int) and stride == 1):
            iv = tr.op1("Mul", [iv, operand(tr, stride, torch.int64)])
        linear = iv if linear is None else tr.op1("Add", [linear, iv])
    return tr.op1("Gather", [xv, linear], {"axis": first})


def _slice_positions(n: int, start, end, step) -> range:
    return range(n)[slice(start, end, step)]


def _slice_scatter_check(node):
    args = list(node.args) + [None] * 5
    x, _, dim, start, end, step = args[:6]
    d = axis(dim or 0, rank(x))
    if not isinstance(fake(x).shape[d], int):
        return "slice_scatter along a dynamic dim"
    if any(isinstance(v, (torch.fx.Node, torch.SymInt)) for v in (start, end, step)):
        return "slice_scatter with bounds computed at run time"
    return None


@translates(aten.slice_scatter.default, check=_slice_scatter_check)
def _slice_scatter(tr, node):
    """out = x with x[start:end:step] (along dim) replaced by src: Gather from concat(x, src)."""
    args = list(node.args) + [None] * 5
    x, src, dim, start, end, step = args[:6]
    dim = axis(dim or 0, rank(x))
    n = fake(x).shape[dim]
    start = node.kwargs.get("start", start)
    end = node.kwargs.get("end", end)
    step = node.kwargs.get("step", step) or 1
    positions = _slice_positions(n, start, min(end, 2**62) if isinstance(end, int) else end, step)
    index = list(range(n))
    for j, p in enumerate(positions):
        index[p] = n + j
    dtype = out_dtype(node)
    both = tr.op1("Concat", [tr.value(x), operand(tr, src, dtype)], {"axis": dim})
    return tr.op1("Gather", [both, tr.ints(index)], {"axis": dim})


def _as_strided_check(node):
    x = fake(node.args[0])
    size, stride = list(node.args[1]), list(node.args[2])
    offset = node.args[3] if len(node.args) > 3 else node.kwargs.get("storage_offset")
    if not all(isinstance(v, int) for v in size + stride + list(x.shape)) or not isinstance(offset or 0, int):
        return "as_strided with dynamic sizes"
    if not x.is_contiguous() or x.storage_offset() != 0:
        return "as_strided of a non-contiguous view"
    if math.prod(size) > (1 << 22):
        return "as_strided with more than 4M elements"
    if math.prod(size) and (offset or 0) + sum((s - 1) * st for s, st in zip(size, stride)) >= x.numel():
        return "as_strided reading past its input"
    return None


@translates(aten.as_strided.default, check=_as_strided_check)
def _as_strided(tr, node):
    x = node.args[0]
    xf = fake(x)
    size, stride = list(node.args[1]), list(node.args[2])
    offset = (node.args[3] if len(node.args) > 3 else node.kwargs.get("storage_offset")) or 0
    same = size == list(xf.shape) and offset == 0 and all(s == 1 or st == xst for s, st, xst in zip(size, stride, xf.stride()))
    if same:
        return tr.op1("Identity", [tr.value(x)])
    index = torch.as_strided(torch.arange(xf.numel(), dtype=torch.int64), size, stride, offset).contiguous()
    flat = tr.op1("Reshape", [tr.value(x), tr.ints([-1])])
    return tr.op1("Gather", [flat, tr.const_tensor(index)], {"axis": 0})


def _diagonal_check(node):
    x = fake(node.args[0])
    if not all(isinstance(d, int) for d in x.shape):
        return "diagonal of a tensor with dynamic sizes"
    return None


@translates(aten.diagonal.default, check=_diagonal_check)
def _diagonal(tr, node):
    """The diagonal as a Gather of flat positions row * n2 + col over the two dims moved last."""
    x = node.args[0]
    args = list(node.args) + [None] * 3
    offset = node.kwargs.get("offset", args[1] or 0)
    shape = list(fake(x).shape)
    r = len(shape)
    d1 = axis(node.kwargs.get("dim1", 0 if args[2] is None else args[2]), r)
    d2 = axis(node.kwargs.get("dim2", 1 if args[3] is None else args[3]), r)
    rest = [i for i in range(r) if i not in (d1, d2)]
    moved = tr.op1("Transpose", [tr.value(x)], {"perm": rest + [d1, d2]})
    n1, n2 = shape[d1], shape[d2]
    flat = tr.op1("Reshape", [moved, tr.ints([shape[i] for i in rest] + [n1 * n2])])
    rows = range(max(0, -offset), n1)
    index = [row * n2 + row + offset for row in rows if 0 <= row + offset < n2]
    return tr.op1("Gather", [flat, tr.ints(index)], {"axis": len(rest)})


@translates(_overload("logsumexp", "default"))
def _logsumexp(tr, node):
    x = node.args[0]
    dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", [])
    dims = [dims] if isinstance(dims, int) else list(dims) or list(range(rank(x)))
    keep = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
    return tr.op1("ReduceLogSumExp", [operand(tr, x, out_dtype(node)), tr.ints([axis(d, rank(x)) for d in dims])],
                  {"keepdims": int(bool(keep))})


def _vector_norm_check(node):
    order = node.args[1] if len(node.args) > 1 else node.kwargs.get("ord", 2)
    if order not in (1, 2, float("inf")):
        return f"vector norm of order {order}"
    if node.kwargs.get("dtype") is not None:
        return "vector norm with a dtype"
    return None


@translates(_overload("linalg_vector_norm", "default"), check=_vector_norm_check)
def _vector_norm(tr, node):
    x = node.args[0]
    order = node.args[1] if len(node.args) > 1 else node.kwargs.get("ord", 2)
    dims = node.args[2] if len(node.args) > 2 else node.kwargs.get("dim")
    keep = node.args[3] if len(node.args) > 3 else node.kwargs.get("keepdim", False)
    r = rank(x)
    dims = list(range(r)) if dims is None else [dims] if isinstance(dims, int) else list(dims)
    kind = {1: "ReduceL1", 2: "ReduceL2", float("inf"): "ReduceMax"}[order]
    xv = operand(tr, x, out_dtype(node))
    if order == float("inf"):
        xv = tr.op1("Abs", [xv])
    return tr.op1(kind, [xv, tr.ints([axis(d, r) for d in dims])], {"keepdims": int(bool(keep))})
