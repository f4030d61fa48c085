"""libtriton_kiln.so inside a real Triton Inference Server (the one the
nvidia-pytriton wheel bundles), through tritonclient over HTTP and gRPC on
loopback. KIND_CPU instances: the reference interpreter, so no GPU is needed.

Skips, saying why, unless the server binary, tritonclient, the backend and the
kiln CLI are all there (pip install nvidia-pytriton 'tritonclient[all]'; the
backend and the CLI come with the build)."""

import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import save_model

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from triton_server import Server, kiln_cli, missing  # noqa: E402

KILN_CLI = kiln_cli()
STARTUP_SECONDS = 90
FEATURES, HIDDEN, CLASSES, MAX_BATCH = 16, 32, 8, 8
# KIND_CPU (the reference interpreter) by default; KIND_GPU on a machine with a GPU.
INSTANCE_KIND = os.environ.get("KILN_TRITON_INSTANCE_KIND", "KIND_CPU")
TOLERANCE = 1e-5 if INSTANCE_KIND == "KIND_CPU" else 1e-4
# GPUs for a model placed on several of them ("0,1"); unset: that test skips.
GPUS = [int(g) for g in os.environ.get("KILN_TRITON_GPUS", "").split(",") if g.strip()]


pytestmark = pytest.mark.skipif(missing() is not None, reason=str(missing()))


def _config(name, *, x_dims="[ 16 ]", ragged=False, parameters=None, instances=2, max_batch=MAX_BATCH, delay_us=2000,
            gpus=None):
    params = "".join(
        f'parameters: {{ key: "{k}" value: {{ string_value: "{v}" }} }}\n' for k, v in (parameters or {}).items()
    )
    return f"""name: "{name}"
backend: "kiln"
max_batch_size: {max_batch}
input [ {{ name: "x" data_type: TYPE_FP32 dims: {x_dims} {"allow_ragged_batch: true" if ragged else ""} }} ]
output [ {{ name: "y" data_type: TYPE_FP32 dims: [ {CLASSES} ] }} ]
instance_group [ {{ count: {instances} kind: {INSTANCE_KIND} {f"gpus: {list(gpus)}" if gpus else ""} }} ]
dynamic_batching {{ max_queue_delay_microseconds: {delay_us} }}
{params}"""


