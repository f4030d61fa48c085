"""kiln.torch: one small module per translated ATen op (or op family), compiled whole
into kiln (require_full_compilation) and run on the CPU reference interpreter,
compared with PyTorch eager."""

from __future__ import annotations

import math
import operator

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import kiln.torch as kt  # noqa: E402
from kiln.torch import _compile  # noqa: E402
from kiln.torch._engine import call_engine  # noqa: E402
from kiln.torch._translate import REGISTRY  # noqa: E402

aten = torch.ops.aten
G = torch.Generator().manual_seed(1234)


def randn(*shape, dtype=torch.float32):
    return torch.randn(*shape, generator=G).to(dtype)


def positive(*shape):
    return torch.rand(*shape, generator=G) + 0.5


def unit(*shape):  # in (-0.9, 0.9)
    return torch.rand(*shape, generator=G) * 1.8 - 0.9


def distinct(*shape):  # no ties (argmax, topk, sort, max.dim)
    n = math.prod(shape)
    return (torch.randperm(n, generator=G).float() / n - 0.5).reshape(shape)


def ints(*shape, high=5):
    return torch.randint(0, high, shape, generator=G)


class _Fn(torch.nn.Module):
    def __init__(self, fn, params=None):
        super().__init__()
        self.fn = fn
        for name, value in (params or {}).items():
            self.register_buffer(name, value)


class _Fn1(_Fn):
    def forward(self, a):
        return self.fn(self, a)


class _Fn2(_Fn):
    def forward(self, a, b):
        return self.fn(self, a, b)


class _Fn3(_Fn):
    def forward(self, a, b, c):
        return self.fn(self, a, b, c)


class _Fn4(_Fn):
    def forward(self, a, b, c, d):
        return self.fn(self, a, b, c, d)


def Fn(fn, params, arity):  # noqa: N802 - a module class by arity (torch.export wants named arguments)
    return (_Fn1, _Fn2, _Fn3, _Fn4)[arity - 1](fn, params)


# ATen overloads each case's exported graph holds (case id -> set), for the coverage test.
EXERCISED: dict[str, set] = {}


def graph_ops(module, inputs) -> set:
    gm = _compile.export(module, inputs, "cpu")
    return {n.target for n in gm.graph.nodes if n.op == "call_function" and n.target in REGISTRY}


def assert_close(actual, expected, tol):
    if isinstance(expected, (tuple, list)):
        assert len(actual) == len(expected)
        for a, e in zip(actual, expected):
            assert_close(a, e, tol)
        return
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    if not expected.dtype.is_floating_point:
        assert torch.equal(actual, expected), (actual, expected)
        return
    a, e = actual.double(), expected.double()
    assert torch.equal(torch.isnan(a), torch.isnan(e)) and torch.equal(torch.isinf(a), torch.isinf(e))
    finite = torch.isfinite(e)
    if finite.any():
        scale = max(e[finite].abs().max().item(), 1e-6)
        err = (a[finite] - e[finite]).abs().max().item()
        assert err <= tol * scale, f"max error {err:.3g} > {tol} * {scale:.3g}"


def has_engine(compiled) -> bool:
    return any(n.op == "call_function" and n.target is call_engine for n in compiled.graph.nodes)


def run_case(case_id, fn, inputs, params=None, tol=1e-5, specs=None, sizes=None):
    """Compiles fn whole into kiln; compares with eager on `inputs` (and, for dynamic
    specs, on inputs made at every shape in `sizes`)."""
    specs = specs or inputs
    module = Fn(fn, params, len(specs)).eval()
    export = _compile.export

    def recording_export(*args):  # notes the ops compile's exported graph holds
        gm = export(*args)
        EXERCISED[case_id] = {n.target for n in gm.graph.nodes if n.op == "call_function" and n.target in REGISTRY}
        return gm

    _compile.export = recording_export
    try:
        compiled = kt.compile(module, specs, device="cpu", min_block_size=1, require_full_compilation=True)
    finally:
        _compile.export = export
    assert has_engine(compiled), compiled.code
    assert not compiled.has_torch_segments, compiled.code
    runs = [inputs] + [make(size) for make, size in sizes or []]
    for xs in runs:
        with torch.no_grad():
            expected = module(*xs)
            actual = compiled(*xs)
        assert_close(actual, expected, tol)


def case(case_id, fn, *inputs, params=None, tol=1e-5):
    return pytest.param(case_id, fn, list(inputs), params, tol, id=case_id)


x45 = lambda: randn(4, 5)  # noqa: E731
x345 = lambda: randn(3, 4, 5)  # noqa: E731
img = lambda: randn(2, 3, 6, 8)  # noqa: E731

