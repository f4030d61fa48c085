// The linalg family on the GPU. FusedMatMul through cuBLASLt: row-major
// Y[M,N] = A[M,K] B[K,N] is computed as column-major Y^T = B^T A^T, with bias / ReLU / GELU(tanh) epilogues and
// the residual as the C matrix (beta = 1). Other activations, and a residual
// after an activation, run as a small elementwise kernel afterwards; few-row
// products take a generated kernel. Attention runs as one fused kernel;
// Einsum, MatMulInteger and QLinearMatMul as generated kernels, a thread per
// output element; LinearAttention as its recurrence kernel.
#include <algorithm>
#include <map>

#include "cuda_util.h"
#include "kiln/error.h"
#include "kiln/ir/fused.h"
#include "kiln/ir/quantization.h"
#include "kiln/ir/linear_attention.h"
#include "kiln/ir/shape_inference.h"
#include "ops.h"

namespace kiln::runtime {

using ir::OpKind;

namespace {

struct LtDescriptors {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  ~LtDescriptors() {
    if (op) cublasLtMatmulDescDestroy(op);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (c) cublasLtMatrixLayoutDestroy(c);
  }
};

cudaDataType_t cuda_type(DType d) {
  switch (d) {
    case DType::kFloat16: return CUDA_R_16F;
    case DType::kBFloat16: return CUDA_R_16BF;
    case DType::kFloat64: return CUDA_R_64F;
    default: return CUDA_R_32F;
  }
}

void layout(cublasLtMatrixLayout_t* l, cudaDataType_t type, int64_t rows, int64_t cols, int64_t ld, int64_t batch,
            int64_t batch_stride, const std::string& where) {
  KILN_CUBLAS(cublasLtMatrixLayoutCreate(l, type, uint64_t(rows), uint64_t(cols), ld), where);
  if (batch > 1) {
    int32_t count = int32_t(batch);
    KILN_CUBLAS(cublasLtMatrixLayoutSetAttribute(*l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)), where);
    KILN_CUBLAS(cublasLtMatrixLayoutSetAttribute(*l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &batch_stride,
                                                 sizeof(batch_stride)),
                where);
  }
}

// The heuristic's best algorithm for the descriptors (D laid out as C); fails naming the product.
void choose_algorithm(const PrepareContext& ctx, LtDescriptors& desc, const std::string& where, const std::string& product) {
  cublasLtMatmulPreference_t pref;
  KILN_CUBLAS(cublasLtMatmulPreferenceCreate(&pref), where);
  size_t ws = ctx.workspace_bytes;
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(ctx.lt, desc.op, desc.a, desc.b, desc.c, desc.c, pref, 1, &result, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (st != CUBLAS_STATUS_SUCCESS || found == 0) fail(ErrorCode::kUnsupported, where, ": cuBLASLt has no algorithm for ", product);
  desc.algo = result.algo;
}

class MatMulOp : public Op {
 public:
  MatMulOp(const plan::Plan& plan, const ir::Node& node, const KernelStore& store, int post_kernel, int skinny_kernel,
           std::unique_ptr<Op> transpose)
      : node_(node), store_(store), post_kernel_(post_kernel), skinny_kernel_(skinny_kernel), transpose_(std::move(transpose)) {
    const ir::Network& net = plan.network;
    dtype_ = net.value(node.inputs[0]).dtype;
    trans_b_ = node.attrs.get_int("trans_b", 0) != 0;
    alpha_ = node.attrs.get_float("alpha", 1.0);
    activation_ = node.attrs.get_string("activation", "none");
    has_bias_ = node.inputs.size() > 2 && node.inputs[2] != ir::kNoValue;
    has_residual_ = node.inputs.size() > 3 && node.inputs[3] != ir::kNoValue;
  }

  void prepare(PrepareContext& ctx) const override {
    std::string where = str("node '", node_.name, "' (FusedMatMul)");
    const auto& ad = ctx.shapes.of(node_.inputs[0]);
    const auto& bd = ctx.shapes.of(node_.inputs[1]);
    const auto& od = ctx.shapes.of(node_.outputs[0]);
    int64_t m = ad[ad.size() - 2], k = ad.back();
    int64_t n = trans_b_ ? bd[bd.size() - 2] : bd.back();
    BatchSplit split = split_batch(ad, bd, od);
    int64_t batch = split.batch, a_batch = split.a_batch, b_batch = split.b_batch, total = split.outer * batch * m * n;
    if (total == 0) return;
    std::vector<CallOffsets> offsets = call_offsets(split, m, k, n);
    if (b_batch == 1 && batch > 1) {
      // One B for every batch: the batches' rows of A and of Y are contiguous, so
      // this is one [batch*M x K] @ [K x N] product. Strided batches with a zero
      // stride left cuBLASLt without an algorithm for wide odd N (GPT-2's LM head).
      m *= batch;
      a_batch = batch = 1;
    }
    // A block takes 8 columns (trans_b) or 32 and walks all of K: few blocks with a
    // long K leave most SMs idle (a 2048 x 512 weight made 16 blocks, slower than cuBLASLt).
    int64_t skinny_blocks = trans_b_ ? (n + 7) / 8 : (n + 31) / 32;
    if (skinny_kernel_ >= 0 && split.outer == 1 && b_batch == 1 && batch * m <= codegen::kSkinnyMaxRows && k * n <= kSkinnyMaxWeights &&
        (skinny_blocks >= kSkinnyMinBlocks || k <= kSkinnyShortK)) {
      KernelLaunch launch{store_.kernel(skinny_kernel_), 0, codegen::kBlock, {}, {}, &node_, skinny_kernel_};
      launch.grid = unsigned(skinny_blocks);
      codegen::SkinnyParams q{};
      q.rows = batch * m;
      q.cols = n;
      q.depth = k;
      q.alpha_bits = codegen::double_bits(alpha_);
      launch.params = codegen::pack(q);
      launch.args = {{node_.outputs[0], 0}, {node_.inputs[0], 0}, {node_.inputs[1], 0}};
      if (has_bias_) launch.args.push_back({node_.inputs[2], 0});
      if (has_residual_) launch.args.push_back({node_.inputs[3], 0});
      ctx.steps.push_back(std::move(launch));
      return;
    }
    // The builder gave wide half-precision products with N off the tensor cores'
    // 8-element grid a scratch for Y^T; its rows are Y's M rows, on that grid here.
    bool transposed = transpose_ && split.outer == 1 && batch == 1 && m % 8 == 0;
    if (ctx.dry) {  // no device: only the transpose and the elementwise epilogue below are kernels of ours
      if (transposed) transpose_->prepare(ctx);
      if (post_kernel_ >= 0) push_post(ctx, total);
      return;
    }
    auto desc = std::make_shared<LtDescriptors>();
    cudaDataType_t type = cuda_type(dtype_);
    bool f64 = dtype_ == DType::kFloat64;
    cublasComputeType_t compute = f64 ? CUBLAS_COMPUTE_64F : CUBLAS_COMPUTE_32F;
    KILN_CUBLAS(cublasLtMatmulDescCreate(&desc->op, compute, f64 ? CUDA_R_64F : CUDA_R_32F), where);
    cublasOperation_t ta = trans_b_ ? CUBLAS_OP_T : CUBLAS_OP_N, tb = CUBLAS_OP_N;
    KILN_CUBLAS(cublasLtMatmulDescSetAttribute(desc->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)), where);
    KILN_CUBLAS(cublasLtMatmulDescSetAttribute(desc->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)), where);
    bool fused_act = activation_ == "relu" || activation_ == "gelu_tanh";
    bool epilogue_act = fused_act && !has_residual_;
    cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
    if (has_bias_) epilogue = !epilogue_act ? CUBLASLT_EPILOGUE_BIAS : activation_ == "relu" ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_GELU_BIAS;
    else if (epilogue_act) epilogue = activation_ == "relu" ? CUBLASLT_EPILOGUE_RELU : CUBLASLT_EPILOGUE_GELU;
    KILN_CUBLAS(cublasLtMatmulDescSetAttribute(desc->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)), where);
    if (transposed) {
      // Column-major D = Y (M x N, ld M), which is Y^T row-major in the scratch: A_cm = X^T, B_cm = op(B).
      cublasOperation_t x_op = CUBLAS_OP_T, b_op = trans_b_ ? CUBLAS_OP_N : CUBLAS_OP_T;
      KILN_CUBLAS(cublasLtMatmulDescSetAttribute(desc->op, CUBLASLT_MATMUL_DESC_TRANSA, &x_op, sizeof(x_op)), where);
      KILN_CUBLAS(cublasLtMatmulDescSetAttribute(desc->op, CUBLASLT_MATMUL_DESC_TRANSB, &b_op, sizeof(b_op)), where);
      layout(&desc->a, type, k, m, k, 1, 0, where);
      if (trans_b_) layout(&desc->b, type, k, n, k, 1, 0, where);
      else layout(&desc->b, type, n, k, n, 1, 0, where);
      layout(&desc->c, type, m, n, m, 1, 0, where);
    } else if (has_bias_) {
      KILN_CUBLAS(cublasLtMatmulDescSetAttribute(desc->op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &type, sizeof(type)), where);
    }
    if (!transposed) {
      // Column-major view: A_cm = B (N x K), B_cm = A (K x M), D = Y^T (N x M).
      if (trans_b_) layout(&desc->a, type, k, n, k, b_batch > 1 ? batch : 1, b_batch > 1 ? n * k : 0, where);
      else layout(&desc->a, type, n, k, n, batch, b_batch > 1 ? n * k : 0, where);
      layout(&desc->b, type, k, m, k, batch, a_batch > 1 ? m * k : 0, where);
      layout(&desc->c, type, n, m, n, batch, m * n, where);
    }
    choose_algorithm(ctx, *desc, where,
                     str(dtype_name(dtype_), " [", m, "x", k, "] @ [", k, "x", n, "] x", batch, " with this epilogue"));
    int64_t elem = int64_t(dtype_size(dtype_));
    bool residual_as_c = has_residual_ && activation_ == "none";
    for (const CallOffsets& at : offsets) {
      MatmulCall call;
      call.descriptors = desc;
      call.a = {node_.inputs[transposed ? 0 : 1], (transposed ? at.a : at.b) * elem};
      call.b = {node_.inputs[transposed ? 1 : 0], (transposed ? at.b : at.a) * elem};
      call.d = {node_.outputs[transposed ? 1 : 0], at.y * elem};
      call.c = residual_as_c ? PtrRef{node_.inputs[3], at.y * elem} : PtrRef{node_.outputs[0], at.y * elem};
      call.beta = residual_as_c ? 1.0 : 0.0;
      call.alpha = alpha_;
      call.bias = has_bias_ ? PtrRef{node_.inputs[2], 0} : PtrRef{};
      call.f64 = f64;
      call.node = &node_;
      ctx.steps.push_back(std::move(call));
    }
    if (transposed) transpose_->prepare(ctx);
    if (post_kernel_ >= 0) push_post(ctx, total);
  }

 private:
  // Batch dims right-aligned to the output's [batch..., M, N]. From dim
  // `from` on, each operand's batch dims equal the output's or are all 1: one
  // strided batch of `batch` products (`a_batch` and `b_batch` are batch or
  // 1). The `outer` positions of the dims before it take a cuBLASLt call
  // each (numpy broadcasting that one stride cannot express: [3,1] with [1,2]).
  struct BatchSplit {
    std::vector<int64_t> out, a, b;
    size_t from = 0;
    int64_t outer = 1, batch = 1, a_batch = 1, b_batch = 1;
  };
  static BatchSplit split_batch(const std::vector<int64_t>& ad, const std::vector<int64_t>& bd, const std::vector<int64_t>& od) {
    BatchSplit s;
    s.out.assign(od.begin(), od.end() - 2);
    auto aligned = [&](const std::vector<int64_t>& dims) {
      std::vector<int64_t> x(s.out.size() - (dims.size() - 2), 1);
      x.insert(x.end(), dims.begin(), dims.end() - 2);
      return x;
    };
    s.a = aligned(ad);
    s.b = aligned(bd);
    auto uniform_from = [&](const std::vector<int64_t>& x, size_t from) {
      bool same = true, ones = true;
      for (size_t d = from; d < s.out.size(); ++d) {
        same = same && x[d] == s.out[d];
        ones = ones && x[d] == 1;
      }
      return same || ones;
    };
    while (!uniform_from(s.a, s.from) || !uniform_from(s.b, s.from)) ++s.from;
    auto tail = [&](const std::vector<int64_t>& x) { return ir::checked_numel({x.begin() + long(s.from), x.end()}); };
    s.outer = ir::checked_numel({s.out.begin(), s.out.begin() + long(s.from)});
    s.batch = tail(s.out);
    s.a_batch = tail(s.a);
    s.b_batch = tail(s.b);
    return s;
  }

  // Element offsets in A, B and Y of each outer position's strided batch, the last dim fastest.
  struct CallOffsets {
    int64_t a, b, y;
  };
  static std::vector<CallOffsets> call_offsets(const BatchSplit& split, int64_t m, int64_t k, int64_t n) {
    std::vector<CallOffsets> result;
    std::vector<int64_t> position(split.from, 0);
    for (int64_t p = 0; p < split.outer; ++p) {
      int64_t a = 0, b = 0, a_step = split.a_batch, b_step = split.b_batch;  // in matrices; an operand's dims of 1 stay at 0
      for (size_t d = split.from; d-- > 0;) {
        a += (split.a[d] == 1 ? 0 : position[d]) * a_step;
        b += (split.b[d] == 1 ? 0 : position[d]) * b_step;
        a_step *= split.a[d];
        b_step *= split.b[d];
      }
      result.push_back({a * m * k, b * k * n, p * split.batch * m * n});
      for (size_t d = split.from; d-- > 0;) {
        if (++position[d] < split.out[d]) break;
        position[d] = 0;
      }
    }
    return result;
  }

  // The activation cuBLASLt lacks, and/or a residual added after it: in place on the output.
  void push_post(PrepareContext& ctx, int64_t count) const {
    KernelLaunch post{store_.kernel(post_kernel_), grid_for(count, ctx.sm_count), codegen::kBlock, {}, {},
                      &node_, post_kernel_};
    codegen::ElementwiseParams q{};  // a flat view: input 0 the output itself, input 1 the residual
    q.n = count;
    q.rank = 1;
    q.contiguous = 1;
    q.out_dims[0] = count;
    q.in_strides[0][0] = 1;
    q.in_strides[1][0] = 1;
    post.params = codegen::pack(q);
    post.args = {{node_.outputs[0], 0}, {node_.outputs[0], 0}};
    if (has_residual_ && activation_ != "none") post.args.push_back({node_.inputs[3], 0});
    ctx.steps.push_back(std::move(post));
  }

  // Weights up to this many elements stream fast enough through the skinny kernel.
  static constexpr int64_t kSkinnyMaxWeights = int64_t(4) << 20;
  static constexpr int64_t kSkinnyMinBlocks = 32, kSkinnyShortK = 512;
  const ir::Node& node_;
  const KernelStore& store_;
  int post_kernel_, skinny_kernel_;
  std::unique_ptr<Op> transpose_;  // scratch Y^T -> Y, where the node has the scratch output
  DType dtype_;
  bool trans_b_, has_bias_, has_residual_;
  double alpha_;
  std::string activation_;
};