class Mlp:
    """y = relu(x @ w1 + b1) @ w2 + b2, x[batch, 16] -> y[batch, 8]."""

    def __init__(self, path):
        rng = np.random.default_rng(20240611)
        self.w1 = rng.uniform(-0.5, 0.5, (FEATURES, HIDDEN)).astype(np.float32)
        self.b1 = rng.uniform(-0.5, 0.5, (HIDDEN,)).astype(np.float32)
        self.w2 = rng.uniform(-0.5, 0.5, (HIDDEN, CLASSES)).astype(np.float32)
        self.b2 = rng.uniform(-0.5, 0.5, (CLASSES,)).astype(np.float32)
        nodes = [
            helper.make_node("MatMul", ["x", "w1"], ["h0"]),
            helper.make_node("Add", ["h0", "b1"], ["h1"]),
            helper.make_node("Relu", ["h1"], ["h2"]),
            helper.make_node("MatMul", ["h2", "w2"], ["h3"]),
            helper.make_node("Add", ["h3", "b2"], ["y"]),
        ]
        inits = [numpy_helper.from_array(a, n) for a, n in
                 ((self.w1, "w1"), (self.b1, "b1"), (self.w2, "w2"), (self.b2, "b2"))]
        self.path = save_model(
            path, nodes,
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", FEATURES])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", CLASSES])], inits)

    def __call__(self, x):
        x = x.astype(np.float64)
        return np.maximum(x @ self.w1 + self.b1, 0) @ self.w2 + self.b2


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    root = tmp_path_factory.mktemp("triton")
    repository = root / "models"
    mlp = Mlp(root / "mlp.onnx")
    plan_path = root / "mlp.kiln"
    subprocess.run([str(KILN_CLI), "build", mlp.path, "-o", str(plan_path),
                    "--profile", f"x:1x{FEATURES}/4x{FEATURES}/{MAX_BATCH}x{FEATURES}"],
                   check=True, capture_output=True, timeout=120)
    models = {
        "mlp_onnx": (mlp.path, "model.onnx", _config("mlp_onnx")),
        "mlp_plan": (plan_path, "model.kiln", _config("mlp_plan")),
        # Triton passes any width through; kiln refuses all but 16, request by request.
        "mlp_ragged": (mlp.path, "model.onnx", _config("mlp_ragged", x_dims="[ -1 ]", ragged=True, instances=1,
                                                           delay_us=300000)),
        "mlp_fp16": (mlp.path, "model.onnx", _config("mlp_fp16", instances=1, parameters={
            "precision": "fp16", "cuda_graph_strategy": "disabled",
            "dynamic_shapes_kernel_specialization_strategy": "eager",
            "runtime_cache_path": str(root / "runtime_cache.bin"),
            "profile.x": f"1x{FEATURES},4x{FEATURES},{MAX_BATCH}x{FEATURES}"})),
        **({"mlp_gpus": (plan_path, "model.kiln", _config("mlp_gpus", gpus=GPUS, delay_us=100))} if GPUS else {}),
        "bad_parameter": (mlp.path, "model.onnx", _config("bad_parameter", parameters={"max_wrokspace": "1"})),
        "bad_value": (mlp.path, "model.onnx", _config("bad_value", parameters={"cuda_graph_strategy": "always"})),
    }
    for name, (source, filename, config) in models.items():
        (repository / name / "1").mkdir(parents=True)
        shutil.copy(source, repository / name / "1" / filename)
        (repository / name / "config.pbtxt").write_text(config)

    server = Server(repository, root / "tritonserver.log",
                    ["mlp_onnx", "mlp_plan", "mlp_ragged", "mlp_fp16", *(["mlp_gpus"] if GPUS else [])])
    try:
        http = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}", concurrency=8, network_timeout=60)
        server.wait_ready(http, STARTUP_SECONDS)
        grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
        yield {"server": server, "http": http, "grpc": grpc, "mlp": mlp,
               "httpclient": httpclient, "grpcclient": grpcclient}
    finally:
        code = server.stop()
        print(f"tritonserver exited with {code}; log {server.log_path}")


def _infer(served, protocol, model, x, client=None):
    module = served[f"{protocol}client"]
    inp = module.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    out = module.InferRequestedOutput("y")
    return (client or served[protocol]).infer(model, [inp], outputs=[out]).as_numpy("y")


