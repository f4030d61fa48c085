// The conv family on the GPU. Convolution (and, for the pool family, channels-last max pooling) through cuDNN (legacy API, heuristic algorithm choice per shape,
// workspace from the context). Bias is added with cudnnAddTensor. Padding must
// be symmetric (cuDNN's rule); other Convs use the direct kernel. Channels-last
// Convs ([N, spatial..., C], weight [M, kernel..., C/group]) are what cuDNN's
// tensor-core kernels read natively: channels-first half-precision tensors
// cost a layout transform of input and weight and another of the output.
// The generated window kernel runs the other Convs, ConvTranspose and (for
// the pool family) MaxPool and AveragePool. 2-D depthwise Convs (ConvNeXt,
// MobileNet) are memory-bound and run a tiled kernel of their own, ahead of cuDNN.
// CausalConvWithState runs a generated kernel of its own.
#include <cudnn.h>

#include <algorithm>
#include <limits>
#include <numeric>
#include <optional>

#include "cuda_util.h"
#include "kiln/ir/shape_inference.h"
#include "kiln/runtime.h"
#include "ops.h"

namespace kiln::runtime {

using ir::OpKind;

namespace {

#define KILN_CUDNN(call, where)                                                                                   \
  do {                                                                                                            \
    cudnnStatus_t kiln_st_ = (call);                                                                              \
    if (kiln_st_ != CUDNN_STATUS_SUCCESS) fail(ErrorCode::kDevice, where, ": ", #call, " failed: ", cudnnGetErrorString(kiln_st_)); \
  } while (0)

struct CudnnDescriptors {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr, bias = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  cudnnConvolutionFwdAlgo_t algo{};
  size_t workspace = 0;
  ~CudnnDescriptors() {
    if (x) cudnnDestroyTensorDescriptor(x);
    if (y) cudnnDestroyTensorDescriptor(y);
    if (bias) cudnnDestroyTensorDescriptor(bias);
    if (w) cudnnDestroyFilterDescriptor(w);
    if (conv) cudnnDestroyConvolutionDescriptor(conv);
  }
};

cudnnDataType_t cudnn_type(DType d) {
  switch (d) {
    case DType::kFloat16: return CUDNN_DATA_HALF;
    case DType::kBFloat16: return CUDNN_DATA_BFLOAT16;
    case DType::kFloat64: return CUDNN_DATA_DOUBLE;
    default: return CUDNN_DATA_FLOAT;
  }
}

// `dims` are cuDNN's logical [N, C, spatial...]; channels_last lays them out in
// memory as [N, spatial..., C].
void tensor_desc(cudnnTensorDescriptor_t* d, cudnnDataType_t type, const std::vector<int64_t>& dims, bool channels_last,
                 const std::string& where) {
  KILN_CUDNN(cudnnCreateTensorDescriptor(d), where);
  std::vector<int> dm(dims.begin(), dims.end()), st(dims.size(), 1);
  std::vector<size_t> memory_order(dims.size());  // outermost first
  std::iota(memory_order.begin(), memory_order.end(), size_t(0));
  if (channels_last) std::rotate(memory_order.begin() + 1, memory_order.begin() + 2, memory_order.end());
  int stride = 1;
  for (size_t i = dims.size(); i-- > 0;) {
    st[memory_order[i]] = stride;
    stride *= dm[memory_order[i]];
  }
  KILN_CUDNN(cudnnSetTensorNdDescriptor(*d, type, int(dm.size()), dm.data(), st.data()), where);
}


class CudnnConvOp : public Op {
 public:
  CudnnConvOp(const ir::Node& node, DType dtype) : node_(node), dtype_(dtype), channels_last_(node.op == ir::OpKind::kConvChannelsLast) {}

  void prepare(PrepareContext& ctx) const override {
    std::string where = str("node '", node_.name, "' (", ir::op_name(node_.op), ")");
    if (ir::checked_numel(ctx.shapes.of(node_.outputs[0])) == 0 || ctx.dry) return;  // dry: cuDNN's work is not ours to warm
    // cuDNN's dims are logical [N, C, spatial...] whatever the memory layout.
    auto logical = [&](ir::ValueId v) {
      const auto& dims = ctx.shapes.of(v);
      return channels_last_ ? ir::permuted(dims, ir::to_channels_first_perm(dims.size())) : dims;
    };
    std::vector<int64_t> x = logical(node_.inputs[0]), wd = logical(node_.inputs[1]), y = logical(node_.outputs[0]);
    std::vector<int64_t> in_sp(x.begin() + 2, x.end()), k_sp(wd.begin() + 2, wd.end());
    ir::WindowGeometry g = ir::window_geometry(node_, in_sp, k_sp);
    auto d = std::make_shared<CudnnDescriptors>();
    cudnnDataType_t type = cudnn_type(dtype_);
    std::vector<int64_t> x4 = x, y4 = y, w4 = wd;
    std::vector<int> pads(g.pads_begin.begin(), g.pads_begin.end()), strides(g.strides.begin(), g.strides.end()),
        dil(g.dilations.begin(), g.dilations.end());
    if (x.size() == 3) {  // 1-D: cuDNN wants at least 2 spatial dims
      x4.push_back(1), y4.push_back(1), w4.push_back(1);
      pads.push_back(0), strides.push_back(1), dil.push_back(1);
    }
    tensor_desc(&d->x, type, x4, channels_last_, where);
    tensor_desc(&d->y, type, y4, channels_last_, where);
    KILN_CUDNN(cudnnCreateFilterDescriptor(&d->w), where);
    std::vector<int> wdims(w4.begin(), w4.end());
    KILN_CUDNN(cudnnSetFilterNdDescriptor(d->w, type, channels_last_ ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW, int(wdims.size()),
                                          wdims.data()),
               where);
    KILN_CUDNN(cudnnCreateConvolutionDescriptor(&d->conv), where);
    cudnnDataType_t compute = dtype_ == DType::kFloat64 ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT;
    KILN_CUDNN(cudnnSetConvolutionNdDescriptor(d->conv, int(pads.size()), pads.data(), strides.data(), dil.data(),
                                               CUDNN_CROSS_CORRELATION, compute),
               where);
    KILN_CUDNN(cudnnSetConvolutionGroupCount(d->conv, int(node_.attrs.get_int("group", 1))), where);
    // float32 stays full precision (no TF32); half types use tensor cores.
    KILN_CUDNN(cudnnSetConvolutionMathType(d->conv, dtype_ == DType::kFloat32 || dtype_ == DType::kFloat64 ? CUDNN_FMA_MATH
                                                                                                          : CUDNN_TENSOR_OP_MATH),
               where);
    choose_algorithm(ctx, *d, str("cudnn ", cudnnGetVersion(), " conv forward ", int(type), channels_last_ ? " channels-last" : "", " x ", ir::shape_to_string(ir::shape_of(x4)),
                                  " w ", ir::shape_to_string(ir::shape_of(w4)), " pads ", ir::shape_to_string(ir::shape_of({pads.begin(), pads.end()})),
                                  " strides ", ir::shape_to_string(ir::shape_of({strides.begin(), strides.end()})), " dilations ",
                                  ir::shape_to_string(ir::shape_of({dil.begin(), dil.end()})), " group ", node_.attrs.get_int("group", 1)),
                     where);
    bool bias = node_.inputs.size() > 2 && node_.inputs[2] != ir::kNoValue;
    if (bias) {
      std::vector<int64_t> b(y4.size(), 1);
      b[1] = y[1];
      tensor_desc(&d->bias, type, b, channels_last_, where);
    }
    CudnnCall call;
    call.descriptors = d;
    call.x = {node_.inputs[0], 0};
    call.w = {node_.inputs[1], 0};
    call.y = {node_.outputs[0], 0};
    call.bias = bias ? PtrRef{node_.inputs[2], 0} : PtrRef{};
    call.f64 = dtype_ == DType::kFloat64;
    call.node = &node_;
    ctx.steps.push_back(std::move(call));
  }

 private:
  // cuDNN's heuristics cost milliseconds per convolution, and their first use
  // in a process far more: the choice is remembered in the runtime cache,
  // keyed by everything that defines the convolution and cuDNN's version. A
  // choice is an algorithm and the math type it runs with: a half-precision
  // convolution whose channels do not suit tensor cores (an image's 3) gets
  // an algorithm for plain math, which fails with the tensor-op math type.
  void choose_algorithm(const PrepareContext& ctx, CudnnDescriptors& d, const std::string& problem, const std::string& where) const {
    CacheKey key = kernel_cache_key(problem, "cudnn forward algorithm and math type", ctx.arch, 0);
    if (auto known = ctx.cache ? ctx.cache->find(key, ctx.arch) : std::nullopt; known && known->size() == 2) {
      auto algo = cudnnConvolutionFwdAlgo_t(static_cast<unsigned char>((*known)[0]));
      auto math = cudnnMathType_t(static_cast<unsigned char>((*known)[1]));
      size_t bytes = 0;
      if (algo < CUDNN_CONVOLUTION_FWD_ALGO_COUNT && cudnnSetConvolutionMathType(d.conv, math) == CUDNN_STATUS_SUCCESS &&
          cudnnGetConvolutionForwardWorkspaceSize(ctx.cudnn, d.x, d.w, d.conv, d.y, algo, &bytes) == CUDNN_STATUS_SUCCESS &&
          bytes <= ctx.workspace_bytes) {
        d.algo = algo;
        d.workspace = bytes;
        return;
      }
    }
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int found = 0;
    KILN_CUDNN(cudnnGetConvolutionForwardAlgorithm_v7(ctx.cudnn, d.x, d.w, d.conv, d.y, CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &found, perf),
               where);
    for (int i = 0; i < found; ++i)
      if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].memory <= ctx.workspace_bytes) {
        KILN_CUDNN(cudnnSetConvolutionMathType(d.conv, perf[i].mathType), where);
        d.algo = perf[i].algo;
        d.workspace = perf[i].memory;
        if (ctx.cache) ctx.cache->insert(key, ctx.arch, std::string{char(d.algo), char(perf[i].mathType)});
        return;
      }
    fail(ErrorCode::kUnsupported, where, ": cuDNN has no algorithm within the ", ctx.workspace_bytes, "-byte workspace");
  }