CASES = [
    # --- elementwise unary
    *[case(f"unary-{name}", lambda m, x, f=f: f(x), make()) for name, f, make in [
        ("abs", torch.abs, x45), ("neg", torch.neg, x45), ("sqrt", torch.sqrt, lambda: positive(4, 5)),
        ("reciprocal", torch.reciprocal, lambda: positive(4, 5)), ("exp", torch.exp, x45),
        ("log", torch.log, lambda: positive(4, 5)), ("floor", torch.floor, lambda: randn(4, 5) * 3),
        ("ceil", torch.ceil, lambda: randn(4, 5) * 3), ("round", torch.round, lambda: randn(4, 5) * 3),
        ("sign", torch.sign, x45), ("relu", torch.relu, x45), ("sigmoid", torch.sigmoid, x45),
        ("tanh", torch.tanh, x45), ("erf", torch.erf, x45), ("sin", torch.sin, x45), ("cos", torch.cos, x45),
        ("tan", torch.tan, lambda: unit(4, 5)), ("asin", torch.asin, lambda: unit(4, 5)),
        ("acos", torch.acos, lambda: unit(4, 5)), ("atan", torch.atan, x45), ("sinh", torch.sinh, x45),
        ("cosh", torch.cosh, x45), ("asinh", torch.asinh, x45), ("acosh", torch.acosh, lambda: positive(4, 5) + 1),
        ("atanh", torch.atanh, lambda: unit(4, 5)), ("hardswish", F.hardswish, lambda: randn(4, 5) * 4),
        ("rsqrt", torch.rsqrt, lambda: positive(4, 5)), ("silu", F.silu, x45),
        ("gelu", F.gelu, x45), ("gelu-tanh", lambda x: F.gelu(x, approximate="tanh"), x45),
        ("hardsigmoid", F.hardsigmoid, lambda: randn(4, 5) * 4), ("leaky-relu", lambda x: F.leaky_relu(x, 0.2), x45),
        ("relu6", F.relu6, lambda: randn(4, 5) * 5), ("hardtanh", lambda x: F.hardtanh(x, -0.5, 0.7), x45),
        ("log1p", torch.log1p, lambda: positive(4, 5)), ("expm1", torch.expm1, x45),
        ("log2", torch.log2, lambda: positive(4, 5)), ("exp2", torch.exp2, x45),
        ("trunc", torch.trunc, lambda: randn(4, 5) * 3), ("elu", F.elu, x45), ("selu", F.selu, x45),
        ("celu", lambda x: F.celu(x, 0.5), x45), ("softplus", lambda x: F.softplus(x, beta=2.0, threshold=3.0), x45),
        ("mish", F.mish, x45), ("logsigmoid", F.logsigmoid, x45), ("softsign", F.softsign, x45),
        ("square", torch.square, x45), ("clone", lambda x: x.t().contiguous() * 2, x45),
    ]],
    case("isnan-isinf", lambda m, x: torch.isnan(x) | torch.isinf(1.0 / x), torch.tensor([[1.0, float("nan"), 0.0, -2.0]])),
    case("logical-not", lambda m, x, i: (torch.logical_not(x > 0), torch.logical_not(x.round()), torch.logical_not(i)), x45(), ints(4, 5, high=3)),
    case("bitwise-not-bool", lambda m, x: ~(x > 0), x45()),
    case("bitwise-not-int", lambda m, x: ~x, ints(4, 5, high=100) - 50),
    case("bitwise-and-or-xor", lambda m, x: ((x > 0) & (x < 1)) | ((x < -1) ^ (x > -2)), x45()),
    case("logical-and-or-xor", lambda m, x: torch.logical_xor(torch.logical_and(x > 0, x < 1), torch.logical_or(x > 0.5, x < -1)), x45()),
    case("alias-lift-fresh", lambda m, x: x + torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]), x45()),
    # --- elementwise binary, scalars, dtypes
    case("add-sub-mul-div", lambda m, x, y: (x + y * 2) - x / (y.abs() + 1) * y, x45(), randn(5)),
    case("add-alpha", lambda m, x, y: torch.add(x, y, alpha=0.5) - torch.sub(x, y, alpha=3), x45(), x45()),
    case("scalar-ops", lambda m, x: 2.5 - (x * 3 + 1) / 4 + (1 - x), x45()),
    case("int-arith", lambda m, x, y: (x + y) * 3 - y, ints(4, 5), ints(5)),
    case("int-float-promotion", lambda m, x, y: x * y + 1, ints(4, 5), x45()),
    case("pow", lambda m, x, y: x ** 2 + x ** 3 + x.abs() ** 0.5 + x.abs() ** y + torch.pow(x, 1), x45(), positive(5)),
    case("maximum-minimum", lambda m, x, y: torch.maximum(x, y) + torch.minimum(x, y * 2), x45(), x45()),
    case("comparisons", lambda m, x, y: torch.stack([x == y, x != y, x < y, x <= 0.2, x > y, x >= -0.1, x != 0.5, x == 1.0, x <= y, x >= y, x < 0.3, x > 0.1]),
         torch.round(randn(4, 5)), torch.round(randn(4, 5))),
    case("where", lambda m, x, y: torch.where(x > 0, x, y) + torch.where(y > 0, 1.0, y) + torch.where(x < 0, x, 2.0), x45(), x45()),
    case("where-scalars", lambda m, x: torch.where(x > 0, 1.0, -1.0), x45()),
    case("masked-fill", lambda m, x: x.masked_fill(x > 0.5, -1.0).masked_fill(x < -1, float("-inf")), x45()),
    case("masked-fill-tensor", lambda m, x, v: x.masked_fill(x > 0, v), x45(), torch.tensor(3.0)),
    case("clamp", lambda m, x: torch.clamp(x, -0.5, 0.5) + torch.clamp_min(x, 0.1) + torch.clamp(x, max=0.2), x45()),
    case("clamp-tensor", lambda m, x, lo, hi: torch.clamp(x, lo, hi), x45(), -positive(5), positive(5)),
    case("remainder-fmod", lambda m, x, y: torch.remainder(x, 0.7) + torch.fmod(x, 0.6) + torch.remainder(x, y) + torch.fmod(x, y),
         randn(4, 5) * 3, positive(5)),
    case("remainder-int", lambda m, x: torch.remainder(x, 3) + torch.fmod(x, 4), ints(4, 5, high=20) - 10),
    case("floor-divide", lambda m, x, y: torch.floor_divide(x, 0.7) + torch.div(x, y, rounding_mode="trunc")
         + torch.div(x, y, rounding_mode="floor"), randn(4, 5) * 3, randn(5)),
    case("floor-divide-int", lambda m, x: torch.div(x, 3, rounding_mode="floor") * 100 + torch.div(x, -4, rounding_mode="trunc"),
         ints(4, 5, high=20) - 10),
    case("cast", lambda m, x: (x * 10).to(torch.int64) + x.to(torch.float16).float().long() + (x > 0).int().long(), x45()),
    case("lerp-addcmul", lambda m, x, y: torch.lerp(x, y, 0.3) + torch.addcmul(x, x, y, value=0.5), x45(), x45()),
    case("prelu-threshold", lambda m, x: F.prelu(x, torch.tensor([0.25])) + F.threshold(x, 0.1, 20.0), x45()),
    # --- linear algebra
    case("mm-addmm", lambda m, x, w: x @ w + torch.addmm(x[:, :3], x, w, beta=0.5, alpha=2.0), x45(), randn(5, 3)),
    case("bmm-matmul", lambda m, x, y: torch.bmm(x, y) + torch.matmul(x, y[0]), x345(), randn(3, 5, 2)),
    case("linear", lambda m, x: F.linear(x, m.w, m.b) + F.linear(x, m.w), x345(), params={"w": randn(6, 5), "b": randn(6)}),
    case("einsum", lambda m, x, y: torch.einsum("bij,bkj->bik", x, y), x345(), randn(3, 2, 5)),
    case("conv2d", lambda m, x: F.conv2d(x, m.w, m.b, stride=2, padding=1) + 0, img(), params={"w": randn(4, 3, 3, 3), "b": randn(4)}),
    case("conv2d-depthwise-dilated", lambda m, x: F.conv2d(x, m.w, None, padding=2, dilation=2, groups=3), img(),
         params={"w": randn(6, 1, 3, 3)}),
    case("conv1d", lambda m, x: F.conv1d(x, m.w, m.b, padding=1), randn(2, 3, 10), params={"w": randn(4, 3, 3), "b": randn(4)}),
    case("conv-transpose2d", lambda m, x: F.conv_transpose2d(x, m.w, m.b, stride=2, padding=1, output_padding=1), img(),
         params={"w": randn(3, 2, 3, 3), "b": randn(2)}),
    # --- normalization, softmax, attention
    case("layer-norm", lambda m, x: F.layer_norm(x, (5,), m.w, m.b, 1e-5) + F.layer_norm(x, (4, 5)), x345(),
         params={"w": randn(5), "b": randn(5)}),
    case("batch-norm", lambda m, x: F.batch_norm(x, m.mean, m.var, m.w, m.b, False, 0.1, 1e-5), img(),
         params={"mean": randn(3), "var": positive(3), "w": randn(3), "b": randn(3)}),
    case("group-norm", lambda m, x: F.group_norm(x, 2, m.w, m.b), randn(2, 4, 3, 5), params={"w": randn(4), "b": randn(4)}),
    case("instance-norm", lambda m, x: F.instance_norm(x, weight=m.w, bias=m.b), randn(2, 3, 4, 5),
         params={"w": randn(3), "b": randn(3)}),
    case("softmax", lambda m, x: F.softmax(x, -1) + F.softmax(x, 0) + F.log_softmax(x, 1), x345()),
    case("sdpa", lambda m, q, k, v: F.scaled_dot_product_attention(q, k, v), randn(2, 2, 4, 8), randn(2, 2, 6, 8), randn(2, 2, 6, 8)),
    case("sdpa-causal-scale", lambda m, q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.3),
         randn(2, 2, 5, 8), randn(2, 2, 5, 8), randn(2, 2, 5, 8)),
    case("sdpa-masks", lambda m, q, k, v, b: F.scaled_dot_product_attention(q, k, v, attn_mask=b)
         + F.scaled_dot_product_attention(q, k, v, attn_mask=b > -0.5), randn(2, 2, 4, 8), randn(2, 2, 6, 8), randn(2, 2, 6, 8),
         randn(4, 6)),
    case("sdpa-gqa", lambda m, q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True),
         randn(1, 4, 5, 8), randn(1, 2, 5, 8), randn(1, 2, 5, 8)),
    # --- reductions and scans
    case("sum-mean", lambda m, x: x.sum(1) + x.mean((0, 2), keepdim=True).sum() + x.mean() + x.sum(-1, keepdim=True).mean(1), x345()),
    case("sum-bool-int", lambda m, x, i: (x > 0).sum(1) + i.sum(-1), x345(), ints(3, 5, 4)),
    case("amax-amin", lambda m, x: (x.amax(-1), x.amin((0, 1), keepdim=True)), x345()),
    case("max-min-all", lambda m, x: x.max() - x.min(), x345()),
    case("max-min-dim", lambda m, x: (torch.max(x, 1), torch.min(x, -1, keepdim=True)), distinct(3, 4, 5)),
    case("argmax-argmin", lambda m, x: (x.argmax(-1), x.argmin(0, keepdim=True), x.argmax()), distinct(3, 4, 5)),
    case("prod", lambda m, x: x.prod(1) + x.prod(-1, keepdim=True).sum(), unit(3, 4, 5) + 1.5),
    case("var-std", lambda m, x: (x.var(-1), x.var((0, 2), keepdim=True, unbiased=False), x.std(1)), x345()),
    case("var-mean", lambda m, x: torch.var_mean(x, dim=1, correction=0) + torch.var_mean(x, -1, keepdim=True), x345()),
    case("logsumexp-norm", lambda m, x: torch.logsumexp(x, 1) + torch.linalg.vector_norm(x, dim=1) + F.normalize(x, dim=-1).sum(1), x345()),
    case("any-all", lambda m, x: ((x > 1).any(1), (x > -2).all(), (x > 0).any(), torch.count_nonzero(x > 0, 1)), x345()),
    case("cumsum", lambda m, x, i: (torch.cumsum(x, 1), torch.cumsum(x > 0, -1), torch.cumsum(i, 0)), x345(), ints(3, 4)),
    case("topk", lambda m, x: torch.topk(x, 2, -1) + torch.topk(x, 3, 1, largest=False), distinct(3, 4, 5)),
    case("sort", lambda m, x: torch.sort(x, 1) + torch.sort(x, -1, descending=True), distinct(3, 4, 5)),
    case("sort-stable-ties", lambda m, x: torch.sort(x, dim=1, stable=True) + torch.sort(x, stable=True, descending=True),
         ints(3, 4, 6, high=3).float()),
    # --- pooling, resampling
    case("max-pool", lambda m, x: F.max_pool2d(x, 3, 2, 1) + 0, img()),
    case("max-pool-ceil-dilated", lambda m, x: F.max_pool2d(x, 2, 2, ceil_mode=True) .sum() + F.max_pool2d(x, 2, 1, dilation=2).sum(), img()),
    case("max-pool1d", lambda m, x: F.max_pool1d(x, 2) * 1, randn(2, 3, 8)),
    case("avg-pool", lambda m, x: F.avg_pool2d(x, 3, 2, 1) + F.avg_pool2d(x, 2, count_include_pad=False, padding=1).mean(), img()),
    case("avg-pool1d", lambda m, x: F.avg_pool1d(x, 2), randn(2, 3, 8)),
    case("adaptive-avg-pool", lambda m, x: F.adaptive_avg_pool2d(x, 1).flatten(1) + F.adaptive_avg_pool2d(x, (3, 2)).flatten(1).sum(1, keepdim=True), img()),
    case("upsample-nearest", lambda m, x: F.interpolate(x, scale_factor=2, mode="nearest"), img()),
    case("upsample-nearest-size", lambda m, x: F.interpolate(x, size=(9, 11), mode="nearest"), img()),
    case("upsample-bilinear", lambda m, x: F.interpolate(x, scale_factor=2, mode="bilinear"), img()),
    case("upsample-bilinear-size", lambda m, x: F.interpolate(x, size=(5, 13), mode="bilinear"), img()),
    case("upsample-bilinear-align", lambda m, x: F.interpolate(x, size=(9, 11), mode="bilinear", align_corners=True), img()),
    case("pixel-shuffle", lambda m, x: F.pixel_shuffle(x, 2) + 0, randn(2, 8, 3, 4)),
    # --- data movement
    case("view-permute", lambda m, x: x.view(3, 20).t().reshape(4, 5, 3).permute(2, 0, 1).transpose(-1, 0) + 0, x345()),
    case("unsqueeze-squeeze", lambda m, x: x.unsqueeze(-1).unsqueeze(0).squeeze(0).squeeze(-1) + x[:, :1].squeeze() .sum() + 0, x345()),
    case("expand", lambda m, x: x[:, :1].expand(3, 4, 5) + x.unsqueeze(0).expand(2, -1, -1, -1).sum(0), x345()),
    case("cat-stack", lambda m, x, y: torch.cat([x, y], -1) + torch.stack([x, y], 0).sum(0).repeat(1, 1, 2), x345(), x345()),
    case("cat-mixed-dtypes", lambda m, x, i: torch.cat([x, i], 1), x45(), ints(4, 2)),
    case("slice", lambda m, x: x[:, 1:3, ::2] + x[1:, -3:-1, 1::2][:, :, :2].sum(0, keepdim=True).sum(-1, keepdim=True) + x[..., -1:].sum(), x345()),
    case("select-unbind", lambda m, x: x[:, 2] + x[-1] + torch.unbind(x, 2)[1], randn(4, 4, 4)),
    case("narrow-chunk-split", lambda m, x: (x.narrow(1, 1, 2), *torch.chunk(x, 2, -1), *torch.split(x, [1, 3], 1)), x345()),
    case("index-select", lambda m, x, i: torch.index_select(x, 1, i) + 0, x345(), torch.tensor([3, 0, 2, 2])),
    case("embedding", lambda m, i: F.embedding(i, m.w) + F.embedding(i, m.w, padding_idx=0), torch.tensor([[0, 2, 5], [1, 3, 5]]),
         params={"w": randn(6, 4)}),
    case("gather", lambda m, x, i: torch.gather(x, 1, i) + torch.gather(x, -1, torch.tensor([[[4], [0], [1], [2]]]).expand(3, 4, 1)),
         x345(), torch.tensor([[[0, 1, 2, 3, 0]], [[3, 3, 1, 0, 2]], [[2, 0, 0, 1, 3]]])),
    case("index-one", lambda m, x, i: (x[i], x[:, i]), x345(), torch.tensor([[2, -1], [0, 1]])),
    case("index-two-adjacent", lambda m, x, i, j: x[:, i, j], x345(), torch.tensor([[0], [3], [-1]]), torch.tensor([1, 4, -5])),
    case("index-non-adjacent", lambda m, x, i, j: x[i, :, j], x345(), torch.tensor([0, 2, -1]), torch.tensor([4, 0, 2])),
    case("index-table", lambda m, i: m.table[m.index].view(3, 3, -1).permute(2, 0, 1) * i.float().mean(),
         ints(2), params={"table": randn(5, 2), "index": torch.tensor([0, 1, 2, 3, 4, 0, 1, 2, 3])}),
    case("diagonal", lambda m, x: (torch.diagonal(x) + 0, torch.diagonal(x, 1, -1, 0), torch.diagonal(x, -2, 1, 2)), randn(4, 5, 6)),
    case("flip", lambda m, x: torch.flip(x, [0, -1]) + torch.flip(x, [1]), x345()),
    case("roll", lambda m, x: torch.roll(x, 1, 1) + torch.roll(x, (-2, 3), (0, 2)), x345()),
    case("repeat-tile", lambda m, x: (x.repeat(2, 1, 3), x.tile(3)), randn(4, 5)),
    case("pad", lambda m, x: F.pad(x, (1, 2)) .sum(-1) + F.pad(x, (0, 0, 2, 1), value=1.5)[:, 1:5].sum(-1), x345()),
    case("flatten-unflatten", lambda m, x: x.flatten(1).unflatten(1, (5, 4)) + 0, x345()),
    case("slice-scatter", lambda m, x, v: torch.slice_scatter(x, v, 1, 0, 4, 2) + torch.slice_scatter(x, v[:, :1] * 2, 1, -1), x345(),
         randn(3, 2, 5)),
    case("as-strided", lambda m, x: torch.as_strided(x.exp(), (3, 2, 2), (5, 1, 5)) + 0, x45()),
    case("swin-attention-mask", lambda m, x: swin_mask() + x, randn(4, 1, 4, 4)),
    # --- constants and ranges
    case("full-zeros-ones", lambda m, x: x + torch.zeros_like(x) + torch.ones_like(x) * 2 + torch.full_like(x, 3.0)
         + torch.zeros(5) + x.new_ones(4, 5) + torch.full((4, 1), 0.5), x45()),
    case("full-int-bool", lambda m, x: (x + torch.full_like(x, 7), torch.ones(3, dtype=torch.bool) & (x[0, :3] > 0)), ints(4, 5)),
    case("scalar-tensor", lambda m, x: torch.where(x > 0, torch.tensor(-100.0), x), x45()),
    case("arange", lambda m, x: x + torch.arange(5) + torch.arange(1, 6, 2).repeat(2)[:5] + torch.arange(0.5, 3.0, 0.5)[:5], x45()),
    case("tril-triu", lambda m, x: torch.tril(x) + torch.triu(x, 1) * 2 + torch.tril(x, -1), randn(2, 5, 5)),
    case("one-hot-like", lambda m, i: (i.unsqueeze(-1) == torch.arange(5)).long(), ints(2, 3)),
]


