#!/usr/bin/env python3
"""Dynamic shapes and cold start: kiln against PyTorch on the same GPU, in one run.

Dynamic trace: the 4-layer d=512 encoder (fp16, batch 1) over the sequence
lengths 7,16,23,32,41,64,77,100,128,13, twice. For each length: the first,
second and steady-state call (median), and every call in trace order
("trace"), for kiln lazy / eager / none (one `kiln bench` process each,
runtime cache off, so every specialized kernel is compiled during the trace),
PyTorch eager, and torch.compile(mode="reduce-overhead") with dynamic=True and
with the default. Every system runs in a process of its own, so none finds
kernels another one loaded. Each call is timed from the call to the end of a
synchronize. Kiln's steady state is compared with engines built for exactly
each length (static profiles), timed in the same process in alternating
rounds.

Cold start: process start to first result of `kiln run` on ResNet-18 (fp16,
batch 1) with an empty runtime cache, with the cache that run left, and with a
cache filled by `kiln cache warm` with no GPU visible; against a bare process
that only creates the CUDA context, a cuBLASLt and a cuDNN handle (the floor).

Writes dynamic.json, dynamic-table.txt and dynamic.png (if matplotlib is there) to --out.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import Encoder  # noqa: E402
import plots  # noqa: E402

LENGTHS = [7, 16, 23, 32, 41, 64, 77, 100, 128, 13]
PASSES = 2  # times the whole trace runs: first calls, then second calls (the graph capture)
D = 512


def run(cmd, env=None):
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()[-600:]}")
    return r


def per_length(calls):
    """calls: list of (length, us) in trace order -> {length: [us, ...]}"""
    out = {}
    for length, us in calls:
        out.setdefault(length, []).append(us)
    return out


def torch_trace(fn, inputs, steady_iterations):
    calls = []
    for _ in range(PASSES):
        for length in LENGTHS:
            t0 = time.perf_counter()
            fn(inputs[length])
            torch.cuda.synchronize()
            calls.append((length, (time.perf_counter() - t0) * 1e6))
    steady = {}
    for length in LENGTHS:
        for _ in range(10):
            fn(inputs[length])
        torch.cuda.synchronize()
        times = []
        for _ in range(steady_iterations):
            t0 = time.perf_counter()
            fn(inputs[length])
            torch.cuda.synchronize()
            times.append((time.perf_counter() - t0) * 1e6)
        steady[length] = statistics.median(times)
    by_length = per_length(calls)
    result = {str(L): {"first_us": by_length[L][0], "second_us": by_length[L][1], "steady_us": steady[L]} for L in LENGTHS}
    result["trace"] = [[length, us] for length, us in calls]
    return result


def trace_calls(shapes):
    """`kiln bench`'s per-shape calls -> [[length, us], ...] in the order they ran.
    Each shape's calls are in trace order and the whole trace runs PASSES times,
    so the next call of each shape in turn is the next call of the trace."""
    calls = {int(shape["shape"].split(":")[1].split("x")[1]): iter(shape["calls_us"]) for shape in shapes}
    return [[length, next(calls[length])] for _ in range(PASSES) for length in LENGTHS]


def kiln_trace(kiln, plan, strategy, iterations, work, static_plans):
    out = os.path.join(work, f"trace_{strategy}.json")
    cmd = [kiln, "bench", plan, "--kernel-specialization", strategy, "--runtime-cache", "off", "--repeat", str(PASSES),
           "--iterations", str(iterations), "--json-file", out]
    for length in LENGTHS:
        cmd += ["--trace", f"x:1x{length}x{D}"]
    for static in static_plans:
        cmd += ["--static-plan", static]
    if strategy == "lazy":
        cmd.append("--manual-capture")
    run(cmd)
    with open(out) as f:
        data = json.load(f)
    result = {"setup_ms": data["setup_ms"], "trace": trace_calls(data["shapes"])}
    for shape in data["shapes"]:
        length = int(shape["shape"].split(":")[1].split("x")[1])
        result[str(length)] = {"first_us": shape["calls_us"][0], "second_us": shape["calls_us"][1],
                               "steady_us": shape["steady_us"], "static_us": shape["static_us"],
                               "manual_us": shape["manual_us"],
                               "steady_generic": shape["steady_generic"], "first_pending": shape["first_pending"]}
    return result


def static_plans(kiln, onnx_path, work):
    """A plan built for exactly each length."""
    plans = []
    for length in LENGTHS:
        plan = os.path.join(work, f"encoder_static_{length}.kiln")
        dims = f"1x{length}x{D}"
        run([kiln, "build", onnx_path, "-o", plan, "--precision", "fp16", "--profile", f"x:{dims}/{dims}/{dims}"])
        plans.append(plan)
    return plans


def torch_variant(variant, iterations):
    """One PyTorch system over the trace, in this (fresh) process."""
    torch.manual_seed(0)
    model = Encoder().eval().cuda().half()
    inputs = {L: torch.randn(1, L, D, device="cuda", dtype=torch.half) for L in LENGTHS}
    with torch.inference_mode():
        if variant == "torch_eager":
            return torch_trace(model, inputs, iterations)
        compiled = torch.compile(model, mode="reduce-overhead", dynamic=True if variant == "torch_compile_dynamic" else None)
        return torch_trace(compiled, inputs, iterations)


def wall(cmd, env=None):
    t0 = time.perf_counter()
    run(cmd, env)
    return time.perf_counter() - t0


def cold_start(kiln, floor, work, repeats):
    import torchvision
    model = torchvision.models.resnet18().eval().cuda()
    onnx_path = os.path.join(work, "resnet18_dynamic_bench.onnx")
    x = torch.randn(1, 3, 224, 224, device="cuda")
    torch.onnx.export(model, (x,), onnx_path, input_names=["x"], output_names=["y"], opset_version=17, dynamo=False)
    plan = os.path.join(work, "resnet18_cold.kiln")
    run([kiln, "build", onnx_path, "-o", plan, "--precision", "fp16"])
    major, minor = torch.cuda.get_device_capability()
    cache = os.path.join(work, "cold_cache.bin")
    run_cmd = [kiln, "run", plan, "--device", "cuda", "--warmup", "0", "--iterations", "0", "--runtime-cache", cache]
    result = {"floor_s": statistics.median(wall([floor]) for _ in range(repeats))}
    empty = []
    for _ in range(repeats):
        if os.path.exists(cache):
            os.remove(cache)
        empty.append(wall(run_cmd))
    result["empty_cache_s"] = statistics.median(empty)
    result["warm_cache_s"] = statistics.median(wall(run_cmd) for _ in range(repeats))
    os.remove(cache)
    no_gpu = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    t0 = time.perf_counter()
    run([kiln, "cache", "warm", plan, "--arch", f"sm_{major}{minor}", "--cache", cache, "--shapes", "x:1x3x224x224"], no_gpu)
    result["cache_warm_without_gpu_s"] = time.perf_counter() - t0
    warmed = []
    for _ in range(repeats):  # keep the file as `kiln cache warm` left it
        run(["cp", cache, cache + ".run"])
        warmed.append(wall(run_cmd[:-1] + [cache + ".run"]))
    result["gpu_less_warmed_cache_s"] = statistics.median(warmed)
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kiln", required=True)
    ap.add_argument("--floor", required=True, help="the kiln_cold_start_floor binary")
    ap.add_argument("--out", required=True)
    ap.add_argument("--work", default="build-gpu/bench-work")
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5, help="cold-start runs per case (median)")
    ap.add_argument("--skip-compile", action="store_true", help="leave torch.compile out")
    ap.add_argument("--torch-variant", help=argparse.SUPPRESS)  # internal: run one PyTorch system, print JSON
    args = ap.parse_args()
    if args.torch_variant:
        print(json.dumps(torch_variant(args.torch_variant, args.iterations)))
        return
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.work, exist_ok=True)
    torch.manual_seed(0)
    device = torch.cuda.get_device_name()
    report = {"device": device, "lengths": LENGTHS}

    model = Encoder().eval().cuda()
    onnx_path = os.path.join(args.work, "encoder_dynamic.onnx")
    x = torch.randn(1, 16, D, device="cuda")
    torch.onnx.export(model, (x,), onnx_path, input_names=["x"], output_names=["y"], opset_version=17, dynamo=False,
                      dynamic_axes={"x": {1: "seq"}, "y": {1: "seq"}})
    plan = os.path.join(args.work, "encoder_dynamic.kiln")
    run([args.kiln, "build", onnx_path, "-o", plan, "--precision", "fp16", "--profile", f"x:1x1x{D}/1x64x{D}/1x128x{D}"])

    print("== kiln over the trace (with engines built for each static length)", flush=True)
    statics = static_plans(args.kiln, onnx_path, args.work)
    report["kiln"] = {s: kiln_trace(args.kiln, plan, s, args.iterations, args.work, statics) for s in ("lazy", "eager", "none")}
    report["kiln_static_us"] = {str(L): report["kiln"]["lazy"][str(L)]["static_us"] for L in LENGTHS}

    variants = ["torch_eager"] + ([] if args.skip_compile else ["torch_compile_dynamic", "torch_compile_default"])
    for variant in variants:
        print(f"== {variant} (own process)", flush=True)
        r = subprocess.run([sys.executable, os.path.abspath(__file__), "--kiln", args.kiln, "--floor", args.floor, "--out",
                            args.out, "--iterations", str(args.iterations), "--torch-variant", variant],
                           capture_output=True, text=True)
        try:
            report[variant] = json.loads(r.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            report[variant] = {"error": (r.stderr.strip() or "no output")[-300:]}

    print("== cold start", flush=True)
    try:
        report["cold_start"] = cold_start(args.kiln, args.floor, args.work, args.repeats)
    except Exception as e:  # report, do not hide
        report["cold_start"] = {"error": f"{type(e).__name__}: {e}"[:600]}

    with open(os.path.join(args.out, "dynamic.json"), "w") as f:
        json.dump(report, f, indent=2)
    table = render(report)
    with open(os.path.join(args.out, "dynamic-table.txt"), "w") as f:
        f.write(table + "\n")
    try:
        plots.dynamic_chart(report, os.path.join(args.out, "dynamic.png"))
    except ImportError:
        print("matplotlib not available: no chart", flush=True)
    print(table)


def render(report):
    lines = [f"dynamic trace on {report['device']}: 4-layer d=512 encoder, fp16, batch 1; us per call "
             "(first / second / steady median); each system in its own process; kiln runtime cache off, native "
             "CUDA graphs on; static: an engine built for that length, timed alternating with kiln lazy; manual: kiln lazy's "
             "specialized kernels captured by hand (native graphs off) and replayed"]
    systems = [("kiln lazy", report["kiln"]["lazy"]), ("kiln eager", report["kiln"]["eager"]),
               ("kiln none", report["kiln"]["none"]), ("torch eager", report["torch_eager"])]
    for key in ("torch_compile_dynamic", "torch_compile_default"):
        if key in report:
            systems.append((key.replace("_", " ").replace("torch compile", "compile"), report[key]))
    header = (f"{'len':>4} " + " ".join(f"{name:>26}" for name, _ in systems) +
              f" {'static':>8} {'lazy/st':>8} {'manual':>8} {'lazy/man':>8}")
    lines.append(header)
    f = lambda v: "-" if v is None else (f"{v:.0f}" if v >= 100 else f"{v:.1f}")
    for L in report["lengths"]:
        cells = []
        for _, data in systems:
            d = data.get(str(L)) if isinstance(data, dict) else None
            cells.append("error" if d is None else f"{f(d['first_us'])} / {f(d['second_us'])} / {f(d['steady_us'])}")
        static = report["kiln_static_us"].get(str(L))
        lazy = report["kiln"]["lazy"][str(L)]["steady_us"]
        manual = report["kiln"]["lazy"][str(L)].get("manual_us") or 0
        lines.append(f"{L:>4} " + " ".join(f"{c:>26}" for c in cells) + f" {f(static):>8} {lazy / static:>8.3f}"
                     f" {f(manual):>8} {lazy / manual if manual else 0:>8.3f}")
    for name, data in systems:
        if isinstance(data, dict) and "error" in data:
            lines.append(f"  {name}: {data['error']}")
    worst_first = max(report["kiln"]["lazy"][str(L)]["first_us"] for L in report["lengths"])
    worst_ratio = max(report["kiln"]["lazy"][str(L)]["steady_us"] / report["kiln_static_us"][str(L)] for L in report["lengths"])
    lines.append(f"kiln lazy: worst first call {worst_first / 1000:.2f} ms (target <= 2 ms); worst steady / static "
                 f"{worst_ratio:.3f} (target <= 1.05)")
    c = report.get("cold_start", {})
    if "error" in c:
        lines.append(f"cold start: {c['error']}")
    elif c:
        lines.append(f"cold start, ResNet-18 fp16 (process wall time, median): floor {c['floor_s']:.3f} s; kiln with empty "
                     f"cache {c['empty_cache_s']:.3f} s (target <= 5 s), warm cache {c['warm_cache_s']:.3f} s "
                     f"(+{(c['warm_cache_s'] - c['floor_s']) * 1000:.0f} ms over the floor, target <= 100 ms), cache from "
                     f"`kiln cache warm` without a GPU {c['gpu_less_warmed_cache_s']:.3f} s "
                     f"(+{(c['gpu_less_warmed_cache_s'] - c['floor_s']) * 1000:.0f} ms; warming took "
                     f"{c['cache_warm_without_gpu_s']:.1f} s)")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