ir::OpKind activation_op(const std::string& act) {
  if (act == "relu") return OpKind::kRelu;
  if (act == "sigmoid") return OpKind::kSigmoid;
  if (act == "tanh") return OpKind::kTanh;
  return OpKind::kGelu;
}

// The Attention node's geometry at these shapes, the parameters both attention
// kernels share (all but items, vector_bits and warps) and their arguments.
ir::AttentionGeometry attention_params(const ir::Node& n, const ShapeEnv& s, codegen::AttentionParams& q, KernelLaunch& k) {
  ir::AttentionGeometry g = ir::attention_geometry(n, s.of(n.inputs[0]), s.of(n.inputs[1]), s.of(n.inputs[2]));
  if (g.out_dims != s.of(n.outputs[0]))
    fail(ErrorCode::kInternal, "node '", n.name, "' (Attention): its views make ", ir::shape_to_string(ir::shape_of(g.out_dims)),
         ", the network says ", ir::shape_to_string(ir::shape_of(s.of(n.outputs[0]))));
  q.batch = g.batch;
  q.heads = g.heads;
  q.q_len = g.q_len;
  q.kv_len = g.kv_len;
  q.head_dim = g.head_dim;
  q.scale_bits = codegen::double_bits(n.attrs.get_float("scale", 1.0));
  q.causal = n.attrs.get_int("causal", 0);
  q.empty_rows_zero = n.attrs.get_int("empty_rows_zero", 0);
  std::copy(g.q.begin(), g.q.end(), q.q_view);
  std::copy(g.k.begin(), g.k.end(), q.k_view);
  std::copy(g.v.begin(), g.v.end(), q.v_view);
  std::copy(g.out.begin(), g.out.end(), q.out_view);
  k.args = {{n.outputs[0], 0}, {n.inputs[0], 0}, {n.inputs[1], 0}, {n.inputs[2], 0}};
  if (n.inputs.size() > 3 && n.inputs[3] != ir::kNoValue) {
    std::array<int64_t, 4> mask = ir::attention_mask_strides(n, g, s.of(n.outputs[0]).size(), s.of(n.inputs[3]));
    std::copy(mask.begin(), mask.end(), q.mask_view);
    q.mask_keep = n.attrs.get_int("mask_keep", 1);
    q.mask_fill_bits = codegen::double_bits(n.attrs.get_float("mask_fill", -INFINITY));
    k.args.push_back({n.inputs[3], 0});
  }
  return g;
}