def _batch(rng, n, width=FEATURES):
    return rng.uniform(-1, 1, (n, width)).astype(np.float32)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_models_are_ready(served, protocol):
    client = served[protocol]
    assert client.is_server_live() and client.is_server_ready()
    for model in ("mlp_onnx", "mlp_plan", "mlp_ragged", "mlp_fp16"):
        assert client.is_model_ready(model), model
    metadata = served["http"].get_model_metadata("mlp_onnx")
    assert metadata["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, FEATURES]}]
    assert metadata["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [-1, CLASSES]}]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("model", ["mlp_onnx", "mlp_plan"])
def test_results_match_numpy(served, protocol, model):
    rng = np.random.default_rng(7)
    for n in (1, 3, MAX_BATCH):
        x = _batch(rng, n)
        y = _infer(served, protocol, model, x)
        assert y.shape == (n, CLASSES) and y.dtype == np.float32
        np.testing.assert_allclose(y, served["mlp"](x), rtol=TOLERANCE, atol=TOLERANCE)


def test_parameters_apply_fp16_build(served):
    x = _batch(np.random.default_rng(8), 4)
    y = _infer(served, "grpc", "mlp_fp16", x)
    np.testing.assert_allclose(y, served["mlp"](x), rtol=2e-2, atol=2e-2)
    assert "(fp16, max_batch_size 8)" in served["server"].log_text()


@pytest.mark.parametrize("model,message", [
    ("bad_parameter", "unknown parameter 'max_wrokspace'"),
    ("bad_value", "parameter 'cuda_graph_strategy' is 'always'; expected disabled or whole_graph_capture"),
])
def test_config_error_fails_the_load_with_the_message(served, model, message):
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException) as failure:
        served["http"].load_model(model)
    assert message in str(failure.value)
    assert f"kiln model '{model}'" in str(failure.value)
    assert not served["grpc"].is_model_ready(model)
    index = {m["name"]: m for m in served["http"].get_model_repository_index()}
    assert message in index[model].get("reason", "")
    assert served["http"].is_model_ready("mlp_onnx")


def test_wrong_shape_fails_alone_in_its_batch(served):
    """Concurrent requests to one instance with dynamic batching: the one with a
    width the model cannot take gets its own error, the others their results."""
    rng = np.random.default_rng(9)
    httpclient = served["httpclient"]
    good = [_batch(rng, 1 + i % 3) for i in range(6)]
    bad = _batch(rng, 1, FEATURES - 1)
    start = served["server"].log_text().count("kiln model 'mlp_ragged' instance")
    pending = []
    for i, x in enumerate(good[:3] + [bad] + good[3:]):
        inp = httpclient.InferInput("x", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        pending.append((x, served["http"].async_infer("mlp_ragged", [inp], request_id=f"r{i}")))
    results = []
    for x, handle in pending:
        try:
            results.append((x, handle.get_result(timeout=60).as_numpy("y"), None))
        except Exception as e:  # the bad request's error, read below
            results.append((x, None, e))
    for x, y, error in results:
        if x is bad:
            assert error is not None
            assert "(request 'r3'): input 'x' dim 1 is 15; the model needs 16" in str(error)
        else:
            assert error is None, error
            np.testing.assert_allclose(y, served["mlp"](x), rtol=TOLERANCE, atol=TOLERANCE)
    # The backend's verbose line per execute: the bad request was refused inside a batch with good ones.
    lines = [l for l in served["server"].log_text().splitlines() if "kiln model 'mlp_ragged' instance" in l][start:]
    assert any("1 refused" in l and "requests" in l and not l.split("execute: ")[1].startswith("1 requests")
               for l in lines), "\n".join(lines)


@pytest.mark.skipif(len(GPUS) < 2 or INSTANCE_KIND != "KIND_GPU", reason="set KILN_TRITON_GPUS=0,1 with KIND_GPU on a machine with two GPUs")
def test_instances_on_several_gpus(served):
    """instance_group gpus [0, 1]: an engine per GPU, each instance on its GPU, all
    of them serving right results under concurrent requests."""
    def gpu_of(line):  # "kiln model 'mlp_gpus' instance 'mlp_gpus_0_1' on GPU 1: ..."
        return int(line.split("' on GPU ")[1].split(":")[0])

    placed = [gpu_of(l) for l in served["server"].log_text().splitlines() if "kiln model 'mlp_gpus' instance" in l and ": KIND_GPU" in l]
    assert sorted(set(placed)) == sorted(GPUS), placed
    rng = np.random.default_rng(11)
    httpclient = served["httpclient"]
    inputs = [_batch(rng, 1 + i % 4) for i in range(96)]
    pending = []
    for x in inputs:
        inp = httpclient.InferInput("x", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        pending.append(served["http"].async_infer("mlp_gpus", [inp]))
    for x, handle in zip(inputs, pending):
        np.testing.assert_allclose(handle.get_result(timeout=60).as_numpy("y"), served["mlp"](x), rtol=TOLERANCE, atol=TOLERANCE)
    executed = {gpu_of(l) for l in served["server"].log_text().splitlines() if "kiln model 'mlp_gpus' instance" in l and "execute:" in l}
    assert executed == set(GPUS), executed


def test_concurrent_clients(served):
    failures = []

    def client(index):
        # A client of its own per thread, half of them gRPC.
        if index % 2:
            protocol, own = "grpc", served["grpcclient"].InferenceServerClient(f"127.0.0.1:{served['server'].grpc_port}")
        else:
            protocol, own = "http", served["httpclient"].InferenceServerClient(
                f"127.0.0.1:{served['server'].http_port}", network_timeout=60)
        rng = np.random.default_rng(100 + index)
        try:
            for step in range(10):
                model = "mlp_onnx" if step % 2 else "mlp_plan"
                x = _batch(rng, int(rng.integers(1, 5)))
                y = _infer(served, protocol, model, x, client=own)
                np.testing.assert_allclose(y, served["mlp"](x), rtol=TOLERANCE, atol=TOLERANCE)
        except Exception as e:
            failures.append(f"client {index}: {e!r}")
        finally:
            own.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "clients still running after 120 s"
    assert not failures, failures
    stats = served["http"].get_inference_statistics("mlp_onnx")["model_stats"][0]
    assert stats["inference_count"] >= 40


def _post(served, path, body):
    request = urllib.request.Request(f"http://127.0.0.1:{served['server'].http_port}{path}", data=body,
                                     headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_malformed_requests_fail_and_the_server_stays_up(served):
    """Requests Triton itself refuses (it answers 400 or 500 by kind) leave the model serving."""
    def refused(path, body):
        status, text = _post(served, path, body)
        assert status >= 400 and "error" in json.loads(text), (status, text)
        return json.loads(text)["error"]

    refused("/v2/models/mlp_onnx/infer", b"{ not json")
    wrong_count = {"inputs": [{"name": "x", "shape": [1, FEATURES], "datatype": "FP32", "data": [0.5] * 3}]}
    assert "shape" in refused("/v2/models/mlp_onnx/infer", json.dumps(wrong_count).encode()).lower()
    wrong_type = {"inputs": [{"name": "x", "shape": [1, FEATURES], "datatype": "INT32", "data": [1] * FEATURES}]}
    assert "INT32" in refused("/v2/models/mlp_onnx/infer", json.dumps(wrong_type).encode())
    no_input = {"inputs": [{"name": "z", "shape": [1, FEATURES], "datatype": "FP32", "data": [0.0] * FEATURES}]}
    refused("/v2/models/mlp_onnx/infer", json.dumps(no_input).encode())
    too_big = {"inputs": [{"name": "x", "shape": [MAX_BATCH + 1, FEATURES], "datatype": "FP32",
                           "data": [0.0] * ((MAX_BATCH + 1) * FEATURES)}]}
    refused("/v2/models/mlp_onnx/infer", json.dumps(too_big).encode())
    refused("/v2/models/no_such_model/infer", json.dumps(wrong_count).encode())
    good = {"inputs": [{"name": "x", "shape": [1, FEATURES], "datatype": "FP32", "data": [0.25] * FEATURES}]}
    status, body = _post(served, "/v2/models/mlp_onnx/infer", json.dumps(good).encode())
    assert status == 200, body
    y = np.array(json.loads(body)["outputs"][0]["data"], dtype=np.float64)
    np.testing.assert_allclose(y, served["mlp"](np.full((1, FEATURES), 0.25))[0], rtol=TOLERANCE, atol=TOLERANCE)


def test_server_shuts_down_cleanly(served):
    """Last: SIGTERM unloads every model (ModelFinalize) and the server exits 0 in bounded time."""
    server = served["server"]
    served["http"].close()  # open keep-alive connections would hold the server for its exit timeout
    served["grpc"].close()
    assert server.stop(timeout=30) == 0, server.log_text()[-4000:]
    log = Path(server.log_path).read_text(errors="replace")
    for model in ("mlp_onnx", "mlp_plan"):
        assert f"successfully unloaded '{model}'" in log, log[-4000:]
