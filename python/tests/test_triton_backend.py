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
import time
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
POSITIVES_MAX = 64  # the positives model's longest input
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


def _positives(path):
    """rows = the positions of x's nonzeros, [count, 1]: a size found in the data."""
    nodes = [helper.make_node("NonZero", ["x"], ["nz"]), helper.make_node("Transpose", ["nz"], ["rows"], perm=[1, 0])]
    return save_model(path, nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
                      [helper.make_tensor_value_info("rows", TensorProto.INT64, ["count", 1])])


def _positives_config(name, max_batch):
    dims = "[ -1 ]" if max_batch == 0 else "[ ]"
    rows = "[ -1, 1 ]" if max_batch == 0 else "[ 1 ]"
    return f"""name: "{name}"
backend: "kiln"
max_batch_size: {max_batch}
input [ {{ name: "x" data_type: TYPE_FP32 dims: {dims} }} ]
output [ {{ name: "rows" data_type: TYPE_INT64 dims: {rows} }} ]
instance_group [ {{ count: 1 kind: {INSTANCE_KIND} }} ]
""" + (f'parameters: {{ key: "profile.x" value: {{ string_value: "1,8,{POSITIVES_MAX}" }} }}\n' if max_batch == 0 else "")


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
        # One instance, one request at a time: what its unload log says is about these requests alone.
        **({"mlp_zero_copy": (plan_path, "model.kiln", _config("mlp_zero_copy", instances=1))}
           if INSTANCE_KIND == "KIND_GPU" else {}),
        "positives": (_positives(root / "positives.onnx"), "model.onnx", _positives_config("positives", 0)),
        "positives_batched": (root / "positives.onnx", "model.onnx", _positives_config("positives_batched", 4)),
        "bad_parameter": (mlp.path, "model.onnx", _config("bad_parameter", parameters={"max_wrokspace": "1"})),
        "bad_value": (mlp.path, "model.onnx", _config("bad_value", parameters={"cuda_graph_strategy": "always"})),
    }
    for name, (source, filename, config) in models.items():
        (repository / name / "1").mkdir(parents=True)
        shutil.copy(source, repository / name / "1" / filename)
        (repository / name / "config.pbtxt").write_text(config)

    server = Server(repository, root / "tritonserver.log",
                    ["mlp_onnx", "mlp_plan", "mlp_ragged", "mlp_fp16", "positives", *(["mlp_gpus"] if GPUS else []),
                     *(["mlp_zero_copy"] if INSTANCE_KIND == "KIND_GPU" else [])])
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


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_data_dependent_output_sizes_come_from_the_data(served, protocol):
    module = served[f"{protocol}client"]
    rng = np.random.default_rng(9)
    for n, share in ((5, 0.5), (POSITIVES_MAX, 1.0), (3, 0.0), (POSITIVES_MAX, 0.3), (1, 1.0)):
        x = (rng.uniform(1, 2, n) * (rng.uniform(0, 1, n) < share)).astype(np.float32)
        inp = module.InferInput("x", [n], "FP32")
        inp.set_data_from_numpy(x)
        rows = served[protocol].infer("positives", [inp], outputs=[module.InferRequestedOutput("rows")]).as_numpy("rows")
        np.testing.assert_array_equal(rows, np.nonzero(x)[0].reshape(-1, 1))


def test_parameters_apply_fp16_build(served):
    x = _batch(np.random.default_rng(8), 4)
    y = _infer(served, "grpc", "mlp_fp16", x)
    np.testing.assert_allclose(y, served["mlp"](x), rtol=2e-2, atol=2e-2)
    assert "(fp16, max_batch_size 8)" in served["server"].log_text()


