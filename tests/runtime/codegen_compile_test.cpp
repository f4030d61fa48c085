// Every kernel template, in every dtype and in generic and specialized form,
// must compile with NVRTC for sm_80 and sm_90. No GPU needed.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>

#include "codegen/codegen.h"
#include "jit/nvrtc.h"
#include "kiln/error.h"

namespace kiln::codegen {
namespace {

using ir::OpKind;

const DType kFloats[] = {DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kFloat64};

Params some_params() {
  Params p;
  p.v[0] = 24;
  p.v[1] = 3;
  p.v[8] = 2, p.v[9] = 3, p.v[10] = 4;
  for (int i = 16; i < 64; ++i) p.v[i] = (i % 5) + 1;
  return p;
}

class CompileForArch : public ::testing::TestWithParam<int> {
 protected:
  void compiles(const std::string& name, const std::string& source) {
    SCOPED_TRACE(name);
    try {
      std::string cubin = jit::compile_to_cubin({name, source, GetParam()});
      EXPECT_GT(cubin.size(), 100u);
    } catch (const Error& e) {
      ADD_FAILURE() << e.what() << "\n---- source ----\n" << source;
    }
  }
};

TEST_P(CompileForArch, ElementwiseEveryOpAndDtype) {
  // One program that uses every fusable op once, over three inputs.
  std::vector<ir::FusedInstruction> program;
  int n_inputs = 3;
  for (int op = 0; op < ir::op_count(); ++op) {
    if (!ir::is_fusable_elementwise(OpKind(op))) continue;
    ir::FusedInstruction in;
    in.op = OpKind(op);
    int prev = n_inputs + int(program.size()) - 1;
    int a = program.empty() ? 0 : prev;
    if (in.op == OpKind::kWhere) {
      in.args[0] = 2, in.args[1] = a, in.args[2] = 1;
    } else if (in.op == OpKind::kClip) {
      in.args[0] = a, in.args[1] = 1, in.args[2] = 0;
    } else {
      in.args[0] = a, in.args[1] = 1;
    }
    auto params = ir::fused_param_names(in.op);
    for (size_t i = 0; i < params.size(); ++i) in.params[i] = params[i].fallback;
    program.push_back(in);
  }
  for (DType d : kFloats) {
    for (bool specialize : {false, true}) {
      ElementwiseSpec spec{program, {d, d, DType::kBool}, d, std::nullopt};
      if (specialize) spec.specialize = some_params();
      compiles(str("elementwise_", dtype_name(d), specialize ? "_spec" : ""), elementwise_source(spec));
    }
  }
}

TEST_P(CompileForArch, SingleOpKernelsForEveryElementwiseOp) {
  // The single-op form the runtime uses for ops it does not fuse, incl. bool results.
  std::string all;
  for (int op = 0; op < ir::op_count(); ++op) {
    if (!ir::is_elementwise(OpKind(op))) continue;
    ir::FusedInstruction in;
    in.op = OpKind(op);
    bool logical = in.op == OpKind::kAnd || in.op == OpKind::kOr || in.op == OpKind::kXor || in.op == OpKind::kNot;
    DType d = logical ? DType::kBool : DType::kFloat16;
    std::vector<DType> inputs{d, d};
    in.args[0] = 0, in.args[1] = 1;
    if (in.op == OpKind::kWhere) inputs = {DType::kBool, d, d}, in.args[2] = 2;
    bool to_bool = logical || in.op == OpKind::kEqual || in.op == OpKind::kLess || in.op == OpKind::kLessOrEqual ||
                   in.op == OpKind::kGreater || in.op == OpKind::kGreaterOrEqual || in.op == OpKind::kIsNaN || in.op == OpKind::kIsInf;
    compiles(str("single_", ir::op_name(in.op)), elementwise_source({{in}, inputs, to_bool ? DType::kBool : d, std::nullopt}));
  }
  for (DType d : {DType::kInt64, DType::kInt32, DType::kUInt8, DType::kInt8})
    for (OpKind op : {OpKind::kAdd, OpKind::kMod, OpKind::kDiv, OpKind::kMax, OpKind::kPow, OpKind::kAbs}) {
      ir::FusedInstruction in;
      in.op = op;
      in.args[0] = 0, in.args[1] = 1;
      compiles(str("int_", ir::op_name(op), "_", dtype_name(d)), elementwise_source({{in}, {d, d}, d, std::nullopt}));
    }
}

TEST_P(CompileForArch, CastsBetweenDtypes) {
  for (DType from : kAllDTypes)
    for (DType to : {DType::kFloat32, DType::kFloat16, DType::kInt64, DType::kBool})
      compiles(str("cast_", dtype_name(from), "_", dtype_name(to)), cast_source(from, to, std::nullopt));
  compiles("cast_spec", cast_source(DType::kFloat32, DType::kFloat16, some_params()));
}

TEST_P(CompileForArch, RowsAndReductions) {
  for (DType d : kFloats) {
    compiles(str("layernorm_stats_", dtype_name(d)), row_source({RowOp::kLayerNorm, d, true, false, 1e-5, std::nullopt, true}));
    for (LineOp op : {LineOp::kArgMax, LineOp::kArgMin, LineOp::kCumSum})
      compiles(str("line_", int(op), "_", dtype_name(d)), line_source(op, d, std::nullopt));
    compiles(str("trilu_", dtype_name(d)), trilu_source(d, std::nullopt));
    for (RowOp op : {RowOp::kSoftmax, RowOp::kLogSoftmax, RowOp::kLayerNorm, RowOp::kHardmax})
      for (bool specialize : {false, true})
        compiles(str("rows_", int(op), "_", dtype_name(d)),
                 row_source({op, d, true, true, 1e-5, specialize ? std::optional<Params>(some_params()) : std::nullopt}));
    for (int op = 0; op <= int(ReduceOp::kLogSumExp); ++op)
      compiles(str("reduce_", op, "_", dtype_name(d)), reduce_source({ReduceOp(op), d, std::nullopt}));
  }
  compiles("reduce_spec", reduce_source({ReduceOp::kMean, DType::kFloat16, some_params()}));
  compiles("argmax_int64", line_source(LineOp::kArgMax, DType::kInt64, std::nullopt));
  compiles("cumsum_int32", line_source(LineOp::kCumSum, DType::kInt32, std::nullopt));
}

TEST_P(CompileForArch, MovementAndWindows) {
  for (DType d : kAllDTypes) compiles(str("remap_", dtype_name(d)), remap_source({d, std::nullopt}));
  compiles("remap_spec", remap_source({DType::kFloat16, some_params()}));
  for (DType d : kFloats) compiles(str("resize_", dtype_name(d)), resize_source(d, std::nullopt));
  for (bool elements : {false, true})
    for (DType index : {DType::kInt64, DType::kInt32})
      compiles(str("gather_", elements, "_", dtype_name(index)), gather_source(DType::kFloat32, index, elements, std::nullopt));
  for (DType d : kFloats)
    for (WindowOp op : {WindowOp::kMaxPool, WindowOp::kAvgPool, WindowOp::kConv, WindowOp::kConvTranspose})
      compiles(str("window_", int(op), "_", dtype_name(d)), window_source({op, d, true, std::nullopt}));
}

TEST_P(CompileForArch, SkinnyMatmulVariants) {
  for (DType d : {DType::kFloat32, DType::kFloat16, DType::kBFloat16})
    for (bool trans : {false, true})
      for (const char* act : {"none", "relu", "gelu", "gelu_tanh", "sigmoid", "tanh"})
        compiles(str("skinny_", dtype_name(d), trans ? "_t_" : "_", act), skinny_matmul_source({d, trans, true, trans, act, std::nullopt}));
  compiles("skinny_spec", skinny_matmul_source({DType::kFloat16, false, false, false, "none", some_params()}));
}

TEST_P(CompileForArch, AttentionForEveryFloatType) {
  for (DType d : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) compiles(str("attention_", dtype_name(d)), attention_source(d, std::nullopt));
  compiles("attention_spec", attention_source(DType::kFloat16, some_params()));
}

// Parameters of a self-attention over a packed [B, S, 3, H, D] projection, as the runtime fills them.
Params attention_params(int64_t batch, int64_t heads, int64_t seq, int64_t head_dim, bool causal, int64_t warps, int64_t vector_bits) {
  Params p;
  const int64_t row = 3 * heads * head_dim;
  p.v[0] = batch * heads * ((seq + 16 * warps - 1) / (16 * warps));
  p.v[1] = batch, p.v[2] = heads, p.v[3] = seq, p.v[4] = seq, p.v[5] = head_dim;
  double scale = 0.125;
  std::memcpy(&p.v[6], &scale, sizeof scale);
  p.v[7] = causal;
  for (int64_t i = 0; i < 3; ++i) {  // q, k, v
    int64_t view[5] = {i * heads * head_dim, seq * row, head_dim, row, 1};
    std::copy(view, view + 5, &p.v[8 + 5 * i]);
  }
  int64_t out[5] = {0, seq * heads * head_dim, head_dim, heads * head_dim, 1};
  std::copy(out, out + 5, &p.v[23]);
  p.v[28] = vector_bits;
  p.v[29] = warps;
  return p;
}

TEST_P(CompileForArch, AttentionOnTensorCores) {
  // Head dims below, at and between multiples of 16 (zero padding), up to the
  // 128 whose accumulators fill the most registers.
  for (DType d : {DType::kFloat16, DType::kBFloat16})
    for (int64_t head_dim : {24, 64, 80, 128})
      compiles(str("attention_mma_", dtype_name(d), "_", head_dim), attention_mma_source(d, head_dim, std::nullopt));
  compiles("attention_mma_vit_spec", attention_mma_source(DType::kFloat16, 64, attention_params(1, 6, 197, 64, false, 1, 15)));
  compiles("attention_mma_scalar_loads_spec", attention_mma_source(DType::kFloat16, 96, attention_params(2, 4, 33, 96, true, 2, 0)));
  compiles("attention_mma_causal_spec", attention_mma_source(DType::kBFloat16, 128, attention_params(1, 1, 4096, 128, true, 4, 15)));
}

TEST_P(CompileForArch, ErrorsNameTheKernelAndShowTheLine) {
  try {
    jit::compile_to_cubin({"broken_kernel", "extern \"C\" __global__ void k() {\n  int x = undefined_thing;\n}\n", GetParam()});
    FAIL();
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("broken_kernel"), std::string::npos) << msg;
    EXPECT_NE(msg.find("line 2:   int x = undefined_thing;"), std::string::npos) << msg;
  }
}

INSTANTIATE_TEST_SUITE_P(Arch, CompileForArch, ::testing::Values(80, 90),
                         [](const auto& info) { return "sm_" + std::to_string(info.param); });

}  // namespace
}  // namespace kiln::codegen