  const ir::Node& node_;
  DType dtype_;
  bool channels_last_;
};

struct CudnnPoolDescriptors {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnPoolingDescriptor_t pool = nullptr;
  ~CudnnPoolDescriptors() {
    if (x) cudnnDestroyTensorDescriptor(x);
    if (y) cudnnDestroyTensorDescriptor(y);
    if (pool) cudnnDestroyPoolingDescriptor(pool);
  }
};

// Channels-last max pooling (the layout cuDNN's channels-last convolutions
// around it use). The builder makes it only without dilation or ceil_mode and
// with symmetric pads, which is what cuDNN pools.
class CudnnMaxPoolOp : public Op {
 public:
  CudnnMaxPoolOp(const ir::Node& node, DType dtype) : node_(node), dtype_(dtype) {}

  void prepare(PrepareContext& ctx) const override {
    std::string where = str("node '", node_.name, "' (", ir::op_name(node_.op), ")");
    if (ir::checked_numel(ctx.shapes.of(node_.outputs[0])) == 0 || ctx.dry) return;
    auto logical = [&](ir::ValueId v) {
      const auto& dims = ctx.shapes.of(v);
      return ir::permuted(dims, ir::to_channels_first_perm(dims.size()));
    };
    std::vector<int64_t> x = logical(node_.inputs[0]), y = logical(node_.outputs[0]);
    std::vector<int64_t> kernel = node_.attrs.get_ints("kernel_shape");
    ir::WindowGeometry g = ir::window_geometry(node_, {x.begin() + 2, x.end()}, kernel);
    auto d = std::make_shared<CudnnPoolDescriptors>();
    tensor_desc(&d->x, cudnn_type(dtype_), x, true, where);
    tensor_desc(&d->y, cudnn_type(dtype_), y, true, where);
    std::vector<int> window(g.kernel.begin(), g.kernel.end()), pads(g.pads_begin.begin(), g.pads_begin.end()),
        strides(g.strides.begin(), g.strides.end());
    KILN_CUDNN(cudnnCreatePoolingDescriptor(&d->pool), where);
    KILN_CUDNN(cudnnSetPoolingNdDescriptor(d->pool, CUDNN_POOLING_MAX, CUDNN_PROPAGATE_NAN, int(window.size()), window.data(),
                                           pads.data(), strides.data()),
               where);
    CudnnCall call;
    call.descriptors = d;
    call.x = {node_.inputs[0], 0};
    call.y = {node_.outputs[0], 0};
    call.f64 = dtype_ == DType::kFloat64;
    call.node = &node_;
    ctx.steps.push_back(std::move(call));
  }

