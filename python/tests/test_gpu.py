"""InferenceSession on the GPU: numpy and torch tensors, native graphs, dynamic shapes, threads, the runtime cache."""

import os
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest
from conftest import MLP_PROFILE, mlp_reference

import kiln
from kiln.runtime import RuntimeSettings

available, reason = kiln.runtime.cuda_available()
pytestmark = pytest.mark.skipif(not available, reason=f"no usable GPU: {reason}")

GRAPHS = RuntimeSettings(cuda_graph_strategy="whole_graph_capture")


def close(y, expected, tolerance):
    return np.abs(np.asarray(y, np.float64) - expected).max() <= tolerance * max(np.abs(expected).max(), 1e-30)


@pytest.mark.parametrize("precision,tolerance", [("fp32", 1e-5), ("fp16", 2e-2), ("bf16", 6e-2)])
@pytest.mark.parametrize("strategy", ["lazy", "eager", "none"])
def test_numpy_on_the_gpu_matches_the_reference(mlp, rng, precision, tolerance, strategy):
    path, weights = mlp
    settings = RuntimeSettings(dynamic_shapes_kernel_specialization_strategy=strategy)
    session = kiln.InferenceSession(path, "cuda", settings, profiles=MLP_PROFILE, precision=precision)
    for batch in (1, 7, 32, 7):
        x = rng.uniform(-1, 1, (batch, 16)).astype(np.float32)
        (y,) = session.run(None, {"x": x})
        assert y.shape == (batch, 8) and y.dtype == np.float32
        assert close(y, mlp_reference(x, weights), tolerance), f"batch {batch}"


def test_each_profile_runs_its_shapes(mlp, rng):
    path, weights = mlp
    profiles = [{"x": ((1, 16), (2, 16), (8, 16))}, {"x": ((9, 16), (32, 16), (64, 16))}]
    session = kiln.InferenceSession(path, "cuda", GRAPHS, profiles=profiles)
    prepared = lambda: {s["shape"] for s in session.stats()["shapes"]}  # noqa: E731
    assert prepared() == {"x:2x16"}  # warmed up at profile 0's opt
    small, large = (rng.uniform(-1, 1, (n, 16)).astype(np.float32) for n in (8, 40))
    assert close(session.run(None, {"x": small})[0], mlp_reference(small, weights), 1e-5)
    with pytest.raises(kiln.Error, match="profile 1 accepts this shape"):
        session.run(None, {"x": large})
    session.profile_index = 1
    assert "x:32x16" in prepared() and "x:8x16" in prepared()  # warmed up at profile 1's opt; nothing dropped
    assert close(session.run(None, {"x": large})[0], mlp_reference(large, weights), 1e-5)
    with pytest.raises(kiln.Error, match="profile 0 accepts this shape"):
        session.run(None, {"x": small})


def test_torch_cuda_tensors_stay_on_the_device(mlp, rng):
    torch = pytest.importorskip("torch")
    path, weights = mlp
    session = kiln.InferenceSession(path, "cuda", GRAPHS, profiles=MLP_PROFILE)
    x = torch.from_numpy(rng.uniform(-1, 1, (5, 16)).astype(np.float32)).cuda()
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):  # torch's current non-default stream is honoured
        ys = [session.run(None, {"x": x})[0] for _ in range(4)]
    stream.synchronize()
    for y in ys:
        assert y.is_cuda and y.dtype == torch.float32 and tuple(y.shape) == (5, 8)
        assert close(y.cpu().numpy(), mlp_reference(x.cpu().numpy(), weights), 1e-5)
    graphs = session.stats()["graphs"]
    # every call after the warm-up launched a graph: a new one for new addresses, else a replay
    assert graphs["direct"] <= 1 and graphs["direct"] + graphs["replays"] + graphs["captures"] == 4, graphs
    assert not graphs["fallbacks"], graphs


def test_native_graphs_replay_and_repair_new_addresses(mlp, rng):
    torch = pytest.importorskip("torch")
    path, weights = mlp
    session = kiln.InferenceSession(path, "cuda", GRAPHS, profiles=MLP_PROFILE)
    x = torch.from_numpy(rng.uniform(-1, 1, (3, 16)).astype(np.float32)).cuda()
    stream = torch.cuda.Stream()  # the legacy default stream is never captured
    with torch.cuda.stream(stream):
        kept = [session.run(None, {"x": x})[0] for _ in range(4)]  # outputs kept: each call writes to a new address
        inputs = [x]
        for _ in range(2):
            inputs.append((inputs[-1] * 2).contiguous())  # new contents at a new address
            kept.append(session.run(None, {"x": inputs[-1]})[0])
    stream.synchronize()
    graphs = session.stats()["graphs"]
    # six address sets: four kept graphs, then the oldest repaired for the rest
    assert graphs["instantiations"] == 4 and graphs["pointer_repairs"] >= 1, graphs
    assert not graphs["fallbacks"], graphs
    expected = [x] * 4 + inputs[1:]
    for y, xi in zip(kept, expected):
        assert close(y.cpu().numpy(), mlp_reference(xi.cpu().numpy(), weights), 1e-5)


