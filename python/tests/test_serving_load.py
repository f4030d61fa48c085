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