// Whether every row of a [B, H, S, D] view starts on a multiple of `elements`
// with the head dim contiguous (strides of dims of size 1 never move the address).
bool rows_aligned(const std::array<int64_t, 5>& view, const ir::AttentionGeometry& g, int64_t len, int64_t elements) {
  auto fits = [&](int64_t stride, int64_t dim) { return dim == 1 || stride % elements == 0; };
  return view[4] == 1 && g.head_dim % elements == 0 && view[0] % elements == 0 && fits(view[1], g.batch) &&
         fits(view[2], g.heads) && fits(view[3], len);
}

// Blocks of the tensor-core attention kernel: four warps (64 query rows) share
// each key tile best; fewer where four leave fewer blocks than a large GPU has
// SMs (132 on an H100/H200). Decided from shapes alone, so warming the cache
// without a GPU specializes the kernels a device will ask for.
constexpr int64_t kAttentionMmaMinBlocks = 132;

void fill_attention_mma(const ir::Node& n, const ShapeEnv& s, KernelLaunch& k) {
  codegen::AttentionParams q{};
  ir::AttentionGeometry g = attention_params(n, s, q, k);
  if (ir::checked_numel(g.out_dims) == 0) return;  // nothing to compute (no parameters: no launch)
  int64_t warps = 4;
  auto blocks = [&](int64_t w) { return g.batch * g.heads * ((g.q_len + 16 * w - 1) / (16 * w)); };
  while (warps > 1 && blocks(warps) < kAttentionMmaMinBlocks) warps /= 2;
  q.items = blocks(warps);
  q.vector_bits = (rows_aligned(g.q, g, g.q_len, 8) ? 1 : 0) | (rows_aligned(g.k, g, g.kv_len, 8) ? 2 : 0) |
                  (rows_aligned(g.v, g, g.kv_len, 8) ? 4 : 0) | (rows_aligned(g.out, g, g.q_len, 2) ? 8 : 0);
  q.warps = warps;
  k.params = codegen::pack(q);
  k.block = unsigned(32 * warps);
  k.grid = unsigned(std::clamp<int64_t>(q.items, 1, 65535));
}

