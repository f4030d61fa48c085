"""bench/plots.py: the ratios against the best PyTorch configuration, the dynamic
trace's call order, and PNGs redrawn from results JSON through its command line."""

import json
import os
import subprocess
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench")
sys.path.insert(0, BENCH)
import plots  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Two models as bench.py writes them: "a" with every system, "b" whose manual CUDA graph failed.
BENCH_RESULTS = [
    {"model": "a", "device": "Test GPU", "torch_eager_us": 300.0, "torch_cuda_graph_us": 120.0,
     "torch_compile_us": 150.0, "kiln_us": 60.0, "kiln_no_graphs_us": 90.0},
    {"model": "b", "device": "Test GPU", "torch_eager_us": 1000.0, "torch_cuda_graph_error": "RuntimeError: capture",
     "torch_compile_us": 200.0, "kiln_us": 50.0},
]

# dynamic.py's report over two lengths, in the older form with each length's first and second call only.
DYNAMIC_REPORT = {
    "device": "Test GPU", "lengths": [16, 7],
    "kiln": {s: {"16": {"first_us": 4000.0 + i, "second_us": 1400.0, "steady_us": 280.0},
                 "7": {"first_us": 3000.0 + i, "second_us": 1300.0, "steady_us": 520.0}}
             for i, s in enumerate(("lazy", "eager", "none"))},
    "kiln_static_us": {"16": 272.0, "7": 510.0},
    "torch_eager": {"16": {"first_us": 47000.0, "second_us": 720.0, "steady_us": 718.0},
                    "7": {"first_us": 53000.0, "second_us": 815.0, "steady_us": 689.0}},
    "torch_compile_dynamic": {"error": "no output"},
}


def test_ratios_divide_by_the_best_pytorch_configuration():
    r = plots.ratios(plots.bench_rows(BENCH_RESULTS))
    # a: the CUDA graph (120 us) beats torch.compile (150 us).
    assert r["a"] == pytest.approx({"PyTorch eager": 2.5, "PyTorch CUDA graph": 1.0,
                                    "torch.compile reduce-overhead": 1.25, "kiln": 0.5, "kiln, no CUDA graphs": 0.75})
    # b: no CUDA graph, so torch.compile (200 us) is the baseline.
    assert r["b"] == pytest.approx({"PyTorch eager": 5.0, "torch.compile reduce-overhead": 1.0, "kiln": 0.25})


def test_model_without_a_baseline_has_no_ratios():
    rows = [{"model": "c", "latency_us": {"PyTorch eager": 500.0, "kiln": 40.0}}]
    assert plots.ratios(rows) == {"c": {}}


def test_rows_with_a_batch_keep_it_in_the_model_name():
    rows = plots.bench_rows([{"model": "resnet50", "batch": 8, "torch_compile_us": 400.0, "kiln_us": 300.0}])
    assert rows == [{"model": "resnet50 b8", "latency_us": {"torch.compile reduce-overhead": 400.0, "kiln": 300.0}}]


def test_old_dynamic_results_give_the_calls_in_trace_order():
    lazy = DYNAMIC_REPORT["kiln"]["lazy"]
    assert plots.dynamic_trace(lazy, DYNAMIC_REPORT["lengths"]) == [(16, 4000.0), (7, 3000.0), (16, 1400.0), (7, 1300.0)]
    recorded = dict(lazy, trace=[[16, 5.0], [7, 6.0]])
    assert plots.dynamic_trace(recorded, DYNAMIC_REPORT["lengths"]) == [(16, 5.0), (7, 6.0)]
    assert [name for name, _ in plots.dynamic_systems(DYNAMIC_REPORT)] == ["kiln lazy", "kiln eager", "kiln none",
                                                                           "PyTorch eager"]


def test_kiln_bench_calls_in_trace_order():
    pytest.importorskip("torch")  # dynamic.py imports it
    import dynamic
    shapes = [{"shape": f"x:1x{L}x512", "calls_us": [10.0 * L, 10.0 * L + 1]} for L in reversed(dynamic.LENGTHS)]
    calls = dynamic.trace_calls(shapes)
    assert calls == [[L, 10.0 * L] for L in dynamic.LENGTHS] + [[L, 10.0 * L + 1] for L in dynamic.LENGTHS]


def test_bar_labels_carry_ratio_and_latency(tmp_path):
    pytest.importorskip("matplotlib")
    failed = {"model": "c", "device": "Test GPU", "error": "export: RuntimeError"}  # drawn as an empty group
    labels = plots.ratio_chart(plots.bench_rows(BENCH_RESULTS + [failed]), tmp_path / "chart.png", "Test GPU")
    assert "0.50× (60.0 µs)" in labels  # kiln on a
    assert "0.25× (50.0 µs)" in labels  # kiln on b
    assert "5.00× (1000 µs)" in labels  # PyTorch eager on b: its bar is cut at 4, its label is not
    assert len(labels) == 8


def test_models_beyond_a_panel_go_to_the_next(tmp_path):
    pytest.importorskip("matplotlib")
    rows = [{"model": f"m{i}", "latency_us": {"torch.compile reduce-overhead": 100.0, "kiln": 10.0 * (i + 1)}}
            for i in range(13)]
    labels = plots.ratio_chart(rows, tmp_path / "chart.png", "Test GPU", per_panel=12)
    assert len(labels) == 26
    # The first panel: m0..m11's torch.compile bars, then their kiln bars; the second: m12's.
    assert labels[11:14] == ["1.00× (100 µs)", "0.10× (10.0 µs)", "0.20× (20.0 µs)"]
    assert labels[24:] == ["1.00× (100 µs)", "1.30× (130 µs)"]
    assert (tmp_path / "chart.png").read_bytes().startswith(PNG_SIGNATURE)


@pytest.mark.parametrize("name,data", [("bench", BENCH_RESULTS), ("dynamic", DYNAMIC_REPORT)])
def test_command_line_redraws_png_from_json(tmp_path, name, data):
    pytest.importorskip("matplotlib")
    source, png = tmp_path / f"{name}.json", tmp_path / f"{name}.png"
    source.write_text(json.dumps(data))
    subprocess.run([sys.executable, os.path.join(BENCH, "plots.py"), str(source), "-o", str(png)], check=True)
    content = png.read_bytes()
    assert content.startswith(PNG_SIGNATURE)
    assert len(content) > 10000  # a drawn chart, not an empty canvas


def test_command_line_rejects_other_json(tmp_path):
    source = tmp_path / "other.json"
    source.write_text(json.dumps({"rows": []}))
    r = subprocess.run([sys.executable, os.path.join(BENCH, "plots.py"), str(source), "-o", str(tmp_path / "x.png")],
                       capture_output=True, text=True)
    assert r.returncode != 0
    assert "neither bench.py's rows" in r.stderr
