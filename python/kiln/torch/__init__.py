"""kiln's PyTorch front end.

``kiln.torch.compile(module, inputs=[kiln.torch.Input(...)])`` exports the
module with torch.export, translates the ATen ops kiln supports into kiln
engines and leaves the rest to PyTorch. The result is an FX GraphModule whose
engine calls are the ``kiln::execute`` custom op.
"""

from ._compile import CompiledModule, compile
from ._input import Input

__all__ = ["CompiledModule", "Input", "compile"]
