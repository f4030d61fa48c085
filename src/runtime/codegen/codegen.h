// CUDA C++ source for kiln's kernels. Every kernel has the same calling
// convention so the runtime can launch (and later patch in graphs) any of them:
//
//   extern "C" __global__ void kiln_kernel(void* out0.., const void* in0.., KParams p)
//
// KParams holds kParamSlots int64 values (dims, strides, counts). A generic
// variant reads them at run time; a specialized variant has the same signature
// but the values of one shape compiled in as constants.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kiln/dtype.h"
#include "kiln/ir/fused.h"

namespace kiln::codegen {

inline constexpr int kMaxRank = 8;
inline constexpr int kParamSlots = 128;
inline constexpr const char* kEntry = "kiln_kernel";
inline constexpr int kBlock = 256;

struct Params {
  long long v[kParamSlots] = {};
};

// Common prelude: KParams, fp16/bf16 conversions without CUDA headers (NVRTC
// time matters), loads and stores per dtype, block reductions.
std::string prelude();
std::string c_type(DType dtype);          // storage type in kernels
std::string compute_type(DType dtype);    // float, or double for float64
std::string load_expr(DType dtype, const std::string& ptr, const std::string& index);
std::string store_stmt(DType dtype, const std::string& ptr, const std::string& index, const std::string& value);
// "#define P(i) ..." reading params from the KParams argument, or from compiled-in constants.
std::string params_macro(const std::optional<Params>& specialize);

// ---- elementwise ---------------------------------------------------------------
// Params: [0] n, [1] rank, [2] all inputs contiguous, [8..16) out dims,
// [16 + 8k .. 24 + 8k) strides of input k (0 where broadcast).
struct ElementwiseSpec {
  std::vector<ir::FusedInstruction> program;
  std::vector<DType> inputs;
  DType output = DType::kFloat32;
  std::optional<Params> specialize;  // compile these values in
};
inline constexpr int kElementwiseMaxInputs = (kParamSlots - 16) / 8;
static_assert(kElementwiseMaxInputs >= ir::kFusedMaxInputs, "the builder fuses groups the kernel cannot take");
std::string elementwise_source(const ElementwiseSpec& spec);
// A cast is an elementwise kernel with no program (dtype change only).
std::string cast_source(DType from, DType to, const std::optional<Params>& specialize);

// ---- rows: softmax / log-softmax / layer norm -------------------------------------
// Params: [0] rows (outer*inner), [1] len, [2] inner (stride between row elements).
// Arguments: out, [mean, inv_std] (layer norm statistics, float32, when asked
// for), x, [scale], [bias].
enum class RowOp { kSoftmax, kLogSoftmax, kLayerNorm, kHardmax };
struct RowSpec {
  RowOp op;
  DType dtype;
  bool has_scale = false, has_bias = false;
  double epsilon = 1e-5;
  std::optional<Params> specialize;
  bool has_stats = false;
};
std::string row_source(const RowSpec& spec);

// ---- per-line kernels along one axis of an [outer, len, inner] view ----------------
// Params: [0] lines (outer*inner), [1] len, [2] inner, [3] flag a, [4] flag b, [5] k.
// ArgMax/ArgMin: int64 out, a = select_last_index. CumSum: a = exclusive, b = reverse.
enum class LineOp { kArgMax, kArgMin, kCumSum };
std::string line_source(LineOp op, DType dtype, const std::optional<Params>& specialize);
// Trilu over the last two dims: Params [0] n, [1] rows, [2] cols, [3] k, [4] upper.
std::string trilu_source(DType dtype, const std::optional<Params>& specialize);

// ---- reductions over arbitrary axes -------------------------------------------------
// Params: [0] outputs, [1] reduced count, [2] kept rank, [3] reduced rank,
// [8..16) kept dims, [16..24) kept strides (input), [24..32) reduced dims, [32..40) reduced strides.
enum class ReduceOp { kSum, kMean, kMax, kMin, kProd, kL1, kL2, kSumSquare, kLogSum, kLogSumExp };
struct ReduceSpec {
  ReduceOp op;
  DType dtype;
  std::optional<Params> specialize;
};
std::string reduce_source(const ReduceSpec& spec);

// ---- strided remap (transpose, slice, expand, tile, pad, concat, split, ...) --------
// out[dst_offset + sum c_d*dst_stride_d] = in[src_offset + sum src(c_d)*src_stride_d] for the
// multi-index c over dims; src(c) = c*step + start, bounds-checked against src dims for pad modes.
// Params: [0] n, [1] rank, [2] src offset, [3] dst offset, [4] pad mode, [5] fill bits,
// [8..16) dims, [16..24) src strides, [24..32) dst strides, [32..40) src starts,
// [40..48) src steps, [48..56) src dims (pad bounds), [56..64) modulus (tile; 0 = none).
enum class PadMode { kNone = 0, kConstant = 1, kEdge = 2, kReflect = 3, kWrap = 4 };
struct RemapSpec {
  DType dtype;
  std::optional<Params> specialize;
};
std::string remap_source(const RemapSpec& spec);

// ---- gather along an axis with an index tensor ---------------------------------------
// Params: [0] n, [1] outer, [2] indices count, [3] inner, [4] axis size.
std::string gather_source(DType dtype, DType index_dtype, bool elements, const std::optional<Params>& specialize);

// ---- skinny matmul: few rows (batch 1-8), bias/activation/residual fused --------------
// y[m, n] = act(alpha * sum_k a[m, k] * B(k, n) + bias[n]) + residual[m, n] for m < M <= kSkinnyMaxRows.
// B is [K, N] row-major, or [N, K] with trans_b. Arguments: out, a, b, [bias], [residual].
// Params: [0] M, [1] N, [2] K, [3] alpha (double bits).
inline constexpr int kSkinnyMaxRows = 8;
struct SkinnySpec {
  DType dtype;
  bool trans_b = false, has_bias = false, has_residual = false;
  std::string activation = "none";  // none, relu, gelu, gelu_tanh, sigmoid, tanh
  std::optional<Params> specialize;
};
std::string skinny_matmul_source(const SkinnySpec& spec);

// ---- fused attention over strided views (ir::AttentionGeometry) ---------------------
// Arguments: out, q, k, v. Params: [0] blocks of work (B * H * ceil(Sq / 16)), [1] B,
// [2] H, [3] Sq, [4] Sk, [5] D, [6] scale (double bits), [7] causal, [8..13) q view, [13..18) k view,
// [18..23) v view, [23..28) out view, each [offset, sb, sh, ss, sd]. 128 threads a block.
inline constexpr int kAttentionMaxHeadDim = 128;
inline constexpr int kAttentionRowsPerBlock = 16;
std::string attention_source(DType dtype, const std::optional<Params>& specialize);
// The same on tensor cores, for fp16 and bf16 from sm_80 on (mma.sync, ldmatrix, cp.async),
// the head dim compiled in. Blocks of 1, 2 or 4 warps, 16 query rows a warp. Params as
// above but [0] counts blocks of 16 * [29] rows; [28] bits: 16-byte loads of q (1), k (2),
// v (4), paired stores of out (8), each where the host found the view allows it (the kernel
// also checks the pointer); [29] warps a block (32 * [29] threads).
inline constexpr int kAttentionMmaMinArch = 80;
std::string attention_mma_source(DType dtype, int64_t head_dim, const std::optional<Params>& specialize);

// ---- constants: writes values known on the host (shape arithmetic) --------------------
// out[i] = the low `elem` bytes of P(8 + i) for i < P(0); P(1) = elem (1, 2, 4 or 8).
inline constexpr int kConstantsPerLaunch = kParamSlots - 8;
std::string constants_source();

// ---- resize (nearest / linear / cubic, every ONNX coordinate mode) -------------------
// Params: [0] n, [1] rank, [2] mode (0 nearest, 1 linear, 2 cubic), [3] coordinate mode
// (0 half_pixel, 1 pytorch_half_pixel, 2 align_corners, 3 asymmetric, 4 tf_half_pixel_for_nn,
// 5 half_pixel_symmetric, 6 tf_crop_and_resize), [4] nearest mode (0 round_prefer_floor,
// 1 round_prefer_ceil, 2 floor, 3 ceil), [5] exclude_outside, [6] cubic a and [7]
// extrapolation value (double bits), [8..16) in dims, [16..24) out dims, [24..32) scales,
// [32..40) roi starts, [40..48) roi ends (double bits).
std::string resize_source(DType dtype, const std::optional<Params>& specialize);

// ---- pooling and direct convolution (NCHW, 1-3 spatial dims) ---------------------------
// Params: [0] n (outputs), [1] spatial rank, [2] channels (in), [3] out channels, [4] group,
// [5] count_include_pad, [8..11) in spatial, [11..14) out spatial, [14..17) kernel,
// [17..20) strides, [20..23) dilations, [23..26) pads begin, [26..29) pads end.
// kConvTranspose gathers: out[o] += x[i] * w[c, m, k] wherever i*stride - pad + k*dil == o.
enum class WindowOp { kMaxPool, kAvgPool, kConv, kConvTranspose };
struct WindowSpec {
  WindowOp op;
  DType dtype;
  bool has_bias = false;
  std::optional<Params> specialize;
};
std::string window_source(const WindowSpec& spec);

}  // namespace kiln::codegen