std::unique_ptr<Op> make_matmul(const plan::Plan& plan, const ir::Node& node, KernelStore& store, std::string& why) {
  DType dtype = plan.network.value(node.inputs[0]).dtype;
  if (!is_floating(dtype)) {
    why = str("dtype ", dtype_name(dtype));
    return nullptr;
  }
  std::string act = node.attrs.get_string("activation", "none");
  bool has_residual = node.inputs.size() > 3 && node.inputs[3] != ir::kNoValue;
  bool in_lt = act == "none" || ((act == "relu" || act == "gelu_tanh") && !has_residual);
  int post = -1;
  if (!in_lt) {  // y = act(y) (+ residual), elementwise in place
    std::vector<ir::FusedInstruction> program;
    ir::FusedInstruction a;
    a.op = activation_op(act);
    a.args[0] = 0;
    if (act == "gelu_tanh") a.params[0] = 1;
    program.push_back(a);
    std::vector<DType> inputs{dtype};
    if (has_residual) {
      ir::FusedInstruction add;
      add.op = OpKind::kAdd;
      add.args[0] = 2;
      add.args[1] = 1;
      program.push_back(add);
      inputs.push_back(dtype);
    }
    codegen::ElementwiseSpec spec{program, inputs, dtype, std::nullopt};
    post = store.add(node.name + "_epilogue", specializing_generator(spec, codegen::elementwise_source));
  }
  // Few-row products (batch 1-8) take a generated kernel with the whole epilogue fused, when B is a plain matrix.
  int skinny = -1;
  if (dtype != DType::kFloat64 && plan.network.value(node.inputs[1]).shape.size() == 2) {
    codegen::SkinnySpec spec{dtype, node.attrs.get_int("trans_b", 0) != 0, node.inputs.size() > 2 && node.inputs[2] != ir::kNoValue,
                             has_residual, act, std::nullopt};
    skinny = store.add(node.name + "_skinny", specializing_generator(spec, codegen::skinny_matmul_source));
  }
  std::unique_ptr<Op> transpose;
  if (node.outputs.size() > 1) {
    ir::ValueId y = node.outputs[0], scratch = node.outputs[1];
    transpose = make_remap_op(node, store, dtype, [y, scratch](const ShapeEnv& shapes) {
      const auto& dims = shapes.of(y);
      int64_t n = dims.back(), rows = ir::checked_numel({dims.begin(), dims.end() - 1});
      RemapPiece piece;
      piece.src = scratch;
      piece.dst = y;
      piece.dims = {rows, n};
      piece.src_strides = {1, rows};
      piece.dst_strides = {n, 1};
      return std::vector<RemapPiece>{piece};
    });
  }
  return std::make_unique<MatMulOp>(plan, node, store, post, skinny, std::move(transpose));
}

std::unique_ptr<Op> make_attention(const plan::Plan& plan, const ir::Node& node, KernelStore& store, std::string& why, int arch) {
  auto value = [&](ir::ValueId v) -> const ir::Value& { return plan.network.value(v); };
  DType dtype = output_dtype(plan, node);
  const ir::Node* n = &node;
  if (dtype == DType::kFloat64) return nullptr;
  const ir::Shape& q = value(node.inputs[0]).shape;
  ir::Shape head = ir::apply_view_program(node, "q_view", q);
  if (head.empty() || !head.back().is_constant() || head.back().constant() > codegen::kAttentionMaxHeadDim) {
    why = str("Attention with heads that are not a constant of at most ", codegen::kAttentionMaxHeadDim);
    return nullptr;
  }
  int64_t head_dim = head.back().constant();
  std::optional<DType> mask;
  if (node.inputs.size() > 3 && node.inputs[3] != ir::kNoValue) mask = value(node.inputs[3]).dtype;
  // Tensor cores for half types; float, and GPUs before sm_80, take the scalar kernel.
  if ((dtype == DType::kFloat16 || dtype == DType::kBFloat16) && arch >= codegen::kAttentionMmaMinArch) {
    int kernel = store.add(node.name + "_mma", [dtype, head_dim, mask](const auto& params) {
      return codegen::attention_mma_source(dtype, head_dim, params, mask);
    });
    return std::make_unique<SimpleOp>(node, store, kernel, [n](const ShapeEnv& s, KernelLaunch& k) { fill_attention_mma(*n, s, k); });
  }
  int kernel = store.add(node.name, [dtype, mask](const auto& params) { return codegen::attention_source(dtype, params, mask); });
  return std::make_unique<SimpleOp>(node, store, kernel, [n](const ShapeEnv& s, KernelLaunch& k) {
    codegen::AttentionParams q{};
    ir::AttentionGeometry g = attention_params(*n, s, q, k);
    if (ir::checked_numel(g.out_dims) == 0) return;  // nothing to compute (no parameters: no launch)
    int64_t tiles = (g.q_len + codegen::kAttentionRowsPerBlock - 1) / codegen::kAttentionRowsPerBlock;
    q.items = g.batch * g.heads * tiles;
    k.params = codegen::pack(q);
    k.block = 128;
    k.grid = unsigned(std::clamp<int64_t>(q.items, 1, 65535));
  });
}

