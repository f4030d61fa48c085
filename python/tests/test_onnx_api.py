"""kiln.build, kiln.Plan and kiln.InferenceSession on the CPU reference interpreter (no GPU needed)."""

import dataclasses

import numpy as np
import pytest
from conftest import MLP_PROFILE, mlp_reference, save_model
from onnx import TensorProto, helper

import kiln
from kiln.runtime import RuntimeSettings


def test_build_gives_a_plan_with_symbolic_shapes_and_ranges(mlp):
    path, _ = mlp
    plan = kiln.build(path, profiles=MLP_PROFILE)
    assert [(t.name, t.dtype, t.shape) for t in plan.inputs] == [("x", "float32", ("N", 16))]
    assert [(t.name, t.dtype, t.shape) for t in plan.outputs] == [("y", "float32", ("N", 8))]
    assert plan.ranges == {"N": (1, 4, 32)}
    assert plan.profiles == [{"N": (1, 4, 32)}]
    assert plan.precision == "fp32"


TWO_PROFILES = [{"x": ((1, 16), (2, 16), (8, 16))}, {"x": ((9, 16), (32, 16), (64, 16))}]


def test_build_with_several_profiles(mlp, tmp_path):
    path, _ = mlp
    plan = kiln.build(path, profiles=TWO_PROFILES)
    assert plan.profiles == [{"N": (1, 2, 8)}, {"N": (9, 32, 64)}]
    assert plan.ranges == {"N": (1, 2, 64)}  # the union: the plan's memory holds the largest shapes of both
    plan.save(tmp_path / "two.kiln")
    assert kiln.Plan.load(tmp_path / "two.kiln").profiles == plan.profiles
    with pytest.raises(kiln.Error, match="has no range in profile 1") as info:
        kiln.build(path, profiles=[{"x": ((1, 16), (2, 16), (8, 16))}, {}])
    assert info.value.code == "unsupported"
    with pytest.raises(ValueError, match="profile for 'x' in profile 1 must be"):
        kiln.build(path, profiles=[{"x": ((1, 16), (2, 16), (8, 16))}, {"x": ((9, 16), (64, 16))}])
    with pytest.raises(TypeError, match="profile 1 must be a dict"):
        kiln.build(path, profiles=[{"x": ((1, 16), (2, 16), (8, 16))}, ((9, 16), (32, 16), (64, 16))])
    with pytest.raises(TypeError, match="or a list of such dicts"):
        kiln.build(path, profiles="x:1x16/2x16/8x16")


def test_cpu_session_runs_the_shapes_of_its_profile(mlp, rng):
    path, weights = mlp
    plan = kiln.build(path, profiles=TWO_PROFILES)
    session = kiln.InferenceSession(plan, device="cpu")
    assert session.profile_index == 0
    small, large = (rng.uniform(-1, 1, (n, 16)).astype(np.float32) for n in (8, 12))
    (y,) = session.run(None, {"x": small})
    np.testing.assert_allclose(y, mlp_reference(small, weights), rtol=1e-5, atol=1e-5)
    with pytest.raises(kiln.Error, match=r"outside the range \[1, 8\] of 'N' in profile 0; profile 1 accepts") as info:
        session.run(None, {"x": large})
    assert info.value.code == "shape error"
    session.profile_index = 1
    (y,) = session.run(None, {"x": large})
    np.testing.assert_allclose(y, mlp_reference(large, weights), rtol=1e-5, atol=1e-5)
    with pytest.raises(kiln.Error, match="profile 0 accepts"):
        session.run(None, {"x": small})
    assert kiln.InferenceSession(plan, device="cpu", profile_index=1).profile_index == 1
    with pytest.raises(ValueError, match=r"profile_index 2 does not exist: the plan has 2 optimization profiles \(0 to 1\)"):
        session.profile_index = 2
    assert session.profile_index == 1
    with pytest.raises(TypeError, match="profile_index must be an int"):
        session.profile_index = "1"
    with pytest.raises(ValueError, match=r"the plan has 1 optimization profile \(0\)"):
        kiln.InferenceSession(path, device="cpu", profile_index=1)  # a model run as written: one profile


def test_plan_save_load_round_trip(mlp, tmp_path):
    path, _ = mlp
    plan = kiln.build(path, profiles=MLP_PROFILE, precision="fp16")
    out = tmp_path / "mlp.kiln"
    plan.save(out)
    loaded = kiln.Plan.load(out)
    assert loaded.to_bytes() == plan.to_bytes()
    assert loaded.precision == "fp16"
    assert kiln.Plan.from_bytes(plan.to_bytes()).inputs == plan.inputs


def test_build_reports_progress(mlp):
    path, _ = mlp
    lines = []
    kiln.build(path, profiles=MLP_PROFILE, progress=lines.append)
    assert lines, "the builder reported no pass"


