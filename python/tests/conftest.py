"""Models for the Python tests, written with the onnx package (opset 17: every kiln build accepts it)."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper


def save_model(path, nodes, inputs, outputs, initializers=()):
    graph = helper.make_graph(nodes, "test", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


@pytest.fixture
def no_tf32():
    """Full fp32 matmuls and convolutions in PyTorch while a test compares with it."""
    import torch

    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.fixture
def rng():
    seed = 1234
    print(f"seed {seed}")
    return np.random.default_rng(seed)


@pytest.fixture
def mlp(tmp_path, rng):
    """y = relu(x @ w1 + b1) @ w2 + b2 with a symbolic batch; returns (path, weights)."""
    w1 = rng.uniform(-0.5, 0.5, (16, 32)).astype(np.float32)
    b1 = rng.uniform(-0.5, 0.5, (32,)).astype(np.float32)
    w2 = rng.uniform(-0.5, 0.5, (32, 8)).astype(np.float32)
    b2 = rng.uniform(-0.5, 0.5, (8,)).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h0"]),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h2"]),
        helper.make_node("MatMul", ["h2", "w2"], ["h3"]),
        helper.make_node("Add", ["h3", "b2"], ["y"]),
    ]
    inits = [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))]
    path = save_model(
        tmp_path / "mlp.onnx",
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])],
        inits,
    )
    return path, (w1, b1, w2, b2)


def mlp_reference(x, weights):
    w1, b1, w2, b2 = (w.astype(np.float64) for w in weights)
    return np.maximum(x.astype(np.float64) @ w1 + b1, 0) @ w2 + b2


MLP_PROFILE = {"x": ((1, 16), (4, 16), (32, 16))}


@pytest.fixture
def text_model(tmp_path):
    """x[N] -> Neg -> Cast to string -> StringConcat("n=", .) -> text; Equal(text, expected[N]) -> same; Where(same, x, 0) -> y.

    Returns the path and a reference in numpy for whole numbers in x (Cast writes -3.0 as "-3.0", as numpy's str)."""
    nodes = [
        helper.make_node("Neg", ["x"], ["neg"]),
        helper.make_node("Cast", ["neg"], ["digits"], to=TensorProto.STRING),
        helper.make_node("StringConcat", ["prefix", "digits"], ["text"]),
        helper.make_node("Equal", ["text", "expected"], ["same"]),
        helper.make_node("Where", ["same", "x", "zero"], ["y"]),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N"]),
              helper.make_tensor_value_info("expected", TensorProto.STRING, ["N"])]
    outputs = [helper.make_tensor_value_info("text", TensorProto.STRING, ["N"]),
               helper.make_tensor_value_info("same", TensorProto.BOOL, ["N"]),
               helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N"])]
    initializers = [helper.make_tensor("prefix", TensorProto.STRING, [1], [b"n="]),
                    helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])]
    graph = helper.make_graph(nodes, "text", inputs, outputs, initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=9)
    onnx.checker.check_model(model)
    path = str(tmp_path / "text.onnx")
    onnx.save(model, path)

    def reference(x, expected):
        text = np.array([f"n={float(-v)}" for v in x], dtype=object)
        same = text == np.asarray(expected, dtype=object)
        return text, same, np.where(same, x, np.float32(0))

    return path, reference