 private:
  const ir::Node& node_;
  DType dtype_;
};

}  // namespace

std::unique_ptr<Op> make_cudnn_max_pool_op(const plan::Plan& plan, const ir::Node& node) {
  DType dtype = plan.network.value(node.inputs[0]).dtype;
  size_t rank = plan.network.value(node.inputs[0]).shape.size();
  if (!is_floating(dtype) || rank < 4 || rank > 5 || !ir::is_plain_pool_window(node)) return nullptr;
  return std::make_unique<CudnnMaxPoolOp>(node, dtype);
}

std::unique_ptr<Op> make_cudnn_conv_op(const plan::Plan& plan, const ir::Node& node, std::string& why) {
  DType dtype = plan.network.value(node.inputs[0]).dtype;
  size_t rank = plan.network.value(node.inputs[0]).shape.size();
  if (!is_floating(dtype) || rank < 3 || rank > 5) return nullptr;
  if (!ir::has_symmetric_explicit_pads(node)) return nullptr;
  return std::make_unique<CudnnConvOp>(node, dtype);
}

void launch_cudnn(const CudnnCall& call, void* x, void* w, void* y, void* bias, cudnnHandle_t handle, void* workspace,
                  cudaStream_t stream) {
  auto* d = static_cast<CudnnDescriptors*>(call.descriptors.get());
  // The message is built only on failure: enqueue stays free of host allocations.
  auto where = [&] { return str("node '", call.node->name, "' (", ir::op_name(call.node->op), ")"); };
  KILN_CUDNN(cudnnSetStream(handle, stream), where());
  double one64 = 1, zero64 = 0;
  float one32 = 1, zero32 = 0;
  const void* one = call.f64 ? static_cast<const void*>(&one64) : &one32;
  const void* zero = call.f64 ? static_cast<const void*>(&zero64) : &zero32;
  if (call.node->op == ir::OpKind::kMaxPoolChannelsLast) {
    auto* p = static_cast<CudnnPoolDescriptors*>(call.descriptors.get());
    KILN_CUDNN(cudnnPoolingForward(handle, p->pool, one, p->x, x, zero, p->y, y), where());
    return;
  }
  KILN_CUDNN(cudnnConvolutionForward(handle, one, d->x, x, d->w, w, d->conv, d->algo, workspace, d->workspace, zero, d->y, y), where());
  if (bias) KILN_CUDNN(cudnnAddTensor(handle, one, d->bias, bias, one, d->y, y), where());
}

