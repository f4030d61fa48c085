"""bench/serving.py, the load test of the Triton backend, against a real
tritonserver with KIND_CPU instances and a tiny MLP: the whole run for a few
seconds, and its response check catching outputs that belong to another input
or to none, and lost requests.

Skips, saying why, like test_triton_backend.py, without the server wheel,
tritonclient, the backend or the kiln CLI."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import triton_server  # noqa: E402

pytestmark = pytest.mark.skipif(triton_server.missing() is not None, reason=str(triton_server.missing()))
pytest.importorskip("torch")  # serving.py exports bench.py's models with it

import serving  # noqa: E402

QUICK = ["--models", "mlp", "--kind", "KIND_CPU", "--clients", "4", "--instances", "1", "--max-batch", "8",
         "--inputs", "8"]


def test_whole_run_has_no_lost_or_mixed_responses(tmp_path):
    report = serving.main(QUICK + ["--processes", "2", "--seconds", "3", "--warmup-seconds", "1",
                                   "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work")])
    assert [(r["model"], r["mode"]) for r in report["rows"]] == [("mlp", "plain"), ("mlp", "batched")]
    for row in report["rows"]:
        assert row["requests"] > 0 and row["ok"] == row["requests"], row
        assert row["lost"] == row["mixed"] == row["wrong"] == row["stuck_threads"] == 0, row
        assert row["max_error"] <= report["args"]["tolerance"]
        # Triton counted exactly the measured requests: the warm-up is outside the window.
        triton = row["triton"]
        assert triton["success"]["count"] == row["ok"], triton
        assert sum(size * b["executions"] for size, b in triton["batches"].items()) == row["ok"], triton
        assert row["p50_us"] <= row["p90_us"] <= row["p99_us"]
        assert row["gpu_busy"]["note"] == "KIND_CPU: no GPU"
        assert len(row["client_cpu_shares"]) == 2 and all(c > 0 for c in row["client_cpu_shares"])
    assert list(report["rows"][0]["triton"]["batches"]) == [1]  # no dynamic batching: every execution one request
    model = report["models"][0]
    assert model["kiln_run_error"] <= report["args"]["tolerance"]
    assert model["separation"] > 2 * report["args"]["tolerance"]
    assert all(v["met"] for v in report["verdicts"]), report["verdicts"]
    table = (tmp_path / "out" / "serving-table.txt").read_text()
    assert "mlp       plain" in table and "mlp       batched" in table
    assert (tmp_path / "out" / "serving.json").exists()


def test_system_shared_memory_clients_over_streams(tmp_path):
    """--shared-memory system: requests carry no tensor bytes, several in flight per process over
    a gRPC stream, every response read from its own output region and checked."""
    report = serving.main(QUICK + ["--processes", "2", "--seconds", "2", "--warmup-seconds", "0.5", "--modes", "batched",
                                   "--shared-memory", "system", "--out", str(tmp_path / "out"),
                                   "--work", str(tmp_path / "work")])
    (row,) = report["rows"]
    assert row["requests"] > 0 and row["ok"] == row["requests"], row
    assert row["lost"] == row["mixed"] == row["wrong"] == row["stuck_threads"] == 0, row
    triton = row["triton"]
    assert triton["success"]["count"] == row["ok"], triton
    assert sum(size * b["executions"] for size, b in triton["batches"].items()) == row["ok"], triton
    assert "requests in flight over gRPC streams (2 processes), tensors in system shared memory" in \
        (tmp_path / "out" / "serving-table.txt").read_text()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    import tritonclient.http as httpclient

    root = tmp_path_factory.mktemp("serving")
    args = serving.parse_args(QUICK + ["--processes", "1", "--work", str(root), "--out", str(root)])
    model = serving.prepare_model("mlp", args)
    repository = serving.write_repository([model], ["batched"], args)
    server = triton_server.Server(repository, root / "tritonserver.log", ["mlp_batched"], log_verbose=False)
    http = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}", network_timeout=60)
    try:
        server.wait_ready(http, 90)
        url = f"127.0.0.1:{server.grpc_port}"
        inputs = np.random.default_rng(3).standard_normal((args.inputs, 1, 32)).astype(np.float32)
        yield args, url, inputs, serving.expected_outputs(url, "mlp_batched", inputs, 30)
    finally:
        http.close()
        assert server.stop() == 0, server.log_text()[-4000:]


def test_expected_classifies_by_the_nearest_output():
    outputs = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 0.99]])  # inputs 0 and 2 closer than twice the tolerance
    expected = serving.Expected(outputs, 0.05)
    assert expected.separation == pytest.approx(0.01) and not expected.distinct
    assert expected.classify(np.array([0.0, 1.0]), 0) == ("ok", 0.0)
    assert expected.classify(np.array([0.0, 0.99]), 0)[0] == "mixed"  # nearer to input 2's output than to its own
    assert expected.classify(np.array([1.0, 0.0]), 0)[0] == "mixed"
    assert expected.classify(np.array([0.5, 0.5]), 0)[0] == "wrong"
    assert expected.classify(np.array([0.0, 1.0, 0.0]), 0) == ("wrong", float("inf"))
    apart = serving.Expected(outputs[:2], 0.05)
    assert apart.distinct and apart.classify(np.array([0.03, 1.0]), 0) == ("ok", pytest.approx(0.03))


def test_check_catches_wrong_expected_outputs(served):
    args, url, inputs, expected = served
    right = serving.run_load(url, "mlp_batched", inputs, serving.Expected(expected, args.tolerance), args, 1.5)
    assert right["counts"]["ok"] > 0 and right["counts"]["mixed"] == right["counts"]["wrong"] == 0, right["counts"]
    # Inputs 0 and 1 with each other's outputs, input 2 with an output no input has.
    bad = expected.copy()
    bad[[0, 1]] = expected[[1, 0]]
    bad[2] = expected[2] + 0.5 * np.max(np.abs(expected[2]))
    load = serving.run_load(url, "mlp_batched", inputs, serving.Expected(bad, args.tolerance), args, 1.5)
    counts, per_input = load["counts"], load["per_input"]
    sent = [sum(per_input[k][i] for k in per_input) for i in range(len(inputs))]
    assert counts["mixed"] == per_input["mixed"][0] + per_input["mixed"][1] == sent[0] + sent[1] > 0, load
    assert counts["wrong"] == per_input["wrong"][2] == sent[2] > 0, load
    assert counts["ok"] == sum(sent[3:]) and counts["lost"] == 0, load


def test_check_counts_lost_requests(served):
    args, url, inputs, expected = served
    load = serving.run_load(url, "no_such_model", inputs, serving.Expected(expected, args.tolerance), args, 0.5)
    assert load["counts"]["lost"] > 0 and load["counts"]["ok"] == 0, load["counts"]
    assert not load["latencies_us"] and "no_such_model" in load["errors"][0], load["errors"]


def test_report_sets_triton_beside_kiln_run():
    """The overhead and throughput columns and the targets from Triton's statistics and kiln run's p50s."""
    def row(mode, batches, rps):
        stats = {k: {"count": 1, "us_per_request": 1.0} for k in serving.STAT_KEYS}
        return {"model": "resnet18", "mode": mode, "requests": 10, "ok": 10, "lost": 0, "mixed": 0, "wrong": 0,
                "stuck_threads": 0, "errors": [], "max_error": 1e-3, "client_cpu_shares": [0.5],
                "throughput_rps": rps, "p50_us": 1.0, "p90_us": 2.0, "p99_us": 3.0,
                "triton": {**stats, "batches": batches}, "gpu_busy": {"mean_percent": 50.0, "samples": 9, "note": None},
                "formed_batch": max(batches, key=lambda b: batches[b]["executions"])}

    plain = row("plain", {1: {"executions": 10, "compute_infer_us": 240.0}}, 4000.0)
    batched = row("batched", {1: {"executions": 2, "compute_infer_us": 250.0},
                              16: {"executions": 5, "compute_infer_us": 900.0}}, 15000.0)
    for r in (plain, batched):
        serving.add_kiln_columns(r, {1: 200.0, 16: 1000.0})
    assert plain["backend_overhead_us"] == pytest.approx(40.0) and plain["formed_batch"] == 1
    assert batched["formed_batch"] == 16 and batched["kiln_throughput_formed_rps"] == pytest.approx(16000.0)
    assert batched["throughput_vs_kiln"] == pytest.approx(15000.0 / 16000.0)
    report = {"device": "a GPU", "rows": [plain, batched], "notes": [],
              "args": vars(serving.parse_args(["--tolerance", "0.01"])),
              "models": [{"name": "resnet18", "precision": "fp16", "inputs": 16, "separation": 0.03,
                          "kiln_run_error": 0.002}]}
    met = dict(serving.verdicts(report))
    assert met == {"resnet18 plain: every response answered and correct": True,
                   "resnet18 batched: every response answered and correct": True,
                   "resnet18 plain: backend overhead 40.0 us <= 30 us": False,
                   "resnet18 batched: throughput 0.94 of kiln run's at batch 16 >= 0.9": True,
                   "resnet18: kiln run agrees with the server": True}
    text = serving.table(report)
    assert plain["backend_overhead_formed_us"] == pytest.approx(40.0)
    assert batched["backend_overhead_formed_us"] == pytest.approx(-100.0)  # Triton's batch-16 infer under kiln run's
    assert "   200.0    40.0   200.0    40.0     5000    0.80" in text, text  # plain: kiln at batch 1 on both sides
    assert "   200.0    50.0  1000.0  -100.0    16000    0.94" in text, text


def test_gpu_busy_says_why_it_has_no_samples(monkeypatch):
    assert serving.GpuBusy("0", enabled=False).stop() == {"mean_percent": None, "samples": 0,
                                                          "note": "KIND_CPU: no GPU"}
    monkeypatch.setenv("PATH", "/nonexistent")
    busy = serving.GpuBusy("0", enabled=True).stop()
    assert busy["mean_percent"] is None and busy["note"].startswith("nvidia-smi unavailable")
