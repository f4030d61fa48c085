#!/usr/bin/env python3
"""kiln against PyTorch on the same GPU, in one run.

For each model: build it in PyTorch (random init), export it to ONNX, build a
kiln plan, then measure batch-1 latency in fp16 for PyTorch eager, PyTorch with
a manually captured CUDA graph, torch.compile(mode="reduce-overhead") and kiln
(`kiln run --device cuda` with native CUDA graphs, and again with
`--cuda-graphs disabled`; kernels specialized for the shape, see
--kernel-specialization). Every timing is the median of
per-call wall times, each call followed by a stream synchronize, after warm-up.
Correctness: kiln fp32 (TF32 off) and fp16 outputs against PyTorch fp32.
Writes bench.json, bench-table.txt and bench.png (if matplotlib is there; each
system against the best PyTorch configuration, see plots.py) to --out.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn as nn

import plots

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False


class Mlp(nn.Module):
    def __init__(self, layers=16, width=256):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(layers))

    def forward(self, x):
        for layer in self.layers:
            x = torch.nn.functional.gelu(layer(x))
        return x


class Encoder(nn.Module):
    def __init__(self, layers=4, d=512, heads=8):
        super().__init__()
        layer = nn.TransformerEncoderLayer(d, heads, dim_feedforward=4 * d, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, x):
        return self.encoder(x)


class GptBlock(nn.Module):
    """A GPT-2-like decoder block: pre-LN causal self-attention and a GELU MLP."""

    def __init__(self, d=768, heads=12):
        super().__init__()
        self.heads, self.d = heads, d
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc, self.out = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        b, t, d = x.shape
        h = self.ln1(x)
        q, k, v = self.qkv(h).split(d, dim=2)
        q = q.view(b, t, self.heads, d // self.heads).transpose(1, 2)
        k = k.view(b, t, self.heads, d // self.heads).transpose(1, 2)
        v = v.view(b, t, self.heads, d // self.heads).transpose(1, 2)
        scores = (q @ k.transpose(-2, -1)) / (d // self.heads) ** 0.5
        mask = torch.triu(torch.ones(t, t, dtype=torch.bool, device=x.device), diagonal=1)
        scores = scores.masked_fill(mask, float("-inf"))
        y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(y)
        return x + self.out(torch.nn.functional.gelu(self.fc(self.ln2(x)), approximate="tanh"))


def models(selected):
    import torchvision
    out = {}
    if "mlp" in selected:
        out["mlp"] = (Mlp(), {"x": (1, 256)})
    if "encoder" in selected:
        out["encoder"] = (Encoder(), {"x": (1, 16, 512)})
    if "resnet18" in selected:
        out["resnet18"] = (torchvision.models.resnet18(), {"x": (1, 3, 224, 224)})
    if "bert" in selected:
        # BERT-base-like: post-LN encoder layers with GELU, d=768, 12 heads, 4 layers, over embeddings.
        class Bert(nn.Module):
            def __init__(self, d=768, heads=12, layers=4):
                super().__init__()
                self.norm = nn.LayerNorm(d)
                layer = nn.TransformerEncoderLayer(d, heads, 4 * d, dropout=0.0, activation="gelu", batch_first=True)
                self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

            def forward(self, x):
                return self.encoder(self.norm(x))
        out["bert"] = (Bert(), {"x": (1, 16, 768)})
    if "gpt2block" in selected:
        out["gpt2block"] = (GptBlock(), {"x": (1, 16, 768)})
    if "vit_s16" in selected:
        # ViT-S/16 (DeiT-S sizes) at 224x224: 197 tokens, 6 heads of 64, 12 layers.
        from torchvision.models.vision_transformer import VisionTransformer
        out["vit_s16"] = (VisionTransformer(224, 16, num_layers=12, num_heads=6, hidden_dim=384, mlp_dim=1536),
                          {"x": (1, 3, 224, 224)})
    return out


def timed(fn, warmup, iterations, wait=None):
    """Median latency (us) of fn() followed by `wait` (default: torch.cuda.synchronize)."""
    wait = wait or torch.cuda.synchronize
    for _ in range(warmup):
        fn()
    wait()
    times = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        fn()
        wait()
        times.append((time.perf_counter() - t0) * 1e6)
    return float(np.median(times))


def torch_timings(model, example, warmup, iterations):
    results = {}
    with torch.inference_mode():
        results["torch_eager_us"] = timed(lambda: model(example), warmup, iterations)
        try:
            static = example.clone()
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(3):
                    model(static)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                model(static)
            results["torch_cuda_graph_us"] = timed(graph.replay, warmup, iterations)
        except Exception as e:  # report, do not hide
            results["torch_cuda_graph_error"] = f"{type(e).__name__}: {e}"[:300]
    try:
        compiled = torch.compile(model, mode="reduce-overhead")
        with torch.inference_mode():
            t0 = time.perf_counter()
            for _ in range(3):
                compiled(example)
            torch.cuda.synchronize()
            results["torch_compile_first_s"] = time.perf_counter() - t0
            results["torch_compile_us"] = timed(lambda: compiled(example), warmup, iterations)
    except Exception as e:  # report, do not hide
        results["torch_compile_error"] = f"{type(e).__name__}: {e}"[:300]
    return results


def cli_latency(kiln_cli, plan, feeds, warmup, iterations, strategy):
    """`kiln run` p50 latency (us) of a plan on .npy inputs {name: path}; None when it fails."""
    cmd = [kiln_cli, "run", plan, "--device", "cuda", "--warmup", str(warmup), "--iterations", str(iterations),
           "--kernel-specialization", strategy]
    for name, path in feeds.items():
        cmd += ["--input", f"{name}:{path}"]
    m = re.search(r"p50 ([\d.]+) ", kiln(cmd).stdout)
    return float(m.group(1)) if m else None


def kiln_python_timings(model16, example16, warmup, iterations, strategy, kiln_cli, work, name):
    """The same fp16 model through kiln.torch.compile (native graphs, on a side
    stream as a user would run it): latency, engines and PyTorch ops left over;
    and, for a single engine, the CLI's latency on that engine's own plan, so the
    Python path's cost per call is measured on the same plan."""
    import kiln
    import kiln.torch as kt

    compiled = kt.compile(model16, [example16], cuda_graph_strategy="whole_graph_capture",
                          dynamic_shapes_kernel_specialization_strategy=strategy, min_block_size=1)
    torch_ops = sorted({str(n.target) for n in compiled.graph.nodes if n.op == "call_function"
                        and "call_engine" not in str(n.target) and "getitem" not in str(n.target)})
    stream = torch.cuda.Stream()
    with torch.inference_mode(), torch.cuda.stream(stream):
        us = timed(lambda: compiled(example16), warmup, iterations)
        y = compiled(example16)
        torch.cuda.synchronize()
        row = {"kiln_python_us": us, "kiln_python_engines": len(compiled.engines), "kiln_python_torch_ops": torch_ops}
        if len(compiled.engines) == 1 and not torch_ops:
            row["kiln_python_stream_sync_us"] = timed(lambda: compiled(example16), warmup, iterations, stream.synchronize)
        # Host time per call with no synchronize in the loop (the GPU's time per call bounds it from below).
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(iterations):
            compiled(example16)
        row["kiln_python_host_us"] = (time.perf_counter() - t0) / iterations * 1e6
        torch.cuda.synchronize()
    with torch.inference_mode():  # torch's default stream, CUDA's legacy one: graphs on the engine's own stream
        row["kiln_python_default_stream_us"] = timed(lambda: compiled(example16), warmup, iterations)
    if "kiln_python_stream_sync_us" in row:
        engine = compiled.engines[0]
        plan = os.path.join(work, f"{name}_torch_fp16.kiln")
        with open(plan, "wb") as f:
            f.write(engine.plan_bytes())
        x_path = os.path.join(work, f"{name}_x16.npy")
        np.save(x_path, example16.cpu().numpy())
        row["kiln_python_plan_cli_us"] = cli_latency(kiln_cli, plan, {engine.network.inputs[0][0]: x_path}, warmup,
                                                     iterations, strategy)
    module_stats = kiln.runtime.stats(compiled)
    stats = module_stats["engines"]
    row["kiln_python_graph_stats"] = [{k: e["graphs"].get(k) for k in ("calls", "direct", "replays", "captures", "instantiations", "pointer_repairs", "kernel_swaps", "on_context_stream", "fallbacks")} for e in stats]
    # Whether calls skipped the FX module, and how many matched the inputs validated last (the per-call path).
    row["kiln_python_fast_path"] = module_stats["engines_only_fast_path"]
    row["kiln_python_per_call"] = [e["per_call"] for e in stats]
    row["kiln_python_plan_ops"] = [dict(e.network.op_counts) for e in compiled.engines]
    return row, y