namespace {

// WindowParams of the window (pool or convolution, kernel dims `kernel_sp`)
// the node slides over its input 0 into its output 0.
codegen::WindowParams window_params(const ir::Node& n, const ShapeEnv& s, const std::vector<int64_t>& kernel_sp) {
  const auto& x = s.of(n.inputs[0]);
  const auto& out = s.of(n.outputs[0]);
  std::vector<int64_t> in_sp(x.begin() + 2, x.end());
  ir::WindowGeometry g = ir::window_geometry(n, in_sp, kernel_sp);
  codegen::WindowParams q{};
  q.n = ir::checked_numel(out);
  q.spatial_rank = int64_t(in_sp.size());
  q.channels = x[1];
  q.out_channels = out[1];
  q.group = n.attrs.get_int("group", 1);
  for (size_t d = 0; d < in_sp.size(); ++d) {
    q.in_size[d] = in_sp[d];
    q.out_size[d] = g.output[d];
    q.kernel[d] = g.kernel[d];
    q.strides[d] = g.strides[d];
    q.dilations[d] = g.dilations[d];
    q.pads_begin[d] = g.pads_begin[d];
    q.pads_end[d] = g.pads_end[d];
  }
  return q;
}

}  // namespace

std::unique_ptr<Op> make_window_op(const plan::Plan& plan, const ir::Node& node, KernelStore& store) {
  auto value = [&](ir::ValueId v) -> const ir::Value& { return plan.network.value(v); };
  DType dtype = output_dtype(plan, node);
  const ir::Node* n = &node;
  // Integers compare as long long: uint64 values past 2^63 would not.
  bool integer_max_pool = node.op == OpKind::kMaxPool && dtype != DType::kBool && dtype != DType::kUInt64;
  if ((!is_floating(dtype) && !integer_max_pool) || value(node.inputs[0]).shape.size() > 5) return nullptr;
  bool indices = node.op == OpKind::kMaxPool && node.outputs.size() > 1 && node.outputs[1] != ir::kNoValue;
  bool column_major = node.attrs.get_int("storage_order", 0) != 0;
  bool conv = node.op == OpKind::kConv || node.op == OpKind::kConvTranspose;
  codegen::WindowOp wop = node.op == OpKind::kConv            ? codegen::WindowOp::kConv
                          : node.op == OpKind::kConvTranspose ? codegen::WindowOp::kConvTranspose
                          : node.op == OpKind::kMaxPool       ? codegen::WindowOp::kMaxPool
                          : node.op == OpKind::kLpPool        ? codegen::WindowOp::kLpPool
                                                              : codegen::WindowOp::kAvgPool;
  bool bias = conv && node.inputs.size() > 2 && node.inputs[2] != ir::kNoValue;
  int64_t power = node.attrs.get_int("p", 2);
  int kernel = store.add(node.name, [wop, dtype, bias, power, indices, column_major](const auto& params) {
    return codegen::window_source({wop, dtype, bias, params, power, indices, column_major});
  });
  return std::make_unique<SimpleOp>(node, store, kernel, [n, indices](const ShapeEnv& s, KernelLaunch& k) {
    bool conv = n->op == OpKind::kConv || n->op == OpKind::kConvTranspose;
    std::vector<int64_t> kernel_sp = conv ? std::vector<int64_t>(s.of(n->inputs[1]).begin() + 2, s.of(n->inputs[1]).end())
                                          : n->attrs.get_ints("kernel_shape");
    codegen::WindowParams q = window_params(*n, s, kernel_sp);
    q.count_include_pad = n->attrs.get_int("count_include_pad", 0);
    k.params = codegen::pack(q);
    k.args = {{n->outputs[0], 0}};
    if (indices) k.args.push_back({n->outputs[1], 0});
    k.args.push_back({n->inputs[0], 0});
    for (size_t i = 1; i < n->inputs.size(); ++i)
      if (n->inputs[i] != ir::kNoValue) k.args.push_back({n->inputs[i], 0});
  });
}

