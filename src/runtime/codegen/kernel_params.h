// The parameters of each kernel family, one plain struct each: the host fills
// them by name and packs them into the kernels' KParams slots (codegen::pack);
// the generated kernels get this very text (the build embeds it, see
// kernel_params_source) and read the same fields by name. Only `long long`
// scalars and arrays, no includes: valid as host C++ and as NVRTC device code.
// Doubles travel as their bits (`*_bits`). Every struct starts with the number
// of work items, which the runtime reads to skip empty launches.
// Array bounds: 8 is codegen::kMaxRank, 3 the spatial dims of a window.
// Host code includes codegen.h, which includes this inside kiln::codegen.
#ifndef KILN_KERNEL_PARAMS_H
#define KILN_KERNEL_PARAMS_H

// Elementwise and cast kernels: `n` outputs (contiguous) over `rank` dims
// right-aligned in out_dims (the innermost at 7), the strides of each input
// over them (0 where it broadcasts). `contiguous`: every input has the
// output's layout (offsets are the output index; dims and strides unread).
// `inner_vectors`: each input steps through the innermost dim by 1 or 0 and
// packs of the kernel's vector width never cross it (its size is a multiple,
// or it is the only dim).
struct ElementwiseParams {
  long long n, rank, contiguous;
  long long out_dims[8];
  long long in_strides[14][8];
  long long inner_vectors;
};

// Row kernels (softmax family, layer norm): `rows` rows of `len` elements, `inner` apart.
// `path` (codegen::RowPath), `lanes` threads per row, `vec` elements per access
// where every pointer is 16-byte aligned (1: one at a time); codegen::row_params fills them.
struct RowParams {
  long long rows, len, inner;
  long long path, lanes, vec;
};

// Line kernels along one axis of an [outer, len, inner] view (`lines` = outer * inner).
// A scan given its axis as a tensor (CumSum's) reads it on the device: `lines`
// is then the element count and the view follows from the `rank` dims `dims`.
struct LineParams {
  long long lines, len, inner;
  long long select_last_index;  // ArgMax, ArgMin
  long long exclusive, reverse;  // CumSum
  long long rank, dims[8];
};

// Reductions: `outputs` kept positions, each over `reduced` elements.
struct ReduceParams {
  long long outputs, reduced, kept_rank, reduced_rank;
  long long kept_dims[8], kept_strides[8];
  long long reduced_dims[8], reduced_strides[8];
};

// Strided remap: out[dst_offset + sum c_d * dst_strides_d] = in[src_offset + sum j_d * src_strides_d]
// over the multi-index c of `dims`, j_d = src_starts_d + c_d * src_steps_d (mod modulus_d where
// nonzero), bounds-checked against src_dims for pad modes (codegen::PadMode).
// Plain strided copies (no pads, steps or modulus) take a faster `path`: 1 copies
// `vec_bytes` at a time along the last dim (unit stride on both sides); 2 moves
// 32x32 tiles through shared memory between the last dim (unit dst stride) and
// the one before it (unit src stride). Path 0 is the element loop above.
struct RemapParams {
  long long n, rank, src_offset, dst_offset, pad_mode, fill_bits;
  long long dims[8], src_strides[8], dst_strides[8];
  long long src_starts[8], src_steps[8], src_dims[8], modulus[8];
  long long path, vec_bytes;
};

// Gather along an axis of an [outer, axis_size, inner] view with `count` indices per position.
struct GatherParams {
  long long n, outer, count, inner, axis_size;
};

// ScatterND, ScatterElements and GatherND: `n` work items, one per update
// element (scatter) or output element (GatherND). ScatterND and GatherND: item
// i moves element i % slice of the slice that index tuple o = i / slice names:
// `depth` indices into dims `dims` with element strides `strides`, in batch
// o / rows of `batch_stride` elements (GatherND's batch_dims; 0 for ScatterND).
// ScatterElements: updates of `rank` dims `dims` into data of strides
// `strides`, the index replacing the coordinate of `axis` (data size `axis_size`).
struct IndexedParams {
  long long n, depth, slice, rows, batch_stride, rank, axis, axis_size;
  long long dims[8], strides[8];
};

