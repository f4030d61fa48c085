// How the control-flow ops (If, Loop, Scan) lay out their inputs, outputs and
// subgraphs, read once for every layer (shape inference, the reference
// interpreter, the builder's inlining and unrolling).
//
//   If(cond, captured...) -> outputs; then_branch and else_branch take
//     (captured...) and make the outputs.
//   Loop(M, cond, carried..., captured...) -> (carried..., scan outputs...);
//     body(iteration, cond, carried..., captured...) -> (cond, carried..., scan slices...).
//   Scan(states..., scan inputs..., captured...) -> (states..., scan outputs...);
//     body(states..., slices..., captured...) -> (states..., scan slices...).
//
// `captured` are the enclosing graph's values a subgraph reads (ONNX's
// outer-scope names): explicit inputs, so every layer sees the dependency.
// Loop and Scan say how many with the int attribute `captured`; a node's input
// i and its body's input i are the same value for both (If's branch input i is
// its node's input i + 1).
#pragma once

#include <functional>
#include <vector>

#include "kiln/export.h"
#include "kiln/ir/shape_inference.h"

KILN_API_BEGIN
namespace kiln::ir {

struct LoopLayout {
  size_t carried = 0, captured = 0, scan_outputs = 0;
};
// Throws kInvalidModel naming the node when its counts do not fit its body.
LoopLayout loop_layout(const Node& node);

struct ScanLayout {
  size_t states = 0, scan_inputs = 0, captured = 0, scan_outputs = 0;
  // Scan-8's form: every state and scan input has a leading batch dim the body
  // does not see, scan inputs and outputs are scanned along dim 1.
  bool batched = false;
  // Per scan input and per scan output, as given (negative axes count from the
  // end; the default is 0), and whether it runs last to first.
  std::vector<int64_t> input_axes, output_axes;
  std::vector<bool> input_reverse, output_reverse;
};
ScanLayout scan_layout(const Node& node);

// The subgraph's output types for these input types: its nodes inferred again
// from the node's actual inputs (the subgraph's declared inputs may be more
// general). Sizes that depend on data become `fresh` symbols.
std::vector<InferOutput> infer_subgraph(const Network& body, const std::vector<InferInput>& inputs,
                                        const std::function<Dim()>& fresh);

}  // namespace kiln::ir
KILN_API_END
