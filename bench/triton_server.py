"""A tritonserver process on loopback ports for the kiln backend: found in the
nvidia-pytriton wheel (or $KILN_TRITONSERVER), started on free ports, waited
for with a bound, stopped with SIGTERM and then SIGKILL. Shared by
python/tests/test_triton_backend.py and bench/serving.py."""

import importlib.util
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def build_dir():
    build = Path(os.environ.get("KILN_BUILD_DIR", REPO / "build"))
    return build if build.is_absolute() else REPO / build


def backend_dir():
    return Path(os.environ.get("KILN_TRITON_BACKEND_DIR", build_dir() / "serving" / "triton" / "backends"))


def kiln_cli():
    return build_dir() / "tools" / "kiln" / "kiln"


def find_server():
    """$KILN_TRITONSERVER, else the server inside the nvidia-pytriton package (found, not imported:
    only its binary is used, so the package may sit in a --target folder on PYTHONPATH)."""
    if os.environ.get("KILN_TRITONSERVER"):
        return Path(os.environ["KILN_TRITONSERVER"])
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "tritonserver" / "bin" / "tritonserver"


def missing():
    """Why the server cannot be run here, or None."""
    server = find_server()
    if server is None or not server.exists():
        return f"no tritonserver ({server}): pip install nvidia-pytriton (it bundles the server), or set KILN_TRITONSERVER"
    try:
        import tritonclient.grpc  # noqa: F401
        import tritonclient.http  # noqa: F401
    except ImportError as e:
        return f"no tritonclient ({e}): pip install 'tritonclient[all]'"
    if not (backend_dir() / "kiln" / "libtriton_kiln.so").exists():
        return f"no {backend_dir()}/kiln/libtriton_kiln.so: build with -DKILN_BUILD_TRITON_BACKEND=ON"
    if not kiln_cli().exists():
        return f"no kiln CLI at {kiln_cli()}"
    return None


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """tritonserver in a process group of its own, HTTP and gRPC on 127.0.0.1, models loaded explicitly."""

    def __init__(self, repository, log_path, models, *, binary=None, gpu=False, log_verbose=True):
        self.http_port, self.grpc_port = free_port(), free_port()
        self.log_path = log_path
        self.log = open(log_path, "w")
        args = [str(binary or find_server()), f"--model-repository={repository}", f"--backend-directory={backend_dir()}",
                "--http-address=127.0.0.1", f"--http-port={self.http_port}",
                "--grpc-address=127.0.0.1", f"--grpc-port={self.grpc_port}",
                "--allow-metrics=false", "--model-control-mode=explicit", "--exit-timeout-secs=10"]
        args += [f"--load-model={m}" for m in models]
        if not gpu:  # no CUDA: pinned host memory cannot be allocated
            args.append("--pinned-memory-pool-byte-size=0")
        if log_verbose:
            args.append("--log-verbose=1")
        self.process = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def log_text(self):
        self.log.flush()
        return Path(self.log_path).read_text(errors="replace")

    def wait_ready(self, http, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tritonserver exited with {self.process.returncode}:\n{self.log_text()[-4000:]}")
            try:
                if http.is_server_ready():
                    return
            except Exception:  # not listening yet
                pass
            time.sleep(0.25)
        raise RuntimeError(f"tritonserver not ready after {timeout} s:\n{self.log_text()[-4000:]}")

    def stop(self, timeout=30):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        if not self.log.closed:
            self.log.close()
        return self.process.returncode
