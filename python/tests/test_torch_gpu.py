"""kiln.torch on the GPU: every row of the cudagraphs behavior matrix with real
PyTorch ops between engines, dynamic shapes, pointer changes, threads, the
runtime cache across processes, the user's own capture and torch.compile."""

import os
import subprocess
import sys
import textwrap
import threading
import warnings

import pytest

torch = pytest.importorskip("torch")

import kiln  # noqa: E402
import kiln.torch as kt  # noqa: E402
from kiln.runtime import RuntimeSettings  # noqa: E402

available, reason = kiln.runtime.cuda_available()
pytestmark = pytest.mark.skipif(not (available and torch.cuda.is_available()), reason=f"no usable GPU: {reason}")

# cumsum stays in PyTorch: the module has PyTorch compute between two engines.
TORCH_OPS = {"aten.cumsum"}


class Mixed(torch.nn.Module):
    def __init__(self, d=32):
        super().__init__()
        self.a = torch.nn.Linear(16, d)
        self.ln = torch.nn.LayerNorm(d)
        self.b = torch.nn.Linear(d, 8)

    def forward(self, x):
        h = torch.nn.functional.gelu(self.ln(self.a(x)))
        h = torch.cumsum(h, dim=-1) * 0.1
        h = torch.sigmoid(h) * h + 1.0
        return torch.softmax(self.b(h), dim=-1)


class EnginesOnly(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.GELU(), torch.nn.Linear(64, 64), torch.nn.ReLU(),
                                       torch.nn.Linear(64, 8))

    def forward(self, x):
        return self.net(x)


def fresh(module_cls, **kw):
    torch.manual_seed(0)
    return module_cls(**kw).cuda().eval()


def compile_static(model, batch=4, dtype=torch.float32, **kw):
    return kt.compile(model, [kt.Input((batch, 16), dtype=dtype)], torch_executed_ops=TORCH_OPS, min_block_size=2, **kw)


def assert_close(y, expected, rtol=1e-4):
    scale = expected.abs().max().item()
    err = (y.float() - expected.float()).abs().max().item()
    assert err <= rtol * max(scale, 1e-30), f"max error {err} against max |expected| {scale}"


def engine_graphs(compiled):
    return [e["graphs"] for e in kiln.runtime.stats(compiled)["engines"]]


def ran_native_graphs(g, calls):
    """At most one direct (warm-up) call, every other call a graph launch: a
    replay, or a capture for addresses not seen lately; no fallbacks."""
    return (g["calls"] == calls and g["direct"] <= 1 and g["direct"] + g["replays"] + g["captures"] == calls
            and 1 <= g["instantiations"] <= 4 and not g["fallbacks"])


@pytest.fixture(autouse=True)
def standard_mode():
    kiln.runtime.set_cudagraphs_mode(False)
    yield
    kiln.runtime.set_cudagraphs_mode(False)


def test_mixed_module_has_two_engines_and_a_torch_segment():
    model = fresh(Mixed)
    compiled = compile_static(model)
    assert len(compiled.engines) == 2 and compiled.has_torch_segments
    x = torch.randn(4, 16, device="cuda")
    assert_close(compiled(x), model(x))


def test_standard_disabled_runs_directly():
    model = fresh(Mixed)
    compiled = compile_static(model)
    x = torch.randn(4, 16, device="cuda")
    for _ in range(3):
        assert_close(compiled(x), model(x))
    for g in engine_graphs(compiled):
        assert g["captures"] == 0 and g["direct"] == 3


def test_standard_whole_graph_capture_uses_native_graphs_on_a_side_stream():
    model = fresh(Mixed)
    compiled = compile_static(model, cuda_graph_strategy="whole_graph_capture")
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        for _ in range(4):
            x = torch.randn(4, 16, device="cuda")  # new contents and new addresses every call
            y = compiled(x)
            assert_close(y, model(x))
    torch.cuda.synchronize()
    for g in engine_graphs(compiled):
        assert ran_native_graphs(g, 4), g


def test_steady_state_calls_replay_without_repairs():
    model = fresh(EnginesOnly)
    compiled = kt.compile(model, [kt.Input((4, 16))], cuda_graph_strategy="whole_graph_capture")
    x = torch.randn(4, 16, device="cuda")
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        for _ in range(12):
            y = compiled(x)  # the last result stays alive while the next is made: two output buffers alternate
    torch.cuda.synchronize()
    assert_close(y, model(x))
    (g,) = engine_graphs(compiled)
    assert g["instantiations"] <= 2 and g["pointer_repairs"] == 0 and g["replays"] >= 9, g


