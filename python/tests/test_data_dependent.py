"""Sessions over plans with data-dependent output sizes (NonZero's count): the CPU reference everywhere,
the GPU where there is one (outputs allocated at the plan's bound and narrowed to the size enqueue found)."""

import numpy as np
import pytest
from conftest import save_model
from onnx import TensorProto, helper

import kiln

PROFILE = {"x": ((1, 8), (4, 8), (16, 8))}


@pytest.fixture
def positives(tmp_path):
    """y = the indices of x's positive elements (NonZero of x > 0), s = 2 * x: one output of each kind."""
    nodes = [
        helper.make_node("Constant", [], ["zero"], value=helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])),
        helper.make_node("Greater", ["x", "zero"], ["mask"]),
        helper.make_node("NonZero", ["mask"], ["y"]),
        helper.make_node("Add", ["x", "x"], ["s"]),
    ]
    return save_model(tmp_path / "positives.onnx", nodes,
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                      [helper.make_tensor_value_info("y", TensorProto.INT64, [2, "K"]),
                       helper.make_tensor_value_info("s", TensorProto.FLOAT, ["N", 8])])


def inputs_with_positives(rng, rows, count):
    x = -rng.uniform(0.5, 1.0, (rows, 8)).astype(np.float32)
    flat = x.reshape(-1)
    flat[rng.choice(flat.size, count, replace=False)] *= -1
    return x


def check(outputs, x):
    y, s = (o.cpu().numpy() if hasattr(o, "cpu") else o for o in outputs)
    np.testing.assert_array_equal(y, np.array(np.nonzero(x > 0), dtype=np.int64))
    np.testing.assert_array_equal(s, x + x)


def test_cpu_session_sizes_outputs_by_data(positives, rng):
    plan = kiln.build(positives, profiles=PROFILE)
    session = kiln.InferenceSession(plan, device="cpu")
    for rows, count in ((4, 5), (16, 0), (3, 24), (7, 11)):
        x = inputs_with_positives(rng, rows, count)
        check(session.run(None, {"x": x}), x)


def test_a_bound_that_names_no_such_tensor_is_refused(positives):
    with pytest.raises(kiln.Error, match="'nothing', which is not a tensor"):
        kiln.build(positives, profiles=PROFILE, data_dependent_bounds={"nothing": 4})
    with pytest.raises(ValueError, match="must be a non-negative int"):
        kiln.build(positives, profiles=PROFILE, data_dependent_bounds={"y": -1})


@pytest.mark.skipif(not kiln.runtime.cuda_available()[0], reason="no usable GPU")
def test_gpu_session_narrows_outputs_to_the_size_enqueue_found(positives, rng):
    import torch

    plan = kiln.build(positives, profiles=PROFILE)
    session = kiln.InferenceSession(plan, device="cuda")
    # Counts that grow and shrink between calls: each call's outputs have its own size, numpy and torch alike.
    for rows, count in ((4, 5), (16, 100), (16, 0), (2, 16), (16, 128), (5, 1)):
        x = inputs_with_positives(rng, rows, count)
        check(session.run(None, {"x": x}), x)
        outputs = session.run(None, {"x": torch.from_numpy(x).cuda()})
        assert all(o.is_cuda for o in outputs)
        assert tuple(outputs[0].shape) == (2, count)
        check(outputs, x)
    # A bound below what the data takes: the run fails naming the tensor, and the session still works.
    bounded = kiln.InferenceSession(kiln.build(positives, profiles=PROFILE, data_dependent_bounds={"y": 6}), device="cuda")
    x = inputs_with_positives(rng, 4, 6)
    check(bounded.run(None, {"x": x}), x)
    with pytest.raises(kiln.Error, match="'y'"):
        bounded.run(None, {"x": inputs_with_positives(rng, 4, 7)})
    check(bounded.run(None, {"x": x}), x)