@pytest.mark.parametrize("model,message", [
    ("bad_parameter", "unknown parameter 'max_wrokspace'"),
    ("bad_value", "parameter 'cuda_graph_strategy' is 'always'; expected disabled or whole_graph_capture"),
    ("positives_batched", "its first dim is a size that depends on data, not the batch"),
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


class _Regions:
    """Shared memory regions registered with the server for one test, unregistered and destroyed
    after it: system shared memory, or CUDA memory of GPU 0 ("cuda")."""

    def __init__(self, client, kind="system"):
        self.client, self.kind, self.made = client, kind, []
        if kind == "system":
            import tritonclient.utils.shared_memory as module
        else:
            import tritonclient.utils.cuda_shared_memory as module
        self.module = module

    def make(self, name, byte_size, values=None):
        name = f"{name}_{os.getpid()}"
        if self.kind == "system":
            handle = self.module.create_shared_memory_region(name, f"/{name}", byte_size)
            self.made.append((name, handle))
            if values is not None:
                self.module.set_shared_memory_region(handle, [values])
            self.client.register_system_shared_memory(name, f"/{name}", byte_size)
        else:
            handle = self.module.create_shared_memory_region(name, byte_size, 0)
            self.made.append((name, handle))
            if values is not None:
                self.module.set_shared_memory_region(handle, [values])
            self.client.register_cuda_shared_memory(name, self.module.get_raw_handle(handle), 0, byte_size)
        return name, handle

    def read(self, handle, shape):
        return np.array(self.module.get_contents_as_numpy(handle, np.float32, shape))

    def close(self):
        for name, handle in self.made:
            if self.kind == "system":
                self.client.unregister_system_shared_memory(name)
            else:
                self.client.unregister_cuda_shared_memory(name)
            self.module.destroy_shared_memory_region(handle)


def _shm_request(module, x, in_region, out_region, out_bytes=None, in_bytes=None):
    inp = module.InferInput("x", list(x.shape), "FP32")
    inp.set_shared_memory(in_region, x.nbytes if in_bytes is None else in_bytes)
    out = module.InferRequestedOutput("y")
    out.set_shared_memory(out_region, x.shape[0] * CLASSES * 4 if out_bytes is None else out_bytes)
    return inp, out


@pytest.fixture
def regions(served):
    made = []

    def open_regions(protocol, kind="system"):
        made.append(_Regions(served[protocol], kind))
        return made[-1]

    yield open_regions
    for r in made:
        r.close()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("model", ["mlp_onnx", "mlp_plan"])
def test_system_shared_memory_inputs_and_outputs(served, regions, protocol, model):
    """Inputs read from and outputs written to the client's shared memory: no tensor bytes in the
    requests, the same results."""
    shm = regions(protocol)
    module = served[f"{protocol}client"]
    rng = np.random.default_rng(12)
    for n in (1, 3):
        x = _batch(rng, n)
        in_region, _ = shm.make(f"in_{protocol}_{model}_{n}", x.nbytes, x)
        out_region, out_handle = shm.make(f"out_{protocol}_{model}_{n}", n * CLASSES * 4)
        inp, out = _shm_request(module, x, in_region, out_region)
        served[protocol].infer(model, [inp], outputs=[out])
        y = shm.read(out_handle, [n, CLASSES])  # the region starts zeroed: the backend wrote it
        np.testing.assert_allclose(y, served["mlp"](x), rtol=TOLERANCE, atol=TOLERANCE)


def test_shared_memory_of_the_wrong_size_fails_that_request_alone(served, regions):
    """In one dynamic batch (mlp_ragged waits 300 ms): a request whose output region is too small
    for its rows gets the backend's error naming it, one whose input region is smaller than its
    input gets Triton's; the others get their results in their regions."""
    shm = regions("http")
    httpclient = served["httpclient"]
    rng = np.random.default_rng(13)
    start = served["server"].log_text().count("kiln model 'mlp_ragged' instance")
    cases = []
    for i in range(4):
        x = _batch(rng, 2)
        in_region, _ = shm.make(f"batch_in_{i}", x.nbytes, x)
        out_bytes = 2 * CLASSES * 4 if i != 1 else CLASSES * 4  # request 1: room for one row of two
        out_region, out = shm.make(f"batch_out_{i}", out_bytes)
        cases.append((x, in_region, out_region, out, out_bytes))
    small_in, _ = shm.make("small_in", 16)
    pending = []
    for i, (x, in_region, out_region, out, out_bytes) in enumerate(cases):
        inp, req = _shm_request(httpclient, x, in_region, out_region, out_bytes=out_bytes)
        pending.append(served["http"].async_infer("mlp_ragged", [inp], outputs=[req], request_id=f"s{i}"))
    x = _batch(rng, 1)
    inp, req = _shm_request(httpclient, x, small_in, cases[0][2])
    with pytest.raises(Exception) as refused:
        served["http"].infer("mlp_ragged", [inp], outputs=[req], request_id="small")
    assert small_in in str(refused.value) or "byte" in str(refused.value).lower(), refused.value
    for i, ((x, _, _, out, _), handle) in enumerate(zip(cases, pending)):
        if i == 1:
            with pytest.raises(Exception) as failed:
                handle.get_result(timeout=60)
            message = str(failed.value)
            assert "kiln model 'mlp_ragged' instance" in message and "(request 's1')" in message, message
            assert str(CLASSES * 4) in message and str(2 * CLASSES * 4) in message, message
        else:
            handle.get_result(timeout=60)
            np.testing.assert_allclose(shm.read(out, [2, CLASSES]), served["mlp"](x), rtol=TOLERANCE, atol=TOLERANCE)
    lines = [l for l in served["server"].log_text().splitlines() if "kiln model 'mlp_ragged' instance" in l][start:]
    assert any("execute: 4 requests, 0 refused, 1 batches" in l for l in lines), "\n".join(lines)


def test_misnamed_and_missing_inputs_are_refused_by_name(served):
    """Triton checks names against config.pbtxt before the backend (whose own check, the same
    at load, is unit-tested in tests/serving): the error names the input."""
    from tritonclient.utils import InferenceServerException

    for protocol in ("http", "grpc"):
        module = served[f"{protocol}client"]
        inp = module.InferInput("z", [1, FEATURES], "FP32")
        inp.set_data_from_numpy(_batch(np.random.default_rng(14), 1))
        with pytest.raises(InferenceServerException) as misnamed:
            served[protocol].infer("mlp_onnx", [inp])
        assert "'z'" in str(misnamed.value), misnamed.value
        with pytest.raises(InferenceServerException) as missing:
            served[protocol].infer("mlp_onnx", [])
        assert "input" in str(missing.value).lower(), missing.value
    assert served["http"].is_model_ready("mlp_onnx")


def _cuda_shared_memory_missing():
    if INSTANCE_KIND != "KIND_GPU":
        return "set KILN_TRITON_INSTANCE_KIND=KIND_GPU on a machine with a GPU"
    try:
        import tritonclient.utils.cuda_shared_memory  # noqa: F401
    except Exception as e:  # RuntimeError without cuda-python
        return f"no tritonclient.utils.cuda_shared_memory ({e}): pip install cuda-python"
    return None


@pytest.mark.skipif(_cuda_shared_memory_missing() is not None, reason=str(_cuda_shared_memory_missing()))
def test_cuda_shared_memory_inputs_and_outputs_in_place(served, regions):
    """Inputs and outputs in CUDA memory of GPU 0: one request at a time is bound to the context
    as it is (the instance's unload log counts it), a batch of several is gathered and scattered
    device to device; the results are right either way."""
    shm = regions("grpc", "cuda")
    module = served["grpcclient"]
    rng = np.random.default_rng(15)
    requests = 5
    for i in range(requests):
        x = _batch(rng, 1 + i % 3)
        in_region, _ = shm.make(f"cuda_in_{i}", x.nbytes, x)
        out_region, out = shm.make(f"cuda_out_{i}", x.shape[0] * CLASSES * 4)
        inp, req = _shm_request(module, x, in_region, out_region)
        served["grpc"].infer("mlp_zero_copy", [inp], outputs=[req])
        np.testing.assert_allclose(shm.read(out, [x.shape[0], CLASSES]), served["mlp"](x), rtol=TOLERANCE, atol=TOLERANCE)
    httpclient = served["httpclient"]
    cases, pending = [], []
    http_shm = regions("http", "cuda")
    for i in range(3):
        x = _batch(rng, 1 + i)
        in_region, _ = http_shm.make(f"cuda_batch_in_{i}", x.nbytes, x)
        out_region, out = http_shm.make(f"cuda_batch_out_{i}", x.shape[0] * CLASSES * 4)
        inp, req = _shm_request(httpclient, x, in_region, out_region)
        cases.append((x, out))
        pending.append(served["http"].async_infer("mlp_ragged", [inp], outputs=[req]))
    for (x, out), handle in zip(cases, pending):
        handle.get_result(timeout=60)
        np.testing.assert_allclose(http_shm.read(out, [x.shape[0], CLASSES]), served["mlp"](x), rtol=TOLERANCE,
                                   atol=TOLERANCE)
    served["http"].unload_model("mlp_zero_copy")
    deadline = time.monotonic() + 30
    while "in place (no copy)" not in _lines_of(served, "mlp_zero_copy") and time.monotonic() < deadline:
        time.sleep(0.2)
    summary = _lines_of(served, "mlp_zero_copy")
    assert f"in place (no copy): {requests} of {requests} inputs, {requests} of {requests} outputs" in summary, summary


def _lines_of(served, model):
    return "\n".join(l for l in served["server"].log_text().splitlines() if f"kiln model '{model}' instance" in l)


def test_server_shuts_down_cleanly(served):
    """Last: SIGTERM unloads every model (ModelFinalize) and the server exits 0 in bounded time."""
    server = served["server"]
    served["http"].close()  # open keep-alive connections would hold the server for its exit timeout
    served["grpc"].close()
    assert server.stop(timeout=30) == 0, server.log_text()[-4000:]
    log = Path(server.log_path).read_text(errors="replace")
    for model in ("mlp_onnx", "mlp_plan"):
        assert f"successfully unloaded '{model}'" in log, log[-4000:]
        # Each instance's host time per execute call, logged at unload.
        assert any(f"kiln model '{model}' instance" in l and " requests; backend host time per execute: reading requests "
                   in l for l in log.splitlines()), log[-4000:]
