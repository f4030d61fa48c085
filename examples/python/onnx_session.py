"""kiln from Python, for ONNX users: build a plan, save it, run it.

    PYTHONPATH=build/python python3 examples/python/onnx_session.py build/examples/mlp.onnx

Runs on the GPU when one is usable, otherwise on the CPU reference interpreter,
and checks the plan against the model as written (the reference on the .onnx).
"""

import sys
import tempfile
from pathlib import Path

import numpy as np

import kiln
from kiln.runtime import RuntimeSettings


def main(model: str) -> None:
    plan = kiln.build(model, profiles={"x": ((1, 64), (8, 64), (32, 64))}, precision="fp16")
    print(plan)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "mlp.kiln"
        plan.save(path)
        gpu, why_not = kiln.runtime.cuda_available()
        device = "cuda" if gpu else "cpu"
        print(f"running on {device}" + ("" if gpu else f" ({why_not})"))
        settings = RuntimeSettings(cuda_graph_strategy="whole_graph_capture")
        session = kiln.InferenceSession(path, device=device, runtime_settings=settings)
        exact = kiln.InferenceSession(model, device="cpu")
        rng = np.random.default_rng(0)
        for batch in (1, 8, 32):
            x = rng.uniform(-1, 1, (batch, 64)).astype(np.float32)
            (y,) = session.run(None, {"x": x})
            (want,) = exact.run(None, {"x": x})
            error = np.abs(y - want).max() / max(np.abs(want).max(), 1e-30)
            print(f"batch {batch:2}: output {y.shape}, fp16 plan vs the model on the reference: {error:.2e} of the max")
        if gpu:
            print("native graphs:", session.stats()["graphs"])


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "build/examples/mlp.onnx")