namespace {

// ConvInteger and QLinearConv: the generated integer direct convolution.
std::unique_ptr<Op> make_integer_conv(const plan::Plan& plan, const ir::Node& node, KernelStore& store, std::string& why) {
  bool q = node.op == OpKind::kQLinearConv;
  size_t iw = q ? 3 : 1, ixz = 2, iwz = q ? 5 : 3;
  auto has = [&](size_t i) { return i < node.inputs.size() && node.inputs[i] != ir::kNoValue; };
  const ir::Value& x = plan.network.value(node.inputs[0]);
  if (x.shape.size() > 5) {
    why = str("rank ", x.shape.size(), "; the kernel takes 1 to 3 spatial dims");
    return nullptr;
  }
  // One value or one per output channel, which the kernel's source tells apart.
  auto per_channel = [&](size_t i, bool& result) {
    ir::Dim numel = ir::shape_numel(plan.network.value(node.inputs[i]).shape);
    result = numel != ir::Dim(1);
    return numel.is_constant();
  };
  codegen::IntegerConvSpec spec{};
  spec.x = x.dtype;
  spec.w = plan.network.value(node.inputs[iw]).dtype;
  spec.out = output_dtype(plan, node);
  spec.x_zero = has(ixz);
  spec.w_zero = has(iwz);
  spec.requantize = q;
  spec.has_bias = q && has(8);
  if ((spec.w_zero && !per_channel(iwz, spec.w_zero_per_channel)) || (q && !per_channel(4, spec.w_scale_per_channel))) {
    why = "w's zero point or scale has a size unknown before run time";
    return nullptr;
  }
  int kernel = store.add(node.name, specializing_generator(spec, codegen::integer_conv_source));
  const ir::Node* n = &node;
  return std::make_unique<SimpleOp>(node, store, kernel, [n, q, iw, ixz, iwz, has](const ShapeEnv& s, KernelLaunch& k) {
    const auto& w = s.of(n->inputs[iw]);
    k.params = codegen::pack(window_params(*n, s, std::vector<int64_t>(w.begin() + 2, w.end())));
    k.args = {{n->outputs[0], 0}, {n->inputs[0], 0}, {n->inputs[iw], 0}};
    for (size_t i : {ixz, iwz})
      if (has(i)) k.args.push_back({n->inputs[i], 0});
    if (q)
      for (size_t i : {size_t(1), size_t(4), size_t(6), size_t(7), size_t(8)})
        if (has(i)) k.args.push_back({n->inputs[i], 0});
  });
}

struct DepthwiseTiling {
  int64_t tile_w, rows, smem_h, smem_w;
};

// The tile of an out_h x out_w plane: a power of two from 8 to 64 columns that
// covers a row where it can, the rest of the block's threads on rows, each
// thread on up to kDepthwiseMaxRows rows while the plane has them. The first
// candidate, in that order of preference, whose taps and staged input fit the
// shared memory; none for windows too wide (large dilated kernels).
std::optional<DepthwiseTiling> depthwise_tiling(int64_t out_h, int64_t out_w, const std::vector<int64_t>& kernel,
                                                const std::vector<int64_t>& strides, const std::vector<int64_t>& dilations,
                                                DType dtype) {
  const int64_t capacity = codegen::kDepthwiseSmemBytes / (dtype == DType::kFloat64 ? 8 : 4);
  int64_t best_w = 8;
  while (best_w < 64 && best_w < out_w) best_w *= 2;
  std::vector<int64_t> widths{best_w};
  for (int64_t w = best_w / 2; w >= 8; w /= 2) widths.push_back(w);
  for (int64_t w = best_w * 2; w <= 64; w *= 2) widths.push_back(w);
  // Each factor bounded first: attribute values are the model's, and their products might overflow.
  for (int64_t v : {kernel[0], kernel[1], strides[0], strides[1], dilations[0], dilations[1]})
    if (v < 1 || v > capacity) return std::nullopt;
  int64_t reach_h = (kernel[0] - 1) * dilations[0] + 1, reach_w = (kernel[1] - 1) * dilations[1] + 1;
  for (int64_t tile_w : widths) {
    int64_t block_rows = codegen::kBlock / tile_w;
    int64_t best_rows = std::clamp<int64_t>((out_h + block_rows - 1) / block_rows, 1, codegen::kDepthwiseMaxRows);
    for (int64_t rows = best_rows; rows >= 1; --rows) {
      int64_t smem_h = (block_rows * rows - 1) * strides[0] + reach_h, smem_w = (tile_w - 1) * strides[1] + reach_w;
      if (smem_h <= capacity && smem_w <= capacity && kernel[0] * kernel[1] + smem_h * smem_w <= capacity)
        return DepthwiseTiling{tile_w, rows, smem_h, smem_w};
    }
  }
  return std::nullopt;
}

// The tiled depthwise kernel for a 2-D Conv with one input channel per group
// (channel multiplier weight[0] / group) whose window fits its shared memory;
// nullptr for any other Conv.
std::unique_ptr<Op> make_depthwise_op(const plan::Plan& plan, const ir::Node& node, KernelStore& store) {
  const ir::Value &x = plan.network.value(node.inputs[0]), &w = plan.network.value(node.inputs[1]);
  DType dtype = output_dtype(plan, node);
  if (!is_floating(dtype) || x.shape.size() != 4 || w.shape.size() != 4 || !ir::shape_is_constant(w.shape) ||
      !x.shape[1].is_constant())
    return nullptr;
  std::vector<int64_t> wd = ir::shape_constants(w.shape);
  int64_t group = node.attrs.get_int("group", 1);
  if (group < 1 || x.shape[1].constant() != group || wd[1] != 1 || wd[0] % group != 0) return nullptr;
  std::vector<int64_t> strides = node.attrs.get_ints("strides", {1, 1}), dilations = node.attrs.get_ints("dilations", {1, 1});
  if (strides.size() != 2 || dilations.size() != 2 || !depthwise_tiling(1, 1, {wd[2], wd[3]}, strides, dilations, dtype))
    return nullptr;
  bool bias = node.inputs.size() > 2 && node.inputs[2] != ir::kNoValue;
  int kernel = store.add(node.name, specializing_generator(codegen::DepthwiseSpec{dtype, bias, std::nullopt}, codegen::depthwise_source));
  const ir::Node* n = &node;
  return std::make_unique<SimpleOp>(node, store, kernel, [n, dtype](const ShapeEnv& s, KernelLaunch& k) {
    const auto &xd = s.of(n->inputs[0]), &wd = s.of(n->inputs[1]), &out = s.of(n->outputs[0]);
    ir::WindowGeometry g = ir::window_geometry(*n, {xd[2], xd[3]}, {wd[2], wd[3]});
    std::optional<DepthwiseTiling> tiling = depthwise_tiling(out[2], out[3], g.kernel, g.strides, g.dilations, dtype);
    if (!tiling) fail(ErrorCode::kInternal, "node '", n->name, "' (Conv): no depthwise tile fits, though one did when the op was made");
    codegen::DepthwiseParams q{};
    q.channels = out[1];
    q.multiplier = out[1] / xd[1];
    q.tile_w = tiling->tile_w;
    q.rows = tiling->rows;
    q.smem_h = tiling->smem_h;
    q.smem_w = tiling->smem_w;
    q.tiles_w = (out[3] + q.tile_w - 1) / q.tile_w;
    int64_t tile_h = codegen::kBlock / q.tile_w * q.rows;
    q.tiles_h = (out[2] + tile_h - 1) / tile_h;
    q.blocks = out[0] * out[1] * q.tiles_h * q.tiles_w;
    q.in_h = xd[2], q.in_w = xd[3], q.out_h = out[2], q.out_w = out[3];
    q.kernel_h = g.kernel[0], q.kernel_w = g.kernel[1];
    q.stride_h = g.strides[0], q.stride_w = g.strides[1];
    q.dilation_h = g.dilations[0], q.dilation_w = g.dilations[1];
    q.pad_top = g.pads_begin[0], q.pad_left = g.pads_begin[1];
    k.params = codegen::pack(q);
    // A block per tile; the kernel loops over tiles past the grid's limit.
    k.grid = unsigned(std::min<int64_t>(q.blocks, std::numeric_limits<int32_t>::max()));
    k.args = {{n->outputs[0], 0}, {n->inputs[0], 0}, {n->inputs[1], 0}};
    if (n->inputs.size() > 2 && n->inputs[2] != ir::kNoValue) k.args.push_back({n->inputs[2], 0});
  });
}

// CausalConvWithState: one generated kernel writes the output and, where the
// node has it, present_state.
std::unique_ptr<Op> make_causal_conv_op(const plan::Plan& plan, const ir::Node& node, KernelStore& store) {
  auto has_input = [&](size_t i) { return i < node.inputs.size() && node.inputs[i] != ir::kNoValue; };
  bool keeps_state = node.outputs.size() > 1 && node.outputs[1] != ir::kNoValue;
  codegen::CausalConvSpec spec{output_dtype(plan, node), has_input(2), has_input(3),
                               node.attrs.get_string("activation", "none") != "none", std::nullopt};
  int kernel = store.add(node.name, specializing_generator(spec, codegen::causal_conv_source));
  const ir::Node* n = &node;
  return std::make_unique<SimpleOp>(node, store, kernel, [n, spec, keeps_state](const ShapeEnv& s, KernelLaunch& k) {
    const auto& x = s.of(n->inputs[0]);
    int64_t taps = s.of(n->inputs[1])[2];
    require_input_dims(*n, s, 1, {x[1], 1, taps});
    if (spec.has_bias) require_input_dims(*n, s, 2, {x[1]});
    if (spec.has_past) require_input_dims(*n, s, 3, {x[0], x[1], taps - 1});
    int64_t outputs = ir::checked_numel(x), state = keeps_state ? ir::checked_numel(s.of(n->outputs[1])) : 0;
    k.params = codegen::pack(codegen::CausalConvParams{outputs + state, outputs, x[1], x[2], taps});
    // Without present_state no work item reaches its pointer.
    k.args = {{n->outputs[0], 0}, {keeps_state ? n->outputs[1] : n->outputs[0], 0}, {n->inputs[0], 0}, {n->inputs[1], 0}};
    if (spec.has_bias) k.args.push_back({n->inputs[2], 0});
    if (spec.has_past) k.args.push_back({n->inputs[3], 0});
  });
}

// DeformConv: the generated direct kernel, a thread per output element.
std::unique_ptr<Op> make_deform_conv_op(const plan::Plan& plan, const ir::Node& node, KernelStore& store) {
  auto has_input = [&](size_t i) { return i < node.inputs.size() && node.inputs[i] != ir::kNoValue; };
  codegen::DeformConvSpec spec{output_dtype(plan, node), has_input(3), has_input(4), std::nullopt};
  if (!is_floating(spec.dtype)) return nullptr;
  int kernel = store.add(node.name, specializing_generator(spec, codegen::deform_conv_source));
  const ir::Node* n = &node;
  return std::make_unique<SimpleOp>(node, store, kernel, [n, spec](const ShapeEnv& s, KernelLaunch& k) {
    const auto &x = s.of(n->inputs[0]), &w = s.of(n->inputs[1]), &out = s.of(n->outputs[0]);
    ir::WindowGeometry g = ir::window_geometry(*n, {x[2], x[3]}, {w[2], w[3]});
    codegen::DeformConvParams q{};
    q.n = ir::checked_numel(out);
    q.channels = x[1];
    q.out_channels = out[1];
    q.group = n->attrs.get_int("group", 1);
    q.offset_group = n->attrs.get_int("offset_group", 1);
    q.in_h = x[2], q.in_w = x[3], q.out_h = out[2], q.out_w = out[3];
    q.kernel_h = w[2], q.kernel_w = w[3];
    q.stride_h = g.strides[0], q.stride_w = g.strides[1];
    q.dilation_h = g.dilations[0], q.dilation_w = g.dilations[1];
    q.pad_top = g.pads_begin[0], q.pad_left = g.pads_begin[1];
    // Dims inference could not compare (symbols) are checked before the kernel indexes by them.
    int64_t taps = q.offset_group * q.kernel_h * q.kernel_w;
    if (x[1] != w[1] * q.group || x[1] % q.offset_group != 0)
      fail(ErrorCode::kShapeError, "node '", n->name, "' (DeformConv): input 0 has ", x[1], " channels; expected weight dim 1 (",
           w[1], ") * group (", q.group, "), divisible by offset_group (", q.offset_group, ")");
    require_input_dims(*n, s, 2, {x[0], taps * 2, out[2], out[3]});
    if (spec.has_bias) require_input_dims(*n, s, 3, {out[1]});
    if (spec.has_mask) require_input_dims(*n, s, 4, {x[0], taps, out[2], out[3]});
    k.params = codegen::pack(q);
    k.args = {{n->outputs[0], 0}, {n->inputs[0], 0}, {n->inputs[1], 0}, {n->inputs[2], 0}};
    if (spec.has_bias) k.args.push_back({n->inputs[3], 0});
    if (spec.has_mask) k.args.push_back({n->inputs[4], 0});
  });
}

}  // namespace