def swin_mask():
    mask = torch.zeros(8, 8)
    count = 0
    for h in ((0, -4), (-4, -2), (-2, None)):
        for w in ((0, -4), (-4, -2), (-2, None)):
            mask[h[0]:h[1], w[0]:w[1]] = count
            count += 1
    mask = mask.view(2, 4, 2, 4).permute(0, 2, 1, 3).reshape(4, 16)
    mask = mask.unsqueeze(1) - mask.unsqueeze(2)
    return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0).view(4, 1, 16, 16)[:, :, :4, :4]


@pytest.mark.parametrize("case_id,fn,inputs,params,tol", CASES)
def test_op(case_id, fn, inputs, params, tol):
    run_case(case_id, fn, inputs, params, tol)


# --- dynamic shapes: one engine built for a range, run at several sizes ------------------------------------


def dyn(shape_min, shape_opt, shape_max, dtype=torch.float32):
    return kt.Input(min_shape=shape_min, opt_shape=shape_opt, max_shape=shape_max, dtype=dtype)


DYNAMIC = [
    ("dyn-mlp-view", lambda m, x: F.gelu(F.linear(x, m.w, m.b)).view(x.shape[0], -1, 2).sum(-1),
     [dyn((1, 6), (4, 6), (16, 6))], {"w": randn(8, 6), "b": randn(8)}, lambda b: [randn(b, 6)], [1, 5, 16]),
    ("dyn-positions", lambda m, x: x + torch.arange(x.shape[1]).unsqueeze(-1).float() * 0.1,
     [dyn((2, 1, 4), (2, 6, 4), (2, 12, 4))], None, lambda s: [randn(2, s, 4)], [1, 7, 12]),
    ("dyn-full-like-var", lambda m, x: (torch.full_like(x, 2.0) * x.var(-1, keepdim=True), torch.var_mean(x, 0)),
     [dyn((1, 5), (3, 5), (9, 5))], None, lambda b: [randn(b, 5)], [2, 9]),
    ("dyn-index-cumsum", lambda m, x, i: (x[:, i].cumsum(1), x[i[1:2]]),
     [dyn((2, 6), (3, 6), (8, 6)), torch.tensor([5, 0, 2])], None, lambda b: [randn(b, 6), torch.tensor([5, 0, 2])], [2, 8]),
    ("dyn-causal-attention", lambda m, q: F.scaled_dot_product_attention(q, q * 0.5, q, is_causal=True),
     [dyn((1, 2, 1, 8), (1, 2, 5, 8), (1, 2, 16, 8))], None, lambda s: [randn(1, 2, s, 8)], [1, 3, 16]),
    ("dyn-flip-repeat-split", lambda m, x: (torch.flip(x, [0]), x.repeat(2, 1), *torch.split(x, [2, 4], 1), torch.cat([x, x], 0)),
     [dyn((1, 6), (4, 6), (8, 6))], None, lambda b: [randn(b, 6)], [1, 8]),
    ("dyn-softmax-argmax-topk", lambda m, x: (F.softmax(x, -1), x.argmax(0), torch.topk(x, 2, 1)),
     [dyn((1, 7), (4, 7), (8, 7))], None, lambda b: [distinct(b, 7)], [2, 8]),
    ("dyn-symbolic-slices", lambda m, x: (m.table[:, : x.shape[1]] + x, x[:, 1:] * 2, x[:, -x.shape[1] + 1:]),
     [dyn((2, 3), (2, 5), (2, 9))], {"table": randn(1, 9)}, lambda s: [randn(2, s)], [3, 4, 9]),
    ("dyn-upsample", lambda m, x: F.interpolate(x, scale_factor=2, mode="nearest"),
     [dyn((1, 2, 3, 4), (2, 2, 3, 4), (4, 2, 3, 4))], None, lambda b: [randn(b, 2, 3, 4)], [1, 4]),
]


