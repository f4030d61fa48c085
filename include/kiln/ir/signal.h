// What the reference interpreter and the GPU kernels of the signal ops share.
#pragma once

#include "kiln/error.h"
#include "kiln/ir/ops.h"

KILN_API_BEGIN
namespace kiln::ir {

// HannWindow, HammingWindow and BlackmanWindow are cosine sums:
// w[i] = a0 - a1 cos(2 pi i / N) + a2 cos(4 pi i / N), N the size (periodic)
// or the size - 1 (symmetric). Hamming's are ONNX's 25/46 and 21/46.
struct CosineWindow {
  double a0, a1, a2;
};

inline CosineWindow cosine_window(OpKind op) {
  switch (op) {
    case OpKind::kHammingWindow: return {25.0 / 46.0, 21.0 / 46.0, 0.0};
    case OpKind::kBlackmanWindow: return {0.42, 0.5, 0.08};
    case OpKind::kHannWindow: return {0.5, 0.5, 0.0};  // sin^2(pi i / N)
    default: fail(ErrorCode::kInternal, op_name(op), " is not a cosine window");
  }
}

}  // namespace kiln::ir
KILN_API_END
