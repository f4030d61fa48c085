#!/usr/bin/env python3
"""Writes a ResNet-18 (torchvision layout, random weights, 44 MB) as ONNX with python3-onnx.

Used to time the CPU reference interpreter on a real-sized CNN without any
download. Usage: make_resnet18.py OUTPUT.onnx
"""
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    rng = np.random.default_rng(18)
    nodes, inits = [], []
    counter = [0]

    def name(stem):
        counter[0] += 1
        return f"{stem}{counter[0]}"

    def conv_bn(x, cin, cout, k, stride, relu=True):
        w, b = name("w"), name("b")
        inits.append(numpy_helper.from_array(
            rng.normal(0, np.sqrt(2.0 / (cin * k * k)), (cout, cin, k, k)).astype(np.float32), w))
        inits.append(numpy_helper.from_array(rng.normal(0, 0.01, cout).astype(np.float32), b))
        y = name("conv")
        nodes.append(helper.make_node("Conv", [x, w, b], [y], kernel_shape=[k, k], strides=[stride, stride],
                                      pads=[k // 2] * 4))
        if relu:
            r = name("relu")
            nodes.append(helper.make_node("Relu", [y], [r]))
            return r
        return y

    x = conv_bn("input", 3, 64, 7, 2)
    pool = name("pool")
    nodes.append(helper.make_node("MaxPool", [x], [pool], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]))
    x, cin = pool, 64
    for cout, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
        for block in range(2):
            s = stride if block == 0 else 1
            h = conv_bn(x, cin, cout, 3, s)
            h = conv_bn(h, cout, cout, 3, 1, relu=False)
            shortcut = conv_bn(x, cin, cout, 1, s, relu=False) if (s != 1 or cin != cout) else x
            added, out = name("add"), name("relu")
            nodes += [helper.make_node("Add", [h, shortcut], [added]), helper.make_node("Relu", [added], [out])]
            x, cin = out, cout
    nodes += [helper.make_node("GlobalAveragePool", [x], ["gap"]), helper.make_node("Flatten", ["gap"], ["flat"])]
    inits += [numpy_helper.from_array(rng.normal(0, 0.01, (1000, 512)).astype(np.float32), "fc.weight"),
              numpy_helper.from_array(np.zeros(1000, np.float32), "fc.bias")]
    nodes.append(helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], transB=1))
    graph = helper.make_graph(nodes, "resnet18",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 224, 224])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1000])], inits)
    model = helper.make_model(graph, producer_name="kiln-examples", opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.save(model, sys.argv[1])


if __name__ == "__main__":
    main()
