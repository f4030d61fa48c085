"""kiln.torch's API without a GPU: settings validation, partitioning, the custom
op under tracing, save/load, backend="kiln", and the cudagraphs decisions.
Engines run on kiln's exact CPU reference interpreter (device="cpu")."""

import warnings

import pytest

torch = pytest.importorskip("torch")

import kiln  # noqa: E402
import kiln.torch as kt  # noqa: E402
from kiln.runtime import RuntimeSettings  # noqa: E402


class Mixed(torch.nn.Module):
    """Two kiln regions around a cumsum that PyTorch runs (torch_executed_ops)."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(8, 16)
        self.ln = torch.nn.LayerNorm(16)
        self.b = torch.nn.Linear(16, 4)

    def forward(self, x):
        h = torch.nn.functional.gelu(self.ln(self.a(x)))
        h = torch.cumsum(h, dim=-1)
        return torch.softmax(self.b(torch.tanh(h) * 0.5 + 1.0), dim=-1)


TORCH_OPS = {"aten.cumsum"}


@pytest.fixture
def model():
    torch.manual_seed(0)
    return Mixed().eval()


def compile_cpu(model, inputs=None, **kw):
    kw.setdefault("min_block_size", 2)
    kw.setdefault("torch_executed_ops", TORCH_OPS)
    return kt.compile(model, inputs or [kt.Input((3, 8))], device="cpu", **kw)


def call_targets(compiled):
    return [str(n.target) for n in compiled.graph.nodes if n.op == "call_function"]


def assert_close(y, expected, rtol=1e-5):
    scale = expected.abs().max().item()
    assert (y - expected).abs().max().item() <= rtol * max(scale, 1e-30)


# --- settings and arguments ------------------------------------------------------------------------


def test_unknown_keywords_are_type_errors(model):
    with pytest.raises(TypeError, match="devise"):
        kt.compile(model, [kt.Input((3, 8))], devise="cpu")


@pytest.mark.parametrize(
    "keyword,value,allowed",
    [
        ("cuda_graph_strategy", "always", "disabled, whole_graph_capture"),
        ("dynamic_shapes_kernel_specialization_strategy", "sometimes", "lazy, eager, none"),
        ("precision", "fp8", "fp16"),
        ("device", "tpu", "cuda"),
        ("min_block_size", 0, "positive"),
    ],
)
def test_bad_values_name_the_allowed_ones(model, keyword, value, allowed):
    with pytest.raises(ValueError, match=allowed):
        kt.compile(model, [kt.Input((3, 8))], **{keyword: value})


def test_input_validation():
    with pytest.raises(ValueError, match="either shape or"):
        kt.Input((1, 2), min_shape=(1, 2), opt_shape=(1, 2), max_shape=(1, 2))
    with pytest.raises(ValueError, match="all of min_shape"):
        kt.Input(min_shape=(1, 2))
    with pytest.raises(ValueError, match="min <= opt <= max"):
        kt.Input(min_shape=(4, 2), opt_shape=(2, 2), max_shape=(8, 2))
    with pytest.raises(ValueError, match="same rank"):
        kt.Input(min_shape=(1,), opt_shape=(1, 2), max_shape=(1, 2))
    assert kt.Input(min_shape=(1, 8), opt_shape=(4, 8), max_shape=(16, 8)).dynamic_dims == [0]


def test_runtime_settings_are_frozen_and_validated(model):
    compiled = compile_cpu(model)
    with pytest.raises(TypeError, match="RuntimeSettings"):
        compiled.runtime_settings = {"cuda_graph_strategy": "whole_graph_capture"}
    settings = RuntimeSettings(cuda_graph_strategy="whole_graph_capture", dynamic_shapes_kernel_specialization_strategy="eager")
    compiled.runtime_settings = settings
    assert compiled.runtime_settings == settings
    assert all(e["settings"] == settings for e in kiln.runtime.stats(compiled)["engines"])
    with pytest.raises(Exception):
        settings.cuda_graph_strategy = "disabled"  # frozen


# --- partitioning -------------------------------------------------------------------------------------


def test_regions_become_engines_and_the_rest_stays_pytorch(model):
    compiled = compile_cpu(model)
    targets = call_targets(compiled)
    assert len(compiled.engines) == 2 and compiled.has_torch_segments
    assert "aten.cumsum.default" in targets
    x = torch.randn(3, 8)
    assert_close(compiled(x), model(x))


def test_min_block_size_leaves_small_regions_to_pytorch(model):
    compiled = compile_cpu(model, min_block_size=1000)
    assert compiled.engines == []
    assert any("addmm" in t or "linear" in t for t in call_targets(compiled))
    x = torch.randn(3, 8)
    assert_close(compiled(x), model(x))


def test_torch_executed_ops_accepts_overloads_packets_and_names(model):
    for ops in ({torch.ops.aten.cumsum}, {torch.ops.aten.cumsum.default}, {"torch.ops.aten.cumsum.default"}, {"aten::cumsum"}):
        compiled = compile_cpu(model, torch_executed_ops=ops)
        assert "aten.cumsum.default" in call_targets(compiled), ops
    with pytest.raises(TypeError, match="torch_executed_ops"):
        compile_cpu(model, torch_executed_ops={42})


def test_require_full_compilation_names_what_would_stay_in_pytorch(model):
    with pytest.raises(ValueError, match="cumsum.*torch_executed_ops"):
        compile_cpu(model, require_full_compilation=True)


def test_dynamic_shapes_on_the_reference(model):
    compiled = compile_cpu(model, [kt.Input(min_shape=(1, 8), opt_shape=(4, 8), max_shape=(32, 8))])
    for batch in (1, 4, 5, 32):
        x = torch.randn(batch, 8)
        y = compiled(x)
        assert y.shape == (batch, 4)
        assert_close(y, model(x))
    with pytest.raises(kiln.Error, match="outside its range"):
        compiled(torch.randn(33, 8))


# --- the custom op under tracing, save/load, torch.compile ----------------------------------------------


def test_torch_export_of_a_compiled_module_keeps_symbolic_output_shapes(model):
    compiled = compile_cpu(model, [kt.Input(min_shape=(1, 8), opt_shape=(4, 8), max_shape=(32, 8))])
    batch = torch.export.Dim("batch", min=2, max=32)
    program = torch.export.export(compiled, (torch.randn(4, 8),), dynamic_shapes=({0: batch},), strict=False)
    executes = [n for n in program.graph.nodes if n.op == "call_function" and n.target is torch.ops.kiln.execute.default]
    assert len(executes) == 2
    out = [n for n in program.graph.nodes if n.op == "output"][0].args[0][0]
    assert str(out.meta["val"].shape[0]) != "4"  # symbolic, from kiln's shape inference
    x = torch.randn(7, 8)
    assert_close(program.module()(x), model(x))


def test_save_and_load_round_trip(model, tmp_path):
    compiled = compile_cpu(model, [kt.Input(min_shape=(1, 8), opt_shape=(4, 8), max_shape=(32, 8))])
    path = tmp_path / "model.pt2"
    kt.save(compiled, path)
    settings = RuntimeSettings(dynamic_shapes_kernel_specialization_strategy="none")
    loaded = kt.load(path, runtime_settings=settings)
    assert len(loaded.engines) == 2 and loaded.runtime_settings == settings
    for batch in (2, 9):
        x = torch.randn(batch, 8)
        assert_close(loaded(x), model(x))
    # the archive is a plain ExportedProgram: the plans are uint8 constants
    program = torch.export.load(str(path))
    plans = [v for k, v in program.state_dict.items() if "_kiln_plan" in k] + [
        v for k, v in program.constants.items() if "_kiln_plan" in k
    ]
    assert len(plans) == 2 and all(p.dtype == torch.uint8 for p in plans)


def test_load_refuses_what_is_not_a_kiln_program(tmp_path):
    with pytest.raises(FileNotFoundError):
        kt.load(tmp_path / "missing.pt2")
    plain = torch.export.export(torch.nn.Linear(2, 2), (torch.randn(1, 2),))
    torch.export.save(plain, str(tmp_path / "plain.pt2"))
    with pytest.raises(ValueError, match="no kiln engines"):
        kt.load(tmp_path / "plain.pt2")
    with pytest.raises(TypeError, match="kiln.torch.compile"):
        kt.save(torch.nn.Linear(2, 2), tmp_path / "x.pt2")


def test_compiled_module_inside_torch_compile(model):
    compiled = compile_cpu(model)
    outer = torch.compile(compiled, fullgraph=True, backend="eager")
    x = torch.randn(3, 8)
    with torch.no_grad():
        assert_close(outer(x), model(x))


def test_backend_kiln(model):
    fn = torch.compile(model, backend="kiln")
    x = torch.randn(3, 8)
    with torch.no_grad():
        assert_close(fn(x), model(x))


# --- cudagraphs modes: the decisions (no capture happens without a GPU) ---------------------------------


def test_cudagraphs_mode_switches():
    kiln.runtime.set_cudagraphs_mode(True)
    assert kiln.runtime.get_cudagraphs_mode() and not kiln.runtime.get_whole_cudagraphs_mode()
    kiln.runtime.set_cudagraphs_mode(False)
    assert not kiln.runtime.get_cudagraphs_mode()
    with pytest.raises(TypeError):
        kiln.runtime.set_cudagraphs_mode("on")


def test_enable_cudagraphs_on_an_engines_only_module_is_subgraph_mode():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)).eval()
    compiled = kt.compile(model, [kt.Input((2, 8))], device="cpu", min_block_size=1)
    assert not compiled.has_torch_segments
    with kiln.runtime.enable_cudagraphs(compiled) as m:
        assert m is compiled and kiln.runtime.get_cudagraphs_mode()
        assert kiln.runtime.stats(m)["cudagraphs_mode"] == "subgraph"
    assert not kiln.runtime.get_cudagraphs_mode()


def test_whole_graph_is_refused_before_any_capture_naming_the_engine(model):
    compiled = compile_cpu(model)  # reference-interpreter engines cannot be captured
    with pytest.raises(RuntimeError, match="engine0.*cannot be captured as one piece"):
        with kiln.runtime.enable_cudagraphs(compiled):
            pass
    assert not kiln.runtime.get_cudagraphs_mode()


@pytest.mark.parametrize(
    "mode,engines,outer,native,warns,error",
    [
        ("standard", [("a", True, True, False, True), ("b", False, True, False, True)], False, [True, False], 0, ""),
        ("subgraph", [("a", False, True, False, True), ("b", True, True, False, True)], False, [True, True], 1, ""),
        ("whole_graph", [("a", False, False, True, True), ("b", True, True, False, True)], True, [False, False], 0, ""),
        ("whole_graph", [("a", False, True, True, True)], False, [False], 0, "engine 'a'.*lazy"),
        ("whole_graph", [("a", False, False, False, False)], False, [False], 0, "engine 'a'.*cannot be captured"),
    ],
)
def test_behavior_matrix_decisions(mode, engines, outer, native, warns, error):
    got_outer, got_native, got_warnings, got_error = kiln._C.plan_module(mode, engines)
    if error:
        import re

        assert re.search(error, got_error), got_error
        return
    assert (got_outer, list(got_native), len(got_warnings), got_error) == (outer, native, warns, "")


def test_subgraph_warning_is_given_once_per_engine(model):
    compiled = compile_cpu(model)
    runner = compiled.engines[0]
    kiln.runtime.set_cudagraphs_mode(True)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert runner.graph_strategy() == "whole_graph_capture"
            assert runner.graph_strategy() == "whole_graph_capture"
    finally:
        kiln.runtime.set_cudagraphs_mode(False)
    assert len([w for w in caught if "switched to whole_graph_capture" in str(w.message)]) == 1
    assert runner.graph_strategy() == "disabled"
