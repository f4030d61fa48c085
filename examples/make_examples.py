#!/usr/bin/env python3
"""Writes kiln's bundled example models (an MLP and a tiny CNN) with python3-onnx.

Weights come from a fixed seed, so the files are the same on every machine.
Usage: make_examples.py OUTPUT_DIR
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13


def weight(rng, name, *shape, scale=None):
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
    scale = scale if scale is not None else 1.0 / np.sqrt(fan_in)
    return numpy_helper.from_array(rng.uniform(-scale, scale, shape).astype(np.float32), name)


def save(graph, path):
    model = helper.make_model(graph, producer_name="kiln-examples",
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    onnx.save(model, path)


def mlp(rng, path):
    """batch x 64 -> 128 -> 128 -> 10 with ReLU, then softmax; batch is symbolic."""
    sizes = [64, 128, 128, 10]
    nodes, inits = [], []
    x = "x"
    for i in range(3):
        w, b, y = f"fc{i}.weight", f"fc{i}.bias", f"fc{i}"
        inits += [weight(rng, w, sizes[i + 1], sizes[i]), weight(rng, b, sizes[i + 1], scale=0.1)]
        nodes.append(helper.make_node("Gemm", [x, w, b], [y], transB=1, name=f"fc{i}"))
        x = y
        if i < 2:
            nodes.append(helper.make_node("Relu", [x], [f"relu{i}"], name=f"relu{i}"))
            x = f"relu{i}"
    nodes.append(helper.make_node("Softmax", [x], ["probs"], axis=-1, name="softmax"))
    graph = helper.make_graph(
        nodes, "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 10])], inits)
    save(graph, path)


def tiny_cnn(rng, path):
    """batch x 3 x 32 x 32 image -> conv/bn/relu/pool x2 -> global pool -> linear 10."""
    nodes, inits = [], []
    x, channels = "image", 3
    for i, out in enumerate([16, 32]):
        inits += [weight(rng, f"conv{i}.weight", out, channels, 3, 3), weight(rng, f"conv{i}.bias", out, scale=0.1),
                  numpy_helper.from_array(rng.uniform(0.5, 1.5, out).astype(np.float32), f"bn{i}.scale"),
                  numpy_helper.from_array(rng.uniform(-0.1, 0.1, out).astype(np.float32), f"bn{i}.bias"),
                  numpy_helper.from_array(rng.uniform(-0.1, 0.1, out).astype(np.float32), f"bn{i}.mean"),
                  numpy_helper.from_array(rng.uniform(0.5, 1.5, out).astype(np.float32), f"bn{i}.var")]
        nodes += [
            helper.make_node("Conv", [x, f"conv{i}.weight", f"conv{i}.bias"], [f"conv{i}"], pads=[1, 1, 1, 1],
                             name=f"conv{i}"),
            helper.make_node("BatchNormalization", [f"conv{i}", f"bn{i}.scale", f"bn{i}.bias", f"bn{i}.mean",
                                                    f"bn{i}.var"], [f"bn{i}"], name=f"bn{i}"),
            helper.make_node("Relu", [f"bn{i}"], [f"relu{i}"], name=f"relu{i}"),
            helper.make_node("MaxPool", [f"relu{i}"], [f"pool{i}"], kernel_shape=[2, 2], strides=[2, 2],
                             name=f"pool{i}"),
        ]
        x, channels = f"pool{i}", out
    inits += [weight(rng, "fc.weight", 10, channels), weight(rng, "fc.bias", 10, scale=0.1)]
    nodes += [
        helper.make_node("GlobalAveragePool", [x], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], axis=1, name="flatten"),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], transB=1, name="fc"),
    ]
    graph = helper.make_graph(
        nodes, "tiny_cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])], inits)
    save(graph, path)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(20261126)
    mlp(rng, os.path.join(out, "mlp.onnx"))
    tiny_cnn(rng, os.path.join(out, "tiny_cnn.onnx"))


if __name__ == "__main__":
    main()