std::unique_ptr<Op> make_einsum(const plan::Plan& plan, const ir::Node& node, KernelStore& store, std::string& why) {
  DType dtype = output_dtype(plan, node);
  if (dtype == DType::kBool) return nullptr;
  int operands = int(node.inputs.size());
  if (operands > codegen::kEinsumMaxOperands) {
    why = str(operands, " operands; the GPU kernel takes at most ", codegen::kEinsumMaxOperands);
    return nullptr;
  }
  std::vector<size_t> ranks;
  for (ir::ValueId v : node.inputs) ranks.push_back(plan.network.value(v).shape.size());
  ir::EinsumLabels labels = ir::einsum_labels(ir::parse_einsum(node.attrs.get_string("equation", "")), ranks);
  if (labels.out.size() > size_t(codegen::kMaxRank) || labels.summed.size() > size_t(codegen::kMaxRank)) {
    why = str(labels.out.size(), " output and ", labels.summed.size(), " summed labels; the GPU kernel takes at most ", codegen::kMaxRank,
              " of each");
    return nullptr;
  }
  int kernel = store.add(node.name, [dtype, operands](const auto& params) { return codegen::einsum_source(dtype, operands, params); });
  const ir::Node* n = &node;
  return std::make_unique<SimpleOp>(node, store, kernel, [n, labels](const ShapeEnv& s, KernelLaunch& k) {
    std::map<char, int64_t> size;
    for (size_t t = 0; t < labels.terms.size(); ++t)
      for (size_t i = 0; i < labels.terms[t].size(); ++i)
        size[labels.terms[t][i]] = std::max(size[labels.terms[t][i]], s.of(n->inputs[t])[i]);
    codegen::EinsumParams q{};
    q.out_rank = int64_t(labels.out.size());
    q.sum_rank = int64_t(labels.summed.size());
    std::vector<int64_t> out_dims, sum_dims;
    for (char l : labels.out) out_dims.push_back(size[l]);
    for (char l : labels.summed) sum_dims.push_back(size[l]);
    q.n = ir::checked_numel(out_dims);
    q.sum_count = ir::checked_numel(sum_dims);
    std::copy(out_dims.begin(), out_dims.end(), q.out_dims);
    std::copy(sum_dims.begin(), sum_dims.end(), q.sum_dims);
    for (size_t t = 0; t < labels.terms.size(); ++t) {
      const auto& dims = s.of(n->inputs[t]);
      auto st = strides_of(dims);
      for (size_t i = 0; i < dims.size(); ++i) {
        if (dims[i] == 1) continue;  // broadcast (or a single position): stride 0
        char l = labels.terms[t][i];
        size_t at = labels.out.find(l);
        if (at != std::string::npos) q.out_strides[t][at] += st[i];
        else q.sum_strides[t][labels.summed.find(l)] += st[i];  // repeated labels (diagonals) add up
      }
    }
    k.params = codegen::pack(q);
    k.args = {{n->outputs[0], 0}};
    for (ir::ValueId v : n->inputs) k.args.push_back({v, 0});
  });
}

// An operand of a matrix product (dims `dims`, a matrix view: rank >= 2) seen
// from the product's output [batch..., M, N] (right-aligned in kMaxRank
// dims): its strides there into `out` (rows only for A, columns only for B,
// 0 where it broadcasts), and its stride through the depth (K).
int64_t product_strides(const std::vector<int64_t>& dims, bool of_a, long long* out) {
  std::vector<int64_t> st = strides_of(dims);
  for (size_t d = 0; d < dims.size(); ++d)
    if (dims[d] == 1) st[d] = 0;
  size_t r = dims.size();
  for (size_t d = 0; d + 2 < r; ++d) out[size_t(codegen::kMaxRank) - 2 - (r - 2 - d)] = st[d];
  out[size_t(codegen::kMaxRank) - 2] = of_a ? st[r - 2] : 0;
  out[size_t(codegen::kMaxRank) - 1] = of_a ? 0 : st[r - 1];
  return of_a ? st[r - 1] : st[r - 2];
}

// MatMulInteger and QLinearMatMul: the generated integer product.
std::unique_ptr<Op> make_integer_matmul(const plan::Plan& plan, const ir::Node& node, KernelStore& store) {
  bool q = node.op == OpKind::kQLinearMatMul;
  size_t ia = 0, ib = q ? 3 : 1, iaz = 2, ibz = q ? 5 : 3;
  auto has = [&](size_t i) { return i < node.inputs.size() && node.inputs[i] != ir::kNoValue; };
  auto dtype = [&](size_t i) { return plan.network.value(node.inputs[i]).dtype; };
  codegen::IntegerMatMulSpec spec{dtype(ia), dtype(ib), output_dtype(plan, node), has(iaz), has(ibz), q, q ? dtype(1) : DType::kFloat32,
                                std::nullopt};
  int kernel = store.add(node.name, specializing_generator(spec, codegen::integer_matmul_source));
  const ir::Node* n = &node;
  return std::make_unique<SimpleOp>(node, store, kernel, [n, q, ia, ib, iaz, ibz, has](const ShapeEnv& s, KernelLaunch& k) {
    std::vector<int64_t> a = s.of(n->inputs[ia]), b = s.of(n->inputs[ib]);
    size_t a_rank = a.size(), b_rank = b.size();
    if (a.size() == 1) a.insert(a.begin(), 1);
    if (b.size() == 1) b.push_back(1);
    ir::Shape batch = ir::broadcast_shapes(ir::shape_of({a.begin(), a.end() - 2}), ir::shape_of({b.begin(), b.end() - 2}));
    std::vector<int64_t> out = ir::shape_constants(batch);
    out.push_back(a[a.size() - 2]);
    out.push_back(b.back());
    if (out.size() > size_t(codegen::kMaxRank))
      fail(ErrorCode::kUnsupported, "node '", n->name, "': a product of rank ", out.size(), " is above the GPU limit of ", codegen::kMaxRank);
    codegen::IntegerMatMulParams p{};
    p.n = ir::checked_numel(out);
    p.rank = int64_t(out.size());
    p.depth = a.back();
    std::copy(out.begin(), out.end(), p.out_dims + (codegen::kMaxRank - out.size()));
    p.a_depth_stride = product_strides(a, true, p.strides[0]);
    p.b_depth_stride = product_strides(b, false, p.strides[1]);
    // Parameters as dims of the operand's rank (one value: all 1).
    auto param = [&](size_t i, size_t operand_rank, bool of_a, long long* strides) {
      std::vector<int64_t> dims = ir::matmul_param_dims(s.of(n->inputs[i]), operand_rank, of_a);
      dims.insert(dims.begin(), std::max<size_t>(operand_rank, 2) - dims.size(), 1);
      product_strides(dims, of_a, strides);
    };
    if (has(iaz)) param(iaz, a_rank, true, p.strides[2]);
    if (has(ibz)) param(ibz, b_rank, false, p.strides[3]);
    if (q) {
      param(1, a_rank, true, p.strides[4]);
      param(4, b_rank, false, p.strides[5]);
    }
    k.params = codegen::pack(p);
    k.args = {{n->outputs[0], 0}, {n->inputs[ia], 0}, {n->inputs[ib], 0}};
    for (size_t i : {iaz, ibz})
      if (has(i)) k.args.push_back({n->inputs[i], 0});
    if (q)
      for (size_t i : {size_t(1), size_t(4), size_t(6), size_t(7)}) k.args.push_back({n->inputs[i], 0});
  });
}

