// CUDA C++ source for kiln's kernels. Every kernel has the same calling
// convention so the runtime can launch (and later patch in graphs) any of them:
//
//   extern "C" __global__ void kiln_kernel(void* out0.., const void* in0.., KParams p)
//
// KParams holds kParamSlots int64 values: one family's parameter struct
// (kernel_params.h) packed from its start. A generic variant reads the struct
// out of `p` at run time; a specialized variant has the same signature but the
// values of one shape compiled in as constants. Either way the kernel body
// reads named fields of `prm`, bound by params_binding.
#pragma once

#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "kiln/dtype.h"
#include "kiln/ir/fused.h"
#include "kiln/ir/ml.h"
#include "kiln/ir/recurrent.h"

namespace kiln::codegen {

inline constexpr int kMaxRank = 8;
inline constexpr int kParamSlots = 128;
inline constexpr const char* kEntry = "kiln_kernel";
inline constexpr int kBlock = 256;

struct Params {
  long long v[kParamSlots] = {};
};

// The parameter structs, the same text the kernels get (kernel_params_source).
#include "kernel_params.h"

static_assert(sizeof(ElementwiseParams::out_dims) == kMaxRank * sizeof(long long) &&
                  sizeof(ReduceParams::kept_dims) == kMaxRank * sizeof(long long) &&
                  sizeof(RemapParams::dims) == kMaxRank * sizeof(long long) &&
                  sizeof(ResizeParams::in_dims) == kMaxRank * sizeof(long long),
              "kernel_params.h's arrays of dims hold kMaxRank");

// kernel_params.h as text: the build embeds it (CMake, regenerated when it changes).
const char* kernel_params_source();

// The struct's name in generated source, for each parameter struct.
template <class T> inline constexpr const char* kParamsName = nullptr;
template <> inline constexpr const char* kParamsName<ElementwiseParams> = "ElementwiseParams";
template <> inline constexpr const char* kParamsName<RowParams> = "RowParams";
template <> inline constexpr const char* kParamsName<LineParams> = "LineParams";
template <> inline constexpr const char* kParamsName<ReduceParams> = "ReduceParams";
template <> inline constexpr const char* kParamsName<RemapParams> = "RemapParams";
template <> inline constexpr const char* kParamsName<GatherParams> = "GatherParams";
template <> inline constexpr const char* kParamsName<TriluParams> = "TriluParams";
template <> inline constexpr const char* kParamsName<NonZeroParams> = "NonZeroParams";
template <> inline constexpr const char* kParamsName<IndexedParams> = "IndexedParams";
template <> inline constexpr const char* kParamsName<ResizeParams> = "ResizeParams";
template <> inline constexpr const char* kParamsName<WindowParams> = "WindowParams";
template <> inline constexpr const char* kParamsName<DepthwiseParams> = "DepthwiseParams";
template <> inline constexpr const char* kParamsName<SkinnyParams> = "SkinnyParams";
template <> inline constexpr const char* kParamsName<IntegerMatMulParams> = "IntegerMatMulParams";
template <> inline constexpr const char* kParamsName<AttentionParams> = "AttentionParams";
template <> inline constexpr const char* kParamsName<ConstantsParams> = "ConstantsParams";
template <> inline constexpr const char* kParamsName<TopkParams> = "TopkParams";
template <> inline constexpr const char* kParamsName<EinsumParams> = "EinsumParams";
template <> inline constexpr const char* kParamsName<RangeParams> = "RangeParams";
template <> inline constexpr const char* kParamsName<OneHotParams> = "OneHotParams";
template <> inline constexpr const char* kParamsName<GroupNormParams> = "GroupNormParams";
template <> inline constexpr const char* kParamsName<LrnParams> = "LrnParams";
template <> inline constexpr const char* kParamsName<GridSampleParams> = "GridSampleParams";
template <> inline constexpr const char* kParamsName<RoiAlignParams> = "RoiAlignParams";
template <> inline constexpr const char* kParamsName<AffineGridParams> = "AffineGridParams";
template <> inline constexpr const char* kParamsName<Col2ImParams> = "Col2ImParams";
template <> inline constexpr const char* kParamsName<CompressParams> = "CompressParams";
template <> inline constexpr const char* kParamsName<UniqueParams> = "UniqueParams";
template <> inline constexpr const char* kParamsName<NmsParams> = "NmsParams";
template <> inline constexpr const char* kParamsName<MaxRoiPoolParams> = "MaxRoiPoolParams";
template <> inline constexpr const char* kParamsName<RecurrentParams> = "RecurrentParams";
template <> inline constexpr const char* kParamsName<SignalWindowParams> = "SignalWindowParams";
template <> inline constexpr const char* kParamsName<MelParams> = "MelParams";
template <> inline constexpr const char* kParamsName<DftParams> = "DftParams";
template <> inline constexpr const char* kParamsName<StftParams> = "StftParams";
template <> inline constexpr const char* kParamsName<CausalConvParams> = "CausalConvParams";
template <> inline constexpr const char* kParamsName<LinearAttentionParams> = "LinearAttentionParams";
template <> inline constexpr const char* kParamsName<EyeLikeParams> = "EyeLikeParams";
template <> inline constexpr const char* kParamsName<ReverseSequenceParams> = "ReverseSequenceParams";
template <> inline constexpr const char* kParamsName<TensorScatterParams> = "TensorScatterParams";
template <> inline constexpr const char* kParamsName<DetParams> = "DetParams";
template <> inline constexpr const char* kParamsName<DeformConvParams> = "DeformConvParams";
template <> inline constexpr const char* kParamsName<RandomParams> = "RandomParams";
template <> inline constexpr const char* kParamsName<TreeEnsembleParams> = "TreeEnsembleParams";
template <> inline constexpr const char* kParamsName<TfIdfParams> = "TfIdfParams";
template <> inline constexpr const char* kParamsName<LabelEncoderParams> = "LabelEncoderParams";

// The struct in the slots the kernel reads it from (the rest zero).
template <class T>
Params pack(const T& fields) {
  static_assert(kParamsName<T> != nullptr, "not a kernel parameter struct");
  static_assert(std::is_trivially_copyable_v<T> && std::is_standard_layout_v<T>, "kernel parameters are plain data");
  static_assert(sizeof(T) <= sizeof(Params), "kernel parameters outgrow KParams");
  static_assert(sizeof(T) % sizeof(long long) == 0, "kernel parameters are long long fields");
  Params p;
  std::memcpy(p.v, &fields, sizeof(T));
  return p;
}

// Generated-source text for a kernel's parameters: params_constants goes at file
// scope (a specialized variant's values as a constexpr struct; nothing for the
// generic one), params_binding opens the kernel body: `const T& prm = ...;`.
std::string params_constants(const char* type, size_t slots, const std::optional<Params>& specialize);
std::string params_binding(const char* type, const std::optional<Params>& specialize);
template <class T>
std::string params_constants(const std::optional<Params>& specialize) {
  return params_constants(kParamsName<T>, sizeof(T) / sizeof(long long), specialize);
}
template <class T>
std::string params_binding(const std::optional<Params>& specialize) {
  return params_binding(kParamsName<T>, specialize);
}

inline int64_t double_bits(double v) {
  int64_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  return bits;
}

// Common prelude: KParams, the parameter structs, fp16/bf16 conversions without
// CUDA headers (NVRTC time matters), block reductions.
std::string prelude();
// kiln_block_scan(v, scan): the inclusive prefix sum of v over the block's
// kBlock threads, every thread calling it, `scan` kBlock shared long longs
// whose last holds the block's total until the caller's next __syncthreads.
std::string block_scan_source();
std::string c_type(DType dtype);          // storage type in kernels
std::string bits_type(DType dtype);       // the unsigned type of its size: kernels that only move elements copy bits
// The entry's signature (`args`, then the parameters p) and a grid-stride loop
// over e < prm.n, for kernels of one block size.
std::string kernel_entry(const std::string& args);
std::string grid_stride_loop();
std::string compute_type(DType dtype);    // float, or double for float64
std::string load_expr(DType dtype, const std::string& ptr, const std::string& index);
std::string store_stmt(DType dtype, const std::string& ptr, const std::string& index, const std::string& value);
// A narrow float's bits as a float (exact), a value (converted to double; to
// float for float8e8m0, rounded by `rounding`) as a narrow float's bits (out
// of range: saturated, else Inf or NaN as the format has them), and a value as
// a 4- or 2-bit integer (its low bits): device calls of the prelude.
std::string narrow_float_load(DType dtype, const std::string& bits);
std::string narrow_float_store(DType dtype, const std::string& value, bool saturate,
                               E8M0Rounding rounding = E8M0Rounding::kUp);
std::string narrow_integer_store(DType dtype, const std::string& value);
// A float computed value rounded to float dtype `dtype` and widened back (a
// computation in that type, as ONNX's reference does it); float32 and float64 keep it.
std::string rounded_to(DType dtype, const std::string& value);
// A double attribute compiled into source exactly, as a float or a double constant.
std::string literal(double v, bool dbl);
// The lowest and highest value of an integer type (bool: 0 and 1) as long long literals.
struct IntegerLimits {
  std::string lo, hi;
};
IntegerLimits integer_limits(DType dtype);

// ---- elementwise (codegen/elementwise.cpp): ElementwiseParams --------------------------
struct ElementwiseSpec {
  std::vector<ir::FusedInstruction> program;
  std::vector<DType> inputs;
  DType output = DType::kFloat32;
  std::optional<Params> specialize;  // compile these values in
  bool saturate = true;  // QuantizeLinear to a float8 format: out-of-range values saturate, else become Inf or NaN
};
inline constexpr int kElementwiseMaxInputs = int(sizeof(ElementwiseParams::in_strides) / sizeof(ElementwiseParams::in_strides[0]));
static_assert(kElementwiseMaxInputs >= ir::kFusedMaxInputs, "the builder fuses groups the kernel cannot take");
std::string elementwise_source(const ElementwiseSpec& spec);
// Elements a thread moves at once on the vector paths: 16 bytes of the widest operand.
int elementwise_vector_width(const std::vector<DType>& inputs, DType output);
// The same walk over the fewest dims: dims of size 1 dropped, and a dim merged
// into the kept one before it wherever every stride set steps through the
// pair as through one dim (outer stride = inner stride x inner size: both
// contiguous, or both broadcast). At least one dim is left. Fewer dims is less
// index arithmetic per element, and it exposes the unit-stride runs that
// vector accesses need.
struct MergedDims {
  std::vector<int64_t> dims;
  std::vector<std::vector<int64_t>> strides;  // per stride set, over dims
};
MergedDims merge_dims(const std::vector<int64_t>& dims, const std::vector<std::vector<int64_t>>& strides);
// An elementwise or cast kernel's parameters for `inputs` (dense, broadcast to
// `out`): dims coalesced, the path chosen for packs of `width` elements.
ElementwiseParams elementwise_params(const std::vector<int64_t>& out, const std::vector<std::vector<int64_t>>& inputs, int width);
// The threads its launch needs: one a pack on the vector paths, one an element otherwise.
int64_t elementwise_threads(const ElementwiseParams& params, int width);
// A cast is an elementwise kernel with no program (dtype change only).
// `saturate` and `rounding` (round_mode): Cast's, for float8 and float8e8m0 targets.
std::string cast_source(DType from, DType to, bool saturate, const std::optional<Params>& specialize,
                        E8M0Rounding rounding = E8M0Rounding::kUp);

// ---- linalg (codegen/linalg*.cpp) ----------------------------------------------------------
// Skinny matmul (SkinnyParams): few rows (batch 1-8), bias/activation/residual fused.
// y[m, n] = act(alpha * sum_k a[m, k] * B(k, n) + bias[n]) + residual[m, n] for m < rows <= kSkinnyMaxRows.
// B is [K, N] row-major, or [N, K] with trans_b. Arguments: out, a, b, [bias], [residual].
inline constexpr int kSkinnyMaxRows = 8;
struct SkinnySpec {
  DType dtype;
  bool trans_b = false, has_bias = false, has_residual = false;
  std::string activation = "none";  // none, relu, gelu, gelu_tanh, sigmoid, tanh
  std::optional<Params> specialize;
};
std::string skinny_matmul_source(const SkinnySpec& spec);
// Fused attention over strided views (ir::AttentionGeometry; AttentionParams).
// Arguments: out, q, k, v, and the mask where `mask` gives its dtype (a float
// type: added to the scaled scores; bool: keep or fill).
// Blocks of 128 threads over B * H * ceil(Sq / 16) items.
inline constexpr int kAttentionMaxHeadDim = 128;
inline constexpr int kAttentionRowsPerBlock = 16;
std::string attention_source(DType dtype, const std::optional<Params>& specialize, std::optional<DType> mask = std::nullopt);
// The same on tensor cores, for fp16 and bf16 from sm_80 on (mma.sync, ldmatrix, cp.async),
// the head dim compiled in. Blocks of 1, 2 or 4 (`warps`) warps, 16 query rows a warp.
inline constexpr int kAttentionMmaMinArch = 80;
std::string attention_mma_source(DType dtype, int64_t head_dim, const std::optional<Params>& specialize,
                                 std::optional<DType> mask = std::nullopt);
// The statement that applies an attention mask to the float score `x` of
// element `index` (the mask's), scaled by `factor` (the scores' base).
std::string attention_mask_stmt(DType mask, const std::string& x, const std::string& index, const std::string& factor);
// Einsum (EinsumParams): a thread per output element sums the operands'
// product over the summed labels; float accumulation for fp16 and bf16, 64-bit
// for float64 and integers (which wrap). MatMuls that `kiln build` leaves
// (integer types, vector operands) run on it too. Arguments: out, one per
// operand (at most kEinsumMaxOperands).
inline constexpr int kEinsumMaxOperands = int(sizeof(EinsumParams::out_strides) / sizeof(EinsumParams::out_strides[0]));
std::string einsum_source(DType dtype, int operands, const std::optional<Params>& specialize);
// Integer matrix product (IntegerMatMulParams), a thread per output element,
// an int32 sum that wraps, as ONNX allows. MatMulInteger stores the sums;
// QLinearMatMul (`requantize`) multiplies them by a_scale * b_scale / y_scale
// (each step rounded to the scales' type, as ONNX's reference), adds y's zero
// point, rounds half to even and saturates to `out`. Arguments: out, a, b,
// [a_zero], [b_zero], [a_scale, b_scale, y_scale, y_zero]; strides (and the
// params' operand slots) in the order a, b, a_zero, b_zero, a_scale, b_scale.
struct IntegerMatMulSpec {
  DType a, b, out;
  bool a_zero = false, b_zero = false, requantize = false;
  DType scale = DType::kFloat32;
  std::optional<Params> specialize;
};
std::string integer_matmul_source(const IntegerMatMulSpec& spec);
// DFT (DftParams) and STFT (StftParams): a thread per output element sums its
// line against twiddle factors e^(-+2 pi i k t / N), the angle reduced as the
// integer k t mod N; float accumulation for fp16 and bf16, double for float64.
// DFT arguments: out, x. STFT: out, signal, [window].
std::string dft_source(DType dtype, const std::optional<Params>& specialize);
std::string stft_source(DType dtype, bool has_window, const std::optional<Params>& specialize);
// LinearAttention (LinearAttentionParams): a warp per (batch, kv head, value
// column), sequential over the tokens, the state's column in registers
// (kLinearAttentionRowsPerLane rows a lane) and every sum in float. The update
// rule's parts: `gated` decays the state by exp(decay), `delta` writes
// beta * (v - S^T k) instead of v. Arguments: out, [present_state], query,
// key, value, [past_state], [decay], [beta]; the state in `state_dtype`.
inline constexpr int kLinearAttentionRowsPerLane = 8;
inline constexpr int kLinearAttentionMaxKeyDim = 32 * kLinearAttentionRowsPerLane;
struct LinearAttentionSpec {
  DType dtype, state_dtype;
  bool gated = false, delta = false, has_past = false, has_present = true;
  std::optional<Params> specialize;
};
std::string linear_attention_source(const LinearAttentionSpec& spec);
// Det (DetParams): a block per matrix, LU with partial pivoting in double in
// shared memory, so matrices of at most kDetMaxSize rows. Arguments: out, x.
inline constexpr int kDetMaxSize = 64;
std::string det_source(DType dtype, const std::optional<Params>& specialize);

// ---- conv and pool (codegen/conv.cpp): window kernels, NCHW, 1-3 spatial dims; WindowParams
// kConvTranspose gathers: out[o] += x[i] * w[c, m, k] wherever i*stride - pad + k*dil == o.
// kLpPool: (sum of |x|^p over the window's taps inside the input)^(1/p).
// kMaxPool takes any type but bool; with `indices` it also writes the int64
// Indices output after out (ONNX's flat position in x of each window's first
// maximum, spatial dims column-major where `column_major`: storage_order 1).
enum class WindowOp { kMaxPool, kAvgPool, kLpPool, kConv, kConvTranspose };
struct WindowSpec {
  WindowOp op;
  DType dtype;
  bool has_bias = false;
  std::optional<Params> specialize;
  int64_t p = 2;  // kLpPool
  bool indices = false, column_major = false;  // kMaxPool
};
std::string window_source(const WindowSpec& spec);
// Integer convolution (WindowParams, group and geometry as kConv), a thread
// per output element, an int32 sum that wraps: ConvInteger stores it;
// QLinearConv (`requantize`) adds the int32 bias, multiplies by x_scale *
// w_scale / y_scale (float32), adds y's zero point, rounds half to even and
// saturates to `out`. w's zero point and scale are one value or one per
// output channel. Arguments: out, x, w, [x_zero], [w_zero], [x_scale,
// w_scale, y_scale, y_zero], [bias].
struct IntegerConvSpec {
  DType x, w, out;
  bool x_zero = false, w_zero = false, w_zero_per_channel = false, w_scale_per_channel = false;
  bool requantize = false, has_bias = false;
  std::optional<Params> specialize;
};
std::string integer_conv_source(const IntegerConvSpec& spec);
// Depthwise 2-D convolution (DepthwiseParams), a block of kBlock threads per
// tile. Shared memory holds the channel's taps, then the input tile, in the
// compute type: kDepthwiseSmemBytes in the generic variant, exactly what the
// shape needs in a specialized one. Arguments: out, x, w, [bias].
inline constexpr int kDepthwiseSmemBytes = 32768;
inline constexpr int kDepthwiseMaxRows = 4;  // output rows a thread computes
struct DepthwiseSpec {
  DType dtype;
  bool has_bias = false;
  std::optional<Params> specialize;
};
std::string depthwise_source(const DepthwiseSpec& spec);
// CausalConvWithState (CausalConvParams), a thread per element of the output
// (the taps over past_state, or zeros, then the input; bias; SiLU) or of
// present_state (the last kernel - 1 positions of that sequence), float sums.
// Arguments: out, present_state, x, w, [bias], [past_state].
struct CausalConvSpec {
  DType dtype;
  bool has_bias = false, has_past = false, silu = false;
  std::optional<Params> specialize;
};
std::string causal_conv_source(const CausalConvSpec& spec);
// DeformConv, 2-D (DeformConvParams), a thread per output element: over its
// group's input channels and the kernel's taps, the input sampled bilinearly
// at the tap moved by its offset (zero outside the input), times the mask;
// float sums (double for float64). Arguments: out, x, w, offset, [bias], [mask].
struct DeformConvSpec {
  DType dtype;
  bool has_bias = false, has_mask = false;
  std::optional<Params> specialize;
};
std::string deform_conv_source(const DeformConvSpec& spec);

// ---- normalization (codegen/normalization.cpp): softmax / log-softmax / hardmax / layer norm
// RowParams. Arguments: out, [mean, inv_std] (layer norm statistics, float32,
// when asked for), x, [scale], [bias].
// kLpNorm: x / (sum |x|^p)^(1/p) for p 1 or 2, 0 where the norm is 0 (strided path).
enum class RowOp { kSoftmax, kLogSoftmax, kLayerNorm, kHardmax, kLpNorm };
// How the row kernel covers a row. kStrided: a block per row, reading the row
// from memory once per pass (any `inner`, any length; hardmax). The others take
// contiguous rows (inner 1) and hold them in registers, kRowSpan elements a
// thread, so memory is read once: kBlock a block per row (up to kRowSpan *
// kBlock elements), kLanes a power-of-two group of lanes of one warp per row
// (up to kRowSpan * 32 elements), several rows a warp.
enum class RowPath { kStrided = 0, kBlock = 1, kLanes = 2 };
inline constexpr int kRowSpan = 32;
// The parameters for `rows` rows of `len` elements `inner` apart, the path chosen.
RowParams row_params(RowOp op, DType dtype, int64_t rows, int64_t len, int64_t inner);
// Blocks of kBlock threads that give every row of `p` its lanes.
int64_t row_blocks(const RowParams& p);
struct RowSpec {
  RowOp op;
  DType dtype;
  bool has_scale = false, has_bias = false;
  double epsilon = 1e-5;
  std::optional<Params> specialize;
  bool has_stats = false;
  int64_t p = 2;  // kLpNorm
};
std::string row_source(const RowSpec& spec);
// Instance and group norm (GroupNormParams), a block per (n, group) row like
// layer norm's, scale and bias per channel. Arguments: out, x, scale, bias.
struct GroupNormSpec {
  DType dtype;
  double epsilon = 1e-5;
  std::optional<Params> specialize;
};
std::string group_norm_source(const GroupNormSpec& spec);
// LRN (LrnParams), a thread per output element. Arguments: out, x.
struct LrnSpec {
  DType dtype;
  double alpha = 1e-4, beta = 0.75, bias = 1.0;
  int64_t size = 1;
  std::optional<Params> specialize;
};
std::string lrn_source(const LrnSpec& spec);

// ---- reduce (codegen/reduce.cpp) --------------------------------------------------------
// Reductions over arbitrary axes (ReduceParams). kLp: (sum |x|^p)^(1/p).
// Floating types accumulate in float (double for float64); integers exactly
// in 64 bits, wrapping like the reference's casts (kMean floors; the norms and
// logarithms go through double); bools as max = any, min = all. Over an empty
// set: the sums and norms 0, kProd 1, kMax and kMin the type's lowest and
// highest (-inf and +inf for floats), kLogSum and kLogSumExp -inf.
enum class ReduceOp { kSum, kMean, kMax, kMin, kProd, kL1, kL2, kSumSquare, kLogSum, kLogSumExp, kLp };
struct ReduceSpec {
  ReduceOp op;
  DType dtype;
  std::optional<Params> specialize;
  int64_t p = 2;  // kLp
};
std::string reduce_source(const ReduceSpec& spec);
// Per-line kernels along one axis of an [outer, len, inner] view (LineParams); ArgMax/ArgMin write int64.
// Arguments: out, x, and for the scans their axis (a scalar of `axis_dtype`,
// null where the parameters hold the view). An axis outside [-rank, rank - 1]
// counts as its nearest bound (an error on the CPU).
enum class LineOp { kArgMax, kArgMin, kCumSum, kCumProd };
std::string line_source(LineOp op, DType dtype, const std::optional<Params>& specialize, DType axis_dtype = DType::kInt64);
// TopK (TopkParams), a block per row: radix select of the k-th best key, the
// best k gathered in index order into the outputs, then sorted there in place
// (bitonic) by (key, index). Arguments: values, indices (int64), x. Any type but bool.
std::string topk_source(DType dtype, const std::optional<Params>& specialize);

// ---- movement (codegen/movement.cpp) ------------------------------------------------------
// Strided remap (RemapParams): transpose, slice, expand, tile, pad, concat, split, fills.
// Arguments: out, in, and the fill value (one element, null: fill_bits; Pad's constant_value tensor).
enum class PadMode { kNone = 0, kConstant = 1, kEdge = 2, kReflect = 3, kWrap = 4 };
struct RemapSpec {
  DType dtype;
  std::optional<Params> specialize;
};
std::string remap_source(const RemapSpec& spec);
// Gather along an axis with an index tensor (GatherParams).
std::string gather_source(DType dtype, DType index_dtype, bool elements, const std::optional<Params>& specialize);
// ScatterND, ScatterElements, MaxUnpool and GatherND (IndexedParams). Scatter
// kernels run after the output holds a copy of the data (MaxUnpool: zeros);
// arguments out, indices, updates. GatherND: out, data, indices.
enum class IndexedOp { kScatterND, kScatterElements, kGatherND, kMaxUnpool };
enum class ScatterReduction { kNone, kAdd, kMul, kMax, kMin };
struct IndexedSpec {
  IndexedOp op;
  DType dtype, index_dtype;
  ScatterReduction reduction = ScatterReduction::kNone;
  std::optional<Params> specialize;
};
std::string indexed_source(const IndexedSpec& spec);
// NonZero (NonZeroParams): one block; counts the nonzero elements (floats by
// value, so -0 is zero and NaN is not), writes the count, then the indices
// in row-major order by a block scan per tile. Arguments: out, count, x.
std::string nonzero_source(DType dtype);
// Compress (CompressParams): the scan, one block; arguments: positions
// (int64 scratch), count, condition (bool). The gather copies elements as
// bits of the dtype's size; arguments: out, x, positions, count.
std::string compress_scan_source();
std::string compress_gather_source(DType dtype);
// Unique (UniqueParams), its kernels in launch order over a work area of
// int64s (the permutation, group starts, each slice's group, each group's
// place and the group at each place). kSort: arguments work, x. kGroups (one
// block): work, count, x. kOutputs: y, indices, inverse_indices, counts (each
// may be null), x, work, count. Any type.
enum class UniqueKernel { kSort, kGroups, kOutputs };
std::string unique_source(UniqueKernel kernel, DType dtype);
// ReverseSequence (ReverseSequenceParams): a thread per output element; a
// length outside [0, time] counts as its nearest bound. Arguments: out, x, lengths (int64).
std::string reverse_sequence_source(DType dtype, const std::optional<Params>& specialize);
// TensorScatter (TensorScatterParams): a thread per update element, run after
// the output holds a copy of the cache; a linear write past the cache is
// skipped. Arguments: out, update, [write_indices (int64)].
std::string tensor_scatter_source(DType dtype, bool has_indices, const std::optional<Params>& specialize);
// Trilu over the last two dims (TriluParams). Arguments: out, x, k (an int64
// scalar, null: the parameters' k).
std::string trilu_source(DType dtype, const std::optional<Params>& specialize);
// Resize, nearest / linear / cubic, every ONNX coordinate mode (ResizeParams): mode 0 nearest,
// 1 linear, 2 cubic; coordinate_mode 0 half_pixel, 1 pytorch_half_pixel, 2 align_corners,
// 3 asymmetric, 4 tf_half_pixel_for_nn, 5 half_pixel_symmetric, 6 tf_crop_and_resize;
// nearest_mode 0 round_prefer_floor, 1 round_prefer_ceil, 2 floor, 3 ceil.
// Arguments: out, x, roi (`roi_dtype`), scales (`scales_dtype`); roi and
// scales null where the parameters hold them.
struct ResizeSpec {
  DType dtype;
  DType roi_dtype = DType::kFloat32, scales_dtype = DType::kFloat32;
  std::optional<Params> specialize;
};
std::string resize_source(const ResizeSpec& spec);

// ---- generator (codegen/generator.cpp): values known on the host (ConstantsParams) --------
inline constexpr int kConstantsPerLaunch = int(sizeof(ConstantsParams::values) / sizeof(ConstantsParams::values[0]));
std::string constants_source();
// Range (RangeParams): out[i] = start + i * delta. Arguments: out, start, delta.
std::string range_source(DType dtype, const std::optional<Params>& specialize);
// OneHot (OneHotParams): values[1] where the index (negative from the end) is the
// position along the axis, values[0] elsewhere. Arguments: out, indices, values.
std::string onehot_source(DType dtype, DType index_dtype, const std::optional<Params>& specialize);
// HannWindow, HammingWindow and BlackmanWindow (SignalWindowParams), in
// double, any numeric output type. Arguments: out.
std::string signal_window_source(DType dtype, const std::optional<Params>& specialize);
// MelWeightMatrix (MelParams), a thread per output element; the triangles'
// edges in double, as the reference. Arguments: out, dft_length, sample_rate
// (both `size_dtype`), lower_edge_hertz, upper_edge_hertz (both `hertz_dtype`).
std::string mel_weight_matrix_source(DType dtype, DType size_dtype, DType hertz_dtype, const std::optional<Params>& specialize);
// EyeLike (EyeLikeParams): ones on a diagonal. Arguments: out.
std::string eye_like_source(DType dtype, const std::optional<Params>& specialize);
// The random ops (RandomParams), a thread per output element computing the
// numbers of kiln/ir/random_math.h (its text is the build's, embedded like
// kernel_params.h), so each element equals the reference's bit for bit.
// kUniform and kNormal: floating `out` (RandomUniform, RandomNormal and their
// Like forms; arguments: out). kBernoulli: out = u < p, p of floating type
// `in`, `out` any numeric or bool (arguments: out, p). kMultinomial: int32 or
// int64 classes of rows of logits of floating type `in` (arguments: out, logits).
enum class RandomKind { kUniform, kNormal, kBernoulli, kMultinomial };
struct RandomSpec {
  RandomKind kind;
  DType out, in = DType::kFloat32;
  std::optional<Params> specialize;
};
std::string random_source(const RandomSpec& spec);
const char* random_math_source();

// ---- vision (codegen/vision.cpp): a thread per output element (grid point for AffineGrid),
// coordinates and sums in double, as the reference.
// GridSample (GridSampleParams), X and grid each of any floating type. Arguments: out, x, grid.
struct GridSampleSpec {
  DType dtype, grid_dtype;
  std::optional<Params> specialize;
};
std::string grid_sample_source(const GridSampleSpec& spec);
// RoiAlign (RoiAlignParams). Arguments: out, x, rois (x's type), batch_indices (int64).
// An adaptive sampling grid takes at most ir::kRoiAlignMaxGrid samples a bin
// side, as the reference; a batch index out of range writes zeros.
std::string roi_align_source(DType dtype, const std::optional<Params>& specialize);
// MaxRoiPool (MaxRoiPoolParams), bins as the reference (float32 geometry).
// Arguments: out, x, rois (x's type). A batch index out of range writes zeros.
std::string max_roi_pool_source(DType dtype, const std::optional<Params>& specialize);
// NonMaxSuppression (NmsParams), IoU in double. kSelect, a block per (batch,
// class): arguments work (int64: kept counts, kept boxes, candidate order),
// boxes, scores, max_output_boxes_per_class (int64), iou_threshold,
// score_threshold (each may be null). kList, one block: out, count, work.
enum class NmsKernel { kSelect, kList };
struct NmsSpec {
  NmsKernel kernel;
  DType boxes = DType::kFloat32, iou = DType::kFloat32, score_threshold = DType::kFloat32;  // scores: boxes' type
};
std::string non_max_suppression_source(const NmsSpec& spec);
// AffineGrid (AffineGridParams). Arguments: out, theta.
std::string affine_grid_source(DType dtype, const std::optional<Params>& specialize);
// Col2Im (Col2ImParams): each image element sums the columns whose block
// covers it. Arguments: out, x.
std::string col2im_source(DType dtype, const std::optional<Params>& specialize);

// ---- recurrent (codegen/recurrent.cpp): RecurrentParams ---------------------------------
// RNN, GRU and LSTM once the runtime has put the input projections X W^T of
// every step into the scratch (cuBLASLt), as the reference
// (src/reference/recurrent.cpp) in float with the state in float: kInit sets
// the states from initial_h and initial_c (or zeros) and writes them to Y_h and
// Y_c, which rows of length 0 keep; kStep computes one time step, its gates
// fused; kGruReset is the first half of a GRU step with linear_before_reset 0,
// leaving r (.) H for the second. Arguments: those present of Y, Y_h, Y_c,
// then the scratch and R, then those present of B, sequence_lens (int32,
// clamped to [0, seq]), initial_h, initial_c and P.
inline constexpr int kRecurrentRows = 8;  // batch rows a warp computes in a step
enum class RecurrentKernel { kInit, kStep, kGruReset };
struct RecurrentSpec {
  ir::OpKind op = ir::OpKind::kRNN;
  DType dtype = DType::kFloat32;
  RecurrentKernel kernel = RecurrentKernel::kStep;
  ir::RecurrentSetup setup;
  bool has_y = false, has_y_h = false, has_y_c = false;
  bool has_bias = false, has_lens = false, has_initial_h = false, has_initial_c = false, has_peephole = false;
  std::optional<Params> specialize;
};
std::string recurrent_source(const RecurrentSpec& spec);

// ---- text (codegen/text.cpp) -------------------------------------------------------------
// TfIdfVectorizer over integer tokens (TfIdfParams), a block per row: the
// block zeroes its row, each thread counts the pool n-grams found from its
// (start, skip) pairs (float atomics: the counts are small integers, so the
// order does not matter), then the row is weighed by the mode. The pool is
// compiled in: per n-gram length, its grams sorted (binary search), each with
// its output column. Arguments: out (float32), x (`input`: int32 or int64).
struct TfIdfSpec {
  DType input = DType::kInt64;
  int64_t min_gram = 1, max_gram = 1, max_skip = 0;
  enum Mode { kTF, kIDF, kTFIDF } mode = kTF;
  std::vector<double> weights;  // per output column; empty: 1
  // The pool n-grams of lengths min_gram to max_gram, each with its output column (of its last entry in the pool).
  std::map<std::vector<int64_t>, int64_t> grams;
  std::optional<Params> specialize;
};
std::string tfidf_source(const TfIdfSpec& spec);

// ---- ml (codegen/ml.cpp) -----------------------------------------------------------------
// TreeEnsemble (TreeEnsembleParams): a thread per row and group of up to
// kTreeTargetsPerThread targets walks every tree, as the reference
// (src/reference/ml.cpp): splits compared in double, leaf weights aggregated
// in double in tree order, then the post transform (softmax only where one
// group holds every target). The trees are compiled in as constant arrays.
// Arguments: out, x (both `dtype`, a floating type).
inline constexpr int kTreeTargetsPerThread = 32;
struct TreeEnsembleSpec {
  DType dtype = DType::kFloat32;
  ir::TreeEnsembleAttrs trees;
  std::optional<Params> specialize;
};
std::string tree_ensemble_source(const TreeEnsembleSpec& spec);
// LabelEncoder of number keys and values (LabelEncoderParams), a thread per
// element: a binary search of the sorted keys (float keys compared as doubles,
// a NaN matching a NaN key), the value's bits copied, the default for a miss;
// a key given twice maps to its last value. Arguments: out, x.
struct LabelEncoderSpec {
  ir::LabelEncoderTable table;
  std::optional<Params> specialize;
};
std::string label_encoder_source(const LabelEncoderSpec& spec);
// ArrayFeatureExtractor with indices that are tensor data (GatherParams,
// inner 1): out[o, j] = x[o, indices[j]], any type as bits; an index outside
// [0, axis_size) writes zeros (the host checks indices it knows). Arguments:
// out, x, indices (int64).
std::string array_feature_extractor_source(DType dtype, const std::optional<Params>& specialize);

}  // namespace kiln::codegen
