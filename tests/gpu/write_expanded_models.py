"""Writes ONNX's AffineGrid-20 expanded into its function body (as onnx's
*_expanded node tests have it), for the GPU tests of Ifs that shape
inference decides: 2-D and 3-D, align_corners 0 and 1, theta float32,
float16 and bfloat16, every size an input.

Usage: write_expanded_models.py OUT_DIR
Writes OUT_DIR/affine_grid_{2,3}d_align{0,1}_{float32,float16,bfloat16}.onnx.
"""

import os
import sys

from onnx import TensorProto, helper, save
from onnx.backend.test.case.node import function_testcase_helper

DTYPES = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16, "bfloat16": TensorProto.BFLOAT16}


def expanded_affine_grid(spatial: int, align_corners: int, elem_type: int):
    theta = helper.make_tensor_value_info("theta", elem_type, ["N", spatial, spatial + 1])
    size = helper.make_tensor_value_info("size", TensorProto.INT64, [spatial + 2])
    node = helper.make_node("AffineGrid", ["theta", "size"], ["grid"], align_corners=align_corners)
    opsets = [helper.make_opsetid("", 20)]
    (nodes, _), = function_testcase_helper(node, [theta.type, size.type], "affine_grid", opsets)[0]
    grid = helper.make_tensor_value_info("grid", elem_type, [None] * (spatial + 1) + [spatial])
    graph = helper.make_graph(nodes, "affine_grid_expanded", [theta, size], [grid])
    return helper.make_model(graph, opset_imports=opsets)


def main() -> None:
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    for spatial in (2, 3):
        for align_corners in (0, 1):
            for name, elem_type in DTYPES.items():
                model = expanded_affine_grid(spatial, align_corners, elem_type)
                save(model, os.path.join(out_dir, f"affine_grid_{spatial}d_align{align_corners}_{name}.onnx"))


if __name__ == "__main__":
    main()
