#!/usr/bin/env python3
"""Load test of the kiln Triton backend inside a real tritonserver.

For each model (ResNet-18 and the BERT-like encoder of bench.py; a tiny MLP
for a quick run on KIND_CPU): export it to ONNX with a symbolic batch dim,
build a kiln plan for batch 1..--max-batch, and serve it twice from one model
repository, without and with dynamic batching. Then, per model and batching
mode, --clients concurrent clients (threads in --processes processes, one
gRPC client each) send batch-1 requests for --seconds after --warmup-seconds.
With --shared-memory system or cuda the requests carry no tensor bytes: each
client process puts the inputs into one shared memory region (system shared
memory, or CUDA memory of --gpu) and gives each request in flight an output
region of its own, and sends over one gRPC stream with --clients requests in
flight in all (split among the processes), so the clients stay light.
Every request carries one of --inputs distinct random inputs whose output was
computed beforehand (through the server, one request at a time, and checked
against `kiln run` of the same plan), and every response is checked against
it: lost (an error or a timeout), mixed (it matches another input's output)
and wrong (it matches no input's output) responses are counted.

Reported per model and mode: throughput, client-side p50/p90/p99 latency,
Triton's own statistics per request (queue, compute input/infer/output) and
the batch sizes the batcher formed, GPU busy (nvidia-smi every 100 ms), and
beside them `kiln run` of the same plan at batch 1 and at the batch size the
batcher formed most often: the backend's overhead per request (Triton's
compute_infer per batch-1 execution minus kiln run's p50 at batch 1, and the
same at the formed batch size) and the throughput against kiln run's
(batch / p50) at that batch size.
Writes serving.json and serving-table.txt to --out; prints the table last.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import triton_server  # noqa: E402

MODES = {"plain": "no dynamic batching", "batched": "dynamic batching"}
STAT_KEYS = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")
# Over the largest |output|. GPU plans run in fp16: bench.py measured 6e-4 (ResNet-18) and 2e-3
# (BERT-like) against PyTorch fp32; batches of other sizes run other kernels.
TOLERANCE = {"KIND_CPU": 1e-4, "KIND_GPU": 1e-2}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="resnet18,bert", help="resnet18, bert (bench.py's), mlp (tiny, for KIND_CPU)")
    ap.add_argument("--modes", default="plain,batched", help="plain: no dynamic batching; batched: dynamic batching")
    ap.add_argument("--kind", default="KIND_GPU", choices=["KIND_GPU", "KIND_CPU"])
    ap.add_argument("--instances", type=int, default=2, help="instance_group count")
    ap.add_argument("--max-batch", type=int, default=32, help="max_batch_size and the plans' batch range 1..N")
    ap.add_argument("--delay-us", type=int, default=100, help="dynamic_batching max_queue_delay_microseconds")
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--processes", type=int, default=8, help="client processes; the clients are threads split among them")
    ap.add_argument("--shared-memory", default="none", choices=["none", "system", "cuda"],
                    help="none: tensors in the gRPC requests, one request in flight per client thread; system, cuda: "
                         "tensors in shared memory regions (CUDA memory of --gpu), --clients requests in flight over "
                         "gRPC streams")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--warmup-seconds", type=float, default=10, help="the same load first, not counted")
    ap.add_argument("--inputs", type=int, default=16, help="distinct random inputs per model")
    ap.add_argument("--tolerance", type=float, help="max |got - expected| / max |expected|; default by --kind")
    ap.add_argument("--request-timeout", type=float, default=30, help="seconds a client waits for one response")
    ap.add_argument("--startup-timeout", type=float, default=300, help="seconds for the server to load every model")
    ap.add_argument("--kernel-specialization", default="lazy", choices=["lazy", "eager", "none"],
                    help="the backend's dynamic_shapes_kernel_specialization_strategy (kiln run times eager)")
    ap.add_argument("--kiln-iterations", type=int, default=300, help="kiln run's timed runs per batch size")
    ap.add_argument("--gpu", default="0", help="the GPU nvidia-smi samples (and --shared-memory cuda's regions are on)")
    ap.add_argument("--kiln", default=str(triton_server.kiln_cli()), help="the kiln CLI")
    ap.add_argument("--out", default="build-gpu/out", help="folder for serving.json and serving-table.txt")
    ap.add_argument("--work", default="build-gpu/serving-work", help="folder for models, plans, the repository, logs")
    args = ap.parse_args(argv)
    if args.tolerance is None:
        args.tolerance = TOLERANCE[args.kind]
    if args.clients < 1 or args.processes < 1:
        ap.error("--clients and --processes must be at least 1")
    args.processes = min(args.processes, args.clients)
    return args


def run_cmd(cmd, timeout):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({r.returncode}): {(r.stderr or r.stdout).strip()[-1500:]}")
    return r


# --- models, plans and the repository --------------------------------------------------------------

def prepare_model(name, args):
    """Exports bench.py's model with a symbolic batch and builds a plan for batch 1..max: a dict
    with the plan, the per-request input and output dims."""
    import torch
    import bench

    torch.manual_seed(0)
    if name == "mlp":
        module, shape = bench.Mlp(layers=2, width=32), (1, 32)
    else:
        found = bench.models([name])
        if name not in found:
            raise ValueError(f"--models: no model '{name}' (resnet18, bert, mlp)")
        module, inputs = found[name]
        shape = inputs["x"]
    module = module.eval()
    x = torch.randn(*shape)
    with torch.inference_mode():
        y = module(x)
    work = Path(args.work)
    onnx_path, plan = work / f"{name}.onnx", work / f"{name}.kiln"
    bench.export(module, x, str(onnx_path), dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    dims = "x".join(str(d) for d in shape[1:])
    profile = f"x:1x{dims}/{args.max_batch}x{dims}/{args.max_batch}x{dims}"
    precision = "fp16" if args.kind == "KIND_GPU" else "fp32"
    run_cmd([args.kiln, "build", onnx_path, "-o", plan, "--precision", precision, "--profile", profile], 900)
    return {"name": name, "plan": plan, "precision": precision, "input_dims": list(shape[1:]),
            "output_dims": list(y.shape[1:])}


def entry_name(model, mode):
    return f"{model}_{mode}"


def model_config(model, mode, args):
    dims = lambda d: ", ".join(str(v) for v in d)
    params = {"dynamic_shapes_kernel_specialization_strategy": args.kernel_specialization}
    if args.kind == "KIND_GPU":  # compiled kernels kept between runs of this script
        params["runtime_cache_path"] = str((Path(args.work) / f"{entry_name(model['name'], mode)}.cache").resolve())
    text = f"""name: "{entry_name(model['name'], mode)}"