// MatMul as `kiln build` leaves it (integer types, a vector operand): the
// Einsum kernel over [batch..., M, N] summing K, a vector operand as a matrix
// of one row (A) or column (B). Those dims of 1 leave the output's layout as it is.
std::unique_ptr<Op> make_generic_matmul(const plan::Plan& plan, const ir::Node& node, KernelStore& store) {
  DType dtype = output_dtype(plan, node);
  if (dtype == DType::kBool) return nullptr;
  int kernel = store.add(node.name, [dtype](const auto& params) { return codegen::einsum_source(dtype, 2, params); });
  const ir::Node* n = &node;
  return std::make_unique<SimpleOp>(node, store, kernel, [n](const ShapeEnv& s, KernelLaunch& k) {
    std::vector<int64_t> a = s.of(n->inputs[0]), b = s.of(n->inputs[1]);
    if (a.size() == 1) a.insert(a.begin(), 1);
    if (b.size() == 1) b.push_back(1);
    if (a.back() != b[b.size() - 2])
      fail(ErrorCode::kShapeError, "node '", n->name, "' (MatMul): A's columns (", a.back(), ") differ from B's rows (", b[b.size() - 2], ")");
    ir::Shape batch = ir::broadcast_shapes(ir::shape_of({a.begin(), a.end() - 2}), ir::shape_of({b.begin(), b.end() - 2}));
    std::vector<int64_t> out = ir::shape_constants(batch);
    out.push_back(a[a.size() - 2]);
    out.push_back(b.back());
    if (out.size() > size_t(codegen::kMaxRank))
      fail(ErrorCode::kUnsupported, "node '", n->name, "' (MatMul): a product of rank ", out.size(), " is above the GPU limit of ",
           codegen::kMaxRank);
    long long a_strides[codegen::kMaxRank] = {}, b_strides[codegen::kMaxRank] = {};  // right-aligned, as out is below
    codegen::EinsumParams q{};
    q.n = ir::checked_numel(out);
    q.out_rank = int64_t(out.size());
    q.sum_rank = 1;
    q.sum_count = q.sum_dims[0] = a.back();
    q.sum_strides[0][0] = product_strides(a, true, a_strides);
    q.sum_strides[1][0] = product_strides(b, false, b_strides);
    size_t skip = size_t(codegen::kMaxRank) - out.size();
    for (size_t d = 0; d < out.size(); ++d) {
      q.out_dims[d] = out[d];
      q.out_strides[0][d] = a_strides[skip + d];
      q.out_strides[1][d] = b_strides[skip + d];
    }
    k.params = codegen::pack(q);
    k.args = {{n->outputs[0], 0}, {n->inputs[0], 0}, {n->inputs[1], 0}};
  });
}

// DFT: a thread per output element over its line of the input; the axis and
// dft_length come from constants, shape arithmetic or enqueue's readback.
std::unique_ptr<Op> make_dft(const plan::Plan& plan, const ir::Node& node, KernelStore& store) {
  DType dtype = output_dtype(plan, node);
  if (!is_floating(dtype)) return nullptr;
  int kernel = store.add(node.name, [dtype](const auto& params) { return codegen::dft_source(dtype, params); });
  const plan::Plan* p = &plan;
  const ir::Node* n = &node;
  return std::make_unique<SimpleOp>(node, store, kernel, [p, n](const ShapeEnv& s, KernelLaunch& k) {
    auto input = [&](size_t i) { return i < n->inputs.size() && n->inputs[i] != ir::kNoValue; };
    const auto &in = s.of(n->inputs[0]), &out = s.of(n->outputs[0]);
    int64_t axis = norm_axis(input(2) ? ints_of(*p, n->inputs[2], s, "the DFT axis").at(0) : -2, in.size());
    bool inverse = n->attrs.get_int("inverse", 0) != 0, onesided = n->attrs.get_int("onesided", 0) != 0;
    codegen::DftParams q{};
    q.in_len = in[size_t(axis)];
    q.out_len = out[size_t(axis)];
    q.inner = ir::checked_numel({in.begin() + axis + 1, in.end() - 1});
    q.n = ir::checked_numel({out.begin(), out.end() - 1});
    q.in_complex = in.back() == 2;
    q.mode = !inverse ? 0 : onesided ? 2 : 1;
    q.dft_len = input(1) ? ints_of(*p, n->inputs[1], s, "dft_length").at(0) : q.mode == 2 ? 2 * (q.in_len - 1) : q.in_len;
    k.params = codegen::pack(q);
    k.args = {{n->outputs[0], 0}, {n->inputs[0], 0}};
  });
}