@pytest.mark.parametrize("case_id,fn,specs,params,make,sizes", DYNAMIC, ids=[d[0] for d in DYNAMIC])
def test_dynamic_op(case_id, fn, specs, params, make, sizes):
    run_case(case_id, fn, make(sizes[0]), params, specs=specs, sizes=[(make, s) for s in sizes[1:]])


# --- half precision: the reference computes fp16/bf16 engines too ---------------------------------------------

HALF_CASES = [
    ("mlp", lambda m, x: F.linear(F.gelu(F.linear(x, m.w1, m.b1)), m.w2), lambda d: [randn(3, 8, dtype=d)],
     lambda d: {"w1": randn(16, 8, dtype=d), "b1": randn(16, dtype=d), "w2": randn(4, 16, dtype=d)}),
    ("layer-norm-softmax", lambda m, x: F.softmax(F.layer_norm(x, (8,), m.w, m.b), -1), lambda d: [randn(3, 4, 8, dtype=d)],
     lambda d: {"w": randn(8, dtype=d), "b": randn(8, dtype=d)}),
    ("conv-bn-relu-pool", lambda m, x: F.max_pool2d(F.relu(F.batch_norm(F.conv2d(x, m.w), m.mean, m.var, None, None, False)), 2),
     lambda d: [randn(1, 3, 8, 8, dtype=d)],
     lambda d: {"w": randn(4, 3, 3, 3, dtype=d), "mean": randn(4, dtype=d), "var": positive(4).to(d)}),
    ("reductions", lambda m, x: (x.mean(-1), x.var(1), x.amax(0), x.cumsum(1)), lambda d: [randn(3, 4, 5, dtype=d)], lambda d: {}),
    ("rms-norm-rope", lambda m, x: rms_rope(x), lambda d: [randn(1, 2, 6, 8, dtype=d)], lambda d: {}),
    ("attention", lambda m, q, k: F.scaled_dot_product_attention(q, k, k, is_causal=True),
     lambda d: [randn(1, 2, 5, 8, dtype=d), randn(1, 2, 5, 8, dtype=d)], lambda d: {}),
    ("upsample-where-index", lambda m, x: upsample_where_index(x, m.i),
     lambda d: [randn(1, 2, 3, 4, dtype=d)], lambda d: {"i": torch.tensor([0, 5, 2])}),
]


