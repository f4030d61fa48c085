"""The Python per-call paths on the reference interpreter (device="cpu"): a
kiln.torch module made only of engines skips the FX module, and each engine and
InferenceSession validates only inputs that differ from the last validated ones
(shape, dtype, device, contiguity); results equal the general path's."""

import threading

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import kiln  # noqa: E402
import kiln.torch as kt  # noqa: E402
from kiln.torch._engine import call_engine  # noqa: E402


@pytest.fixture
def model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)).eval()


def compile_engines_only(model):
    return kt.compile(model, [kt.Input(min_shape=(1, 8), opt_shape=(2, 8), max_shape=(16, 8))], device="cpu",
                      min_block_size=1)


def per_call(compiled):
    return kiln.runtime.stats(compiled)["engines"][0]["per_call"]


def assert_close(y, expected):
    assert (y - expected).abs().max().item() <= 1e-5 * max(expected.abs().max().item(), 1e-30)


def count_forward_calls(compiled) -> list:
    """Counts calls of the FX forward (the general path) from now on."""
    calls, forward = [], type(compiled).forward

    def counting(self, *args):
        calls.append(1)
        return forward(self, *args)

    type(compiled).forward = counting
    return calls


def test_engines_only_module_skips_the_fx_forward_with_the_same_results(model):
    compiled = compile_engines_only(model)
    assert kiln.runtime.stats(compiled)["engines_only_fast_path"]
    general = count_forward_calls(compiled)
    x = torch.randn(2, 8)
    fast = compiled(x)
    assert general == [] and per_call(compiled) == {"matched": 0, "validated": 1}
    again = compiled(x)
    assert general == [] and per_call(compiled) == {"matched": 1, "validated": 1}
    # A forward hook needs nn.Module's call: the general path, same engine, same numbers.
    seen = []
    handle = compiled.register_forward_hook(lambda module, args, out: seen.append(out))
    through_fx = compiled(x)
    handle.remove()
    assert general == [1] and len(seen) == 1
    node = next(n for n in compiled.graph.nodes if n.op == "call_function" and n.target is call_engine)
    (through_op,) = torch.ops.kiln.execute(compiled._kiln_plan_0, [x], node.args[2])
    for y in (again, through_fx, through_op):
        assert torch.equal(y, fast)
    assert_close(fast, model(x))
    assert per_call(compiled) == {"matched": 3, "validated": 1}


def test_changed_inputs_go_through_validation(model):
    compiled = compile_engines_only(model)
    x = torch.randn(2, 8)
    compiled(x)
    x5 = torch.randn(5, 8)
    assert_close(compiled(x5), model(x5))  # another shape: validated, then matched
    assert_close(compiled(x5), model(x5))
    assert per_call(compiled) == {"matched": 1, "validated": 2}
    with pytest.raises(TypeError, match="engine0.*input 'in0' must be float32; got torch.float64"):
        compiled(x5.double())
    with pytest.raises(ValueError, match="engine0.*input 'in0' is on meta; the engine runs on cpu"):
        compiled(torch.empty(5, 8, device="meta"))
    with pytest.raises(kiln.Error, match="outside its range"):
        compiled(torch.randn(17, 8))
    # Refused by validation: not counted; the 17 rows passed it (the interpreter checks shapes on every call).
    assert per_call(compiled) == {"matched": 1, "validated": 3}
    transposed = torch.randn(8, 5).t()  # x5's shape, but not contiguous
    assert_close(compiled(transposed), model(transposed))
    assert_close(compiled(x5), model(x5))
    assert per_call(compiled) == {"matched": 2, "validated": 4}


def test_the_general_path_remains_where_it_is_needed(model):
    compiled = compile_engines_only(model)
    x = torch.randn(3, 8)
    outer = torch.compile(compiled, fullgraph=True, backend="eager")  # traces the custom op
    with torch.no_grad():
        assert_close(outer(x), model(x))
    compiled.recompile()  # a changed graph: FX's own call again
    assert not kiln.runtime.stats(compiled)["engines_only_fast_path"]
    assert_close(compiled(x), model(x))


def test_a_module_with_pytorch_ops_keeps_the_fx_forward():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)).eval()
    compiled = kt.compile(model, [kt.Input((2, 8))], device="cpu", min_block_size=1,
                          torch_executed_ops={"aten.relu"})
    assert not kiln.runtime.stats(compiled)["engines_only_fast_path"]
    general = count_forward_calls(compiled)
    x = torch.randn(2, 8)
    assert_close(compiled(x), model(x))
    assert general == [1]


def test_four_threads_keep_their_own_validated_inputs(model):
    compiled = compile_engines_only(model)
    errors, calls = [], 6

    def work(batch):
        try:
            x = torch.randn(batch, 8)
            for _ in range(calls):
                assert_close(compiled(x), model(x))
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(b,)) for b in (1, 2, 3, 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert per_call(compiled) == {"matched": 4 * (calls - 1), "validated": 4}


def test_session_matches_torch_feeds_and_validates_changed_ones(mlp, rng):
    from conftest import mlp_reference

    path, weights = mlp
    session = kiln.InferenceSession(path, device="cpu")
    x = torch.from_numpy(rng.standard_normal((3, 16)).astype(np.float32))
    (first,) = session.run(None, {"x": x})
    (again,) = session.run(["y"], {"x": x})
    assert torch.equal(first, again)
    np.testing.assert_allclose(first.numpy(), mlp_reference(x.numpy(), weights), rtol=1e-5, atol=1e-6)
    assert session.stats()["per_call"] == {"matched": 1, "validated": 1}
    with pytest.raises(TypeError, match="input 'x' must be float32; got float64"):
        session.run(None, {"x": x.double()})
    with pytest.raises(ValueError, match="'z' is not an input"):
        session.run(None, {"z": x})
    x5 = torch.from_numpy(rng.standard_normal((5, 16)).astype(np.float32))
    (y5,) = session.run(None, {"x": x5})
    np.testing.assert_allclose(y5.numpy(), mlp_reference(x5.numpy(), weights), rtol=1e-5, atol=1e-6)
    assert session.stats()["per_call"] == {"matched": 1, "validated": 2}
