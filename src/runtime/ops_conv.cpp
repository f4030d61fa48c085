// Convolution through cuDNN (legacy API, heuristic algorithm choice per shape,
// workspace from the context). Bias is added with cudnnAddTensor. Padding must
// be symmetric (cuDNN's rule); other cases use the direct kernel.
#include <cudnn.h>

#include "cuda_util.h"
#include "kiln/ir/shape_inference.h"
#include "ops.h"

namespace kiln::runtime {

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

void tensor_desc(cudnnTensorDescriptor_t* d, cudnnDataType_t type, const std::vector<int64_t>& dims, const std::string& where) {
  KILN_CUDNN(cudnnCreateTensorDescriptor(d), where);
  std::vector<int> dm(dims.begin(), dims.end()), st(dims.size(), 1);
  for (size_t i = dims.size() - 1; i-- > 0;) st[i] = st[i + 1] * dm[i + 1];
  KILN_CUDNN(cudnnSetTensorNdDescriptor(*d, type, int(dm.size()), dm.data(), st.data()), where);
}

class CudnnConvOp : public Op {
 public:
  CudnnConvOp(const ir::Node& node, DType dtype) : node_(node), dtype_(dtype) {}

  void prepare(PrepareContext& ctx) const override {
    std::string where = str("node '", node_.name, "' (Conv)");
    const auto& x = ctx.shapes.of(node_.inputs[0]);
    const auto& wd = ctx.shapes.of(node_.inputs[1]);
    const auto& y = ctx.shapes.of(node_.outputs[0]);
    if (ir::checked_numel(y) == 0 || ctx.dry) return;  // dry: cuDNN's work is not ours to warm
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
    tensor_desc(&d->x, type, x4, where);
    tensor_desc(&d->y, type, y4, where);
    KILN_CUDNN(cudnnCreateFilterDescriptor(&d->w), where);
    std::vector<int> wdims(w4.begin(), w4.end());
    KILN_CUDNN(cudnnSetFilterNdDescriptor(d->w, type, CUDNN_TENSOR_NCHW, int(wdims.size()), wdims.data()), where);
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
    choose_algorithm(ctx, *d, str("cudnn ", cudnnGetVersion(), " conv forward ", int(type), " x ", ir::shape_to_string(ir::shape_of(x4)),
                                  " w ", ir::shape_to_string(ir::shape_of(w4)), " pads ", ir::shape_to_string(ir::shape_of({pads.begin(), pads.end()})),
                                  " strides ", ir::shape_to_string(ir::shape_of({strides.begin(), strides.end()})), " dilations ",
                                  ir::shape_to_string(ir::shape_of({dil.begin(), dil.end()})), " group ", node_.attrs.get_int("group", 1)),
                     where);
    bool bias = node_.inputs.size() > 2 && node_.inputs[2] != ir::kNoValue;
    if (bias) {
      std::vector<int64_t> b(y4.size(), 1);
      b[1] = y[1];
      tensor_desc(&d->bias, type, b, where);
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
  // keyed by everything that defines the convolution and cuDNN's version.
  void choose_algorithm(const PrepareContext& ctx, CudnnDescriptors& d, const std::string& problem, const std::string& where) const {
    CacheKey key = kernel_cache_key(problem, "cudnn forward algorithm", ctx.arch, 0);
    if (auto known = ctx.cache ? ctx.cache->find(key, ctx.arch) : std::nullopt; known && known->size() == 1) {
      auto algo = cudnnConvolutionFwdAlgo_t(static_cast<unsigned char>((*known)[0]));
      size_t bytes = 0;
      if (algo < CUDNN_CONVOLUTION_FWD_ALGO_COUNT &&
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
        d.algo = perf[i].algo;
        d.workspace = perf[i].memory;
        if (ctx.cache) ctx.cache->insert(key, ctx.arch, std::string(1, char(d.algo)));
        return;
      }
    fail(ErrorCode::kUnsupported, where, ": cuDNN has no algorithm within the ", ctx.workspace_bytes, "-byte workspace");
  }

  const ir::Node& node_;
  DType dtype_;
};

}  // namespace

std::unique_ptr<Op> make_cudnn_conv_op(const plan::Plan& plan, const ir::Node& node, std::string& why) {
  DType dtype = plan.network.value(node.inputs[0]).dtype;
  size_t rank = plan.network.value(node.inputs[0]).shape.size();
  if (!is_floating(dtype) || rank < 3 || rank > 5) return nullptr;
  // Symmetric padding only (cuDNN); auto_pad SAME with an odd total is decided per shape, so only explicit pads here.
  std::string auto_pad = node.attrs.get_string("auto_pad", "NOTSET");
  if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") return nullptr;
  auto pads = node.attrs.get_ints("pads");
  for (size_t i = 0; i < pads.size() / 2; ++i)
    if (auto_pad != "VALID" && pads[i] != pads[i + pads.size() / 2]) return nullptr;
  return std::make_unique<CudnnConvOp>(node, dtype);
}

void launch_cudnn(const CudnnCall& call, void* x, void* w, void* y, void* bias, cudnnHandle_t handle, void* workspace,
                  cudaStream_t stream) {
  auto* d = static_cast<CudnnDescriptors*>(call.descriptors.get());
  // The message is built only on failure: enqueue stays free of host allocations.
  auto where = [&] { return str("node '", call.node->name, "' (Conv)"); };
  KILN_CUDNN(cudnnSetStream(handle, stream), where());
  double one64 = 1, zero64 = 0;
  float one32 = 1, zero32 = 0;
  const void* one = call.f64 ? static_cast<const void*>(&one64) : &one32;
  const void* zero = call.f64 ? static_cast<const void*>(&zero64) : &zero32;
  KILN_CUDNN(cudnnConvolutionForward(handle, one, d->x, x, d->w, w, d->conv, d->algo, workspace, d->workspace, zero, d->y, y), where());
  if (bias) KILN_CUDNN(cudnnAddTensor(handle, one, d->bias, bias, one, d->y, y), where());
}

}  // namespace kiln::runtime