// STFT: a thread per output element over its frame; frame_step and
// frame_length come from constants, shape arithmetic or enqueue's readback.
std::unique_ptr<Op> make_stft(const plan::Plan& plan, const ir::Node& node, KernelStore& store) {
  DType dtype = output_dtype(plan, node);
  if (!is_floating(dtype)) return nullptr;
  bool has_window = node.inputs.size() > 2 && node.inputs[2] != ir::kNoValue;
  int kernel = store.add(node.name, [dtype, has_window](const auto& params) { return codegen::stft_source(dtype, has_window, params); });
  const plan::Plan* p = &plan;
  const ir::Node* n = &node;
  return std::make_unique<SimpleOp>(node, store, kernel, [p, n, has_window](const ShapeEnv& s, KernelLaunch& k) {
    const auto &in = s.of(n->inputs[0]), &out = s.of(n->outputs[0]);
    codegen::StftParams q{};
    q.frames = out.at(1);
    q.bins = out.at(2);
    q.n = out.at(0) * q.frames * q.bins;
    q.signal_len = in.at(1);
    q.in_complex = in.at(2) == 2;
    q.step = ints_of(*p, n->inputs[1], s, "frame_step").at(0);
    bool has_length = n->inputs.size() > 3 && n->inputs[3] != ir::kNoValue;  // equal to the window's length where both are given
    q.frame_len = has_window ? s.of(n->inputs[2]).at(0) : has_length ? ints_of(*p, n->inputs[3], s, "frame_length").at(0) : q.signal_len;
    k.params = codegen::pack(q);
    k.args = {{n->outputs[0], 0}, {n->inputs[0], 0}};
    if (has_window) k.args.push_back({n->inputs[2], 0});
  });
}

// LinearAttention: the recurrence kernel, a warp per (batch, kv head, value column).
std::unique_ptr<Op> make_linear_attention(const plan::Plan& plan, const ir::Node& node, KernelStore& store, std::string& why) {
  const ir::Network& net = plan.network;
  auto has_input = [&](size_t i) { return i < node.inputs.size() && node.inputs[i] != ir::kNoValue; };
  bool keeps_state = node.outputs.size() > 1 && node.outputs[1] != ir::kNoValue;
  // Shape inference holds the packed widths constant.
  ir::LinearAttentionGeometry g = ir::linear_attention_geometry(node, net.value(node.inputs[0]).shape[2].constant(),
                                                                net.value(node.inputs[2]).shape[2].constant());
  if (g.key_dim > codegen::kLinearAttentionMaxKeyDim) {
    why = str("d_k ", g.key_dim, "; the GPU kernel holds at most ", codegen::kLinearAttentionMaxKeyDim, " rows of a state column");
    return nullptr;
  }
  DType dtype = output_dtype(plan, node);
  DType state = keeps_state ? net.value(node.outputs[1]).dtype : has_input(3) ? net.value(node.inputs[3]).dtype : dtype;
  codegen::LinearAttentionSpec spec{dtype, state, g.gated, g.delta, has_input(3), keeps_state, std::nullopt};
  int kernel = store.add(node.name, specializing_generator(spec, codegen::linear_attention_source));
  const ir::Node* n = &node;
  return std::make_unique<SimpleOp>(node, store, kernel, [n, g, spec](const ShapeEnv& s, KernelLaunch& k) {
    const auto& q = s.of(n->inputs[0]);
    int64_t batch = q[0], steps = q[1], hk = g.kv_heads;
    require_input_dims(*n, s, 1, {batch, steps, hk * g.key_dim});
    require_input_dims(*n, s, 2, {batch, steps, hk * g.value_dim});
    if (spec.has_past) require_input_dims(*n, s, 3, {batch, hk, g.key_dim, g.value_dim});
    // decay and beta: [B, T, w] with the width that shape inference accepted.
    auto gate_width = [&](bool used, size_t i) {
      if (!used) return int64_t(0);
      int64_t width = s.of(n->inputs[i]).back();
      require_input_dims(*n, s, i, {batch, steps, width});
      return width;
    };
    codegen::LinearAttentionParams p{ir::checked_numel({32, batch, hk, g.value_dim}), batch, steps, hk, g.q_heads / hk, g.key_dim,
                                     g.value_dim, gate_width(spec.gated, 4), gate_width(spec.delta, 5), codegen::double_bits(g.scale)};
    k.params = codegen::pack(p);
    k.args = {{n->outputs[0], 0}};
    if (spec.has_present) k.args.push_back({n->outputs[1], 0});
    for (ir::ValueId v : n->inputs)
      if (v != ir::kNoValue) k.args.push_back({v, 0});
  });
}

// Det: a block per matrix; matrices larger than the kernel's shared memory holds are refused.
std::unique_ptr<Op> make_det(const plan::Plan& plan, const ir::Node& node, KernelStore& store, std::string& why) {
  DType dtype = output_dtype(plan, node);
  if (!is_floating(dtype)) return nullptr;
  const ir::Dim& size = plan.network.value(node.inputs[0]).shape.back();
  if (size.is_constant() && size.constant() > codegen::kDetMaxSize) {
    why = str("matrices of ", size.constant(), " rows; the GPU kernel takes at most ", codegen::kDetMaxSize);
    return nullptr;
  }
  int kernel = store.add(node.name, [dtype](const auto& params) { return codegen::det_source(dtype, params); });
  const ir::Node* n = &node;
  return std::make_unique<SimpleOp>(node, store, kernel, [n](const ShapeEnv& s, KernelLaunch& k) {
    const auto& x = s.of(n->inputs[0]);
    int64_t rows = x[x.size() - 2], cols = x.back();
    if (rows != cols || cols > codegen::kDetMaxSize)
      fail(ErrorCode::kUnsupported, "node '", n->name, "' (Det): matrices of ", rows, " x ", cols, "; the GPU kernel takes square ones of at most ",
           codegen::kDetMaxSize, " rows");
    int64_t matrices = ir::checked_numel({x.begin(), x.end() - 2});
    k.params = codegen::pack(codegen::DetParams{matrices, cols});
    k.grid = unsigned(std::clamp<int64_t>(matrices, 1, 65535));  // a block per matrix; the kernel loops past the grid
    k.args = {{n->outputs[0], 0}, {n->inputs[0], 0}};
  });
}

}  // namespace

