#!/usr/bin/env python3
"""Writes the ONNX backend node tests of the installed `onnx` package into a folder.

    python3 scripts/onnx_node_tests.py OUT_DIR

Each test becomes OUT_DIR/<name>/model.onnx with test_data_set_N/input_J.pb and
output_J.pb, the layout of Debian's libonnx-testdata and of what
`kiln conformance` reads. Newer onnx releases no longer write the node tests
with `python3 -m onnx.backend.test.cmd_tools generate-data` (it writes the model
tests only), so this does what that command once did for the node tests. No
network is needed: the tests are computed from the package's own test cases.
The folder is rewritten only when the onnx version differs from the one that
wrote it (OUT_DIR/ONNX_VERSION).
"""
import pathlib
import shutil
import sys
import warnings

import onnx
from onnx import TensorProto, numpy_helper
from onnx.backend.test.case import node


def serialize(value, value_info) -> bytes:
    """A test input or output as the protobuf its graph declares."""
    kind = value_info.type.WhichOneof("value")
    if kind == "sequence_type":
        return numpy_helper.from_list(value, value_info.name).SerializeToString()
    if kind == "optional_type":
        return numpy_helper.from_optional(value, value_info.name).SerializeToString()
    if kind == "map_type":
        return numpy_helper.from_dict(value, value_info.name).SerializeToString()
    if isinstance(value, TensorProto):
        return value.SerializeToString()
    return numpy_helper.from_array(value, value_info.name).SerializeToString()


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = pathlib.Path(sys.argv[1])
    stamp = out / "ONNX_VERSION"
    if stamp.exists() and stamp.read_text().strip() == onnx.__version__:
        print(f"onnx_node_tests: {out} already holds the node tests of onnx {onnx.__version__}")
        return 0
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    with warnings.catch_warnings():  # some cases compute expected values that overflow on purpose
        warnings.simplefilter("ignore")
        cases = node.collect_testcases(None)
    for case in cases:
        case_dir = out / case.name
        case_dir.mkdir()
        (case_dir / "model.onnx").write_bytes(case.model.SerializeToString())
        graph = case.model.graph
        for i, (inputs, outputs) in enumerate(case.data_sets):
            data_dir = case_dir / f"test_data_set_{i}"
            data_dir.mkdir()
            for j, value in enumerate(inputs):
                (data_dir / f"input_{j}.pb").write_bytes(serialize(value, graph.input[j]))
            for j, value in enumerate(outputs):
                (data_dir / f"output_{j}.pb").write_bytes(serialize(value, graph.output[j]))
    stamp.write_text(onnx.__version__ + "\n")
    print(f"onnx_node_tests: wrote {len(cases)} node tests of onnx {onnx.__version__} "
          f"(opset {onnx.defs.onnx_opset_version()}) to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