def upsample_where_index(x, i):
    up = F.interpolate(x, scale_factor=2)
    return torch.where(up > 0, up, -x.repeat(1, 1, 2, 2))[:, :, i]


def rms_rope(x):
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
    pos = torch.arange(x.shape[-2]).float()[:, None] * torch.arange(4).float()[None] * 0.3
    cos, sin = torch.cat([pos.cos()] * 2, -1).to(x.dtype), torch.cat([pos.sin()] * 2, -1).to(x.dtype)
    rotated = torch.cat([-x[..., 4:], x[..., :4]], -1)
    return x * cos + rotated * sin


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("case_id,fn,make,params", HALF_CASES, ids=[h[0] for h in HALF_CASES])
def test_half_precision_op(case_id, fn, make, params, dtype):
    run_case(f"{case_id}-{dtype}", fn, make(dtype), params(dtype), tol=2e-2)


# --- coverage --------------------------------------------------------------------------------------------------


def _raw_graph(target, args, kwargs=None, addend=None):
    """A one-node ATen graph with fake-tensor metadata: for overloads compile's
    decomposition never leaves in a graph (they are registered for graphs made otherwise)."""
    from torch.fx.passes.fake_tensor_prop import FakeTensorProp

    graph = torch.fx.Graph()
    placeholders = []

    def arg(v):
        if isinstance(v, torch.Tensor):
            placeholders.append(v)
            return graph.placeholder(f"x{len(placeholders)}")
        if isinstance(v, (list, tuple)):
            return type(v)(arg(a) for a in v)
        return v

    fx_args = arg(args)
    out = graph.call_function(target, fx_args, kwargs or {})
    results = target(*args, **(kwargs or {}))
    if isinstance(results, (tuple, list)):
        out = tuple(graph.call_function(operator.getitem, (out, i)) for i in range(len(results)))
    else:  # a compute op after data-movement ops (alone they make no engine)
        out = graph.call_function(aten.add.Tensor, (out, 0 if addend is None else arg(addend)))
    graph.output(out)
    gm = torch.fx.GraphModule(torch.nn.Module(), graph)
    FakeTensorProp(gm).propagate(*placeholders)
    return gm, placeholders