def kiln_session_latency(plan, x32, warmup, iterations, strategy):
    """kiln.InferenceSession on the CLI's own plan, torch CUDA tensors on a side
    stream, timed with the CLI's wait: the onnxruntime-style path on the same plan."""
    import kiln

    settings = kiln.runtime.RuntimeSettings(cuda_graph_strategy="whole_graph_capture",
                                            dynamic_shapes_kernel_specialization_strategy=strategy)
    session = kiln.InferenceSession(plan, runtime_settings=settings)
    stream = torch.cuda.Stream()
    with torch.inference_mode(), torch.cuda.stream(stream):
        return timed(lambda: session.run(None, {"x": x32}), warmup, iterations, stream.synchronize)


def export(model, example, path, dynamic_axes=None):
    """dynamic_axes as torch.onnx.export takes them, e.g. {"x": {0: "batch"}, "y": {0: "batch"}} (serving.py)."""
    try:
        torch.onnx.export(model, (example,), path, input_names=["x"], output_names=["y"], opset_version=17, dynamo=False,
                          dynamic_axes=dynamic_axes)
    except Exception as first:
        print(f"  legacy exporter failed ({type(first).__name__}); trying dynamo", flush=True)
        torch.onnx.export(model, (example,), path, input_names=["x"], output_names=["y"], dynamo=True, external_data=False,
                          dynamic_axes=dynamic_axes)