def test_subgraph_mode_switches_disabled_engines_on_with_one_warning():
    model = fresh(EnginesOnly)
    compiled = kt.compile(model, [kt.Input((4, 16))])
    assert not compiled.has_torch_segments
    stream = torch.cuda.Stream()
    with warnings.catch_warnings(record=True) as caught, torch.cuda.stream(stream):
        warnings.simplefilter("always")
        with kiln.runtime.enable_cudagraphs(compiled) as m:
            assert m is compiled and kiln.runtime.get_cudagraphs_mode() and not kiln.runtime.get_whole_cudagraphs_mode()
            for _ in range(4):
                x = torch.randn(4, 16, device="cuda")
                assert_close(m(x), model(x))
    torch.cuda.synchronize()
    switched = [w for w in caught if "switched to whole_graph_capture" in str(w.message)]
    assert len(switched) == 1, [str(w.message) for w in caught]
    assert not kiln.runtime.get_cudagraphs_mode()
    (g,) = engine_graphs(compiled)
    assert ran_native_graphs(g, 4), g


def test_subgraph_mode_on_a_mixed_module_runs_torch_ops_directly():
    model = fresh(Mixed)
    compiled = compile_static(model)
    kiln.runtime.set_cudagraphs_mode(True)
    stream = torch.cuda.Stream()
    with warnings.catch_warnings(), torch.cuda.stream(stream):
        warnings.simplefilter("ignore")
        for _ in range(4):
            x = torch.randn(4, 16, device="cuda")
            assert_close(compiled(x), model(x))
    torch.cuda.synchronize()
    for g in engine_graphs(compiled):
        assert ran_native_graphs(g, 4), g


def test_whole_graph_captures_once_per_shape_with_engine_graphs_off():
    model = fresh(Mixed)
    compiled = kt.compile(model, [kt.Input(min_shape=(1, 16), opt_shape=(4, 16), max_shape=(16, 16))],
                          torch_executed_ops=TORCH_OPS, min_block_size=2,
                          dynamic_shapes_kernel_specialization_strategy="eager")
    with kiln.runtime.enable_cudagraphs(compiled) as m:
        assert m is not compiled and kiln.runtime.get_whole_cudagraphs_mode()
        outputs = []
        for batch in (4, 4, 7, 4, 7, 4):
            x = torch.randn(batch, 16, device="cuda")
            y = m(x)
            outputs.append((y, model(x)))
        for y, expected in outputs:  # each result is the caller's own tensor
            assert_close(y, expected)
        s = kiln.runtime.stats(m)
    assert s["whole_graph"]["captures"] == 2 and s["whole_graph"]["replays"] == 4
    for g in (e["graphs"] for e in s["engines"]):
        assert g["captures"] == 0 and g["into_caller_capture"] == 2
    assert not kiln.runtime.get_whole_cudagraphs_mode()


def test_whole_graph_refuses_lazy_dynamic_engines_before_capturing():
    model = fresh(Mixed)
    compiled = kt.compile(model, [kt.Input(min_shape=(1, 16), opt_shape=(4, 16), max_shape=(16, 16))],
                          torch_executed_ops=TORCH_OPS, min_block_size=2)
    with pytest.raises(RuntimeError, match="engine0.*cannot be captured as one piece: lazy"):
        with kiln.runtime.enable_cudagraphs(compiled):
            pass
    x = torch.randn(3, 16, device="cuda")
    assert_close(compiled(x), model(x))  # nothing was captured or broken
    assert not torch.cuda.is_current_stream_capturing()


def test_the_users_own_capture_records_every_engine():
    model = fresh(Mixed)
    compiled = compile_static(model)
    static_x = torch.randn(4, 16, device="cuda")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        compiled(static_x)  # warm-up outside the capture prepares the shape
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_y = compiled(static_x)
    for _ in range(3):
        static_x.copy_(torch.randn(4, 16, device="cuda"))
        graph.replay()
        assert_close(static_y, model(static_x))
    for g in engine_graphs(compiled):
        assert g["into_caller_capture"] == 1