RAW_CASES = [
    (aten.matmul.default, (randn(3, 4, 5), randn(5, 2))),
    (aten.to.dtype, (randn(4, 5), torch.float16)),
    (aten.reshape.default, (randn(4, 5), [5, 4])),
    (aten.hardsigmoid.default, (randn(4, 5) * 4,)),
    (aten.max_pool2d.default, (randn(1, 2, 6, 6), [2, 2])),
    (aten.adaptive_avg_pool2d.default, (randn(1, 2, 6, 6), [1, 1])),
    (aten.lift_fresh_copy.default, (randn(4, 5),)),
    (aten.detach.default, (randn(4, 5),)),
    (aten.alias.default, (randn(4, 5),)),
    (aten.upsample_nearest2d.default, (randn(1, 2, 3, 4), [6, 8])),
    (aten.upsample_bilinear2d.default, (randn(1, 2, 3, 4), [6, 8], False)),
    (aten.arange.default, (6,), {"dtype": torch.float32}, randn(6)),
    (aten.arange.start, (2, 7), {}, ints(5)),
    (aten.div.Scalar_mode, (randn(4, 5) * 3, 0.7), {"rounding_mode": "floor"}),
    (aten.sort.default, (distinct(3, 5), 0, True)),
    (aten.split.Tensor, (randn(5, 4), 2)),
    (aten._unsafe_view.default, (randn(4, 5), [2, 10])),
    (aten.squeeze.default, (randn(4, 1, 5, 1),)),
    (aten.squeeze.dim, (randn(4, 1, 5), -2)),
    (aten.t.default, (randn(4, 5),)),
    (aten.transpose.int, (randn(3, 4, 5), -1, 0)),
    (aten.add.Scalar, (randn(4, 5), 1.5)),
    (aten.sub.Scalar, (randn(4, 5), 1.5)),
    (aten.mul.Scalar, (randn(4, 5), 1.5)),
    (aten.div.Scalar, (randn(4, 5), 1.5)),
    (aten.rsub.Scalar, (randn(4, 5), 1.5)),
    (aten.sum.default, (randn(4, 5),)),
    (aten.hardswish.default, (randn(4, 5) * 4,)),
    (aten.silu.default, (randn(4, 5),)),
    (aten.masked_fill.Scalar, (randn(4, 5), randn(4, 5) > 0, -2.0)),
    (aten.masked_fill.Tensor, (randn(4, 5), randn(5) > 0, torch.tensor(3.0))),
    (aten.where.Scalar, (randn(4, 5) > 0, 1.0, -1.0)),
    (aten.where.ScalarOther, (randn(4, 5) > 0, randn(4, 5), -1.0)),
    (aten.where.ScalarSelf, (randn(4, 5) > 0, 2.0, randn(4, 5))),
    (aten.logsumexp.default, (randn(4, 5), [1])),
    (aten.linalg_vector_norm.default, (randn(4, 5), 2, [1])),
    (aten.linalg_vector_norm.default, (randn(4, 5), 1, [0], True)),
    (aten.linalg_vector_norm.default, (randn(4, 5), float("inf"))),
]
RAW_CASES = [(*c, None, None)[:4] for c in RAW_CASES]


