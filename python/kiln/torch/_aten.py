"""Translations of ATen ops into kiln ops (see _translate.py for the registry)."""

from __future__ import annotations

import math
import operator

import torch
import torch.fx

from ._translate import Translator, fake, translates

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
    aten.atanh.default: "Atanh", aten.logical_not.default: "Not", aten.isnan.default: "IsNaN",
    aten.hardswish.default: "HardSwish", aten.clone.default: "Identity", aten.alias.default: "Identity",
    aten.lift_fresh_copy.default: "Identity", aten.detach.default: "Identity",
}


def _float_input(node):
    return None if fake(node.args[0]).dtype.is_floating_point or node.target in (aten.abs.default, aten.neg.default, aten.clone.default, aten.alias.default, aten.lift_fresh_copy.default, aten.detach.default, aten.sign.default, aten.logical_not.default) else "kiln computes this op on floating-point tensors only"


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


@translates(aten.scaled_dot_product_attention.default,
            check=lambda n: "attention with dropout" if (n.args[4] if len(n.args) > 4 else n.kwargs.get("dropout_p", 0.0)) else None)
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
    scores = tr.op1("MatMul", [tr.value(q), tr.op1("Transpose", [tr.value(k)], {"perm": perm})])
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
    return tr.op1("MatMul", [probs, tr.value(v)])


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
translates(aten.amax.default)(_reduce("ReduceMax"))
translates(aten.amin.default)(_reduce("ReduceMin"))


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


@translates(aten._adaptive_avg_pool2d.default, aten.adaptive_avg_pool2d.default,
            check=lambda n: None if list(n.args[1]) in ([1, 1], [1]) else "adaptive average pooling to a size other than 1x1")
def _adaptive_avg_pool(tr, node):
    return tr.op1("GlobalAveragePool", [tr.value(node.args[0])])


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


@translates(aten.slice.Tensor)
def _slice(tr, node):
    args = list(node.args) + [None] * 5
    x, dim, start, end, step = args[:5]
    dim = axis(dim or 0, rank(x))
    start = 0 if start is None else start
    end = 2**62 if end is None else end
    step = 1 if step is None else step
    to_tensor = lambda v: tr.ints([min(v, 2**62)]) if isinstance(v, int) else tr.sym_int(v)  # noqa: E731
    return tr.op1("Slice", [tr.value(x), to_tensor(start), to_tensor(end), tr.ints([dim]), tr.ints([step])])


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
