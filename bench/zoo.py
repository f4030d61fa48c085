#!/usr/bin/env python3
"""The model-family zoo (bench/zoo/models.py) on one GPU: per model, fp16,
batch 1 and batch 8, one run.

Per model: export ONNX with a dynamic batch, build one fp16 kiln plan for
batch 1 to 8 (`kiln build --profile`), then per batch time PyTorch eager,
PyTorch in a manually captured CUDA graph, torch.compile(mode="reduce-overhead")
(bench.py's torch_timings: median of per-call wall times, each call followed by
a synchronize) and kiln (`kiln run --device cuda`: native CUDA graphs, kernels
specialized for the shape). For kiln it also reports:
- launches per call and the roofline from `kiln profile --json`: the sum over
  the plan's launches of max(bytes / HBM bandwidth, FLOPs / fp16 dense
  tensor-core peak), next to the graph replay's measured GPU time;
- span: the graph's GPU time per call (events around it) over the wall time;
- busy and kernels per call: CUPTI-traced kernel time over wall time
  (bench/busy, --busy), for float-input models only (that tool feeds random
  floats to static shapes, so it gets a plan built for the one batch size).
Correctness: relative L2 of kiln fp16 and of PyTorch fp16 against PyTorch fp32.

    python3 bench/zoo.py --kiln build-gpu/tools/kiln/kiln [--busy build-gpu/bench/busy/kiln_gpu_busy]
        [--models resnet50,gpt2] [--quick] [--append] [--out bench/results]

Writes OUT/<date>-<gpu>-zoo-table.txt and .json (and -zoo.png through
bench/plots.py when it is there) and prints the table last.
"""
import argparse
import copy
import datetime
import json
import os
import re
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import kiln, torch_timings  # noqa: E402  (bench.py also turns TF32 off)
from zoo import export as zoo_export  # noqa: E402
from zoo import models as zoo  # noqa: E402

BATCHES = (1, 8)

# HBM bandwidth (bytes/s) and fp16 dense tensor-core peak (FLOP/s) per card,
# from the vendor's data sheets; keys are matched against the CUDA device name.
CARDS = {
    "H200": (4.8e12, 989e12),
    "H100 80GB HBM3": (3.35e12, 989e12),  # H100 SXM
}


def card(device_name):
    for key, peaks in CARDS.items():
        if key in device_name:
            return peaks
    return None


def short_gpu_name(device_name):
    m = re.search(r"\b([A-Z]+\d+[A-Z]*)\b", device_name.replace("NVIDIA ", ""))
    return (m.group(1) if m else re.sub(r"\W+", "-", device_name)).lower()


def rel_l2(got, expected):
    got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    return float(np.linalg.norm(got - expected) / np.linalg.norm(expected))


def last_line(result, fallback):
    return (result.stderr.strip().splitlines() or [fallback])[-1][:300]


def roofline(launches, peaks):
    """Sum over launches of max(bytes / bandwidth, flops / peak), in us."""
    bandwidth, flops = peaks
    return sum(max(l["bytes"] / bandwidth, l["flops"] / flops) for l in launches) * 1e6


def kiln_columns(args, plan, feeds, prefix, peaks, row):
    """kiln run (latency, span, output) and kiln profile (launches, roofline) at one batch."""
    inputs = []
    for name, x in feeds.items():
        path = f"{prefix}_{name}.npy"
        np.save(path, x.numpy())
        inputs += ["--input", f"{name}:{path}"]
    out = prefix + "_out"
    r = kiln([args.kiln, "run", plan, "--device", "cuda", *inputs, "--output-dir", out, "--warmup", str(args.warmup),
              "--iterations", str(args.iterations), "--kernel-specialization", "eager", "--json"])
    if r.returncode != 0:
        row["kiln_error"] = last_line(r, "kiln run failed")
        return None
    doc = json.loads(r.stdout)
    row["kiln_us"] = doc["latency_us"]["p50"]
    row["kiln_gpu_us"] = doc["gpu_us_per_run"]
    row["kiln_gpu_span_fraction"] = row["kiln_gpu_us"] / row["kiln_us"]
    p = kiln([args.kiln, "profile", plan, *inputs, "--warmup", "3", "--kernel-specialization", "eager", "--json"])
    if p.returncode != 0:
        row["kiln_profile_error"] = last_line(p, "kiln profile failed")
    else:
        launches = json.loads(p.stdout)["profile"]["launches"]
        row["kiln_launches_per_call"] = len(launches)
        row["kiln_profile_sum_us"] = sum(l["gpu_us"] for l in launches)
        row["kiln_bytes"] = sum(l["bytes"] for l in launches)
        row["kiln_flops"] = sum(l["flops"] for l in launches)
        if peaks:
            row["kiln_roofline_us"] = roofline(launches, peaks)
            row["kiln_roofline_fraction"] = row["kiln_roofline_us"] / row["kiln_gpu_us"]
    (output,) = [f for f in os.listdir(out) if f.endswith(".npy")]
    return np.load(os.path.join(out, output))