def test_log_level_chooses_what_reaches_stderr(mlp, capfd):
    path, _ = mlp
    assert kiln.log_level() == "warning"
    try:
        kiln.set_log_level("info")
        kiln.build(path, profiles=MLP_PROFILE)
        assert "kiln: fold constants: " in capfd.readouterr().err
        kiln.set_log_level("warning")
        kiln.build(path, profiles=MLP_PROFILE)
        assert capfd.readouterr().err == ""
        with pytest.raises(kiln.Error, match="log level must be error, warning, info or verbose"):
            kiln.set_log_level("debug")
    finally:
        kiln.set_log_level("warning")


@pytest.mark.parametrize("batch", [1, 3, 32])
def test_cpu_session_on_the_model_matches_numpy(mlp, rng, batch):
    path, weights = mlp
    x = rng.uniform(-1, 1, (batch, 16)).astype(np.float32)
    session = kiln.InferenceSession(path, device="cpu")
    (y,) = session.run(None, {"x": x})
    assert y.dtype == np.float32 and y.shape == (batch, 8)
    np.testing.assert_allclose(y, mlp_reference(x, weights), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("precision,tolerance", [("fp32", 1e-5), ("fp16", 2e-2), ("bf16", 6e-2)])
def test_cpu_session_on_a_plan_matches_numpy(mlp, rng, precision, tolerance, tmp_path):
    path, weights = mlp
    plan_path = tmp_path / f"mlp-{precision}.kiln"
    kiln.build(path, profiles=MLP_PROFILE, precision=precision).save(plan_path)
    x = rng.uniform(-1, 1, (5, 16)).astype(np.float32)
    (y,) = kiln.InferenceSession(plan_path, device="cpu").run(["y"], {"x": x})
    expected = mlp_reference(x, weights)
    assert np.abs(y - expected).max() <= tolerance * np.abs(expected).max()


def test_session_describes_its_inputs_and_outputs(mlp):
    path, _ = mlp
    session = kiln.InferenceSession(path, device="cpu")
    (i,) = session.get_inputs()
    (o,) = session.get_outputs()
    assert (i.name, i.type, i.shape) == ("x", "float32", ("N", 16))
    assert (o.name, o.type, o.shape) == ("y", "float32", ("N", 8))


def test_bad_feeds_are_value_and_type_errors(mlp):
    path, _ = mlp
    session = kiln.InferenceSession(path, device="cpu")
    x = np.ones((2, 16), np.float32)
    with pytest.raises(ValueError, match="'z' is not an input; the inputs are x"):
        session.run(None, {"x": x, "z": x})
    with pytest.raises(ValueError, match="missing input 'x'"):
        session.run(None, {})
    with pytest.raises(TypeError, match="input 'x' must be float32; got float64"):
        session.run(None, {"x": x.astype(np.float64)})
    with pytest.raises(ValueError, match="'q' is not an output; the outputs are y"):
        session.run(["q"], {"x": x})
    with pytest.raises(kiln.Error, match="x") as info:
        session.run(None, {"x": np.ones((2, 15), np.float32)})
    assert info.value.code == "shape error"


def test_kiln_errors_carry_a_code_and_name_the_file(tmp_path):
    bad = tmp_path / "garbage.onnx"
    bad.write_bytes(b"\x00not a model")
    with pytest.raises(kiln.Error) as info:
        kiln.InferenceSession(bad, device="cpu")
    assert "garbage.onnx" in str(info.value)
    assert info.value.code == "parse error"
    with pytest.raises(kiln.Error, match="missing.kiln"):
        kiln.Plan.load(tmp_path / "missing.kiln")


def test_dynamic_model_without_profile_fails_to_build_with_advice(mlp):
    path, _ = mlp
    with pytest.raises(kiln.Error, match="N"):
        kiln.build(path)


def test_argument_validation(mlp):
    path, _ = mlp
    with pytest.raises(ValueError, match="precision must be one of fp32, fp16, bf16"):
        kiln.build(path, profiles=MLP_PROFILE, precision="int4")
    with pytest.raises(ValueError, match="device must be"):
        kiln.InferenceSession(path, device="tpu")
    with pytest.raises(ValueError, match="profile for 'x' must be"):
        kiln.build(path, profiles={"x": ((1, 16), (32, 16))})
    with pytest.raises(TypeError, match="runtime_settings"):
        kiln.InferenceSession(path, device="cpu", runtime_settings={"cuda_graph_strategy": "disabled"})


def test_runtime_settings_are_validated_and_frozen():
    with pytest.raises(ValueError, match="disabled, whole_graph_capture"):
        RuntimeSettings(cuda_graph_strategy="always")
    with pytest.raises(ValueError, match="lazy, eager, none"):
        RuntimeSettings(dynamic_shapes_kernel_specialization_strategy="sometimes")
    with pytest.raises(TypeError):
        RuntimeSettings(cuda_graphs=True)  # unknown keyword
    s = RuntimeSettings(cuda_graph_strategy="whole_graph_capture")
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.cuda_graph_strategy = "disabled"
    assert dataclasses.replace(s, runtime_cache="/tmp/x.bin").runtime_cache == "/tmp/x.bin"


def test_integer_and_bool_tensors_round_trip(tmp_path, rng):
    path = save_model(
        tmp_path / "int.onnx",
        [helper.make_node("Add", ["a", "b"], ["s"]), helper.make_node("Greater", ["s", "b"], ["g"])],
        [helper.make_tensor_value_info("a", TensorProto.INT64, [3, 4]), helper.make_tensor_value_info("b", TensorProto.INT64, [3, 4])],
        [helper.make_tensor_value_info("s", TensorProto.INT64, [3, 4]), helper.make_tensor_value_info("g", TensorProto.BOOL, [3, 4])],
    )
    a = rng.integers(-1000, 1000, (3, 4))
    b = rng.integers(-1000, 1000, (3, 4))
    s, g = kiln.InferenceSession(path, device="cpu").run(None, {"a": a, "b": b})
    np.testing.assert_array_equal(s, a + b)
    np.testing.assert_array_equal(g, (a + b) > b)
    assert g.dtype == np.bool_


@pytest.mark.parametrize("onnx_type,np_type", [(TensorProto.INT16, np.int16), (TensorProto.UINT16, np.uint16),
                                               (TensorProto.UINT32, np.uint32), (TensorProto.UINT64, np.uint64)])
def test_sixteen_bit_and_unsigned_arrays_wrap_and_compare_like_numpy(tmp_path, rng, onnx_type, np_type):
    path = save_model(
        tmp_path / "u.onnx",
        [helper.make_node("Add", ["a", "b"], ["s"]), helper.make_node("Less", ["a", "b"], ["l"])],
        [helper.make_tensor_value_info("a", onnx_type, [7]), helper.make_tensor_value_info("b", onnx_type, [7])],
        [helper.make_tensor_value_info("s", onnx_type, [7]), helper.make_tensor_value_info("l", TensorProto.BOOL, [7])],
    )
    info = np.iinfo(np_type)
    a = rng.integers(info.min, info.max, 7, dtype=np_type, endpoint=True)
    b = rng.integers(info.min, info.max, 7, dtype=np_type, endpoint=True)
    a[0], b[0] = info.max, 1  # wraps
    s, less = kiln.InferenceSession(path, device="cpu").run(None, {"a": a, "b": b})
    assert s.dtype == np_type
    np.testing.assert_array_equal(s, a + b)
    np.testing.assert_array_equal(less, a < b)
    torch = pytest.importorskip("torch")
    if hasattr(torch, np.dtype(np_type).name):  # torch's unsigned 16-, 32- and 64-bit types (2.3 on)
        (ts, _) = kiln.InferenceSession(path, device="cpu").run(None, {"a": torch.from_numpy(a), "b": torch.from_numpy(b)})
        assert ts.dtype == getattr(torch, np.dtype(np_type).name)
        np.testing.assert_array_equal(ts.numpy(), a + b)


def test_torch_cpu_tensors_in_give_torch_tensors_out(mlp, rng):
    torch = pytest.importorskip("torch")
    path, weights = mlp
    x = rng.uniform(-1, 1, (4, 16)).astype(np.float32)
    (y,) = kiln.InferenceSession(path, device="cpu").run(None, {"x": torch.from_numpy(x)})
    assert isinstance(y, torch.Tensor)
    np.testing.assert_allclose(y.numpy(), mlp_reference(x, weights), rtol=1e-5, atol=1e-5)


def test_string_tensors_are_numpy_arrays_of_str(text_model):
    path, reference = text_model
    session = kiln.InferenceSession(path, device="cpu")
    assert [(t.name, t.dtype) for t in session.get_inputs()] == [("x", "float32"), ("expected", "string")]
    x = np.array([3, -1, 7, 2], np.float32)
    expected = np.array(["n=-3.0", "n=5.0", "n=-7.0", "nope"])  # numpy str; object arrays of str work too
    text, same, y = session.run(None, {"x": x, "expected": expected})
    want = reference(x, expected)
    assert text.dtype == object and text.shape == (4,)
    assert text.tolist() == want[0].tolist()
    np.testing.assert_array_equal(same, want[1])
    np.testing.assert_array_equal(y, want[2])
    assert session.run(["text"], {"x": x[:0], "expected": np.array([], dtype=object)})[0].shape == (0,)
    with pytest.raises(TypeError, match="must be str; got int"):
        session.run(None, {"x": x[:1], "expected": np.array([5], dtype=object)})