@pytest.mark.parametrize("target,args,kwargs,addend", RAW_CASES, ids=[str(c[0]) for c in RAW_CASES])
def test_op_outside_decomposed_graphs(target, args, kwargs, addend, monkeypatch):
    gm, tensors = _raw_graph(target, args, kwargs, addend)
    monkeypatch.setattr(_compile, "export", lambda module, inputs, device: gm)
    EXERCISED[f"raw-{target}"] = {target}
    compiled = kt.compile(torch.nn.Identity(), tensors, device="cpu", min_block_size=1, require_full_compilation=True)
    assert has_engine(compiled)
    expected = target(*args, **(kwargs or {}))
    if not isinstance(expected, (tuple, list)):
        expected = expected + (0 if addend is None else addend)
    actual = compiled.forward(*tensors)
    if isinstance(actual, (tuple, list)) and not isinstance(expected, (tuple, list)):
        (actual,) = actual
    assert_close(tuple(actual) if isinstance(actual, (tuple, list)) else actual, tuple(expected) if isinstance(expected, (tuple, list)) else expected, 1e-5)


def test_every_registered_op_has_a_case():
    for case_id, fn, inputs, params, _ in (c.values for c in CASES):
        if case_id not in EXERCISED:
            EXERCISED[case_id] = graph_ops(Fn(fn, params, len(inputs)).eval(), inputs)
    for target, *_ in RAW_CASES:
        EXERCISED.setdefault(f"raw-{target}", {target})
    exercised = set().union(*EXERCISED.values())
    missing = sorted(str(t) for t in REGISTRY if t not in exercised and t is not operator.getitem)
    assert not missing, f"translations without a test case: {missing}"


