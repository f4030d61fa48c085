#!/usr/bin/env python3
"""Benchmark charts, shared by bench.py, dynamic.py and zoo.py.

Latency chart (`ratio_chart`): per model, each system's latency over the best
PyTorch configuration of that model (the lower of PyTorch's manual CUDA graph
and torch.compile reduce-overhead) on a linear axis, a dashed line at 1.0, and
on every bar its ratio and its latency in us.

Dynamic-shape chart (`dynamic_chart`): latency of every call over the trace of
bench/dynamic.py, one line per system, the first call at each new shape marked;
below it the steady state per length.

Redraws a PNG from a results JSON that bench.py or dynamic.py wrote, no GPU needed:

    python3 bench/plots.py bench/results/X.json -o X.png
"""
import argparse
import json
import textwrap

# The best PyTorch configuration of a model is the lower of these two.
BASELINES = ("PyTorch CUDA graph", "torch.compile reduce-overhead")

# bench.py's JSON keys and the systems they time, in drawing order.
BENCH_SYSTEMS = [("torch_eager_us", "PyTorch eager"), ("torch_cuda_graph_us", "PyTorch CUDA graph"),
                 ("torch_compile_us", "torch.compile reduce-overhead"), ("kiln_us", "kiln"),
                 ("kiln_no_graphs_us", "kiln, no CUDA graphs"), ("kiln_python_us", "kiln.torch.compile")]

COLORS = {"PyTorch eager": "#f4a582", "PyTorch CUDA graph": "#d6604d", "torch.compile reduce-overhead": "#b2182b",
          "kiln": "#2166ac", "kiln, no CUDA graphs": "#92c5de", "kiln.torch.compile": "#4393c3"}


def bench_rows(results):
    """bench.py's JSON rows -> [{"model": name, "latency_us": {system: us}}].
    A row with a "batch" gets it in its name, so batch sizes of one model stay apart."""
    rows = []
    for r in results:
        name = r["model"] + (f" b{r['batch']}" if "batch" in r else "")
        rows.append({"model": name, "latency_us": {label: r[key] for key, label in BENCH_SYSTEMS if r.get(key)}})
    return rows


def ratios(rows, baselines=BASELINES):
    """{model: {system: latency / the model's lowest baseline latency}}; a model with
    no baseline measured has no ratios."""
    out = {}
    for row in rows:
        lat = row["latency_us"]
        measured = [lat[b] for b in baselines if lat.get(b)]
        out[row["model"]] = {s: us / min(measured) for s, us in lat.items() if us} if measured else {}
    return out


def bar_label(ratio, us):
    return f"{ratio:.2f}× ({us:.0f} µs)" if us >= 100 else f"{ratio:.2f}× ({us:.1f} µs)"


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _ratio_panel(ax, rows, rel, systems, cap, top):
    """One row of model groups; returns the bar labels drawn."""
    models = [r["model"] for r in rows]
    width = 0.8 / len(systems)
    labels = []
    for i, system in enumerate(systems):
        xs, heights, texts, clipped = [], [], [], []
        for j, (model, row) in enumerate(zip(models, rows)):
            ratio = rel[model].get(system)
            if ratio is None:
                continue
            xs.append(j + (i - (len(systems) - 1) / 2) * width)
            heights.append(min(ratio, cap))
            texts.append(bar_label(ratio, row["latency_us"][system]))
            clipped.append(ratio > cap)
        bars = ax.bar(xs, heights, width, color=_color(system, systems), edgecolor="white", linewidth=0.5, zorder=2)
        for bar, cut in zip(bars, clipped):
            if cut:
                bar.set_hatch("///")
        for text in ax.bar_label(bars, texts, rotation=90, padding=2, fontsize=7, zorder=3):
            text.set_bbox({"facecolor": "white", "edgecolor": "none", "pad": 1.5})
        labels += texts
    for j, model in enumerate(models):
        if not rel[model]:
            ax.text(j, 0.1, "no PyTorch baseline measured", ha="center", va="bottom", fontsize=7, rotation=90, zorder=3,
                    bbox={"facecolor": "white", "edgecolor": "none", "pad": 1.5})
    ax.axhline(1.0, color="black", linestyle="--", linewidth=1, zorder=1)
    # Room above the tallest bar for its rotated label.
    ax.set_ylim(0, top * 1.5)
    # Names wider than their group (about 0.075 inch a character) are slanted.
    group_inches = 0.22 * len(systems) + 0.35
    slant = max(len(m) for m in models) * 0.075 > group_inches
    ax.set_xticks(range(len(models)), models, rotation=30 if slant else 0, ha="right" if slant else "center")
    ax.set_xlim(-0.6, len(models) - 0.4)
    ax.set_ylabel("latency / best PyTorch\n(lower is better)")
    return labels


