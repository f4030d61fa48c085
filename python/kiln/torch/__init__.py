"""kiln's PyTorch front end.

``kiln.torch.compile(module, inputs=[kiln.torch.Input(...)])`` exports the
module with torch.export, translates the ATen ops kiln supports into kiln
engines and leaves the rest to PyTorch. The result is an FX GraphModule whose
engine calls are the ``kiln::execute`` custom op, so it runs under
``torch.compile``, ``torch.cuda.graph`` capture and ``torch.export``;
``kiln.torch.save`` / ``kiln.torch.load`` store it as an ExportedProgram, and
``torch.compile(model, backend="kiln")`` works once kiln is installed.
"""

from ._backend import kiln_backend, register
from ._compile import CompiledModule, compile
from ._input import Input
from ._save import load, save

register()

__all__ = ["CompiledModule", "Input", "compile", "kiln_backend", "load", "save"]