def test_engine_reads_a_symbolic_size_from_a_tensor_it_does_not_compute_with():
    """arange(x.shape[0] * 2) alone in an engine (relu forced to PyTorch): x comes in for its shape."""

    class M(torch.nn.Module):
        def forward(self, x):
            return torch.arange(x.shape[0] * 2) * 2, torch.relu(x)

    compiled = kt.compile(M(), [kt.Input(min_shape=(1, 3), opt_shape=(4, 3), max_shape=(8, 3))], device="cpu",
                          min_block_size=1, torch_executed_ops={"aten.relu"})
    assert has_engine(compiled)
    for batch in (1, 5, 8):
        x = randn(batch, 3)
        assert_close(compiled(x), M()(x), 0)


def test_gpu_target_takes_ranges_whose_length_follows_from_shapes():
    """For the GPU, aranges over symbolic integer bounds (also with a float dtype: an int64 Range, cast)
    and slices with symbolic bounds go to kiln, whose Range runs there; on the CPU they match PyTorch."""
    from kiln.torch import _translate

    class M(torch.nn.Module):
        def forward(self, x):
            n = x.shape[1]
            return x[:, : n - 1] + torch.arange(n - 1, dtype=torch.float32), torch.arange(1, n, 2) * 3

    dims = ({1: torch.export.Dim("n", min=4, max=16)},)
    graph = torch.export.export(M(), (randn(2, 6),), dynamic_shapes=dims).graph
    ranged = [n for n in graph.nodes if n.op == "call_function" and n.target in
              (aten.arange.start_step, aten.arange.start, aten.arange.default, aten.slice.Tensor)]
    saved = _translate.TARGET.device
    _translate.TARGET.device = "cuda"
    try:
        reasons = {str(n.target): _translate.support_reason(n) for n in ranged}
    finally:
        _translate.TARGET.device = saved
    assert len(ranged) >= 3 and all(r is None for r in reasons.values()), reasons

    compiled = kt.compile(M(), [kt.Input(min_shape=(2, 4), opt_shape=(2, 6), max_shape=(2, 16))], device="cpu",
                          min_block_size=1)
    assert has_engine(compiled)
    for n in (4, 9, 16):
        x = randn(2, n)
        for got, want in zip(compiled(x), M()(x)):
            assert_close(got, want, 0)
