#include "kiln/ir/quantization.h"

#include "kiln/error.h"
#include "kiln/ir/limits.h"

namespace kiln::ir {

QuantRange quant_range(DType dtype) {
  if (dtype == DType::kInt8) return {-128, 127};
  if (dtype == DType::kUInt8) return {0, 255};
  if (dtype == DType::kInt16) return {-32768, 32767};
  if (dtype == DType::kUInt16) return {0, 65535};
  if (is_narrow_integer(dtype)) {
    int bits = packed_bits(dtype);
    bool is_signed = dtype == DType::kInt4 || dtype == DType::kInt2;
    return is_signed ? QuantRange{-(int64_t(1) << (bits - 1)), (int64_t(1) << (bits - 1)) - 1} : QuantRange{0, (int64_t(1) << bits) - 1};
  }
  fail(ErrorCode::kInternal, "quantized type ", dtype_name(dtype), " is not an integer type kiln quantizes to");
}

QuantGranularity quant_granularity(const Node& node, const std::vector<int64_t>& x_dims, const std::vector<int64_t>& scale_dims) {
  if (checked_numel(scale_dims) == 1) return {};
  int64_t rank = int64_t(x_dims.size()), axis = node.attrs.get_int("axis", 1);
  if (axis < -rank || axis >= rank)
    fail(ErrorCode::kInvalidModel, "node '", node.name, "': axis ", axis, " is out of range for rank ", rank);
  return {axis < 0 ? axis + rank : axis, std::max<int64_t>(node.attrs.get_int("block_size", 0), 0)};
}

DType quantize_precision(const Node& node, DType x, DType scale) {
  if (node.attrs.has("precision")) return DType(node.attrs.get_int("precision", 0));
  if (scale == DType::kFloat8E8M0 && is_floating(x)) return DType::kFloat32;  // as ONNX's reference (numpy) promotes them
  if (!is_floating(x) || !is_floating(scale)) return DType::kFloat64;
  auto rank = [](DType d) { return d == DType::kFloat64 ? 3 : d == DType::kFloat32 ? 2 : 1; };
  if (rank(x) != rank(scale)) return rank(x) > rank(scale) ? x : scale;
  return x == scale ? x : DType::kFloat32;  // float16 with bfloat16: both widen to float32
}

std::vector<int64_t> matmul_param_dims(const std::vector<int64_t>& param, size_t operand_rank, bool of_a) {
  if (checked_numel(param) == 1) return {};
  if (of_a && param.size() == 1 && operand_rank == 2) return {param[0], 1};
  return param;
}

}  // namespace kiln::ir