def test_dynamic_shapes_across_the_profile_and_new_pointers():
    model = fresh(Mixed)
    compiled = kt.compile(model, [kt.Input(min_shape=(1, 16), opt_shape=(8, 16), max_shape=(64, 16))],
                          torch_executed_ops=TORCH_OPS, min_block_size=2, cuda_graph_strategy="whole_graph_capture")
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        for batch in (1, 8, 64, 33, 8, 1, 64):
            x = torch.randn(batch, 16, device="cuda")
            y = compiled(x)
            assert y.shape == (batch, 8)
            assert_close(y, model(x))
        # a non-contiguous input view is made contiguous, not misread
        x = torch.randn(16, 32, device="cuda")[:, ::2]
        assert_close(compiled(x), model(x))


def test_four_threads_share_one_compiled_module():
    model = fresh(Mixed)
    compiled = compile_static(model, cuda_graph_strategy="whole_graph_capture")
    errors = []

    def work(seed):
        try:
            g = torch.Generator(device="cuda").manual_seed(seed)
            stream = torch.cuda.Stream()
            with torch.cuda.stream(stream):
                for _ in range(30):
                    x = torch.randn(4, 16, device="cuda", generator=g)
                    y = compiled(x)
                    expected = model(x)
                    stream.synchronize()
                    assert_close(y, expected)
        except Exception as e:  # reported below with the thread's seed
            errors.append(f"thread {seed}: {e!r}")

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert all(e["contexts"] == 4 for e in kiln.runtime.stats(compiled)["engines"])


def test_half_precision_module():
    model = fresh(Mixed).half()
    compiled = compile_static(model, dtype=torch.float16)
    x = torch.randn(4, 16, device="cuda", dtype=torch.float16)
    y = compiled(x)
    assert y.dtype == torch.float16
    assert_close(y, model(x), rtol=2e-2)


def test_fp16_precision_of_an_fp32_module():
    model = fresh(EnginesOnly)
    compiled = kt.compile(model, [kt.Input((4, 16))], precision="fp16")
    x = torch.randn(4, 16, device="cuda")
    y = compiled(x)
    assert y.dtype == torch.float32
    assert_close(y, model(x), rtol=2e-2)


def test_inside_torch_compile():
    model = fresh(Mixed)
    compiled = compile_static(model)
    outer = torch.compile(compiled, fullgraph=True)
    x = torch.randn(4, 16, device="cuda")
    assert_close(outer(x), model(x))


def test_backend_kiln():
    model = fresh(EnginesOnly)
    fn = torch.compile(model, backend="kiln")
    x = torch.randn(4, 16, device="cuda")
    assert_close(fn(x), model(x))


def test_save_load_round_trip_on_the_gpu(tmp_path):
    model = fresh(Mixed)
    compiled = compile_static(model)
    path = tmp_path / "mixed.pt2"
    kt.save(compiled, path)
    loaded = kt.load(path, runtime_settings=RuntimeSettings(cuda_graph_strategy="whole_graph_capture"))
    x = torch.randn(4, 16, device="cuda")
    assert_close(loaded(x), model(x))
    assert all(e["settings"].cuda_graph_strategy == "whole_graph_capture" for e in kiln.runtime.stats(loaded)["engines"])


def test_runtime_settings_apply_to_every_engine():
    model = fresh(Mixed)
    compiled = compile_static(model)
    compiled.runtime_settings = RuntimeSettings(cuda_graph_strategy="whole_graph_capture")
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        for _ in range(3):
            x = torch.randn(4, 16, device="cuda")
            assert_close(compiled(x), model(x))
    torch.cuda.synchronize()
    assert all(ran_native_graphs(g, 3) for g in engine_graphs(compiled)), engine_graphs(compiled)


def test_runtime_cache_across_two_processes(tmp_path):
    cache = tmp_path / "kernels.bin"
    script = textwrap.dedent(f"""
        import torch, kiln, kiln.torch as kt
        torch.manual_seed(0)
        m = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 8)).cuda().eval()
        c = kt.compile(m, [kt.Input((4, 16))], min_block_size=1, runtime_cache_path={str(cache)!r})
        x = torch.randn(4, 16, device="cuda")
        assert (c(x) - m(x)).abs().max().item() < 1e-4
        print("cached", kiln.runtime.stats(c)["engines"][0]["kernels"]["from_runtime_cache"])
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    first = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 0, first.stderr
    assert cache.is_file() and "cached 0" in first.stdout
    second = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert second.returncode == 0, second.stderr
    assert "cached 0" not in second.stdout, second.stdout
