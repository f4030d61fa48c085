// Linear quantization: which elements of a tensor each scale and zero point
// covers, for the quantized ops (QuantizeLinear, DequantizeLinear, the
// integer and QLinear matrix products and convolutions). Shape inference
// checks the parameters' shapes; the reference kernels and the GPU lowering
// read them through these helpers, on concrete dims.
#pragma once

#include <cstdint>
#include <vector>

#include "kiln/dtype.h"
#include "kiln/export.h"
#include "kiln/ir/network.h"

KILN_API_BEGIN
namespace kiln::ir {

// The range of a quantized integer type (int8 [-128, 127], uint8 [0, 255], int16, uint16, int4, uint4, int2, uint2).
struct QuantRange {
  int64_t lo, hi;
};
QuantRange quant_range(DType dtype);  // those types; kInternal otherwise

// QuantizeLinear / DequantizeLinear over x of `x_dims` with a scale of
// `scale_dims` (already checked by shape inference): per tensor (axis -1), per
// axis (one value per index along `axis`), or blocked (`block_size` > 0
// consecutive indices along `axis` share a value).
struct QuantGranularity {
  int64_t axis = -1;
  int64_t block_size = 0;
};
QuantGranularity quant_granularity(const Node& node, const std::vector<int64_t>& x_dims, const std::vector<int64_t>& scale_dims);

// The dtype QuantizeLinear divides in: the `precision` attribute, else the
// wider of x's and the scale's (numpy's promotion, as ONNX's reference: int32
// with a float is float64).
DType quantize_precision(const Node& node, DType x, DType scale);

// A scale or zero point of a quantized matrix product (MatMulInteger,
// QLinearMatMul) as dims that broadcast numpy-style against its operand:
// {} for one value; an A parameter of M values for a 2-D A (ONNX's per-row
// vector) as [M, 1]; the rest as they are ([..., M, 1] per row of A, [N] or
// [..., 1, N] per column of B).
std::vector<int64_t> matmul_param_dims(const std::vector<int64_t>& param, size_t operand_rank, bool of_a);

}  // namespace kiln::ir
KILN_API_END