MatmulCall make_float_product(const PrepareContext& ctx, const ir::Node& node, DType dtype, PtrRef a, PtrRef b, PtrRef d,
                              int64_t rows, int64_t cols, int64_t depth) {
  std::string where = str("node '", node.name, "' (", ir::op_name(node.op), ")");
  auto desc = std::make_shared<LtDescriptors>();
  KILN_CUBLAS(cublasLtMatmulDescCreate(&desc->op, CUBLAS_COMPUTE_32F, CUDA_R_32F), where);
  cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  KILN_CUBLAS(cublasLtMatmulDescSetAttribute(desc->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)), where);
  KILN_CUBLAS(cublasLtMatmulDescSetAttribute(desc->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)), where);
  // Column-major view, as FusedMatMul with trans_b: A_cm = B^T (cols x depth), B_cm = A (depth x rows), D = D^T (cols x rows).
  cudaDataType_t type = cuda_type(dtype);
  layout(&desc->a, type, depth, cols, depth, 1, 0, where);
  layout(&desc->b, type, depth, rows, depth, 1, 0, where);
  layout(&desc->c, CUDA_R_32F, cols, rows, cols, 1, 0, where);
  choose_algorithm(ctx, *desc, where, str(dtype_name(dtype), " [", rows, "x", depth, "] @ [", depth, "x", cols, "] into float32"));
  MatmulCall call;
  call.descriptors = desc;
  call.a = b;
  call.b = a;
  call.c = d;
  call.d = d;
  call.node = &node;
  return call;
}

void launch_matmul(const MatmulCall& call, void* a, void* b, void* c, void* d, void* bias, cublasLtHandle_t lt,
                   void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  auto* desc = static_cast<LtDescriptors*>(call.descriptors.get());
  // The message is built only on failure: enqueue stays free of host allocations.
  auto where = [&] { return str("node '", call.node->name, "' (", ir::op_name(call.node->op), ")"); };
  if (bias) KILN_CUBLAS(cublasLtMatmulDescSetAttribute(desc->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)), where());
  float alpha32 = float(call.alpha), beta32 = float(call.beta);
  const void* alpha = call.f64 ? static_cast<const void*>(&call.alpha) : &alpha32;
  const void* beta = call.f64 ? static_cast<const void*>(&call.beta) : &beta32;
  KILN_CUBLAS(cublasLtMatmul(lt, desc->op, alpha, a, desc->a, b, desc->b, beta, c, desc->c, d, desc->c, &desc->algo, workspace,
                             workspace_bytes, stream),
              where());
}


std::unique_ptr<Op> make_linalg(const plan::Plan& plan, const ir::Node& node, KernelStore& store, std::string& why, int arch) {
  switch (node.op) {
    case OpKind::kMatMul: return make_generic_matmul(plan, node, store);
    case OpKind::kFusedMatMul: return make_matmul(plan, node, store, why);
    case OpKind::kAttention: return make_attention(plan, node, store, why, arch);
    case OpKind::kEinsum: return make_einsum(plan, node, store, why);
    case OpKind::kMatMulInteger: case OpKind::kQLinearMatMul: return make_integer_matmul(plan, node, store);
    case OpKind::kDFT: return make_dft(plan, node, store);
    case OpKind::kSTFT: return make_stft(plan, node, store);
    case OpKind::kLinearAttention: return make_linear_attention(plan, node, store, why);
    case OpKind::kDet: return make_det(plan, node, store, why);
    default: return nullptr;  // describe_linalg leaves Gemm to the builder
  }
}

GpuLowering describe_linalg(OpKind op) {
  using K = GpuLowering::Kind;
  switch (op) {
    case OpKind::kMatMul:
      return {K::kKernel, str("`kiln build` turns floating-point MatMuls of rank 2 and more into FusedMatMul; the others (integer "
                              "types, a vector operand) run the Einsum kernel, a thread per output element, integers wrapping; "
                              "any type but bool, output rank ", codegen::kMaxRank, " at most")};
    case OpKind::kGemm: return {K::kByBuilder, "`kiln build` turns floating-point Gemms into FusedMatMul"};
    case OpKind::kEinsum:
      return {K::kKernel, str("generic kernel, a thread per output element; any type but bool, float accumulation for fp16 and bf16; "
                              "at most ", codegen::kEinsumMaxOperands, " operands, ", codegen::kMaxRank, " output and ",
                              codegen::kMaxRank, " summed labels")};
    case OpKind::kMatMulInteger: case OpKind::kQLinearMatMul:
      return {K::kKernel, str("generated kernel, a thread per output element, int32 accumulation; int8/uint8, zero points and ",
                              "scales per tensor, per row of A or per column of B; output rank ", codegen::kMaxRank, " at most")};
    case OpKind::kDet:
      return {K::kKernel, str("a block per matrix, LU with partial pivoting in float64 in shared memory; floating types, matrices of at most ",
                              codegen::kDetMaxSize, " rows")};
    case OpKind::kFusedMatMul:
      return {K::kKernel, "cuBLASLt, or a generated kernel for few rows, with the epilogue fused; floating types"};
    case OpKind::kAttention:
      return {K::kKernel, str("fused attention kernel, on tensor cores for fp16 and bf16 from sm_80; fp32, fp16 or bf16, "
                              "heads a constant size of at most ", codegen::kAttentionMaxHeadDim,
                              "; causal, and a mask of any values read where it lies (added, or bool with a fill)")};
    case OpKind::kDFT:
      return {K::kKernel, "a thread per output element, a direct sum over the DFT length (O(n^2) a line); floating types, float "
                          "accumulation for fp16 and bf16; an axis or dft_length that is data is read back by enqueue"};
    case OpKind::kSTFT:
      return {K::kKernel, "a thread per output element, a direct sum over its frame; floating types, float accumulation for fp16 "
                          "and bf16; a frame_step or frame_length that is data is read back by enqueue"};
    case OpKind::kLinearAttention:
      return {K::kKernel, str("recurrence kernel, a warp per (batch, kv head, value column) holding the state's column in "
                              "registers, sequential over the tokens; floating types, float accumulation; d_k at most ",
                              codegen::kLinearAttentionMaxKeyDim)};
    default: return {};
  }
}

}  // namespace kiln::runtime