def test_graphs_on_the_legacy_default_stream(mlp, rng):
    """torch's default stream is the legacy one, which cannot be captured: the
    graph runs on the context's own stream, ordered by events with torch's work."""
    torch = pytest.importorskip("torch")
    path, weights = mlp
    session = kiln.InferenceSession(path, "cuda", GRAPHS, profiles=MLP_PROFILE)
    assert torch.cuda.current_stream().cuda_stream == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for i in range(6):
            x = torch.from_numpy(rng.uniform(-1, 1, (2, 16)).astype(np.float32)).cuda()
            x.mul_(2.0)  # queued on the legacy stream right before the call: the graph must wait for it
            (y,) = session.run(None, {"x": x})
            y.add_(1.0)  # and this must wait for the graph
            got = y.cpu().numpy()
            assert close(got, mlp_reference(x.cpu().numpy(), weights) + 1.0, 1e-5), i
    graphs = session.stats()["graphs"]
    assert not graphs["fallbacks"], graphs
    assert graphs["on_context_stream"] >= 4 and graphs["replays"] + graphs["captures"] >= 4, graphs


def test_inside_the_users_own_cuda_graph(mlp, rng):
    torch = pytest.importorskip("torch")
    path, weights = mlp
    session = kiln.InferenceSession(path, "cuda", profiles=MLP_PROFILE)  # graphs disabled: the manual capture path
    static_x = torch.from_numpy(rng.uniform(-1, 1, (4, 16)).astype(np.float32)).cuda()
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        session.run(None, {"x": static_x})  # prepares the shape outside the capture
    stream.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        (static_y,) = session.run(None, {"x": static_x})
    for _ in range(3):
        fresh = rng.uniform(-1, 1, (4, 16)).astype(np.float32)
        static_x.copy_(torch.from_numpy(fresh))
        graph.replay()
        torch.cuda.synchronize()
        assert close(static_y.cpu().numpy(), mlp_reference(fresh, weights), 1e-5)
    assert session.stats()["graphs"]["into_caller_capture"] == 1


def test_four_threads_with_their_own_sessions(mlp):
    path, weights = mlp
    plan = kiln.build(path, profiles=MLP_PROFILE)
    errors = []

    def work(seed):
        try:
            session = kiln.InferenceSession(plan, "cuda", GRAPHS)
            r = np.random.default_rng(seed)
            for i in range(40):
                x = r.uniform(-1, 1, (1 + (i % 5) * 7, 16)).astype(np.float32)
                (y,) = session.run(None, {"x": x})
                if not close(y, mlp_reference(x, weights), 1e-5):
                    errors.append(f"thread {seed} call {i}: wrong result")
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"thread {seed}: {e!r}")

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_runtime_cache_is_shared_across_processes(mlp, tmp_path):
    path, _ = mlp
    cache = tmp_path / "cache" / "runtime_cache.bin"
    script = (
        "import sys, numpy as np, kiln\n"
        "from kiln.runtime import RuntimeSettings\n"
        f"s = kiln.InferenceSession({path!r}, 'cuda', RuntimeSettings(runtime_cache={str(cache)!r}), profiles={MLP_PROFILE!r})\n"
        "s.run(None, {'x': np.ones((2, 16), np.float32)})\n"
        "k = s.stats()['kernels']\n"
        "print(k['compiled'], k['from_runtime_cache'])\n"
    )
    env = dict(os.environ)
    first = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 0, first.stderr
    assert cache.exists(), "the first process did not save the runtime cache at exit"
    second = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert second.returncode == 0, second.stderr
    compiled, cached = map(int, second.stdout.split())
    assert compiled > 0 and cached == compiled, second.stdout


@pytest.mark.parametrize("strategy", ["eager", "none"])
def test_string_tensors_run_on_the_host_inside_the_engine(text_model, rng, strategy):
    path, reference = text_model
    settings = RuntimeSettings(dynamic_shapes_kernel_specialization_strategy=strategy, cuda_graph_strategy="whole_graph_capture")
    session = kiln.InferenceSession(path, device="cuda", runtime_settings=settings, profiles={"x": ((0,), (7,), (1200,)), "expected": ((0,), (7,), (1200,))})
    for n in (7, 1, 33, 1200, 0):
        x = rng.integers(1, 50, n).astype(np.float32) * rng.choice([-1, 1], n).astype(np.float32)
        expected = np.array([f"n={float(-v)}" if i % 2 == 0 else "miss" for i, v in enumerate(x)], dtype=object)
        text, same, y = session.run(None, {"x": x, "expected": expected})
        want = reference(x, expected)
        assert text.dtype == object and text.tolist() == want[0].tolist(), n
        np.testing.assert_array_equal(same, want[1])
        np.testing.assert_array_equal(y, want[2])
    assert session.stats()["graphs"]["fallbacks"] == {"host steps": 5}

