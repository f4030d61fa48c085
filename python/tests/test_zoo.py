"""The zoo's export path without a GPU: tiny versions of zoo models (same
classes, small configs or images, bench/zoo/models.py) exported to ONNX with a
dynamic batch, built into one fp32 plan for batch 1 to 8, and run on kiln's
CPU reference interpreter at two batch sizes against PyTorch fp32 on the CPU.
Skips a model when torchvision or transformers is not installed."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import kiln  # noqa: E402

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))
from zoo import export as zoo_export  # noqa: E402
from zoo import models as zoo  # noqa: E402

# One per family the export path has to get right: depthwise convolutions with
# squeeze-excitation and hardswish, multi-head attention over patches, a causal
# decoder with a tied LM head, and RMSNorm with rotary embeddings and grouped
# KV heads.
CPU_MODELS = ["mobilenet_v3_large", "vit_b_16", "gpt2", "llama"]


def requires(name):
    pytest.importorskip("torchvision" if zoo.ZOO[name].input == "image" else "transformers")


def rel_l2(got, expected):
    got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    return float(np.linalg.norm(got - expected) / np.linalg.norm(expected))


def test_zoo_spans_the_families():
    assert len(zoo.ZOO) >= 12
    inputs = {e.input for e in zoo.ZOO.values()}
    assert inputs == {"image", "ids"}
    with pytest.raises(KeyError, match="no zoo model 'resnet5'"):
        zoo.build("resnet5")


def test_zero_initialized_head_gets_a_seeded_init():
    requires("vit_b_16")
    import torchvision
    torch.manual_seed(0)
    assert not torchvision.models.vit_b_16(weights=None).heads.head.weight.any()  # what the library does
    a, _ = zoo.build("vit_b_16")
    b, _ = zoo.build("vit_b_16")
    assert a.heads.head.weight.std() > 0.01
    assert torch.equal(a.heads.head.weight, b.heads.head.weight)


def test_batchnorm_statistics_come_from_data():
    requires("resnet50")
    module, inputs = zoo.build("resnet50", batch=2, tiny=True)
    norms = [m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert not module.training and all(not m.training for m in norms)
    assert all(m.momentum == 0.1 for m in norms)
    # Defaults would be mean 0 and variance 1 everywhere.
    assert all(m.running_var.sub(1).abs().max() > 1e-2 for m in norms)
    with torch.no_grad():
        y = module(inputs["image"])
    assert torch.isfinite(y).all() and y.abs().max() < 1e3


@pytest.mark.parametrize("name", CPU_MODELS)
def test_export_matches_pytorch_on_the_reference(name, tmp_path):
    requires(name)
    module, inputs = zoo.build(name, batch=1, tiny=True)
    path = zoo_export.export(name, module, inputs, str(tmp_path / f"{name}.onnx"))
    plan = kiln.build(path, profiles=zoo_export.profile(inputs), precision="fp32")
    assert plan.profiles[0]["batch"] == (1, 1, 8)
    session = kiln.InferenceSession(plan, device="cpu")
    for batch in (1, 2):
        feeds = zoo.example(name, batch, tiny=True, seed=10 + batch)
        with torch.no_grad():
            expected = module(*feeds.values()).numpy()
        (got,) = session.run(None, {k: v.numpy() for k, v in feeds.items()})
        assert got.shape == expected.shape
        error = rel_l2(got, expected)
        print(f"{name} batch {batch}: relative L2 {error:.2e}")
        assert error <= 1e-5, f"{name} batch {batch}: relative L2 {error:.3g} against PyTorch fp32"
        # Informative: the samples of a batch give different outputs.
        if batch == 2:
            assert rel_l2(got[1], got[0]) > 1e-2


def test_benchmark_roofline_and_card_table():
    spec = importlib.util.spec_from_file_location("zoo_benchmark", BENCH / "zoo.py")
    bench = importlib.util.module_from_spec(spec)
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    spec.loader.exec_module(bench)  # bench.py turns TF32 off for the process
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    peaks = bench.card("NVIDIA H200")
    assert peaks == (4.8e12, 989e12)
    assert bench.card("NVIDIA H100 80GB HBM3") == (3.35e12, 989e12)
    assert bench.card("NVIDIA A100-SXM4-80GB") is None
    assert bench.short_gpu_name("NVIDIA H200") == "h200"
    # Per launch the slower bound: 1 us of memory, 2 us of math, then max(1 us, 0.5 us).
    launches = [{"bytes": 4.8e6, "flops": 0}, {"bytes": 0, "flops": 2 * 989e6}, {"bytes": 4.8e6, "flops": 989e6 / 2}]
    assert bench.roofline(launches, peaks) == pytest.approx(4.0)
    row = {"model": "m", "batch": 1, "kiln_us": 10.0, "kiln_gpu_us": 8.0, "kiln_roofline_us": 4.0,
           "kiln_roofline_fraction": 0.5}
    assert "n/a" in bench.table([row], "NVIDIA A100", None).splitlines()[2]
    assert "0.50" in bench.table([row], "NVIDIA H200", peaks).splitlines()[2]


def test_front_end_matches_pytorch_on_the_reference():
    """The Llama-style decoder (RMSNorm, rotary, grouped KV heads, 4D causal mask)
    through kiln.torch.compile: one engine, nothing left to PyTorch."""
    requires("llama")
    import kiln.torch as kt
    module, inputs = zoo.build("llama", batch=1, tiny=True)
    with torch.no_grad():
        compiled = kt.compile(module, list(inputs.values()), min_block_size=1, device="cpu")
        left = [n for n in compiled.graph.nodes if n.op == "call_function" and "call_engine" not in str(n.target)
                and "getitem" not in str(n.target)]
        error = rel_l2(compiled(*inputs.values()).numpy(), module(*inputs.values()).numpy())
    print(f"llama kiln.torch.compile: relative L2 {error:.2e}")
    assert len(compiled.engines) == 1 and not left
    assert error <= 1e-5