def kiln(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def rel_error(a, b):
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))) / max(np.max(np.abs(b)), 1e-12))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kiln", required=True)
    ap.add_argument("--out", required=True, help="folder for bench.json, bench-table.txt, bench.png")
    ap.add_argument("--work", default="build-gpu/bench-work", help="folder for exported models and plans")
    ap.add_argument("--models", default="mlp,encoder,resnet18,bert,gpt2block")
    ap.add_argument("--busy", help="kiln_gpu_busy: trace each replay's kernels (CUPTI) for the busy columns")
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--no-python", action="store_true", help="skip the kiln.torch.compile column")
    ap.add_argument("--kernel-specialization", default="eager", choices=["lazy", "eager", "none"],
                    help="kiln's strategy; eager times the shape-specialized kernels from the first call")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    work = args.work
    os.makedirs(work, exist_ok=True)
    torch.manual_seed(0)
    rows = []
    device_name = torch.cuda.get_device_name()
    for name, (model, inputs) in models(args.models.split(",")).items():
        print(f"== {name}", flush=True)
        row = {"model": name, "device": device_name}
        model = model.eval().cuda()
        shape = inputs["x"]
        x32 = torch.randn(*shape, device="cuda")
        onnx_path = os.path.join(work, f"{name}.onnx")
        try:
            with torch.inference_mode():
                y32 = model(x32).float().cpu().numpy()
                # float64 as the arbiter: how far PyTorch fp32 itself is from exact.
                y64 = model.double()(x32.double()).cpu().numpy()
                model.float()
            row["torch_fp32_vs_fp64"] = rel_error(y32, y64)
            export(model, x32, onnx_path)
            np.save(os.path.join(work, f"{name}_x.npy"), x32.cpu().numpy())
        except Exception as e:
            row["error"] = f"export: {type(e).__name__}: {e}"[:300]
            rows.append(row)
            print("  ", row["error"], flush=True)
            continue
        # PyTorch timings in fp16.
        m16 = model.half()
        row.update(torch_timings(m16, x32.half(), args.warmup, args.iterations))
        if not args.no_python:
            try:
                timings, y16 = kiln_python_timings(m16, x32.half(), args.warmup, args.iterations, args.kernel_specialization,
                                                   args.kiln, work, name)
                row.update(timings)
                row["kiln_python_fp16_rel_error"] = rel_error(y16.float().cpu().numpy(), y32)
            except Exception as e:  # report, do not hide
                row["kiln_python_error"] = f"{type(e).__name__}: {e}"[:300]
        # kiln: correctness in fp32 and fp16, timing in fp16.
        dims = "x".join(str(d) for d in shape)
        for precision in ("fp32", "fp16"):
            plan = os.path.join(work, f"{name}_{precision}.kiln")
            b = kiln([args.kiln, "build", onnx_path, "-o", plan, "--precision", precision, "--profile", f"x:{dims}/{dims}/{dims}"])
            if b.returncode != 0:
                row[f"kiln_{precision}_error"] = b.stderr.strip().splitlines()[-1][:300] if b.stderr.strip() else "build failed"
                continue
            outdir = os.path.join(work, f"{name}_{precision}_out")
            iterations = args.iterations if precision == "fp16" else 3
            cmd = [args.kiln, "run", plan, "--device", "cuda", "--input", f"x:{os.path.join(work, name + '_x.npy')}",
                   "--output-dir", outdir, "--warmup", str(args.warmup if precision == "fp16" else 1),
                   "--iterations", str(iterations), "--kernel-specialization", args.kernel_specialization]
            r = kiln(cmd + (["--compare-reference"] if precision == "fp32" else []))
            if r.returncode != 0:
                row[f"kiln_{precision}_error"] = (r.stderr.strip().splitlines() or ["run failed"])[-1][:300]
                continue
            if precision == "fp16":
                try:
                    import kiln as kiln_package
                    row["kiln_plan_ops"] = dict(kiln_package.Plan.load(plan)._native.network.op_counts)
                    if not args.no_python:
                        row["kiln_session_us"] = kiln_session_latency(plan, x32, args.warmup, args.iterations,
                                                                      args.kernel_specialization)
                except ImportError:
                    pass
                except Exception as e:  # report, do not hide
                    row["kiln_session_error"] = f"{type(e).__name__}: {e}"[:300]
            y = np.load(os.path.join(outdir, "y.npy"))
            row[f"kiln_{precision}_rel_error"] = rel_error(y, y32)
            row[f"kiln_{precision}_vs_fp64"] = rel_error(y, y64)
            ref = re.search(r"max abs error / max \|reference\| ([\d.e+-]+)", r.stdout)
            if ref:  # the GPU against kiln's own float64 reference run of the same plan: the kernels' error
                row["kiln_fp32_vs_own_reference"] = float(ref.group(1))
            m = re.search(r"p50 ([\d.]+) .*GPU time per run ([\d.]+) us", r.stdout)
            if m and precision == "fp16":
                row["kiln_us"] = float(m.group(1))
                row["kiln_gpu_us"] = float(m.group(2))
                # The same without native CUDA graphs: every kernel launched each call.
                d = kiln(cmd + ["--cuda-graphs", "disabled"])
                m = re.search(r"p50 ([\d.]+) ", d.stdout)
                if d.returncode == 0 and m:
                    row["kiln_no_graphs_us"] = float(m.group(1))
                # The GPU's share of each call: the graph's span on the GPU (events) over the call's wall time.
                row["kiln_gpu_span_fraction"] = row["kiln_gpu_us"] / row["kiln_us"]
                # Summed kernel time of each replay (CUPTI trace) over its wall time and over its span.
                if args.busy and os.path.exists(args.busy):
                    b = kiln([args.busy, plan])
                    if b.returncode == 0:
                        busy = json.loads(b.stdout.strip().splitlines()[-1])
                        row["kiln_busy_of_wall"] = busy["busy_of_untraced_wall"]
                        row["kiln_kernel_sum_us"] = busy["kernel_sum_us"]
                        row["kiln_busy_of_span"] = busy["busy_of_span"]
                        row["kiln_kernels_per_call"] = busy["kernels_per_call"]
                        row["kiln_traced_wall_us"] = busy["wall_us"]
                    else:
                        row["kiln_busy_error"] = (b.stderr.strip().splitlines() or ["kiln_gpu_busy failed"])[-1][:300]
        for key in ("torch_eager_us", "torch_cuda_graph_us", "torch_compile_us"):
            if key in row and "kiln_us" in row:
                row["kiln_vs_" + key.replace("_us", "")] = row["kiln_us"] / row[key]
        if "kiln_python_us" in row and "torch_compile_us" in row:
            row["kiln_python_vs_torch_compile"] = row["kiln_python_us"] / row["torch_compile_us"]
        # The Python paths' cost per call, each on the very plan the CLI ran, with the CLI's wait.
        if row.get("kiln_python_stream_sync_us") and row.get("kiln_python_plan_cli_us"):
            row["kiln_python_overhead_us"] = row["kiln_python_stream_sync_us"] - row["kiln_python_plan_cli_us"]
        if "kiln_session_us" in row and "kiln_us" in row:
            row["kiln_session_overhead_us"] = row["kiln_session_us"] - row["kiln_us"]
        rows.append(row)
        print("  ", json.dumps(row), flush=True)

    with open(os.path.join(args.out, "bench.json"), "w") as f:
        json.dump(rows, f, indent=2)
    lines = [f"benchmarks on {device_name}, batch 1, fp16, median latency in us (ratio = kiln / baseline)",
             f"{'model':10} {'eager':>8} {'graph':>8} {'compile':>8} {'kiln':>8} {'no-graph':>8} {'span':>6} {'busy':>6} {'busy/sp':>7} {'kernels':>7} {'k/eager':>8} {'k/graph':>8} {'k/comp':>8} "
             f"{'err32':>8} {'err16':>8} {'k32/f64':>8} {'t32/f64':>8} {'k32/ref':>8}"]
    fmt = lambda v, p=1: "-" if v is None else (f"{v:.{p}f}" if isinstance(v, float) else str(v))
    for r in rows:
        lines.append(f"{r['model']:10} {fmt(r.get('torch_eager_us')):>8} {fmt(r.get('torch_cuda_graph_us')):>8} "
                     f"{fmt(r.get('torch_compile_us')):>8} {fmt(r.get('kiln_us')):>8} {fmt(r.get('kiln_no_graphs_us')):>8} "
                     f"{fmt(r.get('kiln_gpu_span_fraction'), 2):>6} {fmt(r.get('kiln_busy_of_wall'), 2):>6} "
                     f"{fmt(r.get('kiln_busy_of_span'), 2):>7} {fmt(r.get('kiln_kernels_per_call'), 0):>7} "
                     f"{fmt(r.get('kiln_vs_torch_eager'), 2):>8} "
                     f"{fmt(r.get('kiln_vs_torch_cuda_graph'), 2):>8} {fmt(r.get('kiln_vs_torch_compile'), 2):>8} "
                     f"{fmt(r.get('kiln_fp32_rel_error'), 6) if r.get('kiln_fp32_rel_error') is not None else '-':>8} "
                     f"{fmt(r.get('kiln_fp16_rel_error'), 4) if r.get('kiln_fp16_rel_error') is not None else '-':>8} "
                     f"{fmt(r.get('kiln_fp32_vs_fp64'), 6) if r.get('kiln_fp32_vs_fp64') is not None else '-':>8} "
                     f"{fmt(r.get('torch_fp32_vs_fp64'), 6) if r.get('torch_fp32_vs_fp64') is not None else '-':>8} "
                     f"{r['kiln_fp32_vs_own_reference']:8.1e}" if r.get('kiln_fp32_vs_own_reference') is not None else "       -")
        for k, v in r.items():
            if k.endswith("error") and isinstance(v, str):
                lines.append(f"  {r['model']}: {k}: {v}")
    lines.append("")
    lines.append(f"{'model':10} {'kiln.torch':>10} {'default':>8} {'py/comp':>8} {'its plan':>9} {'CLI':>7} {'overhd':>7} "
                 f"{'session':>8} {'overhd':>7} {'host':>6} {'engines':>7} {'err16':>8}  PyTorch ops left")
    for r in rows:
        lines.append(f"{r['model']:10} {fmt(r.get('kiln_python_us')):>10} {fmt(r.get('kiln_python_default_stream_us')):>8} "
                     f"{fmt(r.get('kiln_python_vs_torch_compile'), 2):>8} {fmt(r.get('kiln_python_stream_sync_us')):>9} "
                     f"{fmt(r.get('kiln_python_plan_cli_us')):>7} {fmt(r.get('kiln_python_overhead_us')):>7} "
                     f"{fmt(r.get('kiln_session_us')):>8} {fmt(r.get('kiln_session_overhead_us')):>7} "
                     f"{fmt(r.get('kiln_python_host_us')):>6} {fmt(r.get('kiln_python_engines')):>7} "
                     f"{fmt(r.get('kiln_python_fp16_rel_error'), 4):>8}  {', '.join(r.get('kiln_python_torch_ops', [])) or '-'}")
    lines.append("kiln.torch: the same fp16 module through kiln.torch.compile (native graphs, side stream), timed like the "
                 "PyTorch columns; default: the same on torch's default stream; py/comp: kiln.torch / torch.compile "
                 "reduce-overhead. Same-plan comparisons, each timed with a synchronize of its stream as the CLI waits: "
                 "its plan: kiln.torch, CLI: `kiln run` on kiln.torch's own plan, overhd: the difference; session: "
                 "kiln.InferenceSession on the CLI's plan (kiln column above, fp32 torch tensors), overhd: session - kiln. "
                 "host: kiln.torch's host time per call without any wait")
    lines.append("kiln: native CUDA graphs (whole_graph_capture); no-graph: the same with --cuda-graphs disabled; span: "
                 "the graph's time on the GPU (events around it) / kiln's wall time per call; busy, busy/sp: summed kernel "
                 "time per replay (CUPTI trace) / the untraced call's wall time (same process), / its span from first kernel "
                 "start to last kernel end; kernels: kernels per replay")
    lines.append("err32/err16: max |kiln - PyTorch fp32| / max |PyTorch fp32|; k32/f64, t32/f64: kiln fp32 and "
                 "PyTorch fp32 against PyTorch float64; k32/ref: kiln fp32 on the GPU against kiln's float64 CPU "
                 "reference run of the same plan")
    table = "\n".join(lines)
    with open(os.path.join(args.out, "bench-table.txt"), "w") as f:
        f.write(table + "\n")
    print(table)
    try:
        plots.ratio_chart(plots.bench_rows(rows), os.path.join(args.out, "bench.png"), plots.bench_title(rows))
    except ImportError:
        print("matplotlib not available: no chart", flush=True)


if __name__ == "__main__":
    main()
