#!/usr/bin/env python3
"""Host time per call of kiln's Python paths, next to their floors.

A tiny engine (one Add of 4 floats by default, so the engine's own work is
small) compiled by kiln.torch, and its plan in kiln.InferenceSession, called in
a loop without any wait: per-call host time of each layer of a call, from the
whole module call down to the bare binding call, next to a bare nanobind call
and a bare torch.empty. On --device cpu the engine is the reference
interpreter (its bare run is printed too); on cuda it is the GPU runtime (the
bare enqueue of preallocated outputs is printed). Each figure is the fastest of
--windows windows of --calls calls (a shared, noisy machine still has quiet
windows), in microseconds.

  python3 bench/python_overhead.py --device cuda            # PYTHONPATH=build/python
  python3 bench/python_overhead.py --device cpu --model mlp
"""
import argparse
import os
import tempfile
import threading
import time

import torch

import kiln
import kiln.torch as kt
from kiln.torch._engine import call_engine


class Add(torch.nn.Module):
    def forward(self, x):
        return x + x


class Mlp(torch.nn.Module):  # bench.py's MLP: 16 Linear+GELU layers of 256
    def __init__(self, layers=16, width=256):
        super().__init__()
        self.layers = torch.nn.ModuleList(torch.nn.Linear(width, width) for _ in range(layers))

    def forward(self, x):
        for layer in self.layers:
            x = torch.nn.functional.gelu(layer(x))
        return x


def per_call_us(fn, calls: int, windows: int, wait) -> float:
    for _ in range(min(calls, 200)):
        fn()
    wait()
    best = float("inf")
    for _ in range(windows):
        t0 = time.perf_counter_ns()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter_ns() - t0) / calls / 1e3)
        wait()  # outside the window: the GPU's queue never fills across windows
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    ap.add_argument("--model", default="add", choices=["add", "mlp"])
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--windows", type=int, default=200)
    args = ap.parse_args()
    torch.manual_seed(0)
    device = args.device
    model, shape = (Add(), (4,)) if args.model == "add" else (Mlp(), (1, 256))
    dtype = torch.float32 if device == "cpu" else torch.float16
    model = model.to(device, dtype).eval()
    x = torch.randn(*shape, device=device, dtype=dtype)
    compiled = kt.compile(model, [x], device=device, min_block_size=1,
                          cuda_graph_strategy="disabled" if device == "cpu" else "whole_graph_capture")
    assert len(compiled.engines) == 1, "the benchmark needs a module made of one engine"
    runner = compiled.engines[0]
    node = next(n for n in compiled.graph.nodes if n.op == "call_function" and n.target is call_engine)
    plan, spec = getattr(compiled, node.args[0].target), node.args[2]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "engine.kiln")
        with open(path, "wb") as f:
            f.write(runner.plan_bytes())
        settings = kiln.runtime.RuntimeSettings(cuda_graph_strategy=runner.settings.cuda_graph_strategy)
        session = kiln.InferenceSession(path, device=device, runtime_settings=settings)
    name = session.get_inputs()[0].name
    assert torch.equal(compiled(x), session.run(None, {name: x})[0])

    stream = torch.cuda.Stream() if device == "cuda" else None
    wait = stream.synchronize if stream is not None else (lambda: None)
    rows = [
        ("kiln.torch module call (engines-only fast path)", lambda: compiled(x)),
        ("kiln.torch module call, general path (nn.Module + FX)", lambda: torch.nn.Module.__call__(compiled, x)),
        ("  call_engine (what the FX forward calls)", lambda: call_engine(plan, [x], spec)),
        ("  torch.ops.kiln.execute (custom-op dispatch)", lambda: torch.ops.kiln.execute(plan, [x], spec)),
        ("  engine per-call path (EngineRunner.run)", lambda: runner.run((x,))),
        ("InferenceSession.run, torch tensor", lambda: session.run(None, {name: x})),
    ]
    with torch.inference_mode(), (torch.cuda.stream(stream) if stream is not None else torch.no_grad()):
        compiled(x)
        if device == "cuda":
            tc = runner._contexts[threading.get_ident()]
            out = [torch.empty(d, dtype=t, device=x.device) for d, t in tc.outputs]
            addresses = [x.data_ptr()] + [o.data_ptr() for o in out]
            raw = stream.cuda_stream
            rows.append(("  bare enqueue: one binding call, outputs preallocated",
                         lambda: tc.context.enqueue(addresses, raw)))
            index = x.device.index
            rows.append(("  torch's current raw stream", lambda: torch._C._cuda_getCurrentRawStream(index)))
        else:
            feeds = [(runner.spec["inputs"][0]["name"], runner.spec["inputs"][0]["dtype"], list(x.shape),
                      x.numpy().reshape(-1).view("uint8"))]
            rows.append(("  bare reference interpreter run (_C.reference_run)",
                         lambda: kiln._C.reference_run(runner.network, feeds)))
        out_shape, out_dtype, out_device = tuple(compiled(x).shape), dtype, x.device
        rows.append(("floor: torch.empty of the output", lambda: torch.empty(out_shape, dtype=out_dtype, device=out_device)))
        rows.append(("floor: a bare nanobind call (kiln._C.log_level)", kiln._C.log_level))
        print(f"{args.model} on {device} ({torch.cuda.get_device_name() if device == 'cuda' else 'reference interpreter'}),"
              f" host time per call, fastest of {args.windows} windows of {args.calls} calls, us")
        for label, fn in rows:
            print(f"{label:58s} {per_call_us(fn, args.calls, args.windows, wait):8.2f}", flush=True)
    engine = kiln.runtime.stats(compiled)["engines"][0]
    print("per-call path:", engine["per_call"], "session:", session.stats()["per_call"])


if __name__ == "__main__":
    main()
