"""Writes the op history of the installed onnx package: its newest opset on the
first line, then one line per op of the default domain: the name and every
opset that defines a new version of it, then the same for the ai.onnx.ml
domain's ops, named ai.onnx.ml::Op. Read by OnnxOpVersions.MatchTheOnnxPackage
and OnnxMlOpVersions.MatchTheOnnxPackage.

    python3 onnx_op_history.py OUT_FILE
"""
import sys

import onnx
import onnx.defs

history = {}
for schema in onnx.defs.get_all_schemas_with_history():
    if schema.domain in ("", "ai.onnx"):
        history.setdefault(schema.name, set()).add(schema.since_version)
    elif schema.domain == "ai.onnx.ml":
        history.setdefault("ai.onnx.ml::" + schema.name, set()).add(schema.since_version)
with open(sys.argv[1], "w") as out:
    out.write(f"{onnx.defs.onnx_opset_version()} {onnx.__version__}\n")
    for name in sorted(history):
        out.write(name + " " + " ".join(str(v) for v in sorted(history[name])) + "\n")