// NonZero over `n` elements of `rank` dims `dims`: writes the count, then,
// when it is at most `cap` (the bound the memory plan holds), the indices.
struct NonZeroParams {
  long long n, rank, cap;
  long long dims[8];
};

// Trilu over the last two dims of `n` elements.
struct TriluParams {
  long long n, rows, cols, k, upper;
};

// Resize: modes as codegen::resize_source lists them. Scales and roi the
// kernel reads on the device (tensors, not constants) replace the `*_bits` of
// each dim d whose scale_index[d] (the entry of scales) or roi_index[d] (the
// entry of roi's starts; its end is roi_half entries on) is not -1.
struct ResizeParams {
  long long n, rank, mode, coordinate_mode, nearest_mode, exclude_outside, antialias;
  long long cubic_a_bits, extrapolation_bits;
  long long in_dims[8], out_dims[8];
  long long scale_bits[8], roi_start_bits[8], roi_end_bits[8];
  long long scale_index[8], roi_index[8], roi_half;
};

// Window kernels (pooling, direct convolution), NCHW with 1-3 spatial dims.
struct WindowParams {
  long long n, spatial_rank, channels, out_channels, group, count_include_pad;
  long long in_size[3], out_size[3], kernel[3], strides[3], dilations[3], pads_begin[3], pads_end[3];
};

// Depthwise 2-D convolution, NCHW: `blocks` work items, each a tile of one
// (batch, output channel) plane: tile_w columns by (256 / tile_w) * rows rows,
// a thread per column and `rows` consecutive rows. Output channel c reads input
// channel c / multiplier. The input the tile reads (with its halo, smem_h by
// smem_w) and the channel's weights are staged in shared memory.
struct DepthwiseParams {
  long long blocks, channels, multiplier, tiles_w, tiles_h, tile_w, rows, smem_h, smem_w;
  long long in_h, in_w, out_h, out_w, kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w, pad_top, pad_left;
};

// Integer matrix products (MatMulInteger, QLinearMatMul): `n` outputs over
// `rank` dims right-aligned in out_dims ([batch..., M, N], the innermost at 7),
// each a sum over `depth` products. strides[t][d] is operand t's stride along
// output dim d (0 where it broadcasts), operands in the kernel's argument
// order (codegen::IntegerMatMulSpec); A and B step through the depth by
// a_depth_stride and b_depth_stride.
struct IntegerMatMulParams {
  long long n, rank, depth, a_depth_stride, b_depth_stride;
  long long out_dims[8];
  long long strides[6][8];
};

// Skinny matmul: out[m, n] for m < rows over depth k; alpha as double bits.
struct SkinnyParams {
  long long rows, cols, depth, alpha_bits;
};

// Fused attention over strided [B, H, S, D] views, each {offset, sb, sh, ss, sd}.
// `items`: blocks of work. The tensor-core kernel also reads `vector_bits`
// (16-byte loads of q 1, k 2, v 4; paired stores of out 8) and `warps` a block.
// A mask (kernels made with one) has strides {sb, sh, si, sj}, 0 where it
// broadcasts; a bool mask keeps scores where it equals `mask_keep`, else
// puts the double `mask_fill_bits`. `empty_rows_zero`: rows with no key
// left write 0 (else 0/0).
struct AttentionParams {
  long long items, batch, heads, q_len, kv_len, head_dim, scale_bits, causal;
  long long q_view[5], k_view[5], v_view[5], out_view[5];
  long long vector_bits, warps;
  long long mask_view[4], mask_keep, mask_fill_bits, empty_rows_zero;
};

// Constants: `n` values of `elem` bytes each, little-endian in the low bytes of `values`.
struct ConstantsParams {
  long long n, elem;
  long long values[120];
};

// TopK: `rows` rows of `len` elements, `inner` apart; the best `k` of each
// (largest or smallest), in order, ties to the lower index.
struct TopkParams {
  long long rows, len, inner, k, largest;
};

// Einsum: `n` outputs over the output labels' dims, each a sum over the
// `sum_count` assignments of the summed labels' dims; each operand's stride
// per output label and per summed label (0 where it lacks or broadcasts it).
// Operand bound: 6.
struct EinsumParams {
  long long n, out_rank, sum_rank, sum_count;
  long long out_dims[8], sum_dims[8];
  long long out_strides[6][8], sum_strides[6][8];
};