def _color(system, systems):
    return COLORS.get(system, f"C{systems.index(system)}")


def ratio_chart(rows, path, title, baselines=BASELINES, cap=4.0, per_panel=12):
    """Draws the latency chart of rows ({"model", "latency_us": {system: us}}) into path,
    at most per_panel models a panel, panels stacked. Bars above cap are cut at cap
    and hatched; their labels carry the full value. Returns the bar labels in drawing
    order (panel by panel, system by system, model by model)."""
    plt = _pyplot()
    from matplotlib.patches import Patch
    rel = ratios(rows, baselines)
    systems = []
    for r in rows:
        systems += [s for s in r["latency_us"] if s not in systems]
    order = [label for _, label in BENCH_SYSTEMS]
    systems.sort(key=lambda s: order.index(s) if s in order else len(order))
    values = [v for m in rel.values() for v in m.values()]
    top = max([min(v, cap) for v in values] + [1.0])
    chunks = [rows[i:i + per_panel] for i in range(0, len(rows), per_panel)]
    width = max(9.0, 1.5 + len(chunks[0]) * (0.22 * len(systems) + 0.35))
    fig, axes = plt.subplots(len(chunks), 1, figsize=(width, 1.6 + 3.8 * len(chunks)), squeeze=False)
    labels = []
    for ax, chunk in zip(axes[:, 0], chunks):
        labels += _ratio_panel(ax, chunk, rel, systems, cap, top)
    handles = [Patch(facecolor=_color(s, systems), label=s) for s in systems]
    lines = [title, f"each bar: latency / min({', '.join(baselines)}); 1.0 dashed"]
    if any(v > cap for v in values):
        lines.append(f"bars above {cap:g}× are cut there (hatched); their labels hold the value")
        handles.append(Patch(facecolor="white", edgecolor="gray", hatch="///", label=f"cut at {cap:g}×"))
    # About 10 characters of 10 pt type per inch of figure.
    fig.suptitle("\n".join(textwrap.fill(line, int(width * 10)) for line in lines), fontsize=10)
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 3), fontsize=8, frameon=False)
    # Leave the legend's rows (about 0.2 inch each) free at the bottom.
    legend_inches = 0.15 + 0.2 * -(-len(handles) // 3)
    fig.tight_layout(rect=(0, legend_inches / fig.get_figheight(), 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return labels


def dynamic_trace(data, lengths):
    """One system's calls over the trace as [(length, us), ...]. Results that predate
    the recorded "trace" hold each length's first and second call; dynamic.py's trace
    is every length once, in order, twice, so those are exactly its calls."""
    if "trace" in data:
        return [tuple(call) for call in data["trace"]]
    return [(L, data[str(L)]["first_us"]) for L in lengths] + [(L, data[str(L)]["second_us"]) for L in lengths]


def dynamic_systems(report):
    """[(name, per-system data)] of a dynamic.py report; systems that failed are left out."""
    systems = [(f"kiln {s}", report["kiln"][s]) for s in ("lazy", "eager", "none") if s in report.get("kiln", {})]
    for key, name in (("torch_eager", "PyTorch eager"), ("torch_compile_dynamic", "torch.compile dynamic=True"),
                      ("torch_compile_default", "torch.compile default")):
        if key in report and "error" not in report[key]:
            systems.append((name, report[key]))
    return systems


DYNAMIC_STYLES = {"kiln lazy": ("#2166ac", "-"), "kiln eager": ("#4393c3", "--"), "kiln none": ("#92c5de", ":"),
                  "PyTorch eager": ("#f4a582", "-"), "torch.compile dynamic=True": ("#d6604d", "--"),
                  "torch.compile default": ("#b2182b", ":")}


def dynamic_chart(report, path):
    """Draws dynamic.py's report into path: latency per call over the trace (log
    axis: first calls are 100x the steady state) and the steady state per length."""
    plt = _pyplot()
    lengths = report["lengths"]
    fig, (trace_ax, steady_ax) = plt.subplots(2, 1, figsize=(13, 9), gridspec_kw={"height_ratios": [3, 2]})
    calls = []
    for name, data in dynamic_systems(report):
        calls = dynamic_trace(data, lengths)
        color, style = DYNAMIC_STYLES.get(name, (None, "-"))
        xs = range(1, len(calls) + 1)
        trace_ax.plot(xs, [us / 1000 for _, us in calls], style, color=color, label=name, linewidth=1.5)
        seen, first = set(), []
        for x, (L, us) in zip(xs, calls):
            if L not in seen:
                seen.add(L)
                first.append((x, us / 1000))
        trace_ax.plot([x for x, _ in first], [ms for _, ms in first], "o", color=color, markersize=5)
        steady_ax.plot(sorted(lengths), [data[str(L)]["steady_us"] for L in sorted(lengths)], style, marker=".",
                       color=color, label=name, linewidth=1.5)
    trace_ax.plot([], [], "o", color="gray", label="first call at a new length")
    if len(calls) == 2 * len(lengths):
        trace_ax.axvline(len(lengths) + 0.5, color="gray", linewidth=0.8)
        trace_ax.text(len(lengths) + 0.7, 0.97, "second pass", transform=trace_ax.get_xaxis_transform(), va="top",
                      fontsize=8, color="gray")
    trace_ax.set_yscale("log")
    trace_ax.set_xticks(range(1, len(calls) + 1), [str(L) for L, _ in calls], fontsize=8)
    trace_ax.set_xlabel("call over the trace (its sequence length)")
    trace_ax.set_ylabel("latency per call (ms, log scale)")
    trace_ax.grid(True, which="major", axis="y", alpha=0.3)
    trace_ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    trace_ax.set_title(f"{report['device']}: 4-layer d=512 encoder, fp16, batch 1, each system in its own process\n"
                       "latency of each call over the trace (every length once, in order, twice)", fontsize=10)
    static = report.get("kiln_static_us")
    if static:
        steady_ax.plot(sorted(lengths), [static[str(L)] for L in sorted(lengths)], color="black", linestyle="-.",
                       linewidth=1, label="kiln, engine built for that length")
    steady_ax.set_ylim(0, None)
    steady_ax.set_xticks(sorted(lengths), [str(L) for L in sorted(lengths)], fontsize=8)
    steady_ax.set_title("steady state per length (median per call)", fontsize=10)
    steady_ax.set_xlabel("sequence length")
    steady_ax.set_ylabel("steady state (µs, median)")
    steady_ax.grid(True, alpha=0.3)
    steady_ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def bench_title(results):
    devices = sorted({r["device"] for r in results if "device" in r})
    return f"{', '.join(devices) or 'unknown GPU'}: batch 1, fp16, median latency"


def plot_file(json_path, png_path):
    """Draws the chart of a results JSON: a list of bench.py rows or dynamic.py's report."""
    with open(json_path) as f:
        data = json.load(f)
    if isinstance(data, list):
        ratio_chart(bench_rows(data), png_path, bench_title(data))
    elif isinstance(data, dict) and "lengths" in data and "kiln" in data:
        dynamic_chart(data, png_path)
    else:
        raise SystemExit(f"{json_path}: neither bench.py's rows (a list) nor dynamic.py's report (lengths, kiln)")


def main():
    ap = argparse.ArgumentParser(description="draw a benchmark chart from a results JSON")
    ap.add_argument("json")
    ap.add_argument("-o", "--out", required=True, help="the PNG to write")
    args = ap.parse_args()
    plot_file(args.json, args.out)


if __name__ == "__main__":
    main()