backend: "kiln"
max_batch_size: {args.max_batch}
input [ {{ name: "x" data_type: TYPE_FP32 dims: [ {dims(model['input_dims'])} ] }} ]
output [ {{ name: "y" data_type: TYPE_FP32 dims: [ {dims(model['output_dims'])} ] }} ]
instance_group [ {{ count: {args.instances} kind: {args.kind} }} ]
"""
    if mode == "batched":
        text += f"dynamic_batching {{ max_queue_delay_microseconds: {args.delay_us} }}\n"
    for key, value in params.items():
        text += f'parameters: {{ key: "{key}" value: {{ string_value: "{value}" }} }}\n'
    return text


def write_repository(models, modes, args):
    repository = Path(args.work) / "models"
    for model in models:
        for mode in modes:
            folder = repository / entry_name(model["name"], mode)
            (folder / "1").mkdir(parents=True, exist_ok=True)
            target = folder / "1" / "model.kiln"
            target.unlink(missing_ok=True)
            target.symlink_to(Path(model["plan"]).resolve())
            (folder / "config.pbtxt").write_text(model_config(model, mode, args))
    return repository


# --- checking responses ----------------------------------------------------------------------------

def rel_error(got, expected):
    return float(np.max(np.abs(got.astype(np.float64) - expected)) / max(float(np.max(np.abs(expected))), 1e-12))


class Expected:
    """The outputs the inputs must give, and the check of a response against them. Distances are
    max |a - b| over the largest |output| of all inputs, a metric: when the outputs lie more than
    twice the tolerance apart, a response within it of its own input's output is nearer to it than
    to any other, and the other outputs need not be looked at."""

    def __init__(self, outputs, tolerance):
        self.outputs = np.asarray(outputs, dtype=np.float64)
        self.tolerance = tolerance
        self.scale = max(float(np.max(np.abs(self.outputs))), 1e-12)
        self.separation = min((float(np.delete(self.distances(o), i).min()) for i, o in enumerate(self.outputs)
                               if len(self.outputs) > 1), default=float("inf"))
        self.distinct = self.separation > 2 * tolerance

    def distances(self, got):
        return np.max(np.abs(self.outputs - got).reshape(len(self.outputs), -1), axis=1) / self.scale

    def classify(self, got, index):
        """('ok', error) if the response matches its own input's output and no other nearer,
        ('mixed', error) if another input's output is within the tolerance and nearer,
        ('wrong', error) if none is within it; error: the distance to its own input's output."""
        if got.shape != self.outputs.shape[1:]:
            return "wrong", float("inf")
        own = float(np.max(np.abs(got - self.outputs[index]))) / self.scale
        if own <= self.tolerance and self.distinct:
            return "ok", own
        d = self.distances(got)
        d[index] = np.inf
        nearest = int(np.argmin(d))
        if d[nearest] <= self.tolerance and d[nearest] < own:
            return "mixed", own
        return ("ok" if own <= self.tolerance else "wrong"), own