// Range: `n` elements start + i * delta, start and delta read on the device.
struct RangeParams {
  long long n;
};

// OneHot: `n` outputs of an [outer, depth, inner] view over indices [outer, inner].
struct OneHotParams {
  long long n, depth, inner;
};

// Instance and group norm over NC...: `rows` = N * groups rows of `len` =
// (C / groups) * `spatial` contiguous elements; scale and bias per channel.
struct GroupNormParams {
  long long rows, len, groups, spatial;
};

// LRN over NC...: `n` elements, a window over `channels`, `spatial` apart.
struct LrnParams {
  long long n, channels, spatial;
};

// GridSample of X [N, C, in_dims] at grid [N, out_dims, rank]: `n` outputs
// (N * C * points), `rank` spatial dims (1-3); mode 0 linear, 1 nearest,
// 2 cubic; padding 0 zeros, 1 border, 2 reflection.
struct GridSampleParams {
  long long n, rank, channels, mode, padding, align_corners;
  long long in_dims[3], out_dims[3];
};

// RoiAlign of X [batch, channels, height, width] over RoIs: `n` outputs
// (RoIs * channels * pooled_h * pooled_w); spatial_scale as double bits.
struct RoiAlignParams {
  long long n, batch, channels, height, width, pooled_h, pooled_w;
  long long sampling_ratio, half_pixel, max_mode, scale_bits;
};

// AffineGrid: `n` grid points (N * prod(dims)) of `rank` (2 or 3) coordinates each.
struct AffineGridParams {
  long long n, rank, align_corners;
  long long dims[3];
};

// Col2Im into an image [N, C, image] from input [N, C * block_volume,
// columns]: `n` image elements, `rank` spatial dims (1-3); `blocks` block
// positions a dim; pads at the start of each dim.
struct Col2ImParams {
  long long n, rank, block_volume, columns;
  long long image[3], block[3], blocks[3], strides[3], dilations[3], pads[3];
};

// Compress of an input viewed as [outer, len, inner] (no axis: [1, numel, 1]):
// a one-block scan of the condition's first `scan` entries lists the
// positions it selects and writes their count (-1 - p when position p >= len
// is true: numpy's error); a gather then copies the listed slices, `n` =
// outer * cap * inner work items, at most `cap` (the planned bound) slices.
struct CompressParams {
  long long n, outer, len, inner, scan, cap;
};

// Unique of an input viewed as [outer, len, inner], its `len` slices along the
// axis compared as numpy does. Sort stages of the `pow2` positions (bitonic:
// stage k, j; k = 0 fills the identity), a one-block pass that groups equal
// neighbours and orders the groups (`sorted`, else by first occurrence) and
// writes their count, then the outputs, at most `cap` groups. `n`: the work
// items of the launch (pow2, len, or max(outer * cap * inner, len)).
struct UniqueParams {
  long long n, outer, len, inner, pow2, k, j, sorted, cap;
};

// NonMaxSuppression of boxes [batches, boxes, 4] by scores [batches, classes,
// boxes]: a block per (batch, class), `n` of them, sorts its candidates in
// `pow2` slots and keeps boxes greedily; one block then lists them in ONNX's
// order, at most `cap` rows. has_*: the optional inputs given and not empty.
struct NmsParams {
  long long n, batches, classes, boxes, pow2, cap, center_point_box;
  long long has_max_output, has_iou, has_score;
};

// MaxRoiPool of X [batch, channels, height, width] over RoIs [R, 5]: `n`
// outputs (R * channels * pooled_h * pooled_w); spatial_scale as double bits.
struct MaxRoiPoolParams {
  long long n, batch, channels, height, width, pooled_h, pooled_w, scale_bits;
};

// Recurrent layers (RNN, GRU, LSTM): the init launch has a thread per state
// element (`n` = dirs * batch * hidden); each time step's launch a warp per
// direction, hidden unit and group of kRecurrentRows batch rows (`n` warps),
// at step `step` of `seq`. The float scratch holds the input projections at 0
// and the states at h_offset, c_offset and rh_offset (ir::RecurrentScratch).
// `projected` 0: X has no features, so its projections are zero and unread.
struct RecurrentParams {
  long long n, step, seq, batch, hidden, projected;
  long long h_offset, c_offset, rh_offset;
};