std::unique_ptr<Op> make_conv(const plan::Plan& plan, const ir::Node& node, KernelStore& store, std::string& why, int /*arch*/) {
  switch (node.op) {
    case OpKind::kConvChannelsLast:
      if (auto op = make_cudnn_conv_op(plan, node, why)) return op;
      why = "a channels-last Conv that cuDNN does not run (rank 3 to 5, floating types, symmetric explicit pads)";
      return nullptr;
    case OpKind::kConv:
      if (auto op = make_depthwise_op(plan, node, store)) return op;
      if (auto op = make_cudnn_conv_op(plan, node, why)) return op;
      return make_window_op(plan, node, store);
    case OpKind::kConvTranspose: return make_window_op(plan, node, store);
    case OpKind::kConvInteger: case OpKind::kQLinearConv: return make_integer_conv(plan, node, store, why);
    case OpKind::kCausalConvWithState: return make_causal_conv_op(plan, node, store);
    case OpKind::kDeformConv: return make_deform_conv_op(plan, node, store);
    default: return nullptr;
  }
}

GpuLowering describe_conv(OpKind op) {
  using K = GpuLowering::Kind;
  switch (op) {
    case OpKind::kConv:
      return {K::kKernel,
              "2-D depthwise: a generated tiled kernel; else cuDNN with symmetric explicit pads, else a generated direct kernel; "
              "floating types, rank 5 at most"};
    case OpKind::kConvTranspose: return {K::kKernel, "generated direct kernel; floating types, rank 5 at most"};
    case OpKind::kConvChannelsLast: return {K::kKernel, "cuDNN; rank 3 to 5, floating types, symmetric explicit pads"};
    case OpKind::kConvInteger: case OpKind::kQLinearConv:
      return {K::kKernel, "generated direct kernel, int32 accumulation; int8/uint8, rank 5 at most, w's zero point and scale "
                          "per tensor or per output channel"};
    case OpKind::kCausalConvWithState:
      return {K::kKernel, "a thread per element of the output and of present_state; floating types, SiLU fused"};
    case OpKind::kDeformConv:
      return {K::kKernel, "generated direct kernel, a thread per output element, bilinear sampling at each tap's offset, float "
                          "accumulation (double for float64); floating types, 2-D"};
    default: return {};
  }
}

}  // namespace kiln::runtime