def infer_once(client, entry, x, timeout):
    import tritonclient.grpc as grpcclient

    inp = grpcclient.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    result = client.infer(entry, [inp], outputs=[grpcclient.InferRequestedOutput("y")], client_timeout=timeout)
    return result.as_numpy("y")


def expected_outputs(url, entry, inputs, timeout):
    """Each input through the server, one request at a time (batch 1)."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    try:
        return np.stack([infer_once(client, entry, x, timeout)[0].astype(np.float64) for x in inputs])
    finally:
        client.close()


# --- the load --------------------------------------------------------------------------------------

def client_process(url, entry, inputs, expected, threads, seed, start_at, seconds, timeout):
    """threads clients in this process, from start_at (time.time()) for seconds: their latencies
    (us), counts, and the largest error of a correct response. Runs in a worker process; every wait
    is bounded by timeout."""
    import tritonclient.grpc as grpcclient

    lock = threading.Lock()
    latencies, errors, worst = [], [], [0.0]
    counts = {"ok": 0, "mixed": 0, "wrong": 0, "lost": 0}
    per_input = {k: [0] * len(inputs) for k in counts}

    def client(t):
        rng = np.random.default_rng(seed * 1000 + t)
        own = grpcclient.InferenceServerClient(url)
        mine, tally, largest = [], [], 0.0
        try:
            time.sleep(max(0.0, start_at - time.time()))
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                i = int(rng.integers(len(inputs)))
                t0 = time.perf_counter()
                try:
                    y = infer_once(own, entry, inputs[i], timeout)
                except Exception as e:  # an error response or a timeout: lost
                    tally.append(("lost", i))
                    if len(errors) < 5:
                        errors.append(f"{type(e).__name__}: {e}"[:300])
                    continue
                mine.append((time.perf_counter() - t0) * 1e6)
                kind, error = expected.classify(y[0], i)
                tally.append((kind, i))
                if kind == "ok":
                    largest = max(largest, error)
        finally:
            own.close()
            with lock:
                latencies.extend(mine)
                worst[0] = max(worst[0], largest)
                for kind, i in tally:
                    counts[kind] += 1
                    per_input[kind][i] += 1

    pool = [threading.Thread(target=client, args=(t,), daemon=True) for t in range(threads)]
    for t in pool:
        t.start()
    time.sleep(max(0.0, start_at - time.time()))
    cpu0, wall0 = time.process_time(), time.monotonic()
    for t in pool:
        t.join(max(0.0, start_at - time.time()) + seconds + timeout + 10)
    # This process's CPU time over the load's wall time: near 1 with the GIL the limit.
    cpu_share = (time.process_time() - cpu0) / max(time.monotonic() - wall0, 1e-9)
    stuck = sum(t.is_alive() for t in pool)
    with lock:
        return {"latencies_us": latencies, "counts": dict(counts), "per_input": {k: list(v) for k, v in per_input.items()},
                "errors": list(errors), "stuck_threads": stuck, "max_error": worst[0], "cpu_share": cpu_share}


class Regions:
    """One client process's shared memory regions, registered with the server: one holding every
    input, each at a 256-byte aligned offset (the alignment a GPU instance needs to bind an input
    as it is), and an output region per request in flight. System shared memory, or CUDA memory
    of one GPU."""

    ALIGN = 256

    def __init__(self, client, kind, gpu, inputs, output_dims, slots):
        if kind == "system":
            import tritonclient.utils.shared_memory as module
        else:
            import tritonclient.utils.cuda_shared_memory as module
        self.client, self.kind, self.gpu, self.module, self.made = client, kind, int(gpu), module, []
        prefix = f"kiln_serving_{os.getpid()}"
        self.input_bytes = inputs[0].nbytes
        self.input_stride = -(-self.input_bytes // self.ALIGN) * self.ALIGN
        packed = np.zeros(len(inputs) * self.input_stride, np.uint8)
        for i, x in enumerate(inputs):
            packed[i * self.input_stride:i * self.input_stride + x.nbytes] = np.frombuffer(x.tobytes(), np.uint8)
        self.output_shape = [1, *output_dims]
        self.output_bytes = int(np.prod(self.output_shape)) * 4
        self.input = self._make(f"{prefix}_in", packed.nbytes, packed)[0]
        self.outputs = [self._make(f"{prefix}_out{s}", self.output_bytes) for s in range(slots)]

    def _make(self, name, byte_size, values=None):
        if self.kind == "system":
            handle = self.module.create_shared_memory_region(name, f"/{name}", byte_size)
            self.made.append((name, handle))
            if values is not None:
                self.module.set_shared_memory_region(handle, [values])
            self.client.register_system_shared_memory(name, f"/{name}", byte_size)
        else:
            handle = self.module.create_shared_memory_region(name, byte_size, self.gpu)
            self.made.append((name, handle))
            if values is not None:
                self.module.set_shared_memory_region(handle, [values])
            self.client.register_cuda_shared_memory(name, self.module.get_raw_handle(handle), self.gpu, byte_size)
        return name, handle

    def output(self, slot):
        """The output the request in flight in this slot got (a copy)."""
        return np.array(self.module.get_contents_as_numpy(self.outputs[slot][1], np.float32, self.output_shape))

    def close(self):
        for name, handle in self.made:
            try:
                if self.kind == "system":
                    self.client.unregister_system_shared_memory(name)
                else:
                    self.client.unregister_cuda_shared_memory(name)
            finally:
                self.module.destroy_shared_memory_region(handle)


def stream_client_process(url, entry, inputs, expected, slots, seed, start_at, seconds, timeout, kind, gpu,
                          output_dims):
    """slots requests in flight over one gRPC stream, tensors in shared memory (Regions), from
    start_at for seconds; results as client_process's. A request that fails leaves its slot
    unused (a stream's error does not say which request it answers)."""
    import tritonclient.grpc as grpcclient

    rng = np.random.default_rng(seed)
    client = grpcclient.InferenceServerClient(url)
    lock, idle = threading.Lock(), threading.Condition()
    latencies, errors = [], []
    counts = {"ok": 0, "mixed": 0, "wrong": 0, "lost": 0}
    per_input = {k: [0] * len(inputs) for k in counts}
    worst, in_flight, sent = [0.0], [0], {}
    regions = None
    try:
        regions = Regions(client, kind, gpu, inputs, output_dims, slots)
        x_shape = list(inputs[0].shape)
        end = [float("inf")]

        def send(slot):
            i = int(rng.integers(len(inputs)))
            inp = grpcclient.InferInput("x", x_shape, "FP32")
            inp.set_shared_memory(regions.input, regions.input_bytes, offset=i * regions.input_stride)
            out = grpcclient.InferRequestedOutput("y")
            out.set_shared_memory(regions.outputs[slot][0], regions.output_bytes)
            sent[slot] = (i, time.perf_counter())
            client.async_stream_infer(entry, [inp], outputs=[out], request_id=str(slot))

        def answered(result, error):
            with lock:
                if error is not None or result is None:
                    counts["lost"] += 1
                    if len(errors) < 5:
                        errors.append(f"{type(error).__name__}: {error}"[:300])
                else:
                    slot = int(result.get_response().id)
                    i, t0 = sent[slot]
                    latencies.append((time.perf_counter() - t0) * 1e6)
                    kind_, err = expected.classify(regions.output(slot)[0], i)
                    counts[kind_] += 1
                    per_input[kind_][i] += 1
                    if kind_ == "ok":
                        worst[0] = max(worst[0], err)
                    if time.monotonic() < end[0]:
                        send(slot)
                        return
                in_flight[0] -= 1
            with idle:
                idle.notify_all()

        client.start_stream(callback=answered, stream_timeout=seconds + 2 * timeout + 60)
        time.sleep(max(0.0, start_at - time.time()))
        cpu0, wall0 = time.process_time(), time.monotonic()
        end[0] = time.monotonic() + seconds
        with lock:
            for slot in range(slots):
                in_flight[0] += 1
                send(slot)
        with idle:
            idle.wait_for(lambda: in_flight[0] == 0, timeout=seconds + timeout + 10)
        cpu_share = (time.process_time() - cpu0) / max(time.monotonic() - wall0, 1e-9)
        stuck = in_flight[0]
        client.stop_stream(cancel_requests=bool(stuck))
    finally:
        if regions:
            regions.close()
        client.close()
    with lock:
        return {"latencies_us": latencies, "counts": dict(counts), "per_input": {k: list(v) for k, v in per_input.items()},
                "errors": list(errors), "stuck_threads": stuck, "max_error": worst[0], "cpu_share": cpu_share}


def run_load(url, entry, inputs, expected, args, seconds, pool=None, output_dims=None):
    """--clients clients against entry for seconds, each response checked against expected (an
    Expected); returns the merged results of every process. With --shared-memory, output_dims
    (one request's output dims past the batch) size the output regions."""
    shares = [args.clients // args.processes + (p < args.clients % args.processes) for p in range(args.processes)]
    start_at = time.time() + (2.0 if pool else 0.2)  # every client starts together
    jobs = [(url, entry, inputs, expected, n, p, start_at, seconds, args.request_timeout)
            for p, n in enumerate(shares) if n]
    worker = client_process
    if args.shared_memory != "none":
        worker = stream_client_process
        jobs = [job + (args.shared_memory, args.gpu, list(output_dims)) for job in jobs]
    bound = 2.0 + seconds + args.request_timeout + 30 + (30 if args.shared_memory != "none" else 0)
    if pool:
        pending = [pool.apply_async(worker, job) for job in jobs]
        parts = [p.get(timeout=bound) for p in pending]
    else:
        parts = [worker(*job) for job in jobs]
    merged = {"latencies_us": [], "counts": {}, "per_input": {}, "errors": [], "stuck_threads": 0, "max_error": 0.0,
              "client_cpu_shares": [part["cpu_share"] for part in parts]}
    for part in parts:
        merged["latencies_us"] += part["latencies_us"]
        merged["errors"] += part["errors"]
        merged["stuck_threads"] += part["stuck_threads"]
        merged["max_error"] = max(merged["max_error"], part["max_error"])
        for kind, n in part["counts"].items():
            merged["counts"][kind] = merged["counts"].get(kind, 0) + n
            merged["per_input"][kind] = [a + b for a, b in zip(merged["per_input"].get(kind, [0] * len(inputs)),
                                                                 part["per_input"][kind])]
    merged["seconds"] = seconds
    return merged


class GpuBusy:
    """nvidia-smi's utilization.gpu (the share of the last sample period in which a kernel ran)
    every 100 ms while the load runs."""

    def __init__(self, gpu, enabled):
        self.samples, self.note, self.process = [], None, None
        if not enabled:
            self.note = "KIND_CPU: no GPU"
            return
        try:
            self.process = subprocess.Popen(
                ["nvidia-smi", f"--id={gpu}", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms",
                 "100"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        except OSError as e:
            self.note = f"nvidia-smi unavailable: {e}"
            return
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.process.stdout:
            if line.strip().isdigit():
                self.samples.append(int(line))

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.process and not self.samples and not self.note:
            self.note = "nvidia-smi gave no samples"
        return {"mean_percent": float(np.mean(self.samples)) if self.samples else None,
                "samples": len(self.samples), "note": self.note}


# --- Triton's statistics and kiln run --------------------------------------------------------------

def triton_stats(http, entry):
    """Cumulative counts and ns from Triton's statistics API: per request, and per batch size."""
    s = http.get_inference_statistics(entry)["model_stats"][0]
    out = {"inference_count": int(s.get("inference_count", 0)), "execution_count": int(s.get("execution_count", 0))}
    for key in STAT_KEYS:
        v = s["inference_stats"].get(key, {})
        out[key] = (int(v.get("count", 0)), int(v.get("ns", 0)))
    out["batches"] = {int(b["batch_size"]): {k: (int(b[k].get("count", 0)), int(b[k].get("ns", 0)))
                                             for k in ("compute_input", "compute_infer", "compute_output")}
                      for b in s.get("batch_stats", [])}
    return out


def settled_triton_stats(http, entry, at_least=0, timeout_s=5.0):
    """triton_stats once they hold at least `at_least` successes and two reads 50 ms apart agree:
    Triton records a request's statistics just after it sends the response, so a read right after
    the last response may miss it."""
    last = triton_stats(http, entry)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = triton_stats(http, entry)
        if now["success"][0] >= at_least and now["success"] == last["success"] and now["fail"] == last["fail"]:
            return now
        last = now
    return last


def stats_delta(after, before):
    """What the measured phase added; per request and per batch size in us."""
    sub = lambda a, b: (a[0] - b[0], a[1] - b[1])
    per = lambda cn: cn[1] / cn[0] / 1e3 if cn[0] else None
    out = {"inference_count": after["inference_count"] - before["inference_count"],
           "execution_count": after["execution_count"] - before["execution_count"]}
    for key in STAT_KEYS:
        d = sub(after[key], before.get(key, (0, 0)))
        out[key] = {"count": d[0], "us_per_request": per(d)}
    batches = {}
    for size, b in after["batches"].items():
        old = before["batches"].get(size, {})
        d = {k: sub(v, old.get(k, (0, 0))) for k, v in b.items()}
        if d["compute_infer"][0]:
            batches[size] = {"executions": d["compute_infer"][0],
                             **{f"{k}_us": per(v) for k, v in d.items()}}
    out["batches"] = dict(sorted(batches.items()))
    return out


def kiln_run_latency(args, plan, input_dims, batch):
    """kiln run's p50 (us) of enqueue + synchronize of the plan at this batch, on the GPU."""
    shape = "x".join(str(d) for d in [batch] + list(input_dims))
    r = run_cmd([args.kiln, "run", plan, "--device", "cuda", "--shapes", f"x:{shape}", "--warmup", "50",
                 "--iterations", str(args.kiln_iterations), "--kernel-specialization", "eager", "--json"], 600)
    return json.loads(r.stdout)["latency_us"]["p50"]


def kiln_run_check(args, model, x, expected):
    """The plan run by `kiln run` on one input against the server's output for it."""
    out = Path(args.work) / f"{model['name']}_kiln_run"
    np.save(Path(args.work) / f"{model['name']}_x0.npy", x)
    device = "cuda" if args.kind == "KIND_GPU" else "cpu"
    run_cmd([args.kiln, "run", model["plan"], "--device", device, "--input",
             f"x:{Path(args.work) / (model['name'] + '_x0.npy')}", "--output-dir", out], 600)
    return rel_error(np.load(out / "y.npy")[0], expected)


def answered(counts):
    """Requests the server answered, right or wrong."""
    return counts.get("ok", 0) + counts.get("mixed", 0) + counts.get("wrong", 0)


# --- the report ------------------------------------------------------------------------------------

def summarize(model, mode, load, stats, busy):
    lat = np.array(load["latencies_us"]) if load["latencies_us"] else np.array([np.nan])
    counts = load["counts"]
    batches = stats["batches"]
    formed = max(batches, key=lambda b: batches[b]["executions"]) if batches else None
    return {"model": model, "mode": mode, "requests": sum(counts.values()), **counts,
            "stuck_threads": load["stuck_threads"], "errors": load["errors"], "max_error": load["max_error"],
            "client_cpu_shares": load["client_cpu_shares"],
            "throughput_rps": answered(counts) / load["seconds"],
            "p50_us": float(np.percentile(lat, 50)), "p90_us": float(np.percentile(lat, 90)),
            "p99_us": float(np.percentile(lat, 99)), "triton": stats, "formed_batch": formed, "gpu_busy": busy}


def add_kiln_columns(row, kiln_p50):
    """Overhead and throughput against kiln run; kiln_p50: {batch: us}."""
    one = row["triton"]["batches"].get(1)
    if 1 in kiln_p50:
        row["kiln_p50_us_batch1"] = kiln_p50[1]
        if one:
            row["backend_overhead_us"] = one["compute_infer_us"] - kiln_p50[1]
    b = row["formed_batch"]
    if b in kiln_p50:
        row["kiln_p50_us_formed"] = kiln_p50[b]
        formed = row["triton"]["batches"].get(b)
        if formed:
            row["backend_overhead_formed_us"] = formed["compute_infer_us"] - kiln_p50[b]
        row["kiln_throughput_formed_rps"] = b * 1e6 / kiln_p50[b]
        row["throughput_vs_kiln"] = row["throughput_rps"] / row["kiln_throughput_formed_rps"]


def table(report):
    fmt = lambda v, p=0: "-" if v is None else f"{v:.{p}f}"
    a = report["args"]
    shm = a.get("shared_memory", "none")
    clients = (f"{a['clients']} clients ({a['processes']} processes), tensors in the gRPC requests" if shm == "none" else
               f"{a['clients']} requests in flight over gRPC streams ({a['processes']} processes), tensors in {shm} "
               f"shared memory")
    lines = [f"kiln Triton backend load test on {report['device']}: {clients}, "
             f"batch-1 requests for {a['seconds']:g} s after {a['warmup_seconds']:g} s warm-up, {a['instances']} x "
             f"{a['kind']} instances, max_batch_size {a['max_batch']}, dynamic batching delay {a['delay_us']} us; "
             f"latencies in us",
             f"{'model':9} {'mode':8} {'requests':>8} {'lost':>5} {'mixed':>5} {'wrong':>5} {'max err':>7} {'req/s':>8} {'p50':>8} "
             f"{'p90':>8} {'p99':>8} {'queue':>7} {'c_in':>6} {'infer':>7} {'c_out':>6} {'batch':>5} {'busy%':>5} "
             f"{'kiln@1':>7} {'ovhd@1':>7} {'kiln@b':>7} {'ovhd@b':>7} {'kiln r/s':>8} {'vs kiln':>7}"]
    for r in report["rows"]:
        t = r["triton"]
        busy = r["gpu_busy"]["mean_percent"]
        lines.append(
            f"{r['model']:9} {r['mode']:8} {r['requests']:>8} {r.get('lost', 0):>5} {r.get('mixed', 0):>5} "
            f"{r.get('wrong', 0):>5} {r['max_error']:>7.1e} {fmt(r['throughput_rps']):>8} {fmt(r['p50_us']):>8} {fmt(r['p90_us']):>8} "
            f"{fmt(r['p99_us']):>8} {fmt(t['queue']['us_per_request']):>7} {fmt(t['compute_input']['us_per_request']):>6} "
            f"{fmt(t['compute_infer']['us_per_request']):>7} {fmt(t['compute_output']['us_per_request']):>6} "
            f"{fmt(r['formed_batch']):>5} {fmt(busy):>5} {fmt(r.get('kiln_p50_us_batch1'), 1):>7} "
            f"{fmt(r.get('backend_overhead_us'), 1):>7} {fmt(r.get('kiln_p50_us_formed'), 1):>7} "
            f"{fmt(r.get('backend_overhead_formed_us'), 1):>7} "
            f"{fmt(r.get('kiln_throughput_formed_rps')):>8} {fmt(r.get('throughput_vs_kiln'), 2):>7}")
    for r in report["rows"]:
        hist = ", ".join(f"{b}:{v['executions']}" for b, v in r["triton"]["batches"].items())
        lines.append(f"  {r['model']} {r['mode']}: batches formed (size:executions) {hist or '-'}")
        lines.append(f"  {r['model']} {r['mode']}: client processes' CPU time / wall time "
                     f"{', '.join(f'{c:.2f}' for c in r['client_cpu_shares'])} (near 1: limited by the GIL)")
        if r["gpu_busy"]["note"]:
            lines.append(f"  {r['model']} {r['mode']}: GPU busy: {r['gpu_busy']['note']}")
        for e in r["errors"]:
            lines.append(f"  {r['model']} {r['mode']}: lost: {e}")
        if r["stuck_threads"]:
            lines.append(f"  {r['model']} {r['mode']}: {r['stuck_threads']} client threads still waiting at the end")
    for m in report["models"]:
        lines.append(f"  {m['name']}: {m['precision']} plan; outputs of {m['inputs']} inputs {m['separation']:.3g} apart at "
                     f"least (tolerance {a['tolerance']:g}); kiln run on input 0 vs the server {m['kiln_run_error']:.2e}"
                     + ("" if m["kiln_run_error"] <= a["tolerance"] else "  MISMATCH")
                     + ("" if m["separation"] > 2 * a["tolerance"] else
                        "  (less than twice the tolerance: the nearest output decides)"))
    for note in report["notes"]:
        lines.append(f"  {note}")
    lines += ["max err: the largest distance of a correct response from its input's output, over the largest |output|",
              "req/s: answered requests per second; p50, p90, p99: client-side latency of one request",
              "queue, c_in, infer, c_out: Triton's statistics per request (a batch's time counts for each of its requests);"
              " c_in: reading the requests, allocating the response buffers, gathering the inputs (none when a"
              " GPU instance binds a request's GPU memory as it is)",
              "batch: the batch size formed most often; busy%: mean nvidia-smi utilization.gpu",
              "kiln@1, kiln@b: `kiln run` p50 (enqueue + synchronize, eager kernels) at batch 1 and at that batch size",
              "ovhd@1, ovhd@b: Triton's compute_infer per execution of batch 1 (of the formed batch) minus kiln@1 (kiln@b):"
              " the transfers to and from the GPU, the backend",
              "kiln r/s: batch / kiln@b; vs kiln: req/s / kiln r/s",
              "targets (issue 16): no lost, mixed or wrong responses under 64 clients for 60 s; ovhd@1 <= 30 us; "
              "batched ResNet-18 vs kiln >= 0.9"]
    return "\n".join(lines)


def verdicts(report):
    """Each target of issue 16 that this run measured, met or not."""
    out = []
    for r in report["rows"]:
        bad = r.get("lost", 0) + r.get("mixed", 0) + r.get("wrong", 0) + r["stuck_threads"]
        out.append((f"{r['model']} {r['mode']}: every response answered and correct", bad == 0))
        if r.get("backend_overhead_us") is not None and r["mode"] == "plain":
            out.append((f"{r['model']} {r['mode']}: backend overhead {r['backend_overhead_us']:.1f} us <= 30 us",
                        r["backend_overhead_us"] <= 30))
        if r.get("throughput_vs_kiln") is not None and r["mode"] == "batched" and r["model"] == "resnet18":
            out.append((f"{r['model']} {r['mode']}: throughput {r['throughput_vs_kiln']:.2f} of kiln run's at batch "
                        f"{r['formed_batch']} >= 0.9", r["throughput_vs_kiln"] >= 0.9))
    for m in report["models"]:
        out.append((f"{m['name']}: kiln run agrees with the server", m["kiln_run_error"] <= report["args"]["tolerance"]))
    return out


# --- the run ---------------------------------------------------------------------------------------

def device_name(args):
    if args.kind == "KIND_CPU":
        return "the CPU (KIND_CPU: kiln's reference interpreter)"
    try:
        r = subprocess.run(["nvidia-smi", f"--id={args.gpu}", "--query-gpu=name", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=30)
        return r.stdout.strip() or "an unnamed GPU"
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"a GPU nvidia-smi could not name ({e})"


def serve_and_load(args, models, modes):
    """Starts the server, measures every model in every mode, stops it: the rows, and per model
    the first input with its expected output (for kiln run's check once the GPU is free)."""
    import tritonclient.http as httpclient

    entries = [entry_name(m["name"], mode) for m in models for mode in modes]
    repository = write_repository(models, modes, args)
    server = triton_server.Server(repository, Path(args.work) / "tritonserver.log", entries,
                                  gpu=args.kind == "KIND_GPU", log_verbose=False)
    pool = get_context("spawn").Pool(args.processes) if args.processes > 1 else None
    http = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}", network_timeout=60)
    rows, firsts = [], {}
    try:
        server.wait_ready(http, args.startup_timeout)
        for entry in entries:
            if not http.is_model_ready(entry):
                raise RuntimeError(f"model '{entry}' is not ready; see {server.log_path}")
        url = f"127.0.0.1:{server.grpc_port}"
        for model in models:
            rng = np.random.default_rng(1)
            inputs = rng.standard_normal((args.inputs, 1, *model["input_dims"])).astype(np.float32)
            outputs = expected_outputs(url, entry_name(model["name"], modes[0]), inputs, args.request_timeout)
            expected = Expected(outputs, args.tolerance)
            model["inputs"], model["separation"] = args.inputs, expected.separation
            # The same inputs through the other repository entries, one at a time: the same outputs.
            model["modes_agree"] = {mode: max(rel_error(a, b) for a, b in zip(expected_outputs(
                url, entry_name(model["name"], mode), inputs, args.request_timeout), outputs)) for mode in modes[1:]}
            firsts[model["name"]] = (inputs[0], outputs[0])
            print(f"== {model['name']}: {args.inputs} inputs, outputs {model['separation']:.3g} apart at least", flush=True)
            for mode in modes:
                entry = entry_name(model["name"], mode)
                warm = run_load(url, entry, inputs, expected, args, args.warmup_seconds, pool, model["output_dims"]) \
                    if args.warmup_seconds > 0 else {"counts": {}}
                before = settled_triton_stats(http, entry)
                busy = GpuBusy(args.gpu, args.kind == "KIND_GPU")
                try:
                    load = run_load(url, entry, inputs, expected, args, args.seconds, pool, model["output_dims"])
                finally:
                    busy_result = busy.stop()
                after = settled_triton_stats(http, entry, before["success"][0] + answered(load["counts"]))
                row = summarize(model["name"], mode, load, stats_delta(after, before), busy_result)
                row["warmup_counts"] = warm["counts"]
                row["per_input"] = load["per_input"]
                rows.append(row)
                print(f"   {mode}: {row['requests']} requests, {row['throughput_rps']:.0f} req/s, p50 {row['p50_us']:.0f} us,"
                      f" lost {row.get('lost', 0)}, mixed {row.get('mixed', 0)}, wrong {row.get('wrong', 0)}", flush=True)
    finally:
        if pool:  # clients still running after an error or an interrupt stop here
            pool.terminate()
            pool.join()
        http.close()
        code = server.stop()
        print(f"tritonserver exited with {code}; log {server.log_path}", flush=True)
    return rows, firsts


def main(argv=None):
    """Runs the whole load test; returns the report (also written to --out)."""
    args = parse_args(argv)
    modes = args.modes.split(",")
    if not modes or any(m not in MODES for m in modes):
        raise SystemExit(f"serving.py: --modes takes {', '.join(MODES)}")
    why = triton_server.missing()
    if why:
        raise SystemExit(f"serving.py: {why}")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    Path(args.work).mkdir(parents=True, exist_ok=True)
    models = [prepare_model(name, args) for name in args.models.split(",")]
    rows, firsts = serve_and_load(args, models, modes)
    # kiln run after the server has stopped: alone on the GPU.
    notes = []
    for model in models:
        x, y = firsts[model["name"]]
        model["kiln_run_error"] = kiln_run_check(args, model, x, y)
        if args.kind != "KIND_GPU":
            continue
        mine = [r for r in rows if r["model"] == model["name"]]
        sizes = sorted({1} | {r["formed_batch"] for r in mine if r["formed_batch"]})
        p50 = {b: kiln_run_latency(args, model["plan"], model["input_dims"], b) for b in sizes}
        for r in mine:
            add_kiln_columns(r, p50)
    if args.kind != "KIND_GPU":
        notes.append("kiln run columns: `kiln run` times on the GPU only; this was a KIND_CPU run")
    report = {"device": device_name(args), "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "models": [{k: str(v) if isinstance(v, Path) else v for k, v in m.items()} for m in models],
              "rows": rows, "notes": notes}
    report["verdicts"] = [{"target": t, "met": ok} for t, ok in verdicts(report)]
    text = table(report) + "\n" + "\n".join(f"{'met' if v['met'] else 'NOT MET'}: {v['target']}"
                                            for v in report["verdicts"])
    with open(Path(args.out) / "serving.json", "w") as f:
        json.dump(report, f, indent=2)
    (Path(args.out) / "serving-table.txt").write_text(text + "\n")
    print(text)
    return report


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)  # unwind as on Ctrl-C, so the server is stopped
    report = main()
    sys.exit(0 if all(v["met"] for v in report["verdicts"]) else 1)