// Signal windows (HannWindow, HammingWindow, BlackmanWindow): `n` values
// a0 - a1 cos(2 pi i / denom) + a2 cos(4 pi i / denom), the coefficients as
// double bits; denom is n for a periodic window, n - 1 for a symmetric one.
struct SignalWindowParams {
  long long n, denom, a0_bits, a1_bits, a2_bits;
};

// MelWeightMatrix [bins, mel_bins]: `n` = bins * mel_bins outputs; the
// dft_length, sample rate and edge frequencies are read on the device.
struct MelParams {
  long long n, mel_bins;
};

// DFT of the lines of input [outer, in_len, inner, in_complex + 1] into output
// [outer, out_len, inner, 2, or 1 for mode 2]: `n` = outer * out_len * inner
// outputs, each a sum of `dft_len` terms (input beyond in_len is zero). Mode 0
// forward, 1 inverse, 2 inverse of a one-sided spectrum (real output).
struct DftParams {
  long long n, out_len, inner, in_len, dft_len, in_complex, mode;
};

// STFT of signal [batch, signal_len, in_complex + 1] into [batch, frames, bins,
// 2]: `n` = batch * frames * bins outputs, each the DFT term of the frame of
// `frame_len` samples from frame * step, times the window where there is one.
struct StftParams {
  long long n, frames, bins, signal_len, frame_len, step, in_complex;
};

// CausalConvWithState over [batch, channels, length] with `kernel` taps: `n`
// work items, the first `outputs` (batch * channels * length) the output's
// elements, the rest present_state's (batch * channels * (kernel - 1)).
struct CausalConvParams {
  long long n, outputs, channels, length, kernel;
};

// LinearAttention: `threads` = 32 * batch * kv_heads * value_dim, a warp per
// value column of one (batch, kv head) state, sequential over `steps` tokens;
// `group` query heads per kv head. decay_width: 0 (none), 1 (a scalar per kv
// head) or key_dim; beta_width: 0 (none), 1 or kv_heads. scale as double bits.
struct LinearAttentionParams {
  long long threads, batch, steps, kv_heads, group, key_dim, value_dim, decay_width, beta_width, scale_bits;
};

// EyeLike: `n` elements of a matrix of `cols` columns, 1 on diagonal `k`
// (column - row == k), 0 elsewhere.
struct EyeLikeParams {
  long long n, cols, k;
};

// ReverseSequence: `n` elements of a [batch, time, inner] view (batch_major)
// or a [time, batch, inner] one; the first lengths[b] steps of batch b reversed.
struct ReverseSequenceParams {
  long long n, batch, time, inner, batch_major;
};

// TensorScatter: `n` update elements of an [outer, seq, inner] view written
// into the cache's [outer, max_seq, inner] at write_indices[o / per_batch] +
// step (mod max_seq when circular).
struct TensorScatterParams {
  long long n, seq, max_seq, inner, per_batch, circular;
};

// Det: `n` square matrices of `size` rows, contiguous.
struct DetParams {
  long long n, size;
};

// DeformConv, 2-D, NCHW: `n` output elements; input channels in `group`
// groups (as Conv's) and in `offset_group` groups that share offsets and mask.
struct DeformConvParams {
  long long n, channels, out_channels, group, offset_group;
  long long in_h, in_w, out_h, out_w, kernel_h, kernel_w;
  long long stride_h, stride_w, dilation_h, dilation_w, pad_top, pad_left;
};

// The random ops: `n` output elements, the Philox `key`, the distribution's
// parameters as double bits (low and high, or mean and scale); Multinomial:
// `samples` per row of `classes` logits.
struct RandomParams {
  long long n, key, a_bits, b_bits, classes, samples;
};

// TreeEnsemble: `n` work items, each a row of `features` values and one group
// of at most codegen::kTreeTargetsPerThread of its targets (the trees and the
// target count are compiled into the kernel).
struct TreeEnsembleParams {
  long long n, features;
};

// TfIdfVectorizer: a block per row of `rows`, each of `row_size` tokens,
// counting into `width` output columns (the pool is compiled into the kernel).
struct TfIdfParams {
  long long rows, row_size, width;
};

// LabelEncoder: `n` elements looked up in the key table compiled into the kernel.
struct LabelEncoderParams {
  long long n;
};

#endif
