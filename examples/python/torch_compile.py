"""kiln from Python, for PyTorch users: compile a module with PyTorch ops
between kiln engines, run it at several batch sizes, save and load it.

    PYTHONPATH=build/python python3 examples/python/torch_compile.py

Runs on the GPU when one is usable (with native graphs and, at the end, the
whole-graph cudagraphs mode), otherwise on the CPU reference interpreter.
"""

import contextlib
import tempfile
from pathlib import Path

import torch

import kiln
import kiln.torch as kt


class Block(torch.nn.Module):
    """A pre-LN MLP block; the cumulative sum stays in PyTorch (torch_executed_ops)."""

    def __init__(self, d=64):
        super().__init__()
        self.norm = torch.nn.LayerNorm(d)
        self.up = torch.nn.Linear(d, 4 * d)
        self.down = torch.nn.Linear(4 * d, d)
        self.head = torch.nn.Linear(d, 10)

    def forward(self, x):
        h = x + self.down(torch.nn.functional.gelu(self.up(self.norm(x))))
        h = torch.cumsum(h, dim=-1) / h.shape[-1]
        return torch.softmax(self.head(torch.tanh(h)), dim=-1)


def main() -> None:
    torch.manual_seed(0)
    gpu = kiln.runtime.cuda_available()[0] and torch.cuda.is_available()
    device = "cuda" if gpu else "cpu"
    model = Block().to(device).eval()
    compiled = kt.compile(
        model,
        [kt.Input(min_shape=(1, 64), opt_shape=(8, 64), max_shape=(64, 64))],
        torch_executed_ops={"aten.cumsum"},
        min_block_size=3,
        cuda_graph_strategy="whole_graph_capture",
        dynamic_shapes_kernel_specialization_strategy="eager",
        device=device,
        verbose=True,
    )
    print(f"{len(compiled.engines)} kiln engines on {device}; PyTorch between them: {compiled.has_torch_segments}")
    stream = torch.cuda.Stream() if gpu else None
    with torch.no_grad(), (torch.cuda.stream(stream) if gpu else contextlib.nullcontext()):
        for batch in (1, 8, 33):
            x = torch.randn(batch, 64, device=device)
            error = (compiled(x) - model(x)).abs().max().item()
            print(f"batch {batch:2}: max |kiln - PyTorch| = {error:.2e}")
            assert error < 1e-4
        if gpu:
            with kiln.runtime.enable_cudagraphs(compiled) as whole:
                x = torch.randn(8, 64, device=device)
                for _ in range(3):
                    y = whole(x)
                print("whole-graph mode:", kiln.runtime.stats(whole)["whole_graph"])
                assert (y - model(x)).abs().max().item() < 1e-4
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "block.pt2"
        kt.save(compiled, path)
        loaded = kt.load(path)
        x = torch.randn(5, 64, device=device)
        with torch.no_grad():
            print(f"saved {path.stat().st_size} bytes; loaded max error {(loaded(x) - model(x)).abs().max().item():.2e}")
    for engine in kiln.runtime.stats(compiled)["engines"]:
        print(engine["name"], engine["graphs"])


if __name__ == "__main__":
    main()