def busy_columns(args, onnx_path, feeds, prefix, row):
    """CUPTI kernel time of graph replays (bench/busy) on a plan built for exactly this batch."""
    if not all(x.is_floating_point() for x in feeds.values()):
        row["kiln_busy_note"] = "integer inputs: kiln_gpu_busy feeds random floats"
        return
    plan = prefix + "_static.kiln"
    b = kiln([args.kiln, "build", onnx_path, "-o", plan, "--precision", "fp16",
              *zoo_export.profile_flags(feeds, batches=(len(next(iter(feeds.values()))),))])
    if b.returncode != 0:
        row["kiln_busy_error"] = last_line(b, "static build failed")
        return
    r = kiln([args.busy, plan, "--iterations", str(args.iterations), "--warmup", str(args.warmup)])
    if r.returncode != 0:
        row["kiln_busy_error"] = last_line(r, "kiln_gpu_busy failed")
        return
    busy = json.loads(r.stdout.strip().splitlines()[-1])
    row["kiln_busy_of_wall"] = busy["busy_of_untraced_wall"]
    row["kiln_kernels_per_call"] = busy["kernels_per_call"]


def run_model(args, name, peaks, device_name):
    rows = []
    onnx_path = os.path.join(args.work, f"{name}.onnx")
    plan = os.path.join(args.work, f"{name}_fp16.kiln")
    try:
        module, inputs = zoo.build(name, batch=1)
        zoo_export.export(name, module, inputs, onnx_path)
        b = kiln([args.kiln, "build", onnx_path, "-o", plan, "--precision", "fp16",
                  *zoo_export.profile_flags(inputs, BATCHES)])
        build_error = None if b.returncode == 0 else last_line(b, "kiln build failed")
    except Exception as e:  # report, do not hide
        return [{"model": name, "device": device_name, "error": f"export: {type(e).__name__}: {e}"[:300]}]
    module = module.cuda()
    m16 = copy.deepcopy(module).half()
    for batch in BATCHES:
        print(f"== {name} batch {batch}", flush=True)
        row = {"model": name, "family": zoo.ZOO[name].family, "batch": batch, "device": device_name}
        feeds = zoo.example(name, batch)
        (x,) = [v.cuda() for v in feeds.values()]
        x16 = x.half() if x.is_floating_point() else x
        with torch.inference_mode():
            y32 = module(x).float().cpu().numpy()
            row["torch_fp16_rel_l2"] = rel_l2(m16(x16).float().cpu().numpy(), y32)
        torch._dynamo.reset()  # torch.compile specializes on each batch size, as kiln's kernels do
        row.update(torch_timings(m16, x16, args.warmup, args.iterations))
        if build_error:
            row["kiln_error"] = build_error
        else:
            prefix = os.path.join(args.work, f"{name}_b{batch}")
            y = kiln_columns(args, plan, feeds, prefix, peaks, row)
            if y is not None:
                row["kiln_fp16_rel_l2"] = rel_l2(y, y32)
            if args.busy:
                busy_columns(args, onnx_path, feeds, prefix, row)
        best = [row[k] for k in ("torch_cuda_graph_us", "torch_compile_us") if k in row]
        if "kiln_us" in row and best:
            row["kiln_vs_best_torch"] = row["kiln_us"] / min(best)
        rows.append(row)
        print("  ", json.dumps(row), flush=True)
    return rows


def table(rows, device_name, peaks):
    fmt = lambda v, p=1: "-" if v is None else (f"{v:.{p}f}" if isinstance(v, float) else str(v))
    sci = lambda v: "-" if v is None else f"{v:.1e}"
    lines = [f"zoo on {device_name}, fp16, median latency per call in us, one run",
             f"{'model':19} {'b':>2} {'eager':>8} {'graph':>8} {'compile':>8} {'kiln':>8} {'k/best':>6} "
             f"{'launch':>6} {'kern':>5} {'span':>5} {'busy':>5} {'kiln GPU':>8} {'roofline':>8} {'roof/GPU':>8} "
             f"{'err16':>7} {'torch16':>7}"]
    for r in rows:
        lines.append(f"{r['model']:19} {fmt(r.get('batch')):>2} {fmt(r.get('torch_eager_us')):>8} "
                     f"{fmt(r.get('torch_cuda_graph_us')):>8} {fmt(r.get('torch_compile_us')):>8} "
                     f"{fmt(r.get('kiln_us')):>8} {fmt(r.get('kiln_vs_best_torch'), 2):>6} "
                     f"{fmt(r.get('kiln_launches_per_call')):>6} {fmt(r.get('kiln_kernels_per_call'), 0):>5} "
                     f"{fmt(r.get('kiln_gpu_span_fraction'), 2):>5} {fmt(r.get('kiln_busy_of_wall'), 2):>5} "
                     f"{fmt(r.get('kiln_gpu_us')):>8} {fmt(r.get('kiln_roofline_us')) if peaks else 'n/a':>8} "
                     f"{fmt(r.get('kiln_roofline_fraction'), 2) if peaks else 'n/a':>8} "
                     f"{sci(r.get('kiln_fp16_rel_l2')):>7} {sci(r.get('torch_fp16_rel_l2')):>7}")
    for r in rows:
        for k, v in r.items():
            if k.endswith(("error", "note")) and isinstance(v, str):
                lines.append(f"  {r['model']} b{r.get('batch', '-')}: {k}: {v}")
    bw = f"{peaks[0] / 1e12:g} TB/s and {peaks[1] / 1e12:g} TFLOP/s" if peaks else "no peaks known for this card"
    lines += [
        "graph: PyTorch in a manually captured CUDA graph; compile: torch.compile(mode='reduce-overhead'); kiln: kiln run "
        "(native CUDA graphs, shape-specialized kernels), one fp16 plan for batch 1-8; k/best: kiln / min(graph, compile)",
        "launch: kiln's launches per call (kiln profile); kern: kernels per graph replay (CUPTI, bench/busy; float inputs "
        "only); span: the replay's GPU time (events) / its wall time; busy: summed kernel time (CUPTI) / wall time",
        f"kiln GPU: the replay's GPU time per call; roofline: sum over kiln's launches of max(bytes / HBM bandwidth, "
        f"FLOPs / fp16 dense tensor-core peak) at {bw}; roof/GPU: roofline / kiln GPU (1.0: at the roofline)",
        "err16, torch16: relative L2 of kiln fp16 and of PyTorch fp16 against PyTorch fp32"]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kiln", required=True, help="the kiln CLI")
    ap.add_argument("--busy", help="kiln_gpu_busy (bench/busy) for the kernels and busy columns")
    ap.add_argument("--models", default=",".join(zoo.ZOO), help="comma-separated zoo models (default: all)")
    ap.add_argument("--out", default="bench/results", help="folder for the table, JSON and PNG")
    ap.add_argument("--work", default="build-gpu/zoo-work", help="folder for exported models, plans and inputs")
    ap.add_argument("--quick", action="store_true", help="10 warm-up and 50 timed calls instead of 50 and 300")
    ap.add_argument("--append", action="store_true",
                    help="keep the rows of other models from this day's JSON for this card (the zoo in several runs)")
    args = ap.parse_args()
    args.warmup, args.iterations = (10, 50) if args.quick else (50, 300)
    names = args.models.split(",")
    unknown = [n for n in names if n not in zoo.ZOO]
    if unknown:
        ap.error(f"unknown models {', '.join(unknown)}; the zoo has {', '.join(zoo.ZOO)}")
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.work, exist_ok=True)
    device_name = torch.cuda.get_device_name()
    peaks = card(device_name)
    rows = []
    for name in names:
        rows += run_model(args, name, peaks, device_name)
    stem = os.path.join(args.out, f"{datetime.date.today().isoformat()}-{short_gpu_name(device_name)}-zoo")
    if args.append and os.path.exists(stem + ".json"):
        with open(stem + ".json") as f:
            kept = [r for r in json.load(f) if r["model"] not in names]
        rows = sorted(kept + rows, key=lambda r: (list(zoo.ZOO).index(r["model"]), r.get("batch", 0)))
    with open(stem + ".json", "w") as f:
        json.dump(rows, f, indent=2)
    text = table(rows, device_name, peaks)
    with open(stem + "-table.txt", "w") as f:
        f.write(text + "\n")
    try:  # the shared chart (bench/plots.py); optional until that module is on this branch
        import plots
    except ImportError:
        print("bench/plots.py not found: no chart", flush=True)
    else:
        plots.ratio_chart(plots.bench_rows(rows), stem + ".png", f"zoo on {device_name}, fp16, batch 1 and 8")
    print(text)


if __name__ == "__main__":
    main()
