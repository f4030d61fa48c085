// Every kernel template, in every dtype and in generic and specialized form,
// must compile with NVRTC for sm_80 and sm_90; the parameter structs the host
// packs must reach the kernels field by field. No GPU needed.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "codegen/codegen.h"
#include "jit/nvrtc.h"
#include "kiln/error.h"

namespace kiln::codegen {
namespace {

using ir::OpKind;

const DType kFloats[] = {DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kFloat64};
const DType kIntegers[] = {DType::kInt64,  DType::kInt32,  DType::kInt16,  DType::kInt8,
                           DType::kUInt64, DType::kUInt32, DType::kUInt16, DType::kUInt8};

Params some_params() {
  Params p;
  p.v[0] = 24;
  p.v[1] = 3;
  p.v[8] = 2, p.v[9] = 3, p.v[10] = 4;
  for (int i = 16; i < 64; ++i) p.v[i] = (i % 5) + 1;
  return p;
}

// A 3x3 window, stride 2, pad 1 over 2 images of 3 channels of 9x9.
WindowParams small_2d_window() {
  WindowParams window{};
  window.n = 2 * 3 * 4 * 5;
  window.spatial_rank = 2;
  window.channels = window.out_channels = 3;
  for (int i = 0; i < 2; ++i) window.in_size[i] = 9, window.out_size[i] = 4 + i, window.kernel[i] = 3, window.strides[i] = 2,
                              window.dilations[i] = 1, window.pads_begin[i] = 1;
  return window;
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
    bool bits = in.op == OpKind::kBitShift || in.op == OpKind::kBitwiseAnd || in.op == OpKind::kBitwiseOr ||
                in.op == OpKind::kBitwiseXor || in.op == OpKind::kBitwiseNot;  // integer types only
    DType d = logical ? DType::kBool : bits ? DType::kInt32 : DType::kFloat16;
    std::vector<DType> inputs{d, d};
    in.args[0] = 0, in.args[1] = 1;
    if (in.op == OpKind::kWhere) inputs = {DType::kBool, d, d}, in.args[2] = 2;
    bool to_bool = logical || in.op == OpKind::kEqual || in.op == OpKind::kLess || in.op == OpKind::kLessOrEqual ||
                   in.op == OpKind::kGreater || in.op == OpKind::kGreaterOrEqual || in.op == OpKind::kIsNaN || in.op == OpKind::kIsInf;
    compiles(str("single_", ir::op_name(in.op)), elementwise_source({{in}, inputs, to_bool ? DType::kBool : d, std::nullopt}));
  }
  for (DType d : kIntegers)
    for (OpKind op : {OpKind::kAdd, OpKind::kMod, OpKind::kDiv, OpKind::kMax, OpKind::kPow, OpKind::kAbs, OpKind::kLess,
                      OpKind::kSign, OpKind::kRelu, OpKind::kClip}) {
      ir::FusedInstruction in;
      in.op = op;
      in.args[0] = 0, in.args[1] = 1;
      DType out = op == OpKind::kLess ? DType::kBool : d;
      compiles(str("int_", ir::op_name(op), "_", dtype_name(d)), elementwise_source({{in}, {d, d}, out, std::nullopt}));
    }
}

// uint64 does not fit long long: its values compute in unsigned long long
// (order, division, right shifts), narrower integers widen to long long.
TEST(ElementwiseSource, Uint64ComputesUnsigned) {
  for (DType d : kIntegers) {
    ir::FusedInstruction in;
    in.op = OpKind::kLess;
    in.args[0] = 0, in.args[1] = 1;
    std::string source = elementwise_source({{in}, {d, d}, DType::kBool, std::nullopt});
    bool unsigned_values = source.find("const unsigned long long v0 = (unsigned long long)r0;") != std::string::npos;
    bool signed_values = source.find("const long long v0 = (long long)r0;") != std::string::npos;
    EXPECT_EQ(unsigned_values, d == DType::kUInt64) << dtype_name(d);
    EXPECT_EQ(signed_values, d != DType::kUInt64) << dtype_name(d);
  }
}

TEST_P(CompileForArch, BitOpsAndModForEveryIntegerDtype) {
  // params[0]: BitShift's direction (1 LEFT), Mod's fmod.
  for (DType d : kIntegers)
    for (OpKind op : {OpKind::kBitShift, OpKind::kBitwiseAnd, OpKind::kBitwiseOr, OpKind::kBitwiseXor, OpKind::kBitwiseNot,
                      OpKind::kMod})
      for (double param : {0.0, 1.0}) {
        if (param != 0 && op != OpKind::kBitShift && op != OpKind::kMod) continue;
        ir::FusedInstruction in;
        in.op = op;
        in.args[0] = 0;
        if (op != OpKind::kBitwiseNot) in.args[1] = 1;
        in.params[0] = param;
        std::vector<DType> inputs(op == OpKind::kBitwiseNot ? 1 : 2, d);
        for (bool specialize : {false, true})
          compiles(str("int_", ir::op_name(op), "_", param, "_", dtype_name(d), specialize ? "_spec" : ""),
                   elementwise_source({{in}, inputs, d, specialize ? std::optional<Params>(some_params()) : std::nullopt}));
      }
}

// Each vector width (16 one-byte lanes down to 2 eight-byte ones, mixed
// dtypes), generic and specialized for shapes that take each path: packs over
// contiguous inputs with a tail, packs along a broadcast's innermost dim, a
// scalar operand, and the element path.
TEST_P(CompileForArch, ElementwisePathsForEveryVectorWidth) {
  struct Kernel {
    std::vector<DType> inputs;
    DType output;
    OpKind op;
  };
  const DType h = DType::kFloat16, f = DType::kFloat32, b = DType::kBool;
  std::vector<Kernel> kernels = {{{h, h}, h, OpKind::kAdd},           {{b, h, h}, h, OpKind::kWhere},
                                 {{f, f}, f, OpKind::kMul},           {{DType::kBFloat16, f}, DType::kBFloat16, OpKind::kSub},
                                 {{DType::kFloat64, DType::kFloat64}, DType::kFloat64, OpKind::kDiv},
                                 {{DType::kInt64, f}, f, OpKind::kAdd}, {{b, b}, b, OpKind::kAnd},
                                 {{DType::kUInt8, DType::kUInt8}, DType::kUInt8, OpKind::kMax}};
  std::vector<std::pair<std::vector<int64_t>, std::vector<int64_t>>> shapes = {
      {{1003}, {1003}}, {{2, 49, 96}, {96}}, {{1003}, {1}}, {{2, 5, 7}, {7}}};
  for (const Kernel& k : kernels) {
    ir::FusedInstruction in;
    in.op = k.op;
    for (size_t i = 0; i < k.inputs.size(); ++i) in.args[i] = int(i);
    int width = elementwise_vector_width(k.inputs, k.output);
    size_t widest = dtype_size(k.output);
    for (DType d : k.inputs) widest = std::max(widest, dtype_size(d));
    EXPECT_EQ(width * int(widest), 16);
    std::string name = str(ir::op_name(k.op), "_", dtype_name(k.inputs[0]), "_w", width);
    compiles(name, elementwise_source({{in}, k.inputs, k.output, std::nullopt}));
    compiles("cast_" + name, cast_source(k.inputs[0], k.output, true, std::nullopt));
    for (const auto& [out, operand] : shapes) {
      std::vector<std::vector<int64_t>> inputs(k.inputs.size(), out);
      inputs.back() = operand;
      Params p = pack(elementwise_params(out, inputs, width));
      compiles(str(name, "_spec_", out.size(), "d_", operand.back()), elementwise_source({{in}, k.inputs, k.output, p}));
    }
    compiles("cast_spec_" + name, cast_source(k.inputs[0], k.output, true, pack(elementwise_params({7, 96}, {{96}}, width))));
  }
}

TEST_P(CompileForArch, GroupNormAndLrnForEveryFloatDtype) {
  for (DType d : kFloats)
    for (bool specialize : {false, true}) {
      std::optional<Params> spec = specialize ? std::optional<Params>(some_params()) : std::nullopt;
      compiles(str("group_norm_", dtype_name(d), specialize ? "_spec" : ""), group_norm_source({d, 1.2345678e-5, spec}));
      compiles(str("lrn_", dtype_name(d), specialize ? "_spec" : ""), lrn_source({d, 2e-4, 0.75, 2.0, 4, spec}));
    }
}

// NonZero tests zero on each dtype's bits: one kernel per element size, the
// float ones masking the sign (so -0 counts as zero).
TEST_P(CompileForArch, NonZeroForEveryDtype) {
  for (DType d : kAllDTypes) {
    std::string source = nonzero_source(d);
    compiles(str("nonzero_", dtype_name(d)), source);
    bool masks_sign = source.find("(x[i] & 0x7f") != std::string::npos;
    EXPECT_EQ(masks_sign, is_floating(d)) << dtype_name(d);
  }
  EXPECT_NE(nonzero_source(DType::kFloat32).find("const NonZeroParams& prm = *reinterpret_cast<const NonZeroParams*>(&p);"),
            std::string::npos);
}

// Compress: one scan kernel, one gather per element size. Unique's three
// kernels for every dtype (floats compare by value, NaN equal to NaN, the
// others by their bits' order).
TEST_P(CompileForArch, CompressAndUniqueForEveryDtype) {
  compiles("compress_scan", compress_scan_source());
  EXPECT_NE(compress_scan_source().find("kiln_block_scan"), std::string::npos);
  for (DType d : kAllDTypes) {
    compiles(str("compress_gather_", dtype_name(d)), compress_gather_source(d));
    for (UniqueKernel k : {UniqueKernel::kSort, UniqueKernel::kGroups, UniqueKernel::kOutputs}) {
      std::string source = unique_source(k, d);
      compiles(str("unique_", int(k), "_", dtype_name(d)), source);
      EXPECT_EQ(source.find("na != nb") != std::string::npos || source.find("na || nb") != std::string::npos, is_floating(d))
          << dtype_name(d);
    }
  }
}

// NonMaxSuppression's two kernels for boxes and thresholds of every float type.
TEST_P(CompileForArch, NonMaxSuppressionForEveryFloatDtype) {
  for (DType d : kFloats)
    for (DType t : kFloats) {
      for (NmsKernel k : {NmsKernel::kSelect, NmsKernel::kList})
        compiles(str("nms_", int(k), "_", dtype_name(d), "_", dtype_name(t)), non_max_suppression_source({k, d, t, t}));
    }
  compiles("nms_mixed_thresholds", non_max_suppression_source({NmsKernel::kSelect, DType::kFloat16, DType::kFloat32, DType::kBFloat16}));
}

// GridSample in each mode and padding (compiled in when specialized) with
// every grid dtype for float32 X and X's own otherwise; RoiAlign in both
// modes; AffineGrid, Col2Im and MaxRoiPool.
TEST_P(CompileForArch, VisionKernelsForEveryFloatDtype) {
  for (DType d : kFloats)
    for (bool specialize : {false, true}) {
      std::string suffix = str(dtype_name(d), specialize ? "_spec" : "");
      for (DType g : kFloats) {
        if (g != d && d != DType::kFloat32) continue;
        for (long long mode = 0; mode < (specialize ? 3 : 1); ++mode) {
          std::optional<Params> spec;
          if (specialize) spec = pack(GridSampleParams{3 * 5 * 7 * 2, 2, 3, mode, 2 - mode, mode % 2, {4, 6, 0}, {5, 7, 0}});
          compiles(str("grid_sample_", suffix, "_grid_", dtype_name(g), "_mode", mode), grid_sample_source({d, g, spec}));
        }
      }
      for (long long max_mode : {0, 1}) {
        std::optional<Params> spec;
        if (specialize) spec = pack(RoiAlignParams{2 * 3 * 7 * 7, 2, 3, 33, 17, 7, 7, max_mode ? 2 : 0, max_mode, max_mode, double_bits(0.25)});
        compiles(str("roi_align_", suffix, max_mode ? "_max" : "_avg"), roi_align_source(d, spec));
      }
      std::optional<Params> spec;
      if (specialize) spec = pack(AffineGridParams{2 * 7 * 33, 2, 1, {7, 33, 0}});
      compiles(str("affine_grid_", suffix), affine_grid_source(d, spec));
      if (specialize) spec = pack(Col2ImParams{2 * 3 * 7 * 33, 2, 6, 68, {7, 33, 0}, {2, 3, 0}, {4, 17, 0}, {2, 2, 1}, {1, 1, 1}, {1, 1, 0}});
      compiles(str("col2im_", suffix), col2im_source(d, spec));
      if (specialize) spec = pack(MaxRoiPoolParams{5 * 3 * 7 * 6, 2, 3, 33, 17, 7, 6, double_bits(0.0625)});
      compiles(str("max_roi_pool_", suffix), max_roi_pool_source(d, spec));
    }
}

// A recurrent layer's spec: every optional input and output present or none.
RecurrentSpec recurrent_spec(OpKind op, DType d, RecurrentKernel kernel, bool all, const ir::Attributes& a) {
  ir::Node node;
  node.name = "layer";
  node.op = op;
  node.attrs = a;
  RecurrentSpec spec;
  spec.op = op;
  spec.dtype = d;
  spec.kernel = kernel;
  spec.setup = ir::recurrent_setup(node);
  bool lstm = op == OpKind::kLSTM;
  spec.has_y = spec.has_y_h = spec.has_bias = spec.has_lens = spec.has_initial_h = all;
  spec.has_y_c = spec.has_initial_c = spec.has_peephole = all && lstm;
  return spec;
}

// RNN, GRU (both reset orders, both halves of a step) and LSTM, with every
// activation ONNX lists (alpha and beta compiled in), clip, input_forget,
// both directions and layouts, and all or none of the optional inputs and
// outputs; the init kernel also specialized (step kernels never are).
TEST_P(CompileForArch, RecurrentKernelsForEveryFloatDtype) {
  using K = RecurrentKernel;
  auto a = [](std::initializer_list<std::pair<const char*, ir::AttrValue>> list) {
    ir::Attributes out;
    for (auto& [name, value] : list) out.set(name, value);
    return out;
  };
  auto strings = [](std::vector<std::string> v) { return ir::AttrValue(std::move(v)); };
  const std::string bidirectional = "bidirectional";
  ir::Attributes rnn = a({{"direction", bidirectional}, {"activations", strings({"Relu", "Affine"})},
                          {"activation_alpha", std::vector<double>{0.5}}, {"activation_beta", std::vector<double>{0.25}}});
  ir::Attributes gru = a({{"direction", bidirectional}, {"layout", int64_t(1)}, {"clip", 3.5},
                          {"activations", strings({"HardSigmoid", "LeakyRelu", "ThresholdedRelu", "ScaledTanh"})}});
  ir::Attributes gru_linear = a({{"direction", std::string("reverse")}, {"linear_before_reset", int64_t(1)}});
  ir::Attributes lstm = a({{"direction", bidirectional}, {"input_forget", int64_t(1)}, {"clip", 1.0},
                           {"activations", strings({"Sigmoid", "Tanh", "Elu", "Softsign", "Softplus", "Tanh"})}});
  struct Case {
    const char* name;
    OpKind op;
    K kernel;
    const ir::Attributes* attrs;
  };
  const Case cases[] = {{"rnn_step", OpKind::kRNN, K::kStep, &rnn},           {"gru_reset", OpKind::kGRU, K::kGruReset, &gru},
                        {"gru_step", OpKind::kGRU, K::kStep, &gru},           {"gru_linear_step", OpKind::kGRU, K::kStep, &gru_linear},
                        {"lstm_step", OpKind::kLSTM, K::kStep, &lstm},        {"lstm_init", OpKind::kLSTM, K::kInit, &lstm},
                        {"gru_init", OpKind::kGRU, K::kInit, &gru}};
  for (DType d : {DType::kFloat32, DType::kFloat16, DType::kBFloat16})
    for (const Case& c : cases)
      for (bool all : {true, false}) {
        if (!all && c.kernel == K::kGruReset) continue;  // its only variant reads what the step reads
        RecurrentSpec spec = recurrent_spec(c.op, d, c.kernel, all, *c.attrs);
        compiles(str("recurrent_", c.name, "_", dtype_name(d), all ? "_all" : "_none"), recurrent_source(spec));
        if (c.kernel == K::kInit) {
          // seq 9, batch 5, hidden 33, two directions, four gates (the GRU reads only h).
          const long long h_offset = 2 * 9 * 5 * 132, c_offset = h_offset + 2 * 2 * 5 * 33;
          spec.specialize = pack(RecurrentParams{2 * 5 * 33, 0, 9, 5, 33, 1, h_offset, c_offset, c_offset + 2 * 5 * 33});
          compiles(str("recurrent_", c.name, "_", dtype_name(d), all ? "_all" : "_none", "_spec"), recurrent_source(spec));
        }
      }
}

// CausalConvWithState with and without bias, past_state and SiLU; LinearAttention
// in every update rule, with and without past_state and present_state, a
// state type of its own.
TEST_P(CompileForArch, StateSpaceKernelsForEveryFloatDtype) {
  for (DType d : kFloats)
    for (bool specialize : {false, true}) {
      std::string suffix = str(dtype_name(d), specialize ? "_spec" : "");
      std::optional<Params> conv;
      if (specialize) conv = pack(CausalConvParams{2 * 33 * 7 + 2 * 33 * 3, 2 * 33 * 7, 33, 7, 4});
      for (int variant = 0; variant < 8; ++variant)
        compiles(str("causal_conv_", suffix, "_", variant),
                 causal_conv_source({d, (variant & 1) != 0, (variant & 2) != 0, (variant & 4) != 0, conv}));
      std::optional<Params> attention;
      if (specialize) attention = pack(LinearAttentionParams{32 * 2 * 3 * 65, 2, 7, 3, 2, 129, 65, 3, 1, double_bits(0.125)});
      for (int rule = 0; rule < 4; ++rule)
        for (DType state : {d, DType::kFloat32}) {
          LinearAttentionSpec spec{d, state, (rule & 1) != 0, (rule & 2) != 0, rule != 0, rule != 3, attention};
          compiles(str("linear_attention_", suffix, "_rule", rule, "_state_", dtype_name(state)), linear_attention_source(spec));
        }
    }
}

// DeformConv with and without bias and mask; the random ops for every float
// type they make, Bernoulli into every type, Multinomial into int32 and int64.
TEST_P(CompileForArch, DeformConvAndRandomKernels) {
  for (bool specialize : {false, true}) {
    std::string suffix = specialize ? "_spec" : "";
    std::optional<Params> conv, random;
    if (specialize) {
      conv = pack(DeformConvParams{2 * 5 * 7 * 33, 4, 5, 1, 2, 9, 35, 7, 33, 3, 3, 1, 1, 1, 1, 0, 0});
      random = pack(RandomParams{1001, 0x1234567890abcdefLL, double_bits(-1.0), double_bits(2.5), 33, 7});
    }
    for (DType d : kFloats) {
      for (int variant = 0; variant < 4; ++variant)
        compiles(str("deform_conv_", dtype_name(d), suffix, "_", variant),
                 deform_conv_source({d, (variant & 1) != 0, (variant & 2) != 0, conv}));
      compiles(str("random_uniform_", dtype_name(d), suffix), random_source({RandomKind::kUniform, d, d, random}));
      compiles(str("random_normal_", dtype_name(d), suffix), random_source({RandomKind::kNormal, d, d, random}));
      for (DType out : {DType::kInt32, DType::kInt64})
        compiles(str("multinomial_", dtype_name(d), "_", dtype_name(out), suffix), random_source({RandomKind::kMultinomial, out, d, random}));
      for (DType out : {d, DType::kBool, DType::kUInt8, DType::kInt64})
        compiles(str("bernoulli_", dtype_name(d), "_", dtype_name(out), suffix), random_source({RandomKind::kBernoulli, out, d, random}));
    }
  }
}

TEST_P(CompileForArch, CastsBetweenDtypes) {
  for (DType from : kAllDTypes)
    for (DType to : {DType::kFloat32, DType::kFloat16, DType::kInt64, DType::kBool})
      compiles(str("cast_", dtype_name(from), "_", dtype_name(to)), cast_source(from, to, true, std::nullopt));
  compiles("cast_spec", cast_source(DType::kFloat32, DType::kFloat16, true, some_params()));
}

// Casts to the narrow types from floats of every width and from integers,
// saturating or not (float8e8m0 in every round_mode); between narrow types;
// Identity's copy of one; from float8e8m0, generic and specialized.
TEST_P(CompileForArch, CastsToNarrowTypes) {
  for (DType to : kAllDTypes) {
    if (!is_narrow(to)) continue;
    for (DType from : {DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kFloat64, DType::kInt8, DType::kUInt64,
                       DType::kFloat8E5M2, DType::kInt4, DType::kFloat8E8M0})
      for (bool saturate : {true, false})
        for (E8M0Rounding rounding : {E8M0Rounding::kUp, E8M0Rounding::kDown, E8M0Rounding::kNearest}) {
          if (to != DType::kFloat8E8M0 && rounding != E8M0Rounding::kUp) continue;  // round_mode rules float8e8m0 only
          compiles(str("cast_", dtype_name(from), "_", dtype_name(to), saturate ? "" : "_no_saturate", "_round", int(rounding)),
                   cast_source(from, to, saturate, std::nullopt, rounding));
        }
    compiles(str("copy_", dtype_name(to)), cast_source(to, to, true, some_params()));
  }
  for (DType to : {DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kFloat64, DType::kInt64, DType::kBool})
    compiles(str("cast_spec_float8e8m0_", dtype_name(to)), cast_source(DType::kFloat8E8M0, to, true, some_params()));
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
  for (DType d : kIntegers)
    for (LineOp op : {LineOp::kArgMax, LineOp::kArgMin, LineOp::kCumSum})
      compiles(str("line_", int(op), "_", dtype_name(d)), line_source(op, d, std::nullopt));
  // uint64 orders on its unsigned bits.
  EXPECT_NE(line_source(LineOp::kArgMax, DType::kUInt64, std::nullopt).find("(unsigned long long)x["), std::string::npos);
}

// The row kernels specialized for a shape on each path (RowPath): groups of 1,
// 4, 8 and 32 lanes a row, a block a row in registers, the strided block path;
// 16-byte accesses and element-wise ones; every float type, layer norm with
// and without statistics, scale and bias.
TEST_P(CompileForArch, RowKernelsOnEveryPath) {
  auto variants = [&](DType d, int64_t len) {
    Params p = pack(row_params(RowOp::kLayerNorm, d, 13, len, 1));
    compiles(str("layernorm_stats_", dtype_name(d), "_", len), row_source({RowOp::kLayerNorm, d, true, true, 1e-5, p, true}));
    compiles(str("layernorm_scale_", dtype_name(d), "_", len), row_source({RowOp::kLayerNorm, d, true, false, 1e-5, p, false}));
    for (RowOp op : {RowOp::kSoftmax, RowOp::kLogSoftmax})
      compiles(str("rows_", int(op), "_", dtype_name(d), "_", len),
               row_source({op, d, false, false, 1e-5, pack(row_params(op, d, 13, len, 1)), false}));
  };
  // Every path in the 16- and 32-bit types; a vector and a block path in the others (NVRTC time is the bound).
  for (DType d : {DType::kFloat16, DType::kFloat32})
    for (int64_t len : {7, 96, 197, 1024, 1025, 4096, 9000}) variants(d, len);
  for (DType d : {DType::kBFloat16, DType::kFloat64})
    for (int64_t len : {96, 4096}) variants(d, len);
}

// Which path each shape takes, and that every path's threads hold their rows.
TEST(RowParams, PathsFollowLengthLayoutAndType) {
  auto check = [](RowOp op, DType d, int64_t len, int64_t inner, RowPath path, int64_t lanes, int64_t vec) {
    SCOPED_TRACE(str("op ", int(op), " ", dtype_name(d), " len ", len, " inner ", inner));
    RowParams p = row_params(op, d, 1000, len, inner);
    EXPECT_EQ(p.rows, 1000);
    EXPECT_EQ(p.path, int64_t(path));
    EXPECT_EQ(p.lanes, lanes);
    EXPECT_EQ(p.vec, vec);
  };
  using R = RowPath;
  check(RowOp::kLayerNorm, DType::kFloat16, 96, 1, R::kLanes, 4, 8);     // ConvNeXt's rows: 8 rows a warp
  check(RowOp::kLayerNorm, DType::kFloat32, 96, 1, R::kLanes, 4, 4);
  check(RowOp::kSoftmax, DType::kFloat16, 197, 1, R::kLanes, 8, 1);      // ViT's attention rows: no whole vectors
  check(RowOp::kSoftmax, DType::kBFloat16, 128, 1, R::kLanes, 4, 8);
  check(RowOp::kLayerNorm, DType::kFloat16, 768, 1, R::kLanes, 32, 8);
  check(RowOp::kLogSoftmax, DType::kFloat64, 1024, 1, R::kLanes, 32, 2);
  check(RowOp::kSoftmax, DType::kFloat32, 1, 1, R::kLanes, 1, 1);
  check(RowOp::kSoftmax, DType::kFloat32, 7, 1, R::kLanes, 1, 1);
  check(RowOp::kLayerNorm, DType::kFloat16, 1025, 1, R::kBlock, kBlock, 1);
  check(RowOp::kLayerNorm, DType::kFloat32, 4096, 1, R::kBlock, kBlock, 4);
  check(RowOp::kSoftmax, DType::kFloat16, 8192, 1, R::kBlock, kBlock, 8);
  check(RowOp::kSoftmax, DType::kFloat16, 8193, 1, R::kStrided, kBlock, 1);
  check(RowOp::kLayerNorm, DType::kFloat32, 9000, 1, R::kStrided, kBlock, 1);
  check(RowOp::kSoftmax, DType::kFloat32, 96, 5, R::kStrided, kBlock, 1);  // elements apart: no registers, no vectors
  check(RowOp::kHardmax, DType::kFloat32, 96, 1, R::kStrided, kBlock, 1);
  EXPECT_EQ(row_params(RowOp::kSoftmax, DType::kFloat32, 1000, 0, 1).rows, 0);  // empty rows: no launch

  // Blocks: a group of lanes per row, several rows a block; a block per row otherwise.
  EXPECT_EQ(row_blocks(row_params(RowOp::kLayerNorm, DType::kFloat16, 25088, 96, 1)), 25088 / (kBlock / 4));
  EXPECT_EQ(row_blocks(row_params(RowOp::kSoftmax, DType::kFloat32, 515, 1, 1)), 3);
  EXPECT_EQ(row_blocks(row_params(RowOp::kSoftmax, DType::kFloat32, 13, 4096, 1)), 13);
  EXPECT_EQ(row_blocks(row_params(RowOp::kSoftmax, DType::kFloat32, 15, 96, 5)), 15);

  // Every length the register paths take fits: kRowSpan elements a thread, whole vectors only.
  for (DType d : kFloats)
    for (int64_t len = 1; len <= int64_t(kRowSpan) * kBlock + 1; ++len) {
      RowParams p = row_params(RowOp::kSoftmax, d, 3, len, 1);
      if (p.path == int64_t(RowPath::kStrided)) {
        EXPECT_GT(len, int64_t(kRowSpan) * kBlock);
        continue;
      }
      ASSERT_TRUE(p.lanes == kBlock || (p.lanes <= 32 && (32 % p.lanes) == 0)) << len;
      ASSERT_GE(p.lanes * kRowSpan, len) << len;
      ASSERT_TRUE(p.vec == 1 || (p.vec * int64_t(dtype_size(d)) == 16 && len % p.vec == 0)) << len;
    }
}

TEST_P(CompileForArch, MovementAndWindows) {
  for (DType d : kAllDTypes) compiles(str("remap_", dtype_name(d)), remap_source({d, std::nullopt}));
  compiles("remap_spec", remap_source({DType::kFloat16, some_params()}));
  for (DType d : kFloats) compiles(str("resize_", dtype_name(d)), resize_source({d, DType::kFloat32, DType::kFloat32, std::nullopt}));
  for (bool elements : {false, true})
    for (DType index : {DType::kInt64, DType::kInt32})
      compiles(str("gather_", elements, "_", dtype_name(index)), gather_source(DType::kFloat32, index, elements, std::nullopt));
  for (DType d : kFloats)
    for (WindowOp op : {WindowOp::kMaxPool, WindowOp::kAvgPool, WindowOp::kConv, WindowOp::kConvTranspose})
      compiles(str("window_", int(op), "_", dtype_name(d)), window_source({op, d, true, std::nullopt}));
}

// A specialized depthwise launch: ConvNeXt's 7x7 (64-column tiles, 4 rows a
// thread), or a MobileNet 3x3 stride 2 with channel multiplier 2 (16 columns, 1 row).
Params depthwise_params(bool convnext) {
  DepthwiseParams q{};
  if (convnext) {
    q = {768, 96, 1, 1, 4, 64, 4, 22, 70, 56, 56, 56, 56, 7, 7, 1, 1, 1, 1, 3, 3};
  } else {
    q = {64, 32, 2, 1, 1, 16, 1, 33, 33, 28, 28, 14, 14, 3, 3, 2, 2, 1, 1, 1, 1};
  }
  return pack(q);
}

// Every float type with and without bias, generic and specialized (whose
// shared memory is sized from the parameters).
TEST_P(CompileForArch, DepthwiseForEveryFloatDtype) {
  for (DType d : kFloats)
    for (bool bias : {false, true}) {
      compiles(str("depthwise_", dtype_name(d), "_", bias), depthwise_source({d, bias, std::nullopt}));
      for (bool convnext : {false, true})
        compiles(str("depthwise_spec_", dtype_name(d), "_", bias, "_", convnext), depthwise_source({d, bias, depthwise_params(convnext)}));
    }
}

TEST(DepthwiseSource, SharedMemoryIsSizedForTheShapeWhenSpecialized) {
  // Generic: the whole budget, in the compute type; specialized: taps + staged tile.
  EXPECT_NE(depthwise_source({DType::kFloat16, false, std::nullopt}).find("__shared__ T smem[8192];"), std::string::npos);
  EXPECT_NE(depthwise_source({DType::kFloat64, false, std::nullopt}).find("__shared__ T smem[4096];"), std::string::npos);
  EXPECT_NE(depthwise_source({DType::kFloat32, true, depthwise_params(true)}).find("__shared__ T smem[1589];"), std::string::npos);
}

// ScatterND with every reduction in every dtype (each dtype's compare-and-swap
// width), ScatterElements and GatherND with either index type, and specialized forms.
TEST_P(CompileForArch, ScatterAndGatherND) {
  using R = ScatterReduction;
  for (DType d : kAllDTypes) {
    for (R r : {R::kNone, R::kAdd, R::kMul, R::kMax, R::kMin})
      compiles(str("scatter_nd_", int(r), "_", dtype_name(d)), indexed_source({IndexedOp::kScatterND, d, DType::kInt64, r, std::nullopt}));
    compiles(str("scatter_elements_", dtype_name(d)), indexed_source({IndexedOp::kScatterElements, d, DType::kInt32, R::kMax, std::nullopt}));
    compiles(str("gather_nd_", dtype_name(d)), indexed_source({IndexedOp::kGatherND, d, DType::kInt32, R::kNone, std::nullopt}));
  }
  IndexedParams q{24, 2, 3, 4, 0, 2, 1, 5, {2, 4}, {5, 1}};
  for (IndexedOp op : {IndexedOp::kScatterND, IndexedOp::kScatterElements, IndexedOp::kGatherND})
    compiles(str("indexed_spec_", int(op)),
             indexed_source({op, DType::kFloat16, DType::kInt64, op == IndexedOp::kGatherND ? R::kNone : R::kAdd, pack(q)}));
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
  // Masks: added in each float type, or kept and filled by a bool tensor.
  for (DType mask : {DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kBool})
    compiles(str("attention_mask_", dtype_name(mask)), attention_source(DType::kFloat32, std::nullopt, mask));
  compiles("attention_mask_spec", attention_source(DType::kFloat16, some_params(), DType::kBool));
}

// TopK in every dtype it takes (32- and 64-bit keys), Range, OneHot and
// Einsum over one to the most operands, generic and specialized.
TEST_P(CompileForArch, TopkEinsumRangeOneHot) {
  for (DType d : kAllDTypes) {
    if (d == DType::kBool || is_narrow(d)) continue;  // the narrow types are only cast, quantized and moved
    compiles(str("topk_", dtype_name(d)), topk_source(d, std::nullopt));
    compiles(str("range_", dtype_name(d)), range_source(d, std::nullopt));
    compiles(str("einsum_2_", dtype_name(d)), einsum_source(d, 2, std::nullopt));
    compiles(str("onehot_index_", dtype_name(d)), onehot_source(DType::kFloat32, d, std::nullopt));
  }
  for (DType d : kAllDTypes)
    if (!is_narrow(d)) compiles(str("onehot_values_", dtype_name(d)), onehot_source(d, DType::kInt64, std::nullopt));
  for (int operands = 1; operands <= kEinsumMaxOperands; ++operands)
    compiles(str("einsum_", operands, "_float16"), einsum_source(DType::kFloat16, operands, std::nullopt));
  compiles("topk_spec", topk_source(DType::kFloat16, some_params()));
  compiles("einsum_spec", einsum_source(DType::kFloat32, 3, some_params()));
  compiles("einsum_int64_spec", einsum_source(DType::kInt64, 2, some_params()));  // an integer MatMul's kernel
  compiles("range_spec", range_source(DType::kInt64, some_params()));
  compiles("onehot_spec", onehot_source(DType::kFloat32, DType::kInt32, some_params()));
  EXPECT_THROW(einsum_source(DType::kFloat32, kEinsumMaxOperands + 1, std::nullopt), Error);
  EXPECT_THROW(topk_source(DType::kBool, std::nullopt), Error);
}

TEST_P(CompileForArch, SignalKernels) {
  for (DType d : kFloats) {
    for (bool specialize : {false, true}) {
      std::optional<Params> spec = specialize ? std::optional<Params>(some_params()) : std::nullopt;
      std::string suffix = str(dtype_name(d), specialize ? "_spec" : "");
      compiles("dft_" + suffix, dft_source(d, spec));
      compiles("stft_" + suffix, stft_source(d, false, spec));
      compiles("stft_window_" + suffix, stft_source(d, true, spec));
      compiles("mel_hertz_" + suffix, mel_weight_matrix_source(DType::kFloat32, DType::kInt64, d, spec));
    }
  }
  for (DType d : kAllDTypes) {
    if (d == DType::kBool) continue;
    compiles(str("window_", dtype_name(d)), signal_window_source(d, std::nullopt));
    compiles(str("mel_", dtype_name(d)), mel_weight_matrix_source(d, DType::kInt32, DType::kFloat32, std::nullopt));
  }
  compiles("window_spec", signal_window_source(DType::kFloat32, some_params()));
  EXPECT_THROW(dft_source(DType::kInt32, std::nullopt), Error);
  EXPECT_THROW(stft_source(DType::kInt64, true, std::nullopt), Error);
  EXPECT_THROW(signal_window_source(DType::kBool, std::nullopt), Error);
  EXPECT_THROW(mel_weight_matrix_source(DType::kFloat32, DType::kFloat32, DType::kFloat32, std::nullopt), Error);
}

// MaxPool of every type but bool and uint64, alone and with its Indices output in either
// storage order; reductions of integers and bools, every op; both generic and
// specialized, reductions also for an empty reduced set (dims of 0 compiled in).
TEST_P(CompileForArch, MaxPoolIndicesAndIntegerReductions) {
  auto spec_of = [](bool specialize, const Params& p) { return specialize ? std::optional<Params>(p) : std::nullopt; };
  const WindowParams window = small_2d_window();
  ReduceParams empty{};
  empty.outputs = 6;
  empty.kept_rank = 2, empty.kept_dims[0] = 2, empty.kept_dims[1] = 3, empty.kept_strides[0] = 0, empty.kept_strides[1] = 0;
  empty.reduced_rank = 1;  // reduced = 0 elements along a dim of 0
  for (bool specialize : {false, true}) {
    std::string suffix = specialize ? "_spec" : "";
    for (DType d : kAllDTypes) {
      if (d == DType::kBool || d == DType::kUInt64 || is_narrow(d)) continue;  // uint64 is refused (compared as long long)
      for (int indices = 0; indices < 3; ++indices)  // none, storage_order 0, storage_order 1
        compiles(str("maxpool_", dtype_name(d), "_indices", indices, suffix),
                 window_source({WindowOp::kMaxPool, d, false, spec_of(specialize, pack(window)), 2, indices > 0, indices == 2}));
    }
    for (DType d : {DType::kInt64, DType::kInt32, DType::kUInt32, DType::kInt16, DType::kInt8, DType::kUInt8, DType::kBool})
      for (int op = 0; op <= int(ReduceOp::kLp); ++op)
        if (!specialize || d == DType::kInt32)
          compiles(str("reduce_", op, "_", dtype_name(d), suffix), reduce_source({ReduceOp(op), d, spec_of(specialize, some_params()), 3}));
    for (DType d : {DType::kFloat32, DType::kInt64, DType::kBool})
      for (ReduceOp op : {ReduceOp::kMax, ReduceOp::kLogSumExp, ReduceOp::kMean})
        compiles(str("reduce_empty_", int(op), "_", dtype_name(d), suffix), reduce_source({op, d, spec_of(specialize, pack(empty))}));
  }
  EXPECT_THROW(window_source({WindowOp::kMaxPool, DType::kBool, false, std::nullopt}), Error);
  EXPECT_THROW(window_source({WindowOp::kMaxPool, DType::kUInt64, false, std::nullopt}), Error);
  EXPECT_THROW(window_source({WindowOp::kAvgPool, DType::kInt32, false, std::nullopt}), Error);
}

// The kernels that read a value of the node's inputs on the device (CumSum's
// and CumProd's axis of either integer type, Trilu's k, Pad's constant_value,
// Resize's roi and scales of any float type), generic and specialized for a
// shape the runtime would fill when those values are tensor data.
TEST_P(CompileForArch, KernelsReadingTheirParametersFromTensors) {
  auto spec_of = [](bool specialize, const Params& p) { return specialize ? std::optional<Params>(p) : std::nullopt; };
  LineParams line{};
  line.lines = 7 * 33 * 5;
  line.rank = 3;
  line.dims[0] = 7, line.dims[1] = 33, line.dims[2] = 5;
  RemapParams pad{};
  pad.n = 9 * 35, pad.rank = 2, pad.pad_mode = int64_t(PadMode::kConstant);
  pad.dims[0] = 9, pad.dims[1] = 35, pad.src_strides[0] = 33, pad.src_strides[1] = 1, pad.dst_strides[0] = 35, pad.dst_strides[1] = 1;
  pad.src_starts[0] = -1, pad.src_starts[1] = -2, pad.src_steps[0] = pad.src_steps[1] = 1, pad.src_dims[0] = 7, pad.src_dims[1] = 33;
  ResizeParams resize{};
  resize.n = 2 * 3 * 14 * 9, resize.rank = 4, resize.mode = 1, resize.coordinate_mode = 6, resize.roi_half = 2;
  for (int d = 0; d < 4; ++d) resize.in_dims[d] = d < 2 ? 2 + d : 7, resize.scale_index[d] = resize.roi_index[d] = d < 2 ? -1 : d - 2;
  resize.out_dims[0] = 2, resize.out_dims[1] = 3, resize.out_dims[2] = 14, resize.out_dims[3] = 9;
  for (bool specialize : {false, true}) {
    std::string suffix = specialize ? "_spec" : "";
    for (DType d : {DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kInt64})
      for (DType axis : {DType::kInt32, DType::kInt64})
        for (LineOp op : {LineOp::kCumSum, LineOp::kCumProd})
          compiles(str("scan_", int(op), "_", dtype_name(d), "_axis_", dtype_name(axis), suffix),
                   line_source(op, d, spec_of(specialize, pack(line)), axis));
    for (DType d : kAllDTypes) {
      compiles(str("trilu_", dtype_name(d), suffix), trilu_source(d, spec_of(specialize, pack(TriluParams{7 * 33, 7, 33, 0, 1}))));
      compiles(str("pad_", dtype_name(d), suffix), remap_source({d, spec_of(specialize, pack(pad))}));
    }
    for (DType d : {DType::kFloat32, DType::kFloat16, DType::kBFloat16})
      for (DType roi : kFloats)
        compiles(str("resize_", dtype_name(d), "_roi_", dtype_name(roi), suffix),
                 resize_source({d, roi, roi == DType::kFloat64 ? DType::kFloat16 : DType::kFloat32, spec_of(specialize, pack(resize))}));
  }
}

// The kernels of CumProd, LpPool, GlobalLpPool (p 3), LpNormalization, MaxUnpool,
// EyeLike, ReverseSequence, TensorScatter and Det, generic and specialized
// for a shape the runtime would fill.
TEST_P(CompileForArch, ScansPoolsNormsAndMovementOfTheseOps) {
  auto spec_of = [](bool specialize, const Params& p) { return specialize ? std::optional<Params>(p) : std::nullopt; };
  for (bool specialize : {false, true}) {
    std::string suffix = specialize ? "_spec" : "";
    for (DType d : kAllDTypes) {
      if (d != DType::kBool)
        compiles(str("cumprod_", dtype_name(d), suffix), line_source(LineOp::kCumProd, d, spec_of(specialize, pack(LineParams{21, 7, 3, 0, 1, 1, 0, {}}))));
      compiles(str("eye_like_", dtype_name(d), suffix), eye_like_source(d, spec_of(specialize, pack(EyeLikeParams{33 * 7, 7, -2}))));
      compiles(str("reverse_sequence_", dtype_name(d), suffix),
               reverse_sequence_source(d, spec_of(specialize, pack(ReverseSequenceParams{7 * 33 * 5, 7, 33, 5, 1}))));
      for (bool indices : {false, true})
        compiles(str("tensor_scatter_", dtype_name(d), indices ? "_indices" : "", suffix),
                 tensor_scatter_source(d, indices, spec_of(specialize, pack(TensorScatterParams{2 * 3 * 5 * 8, 5, 33, 8, 3, indices}))));
    }
    for (DType d : kFloats) {
      std::string name = str(dtype_name(d), suffix);
      const WindowParams window = small_2d_window();
      for (int64_t p : {1, 2, 3})
        compiles(str("lp_pool_", p, "_", name), window_source({WindowOp::kLpPool, d, false, spec_of(specialize, pack(window)), p}));
      compiles(str("reduce_lp_", name), reduce_source({ReduceOp::kLp, d, spec_of(specialize, some_params()), 3}));
      for (int64_t p : {1, 2})
        for (int64_t len : {7, 1025, 9000})
          compiles(str("lp_norm_", p, "_", len, "_", name),
                   row_source({RowOp::kLpNorm, d, false, false, 1e-5,
                               spec_of(specialize, pack(row_params(RowOp::kLpNorm, d, 13, len, len == 7 ? 3 : 1))), false, p}));
      IndexedParams unpool{};
      unpool.n = 2 * 3 * 4 * 4;
      unpool.rank = 4;
      unpool.axis_size = 2 * 3 * 8 * 8;
      int64_t dims[] = {2, 3, 8, 8}, strides[] = {3 * 9 * 9, 9 * 9, 9, 1};
      for (int i = 0; i < 4; ++i) unpool.dims[i] = dims[i], unpool.strides[i] = strides[i];
      compiles(str("max_unpool_", name), indexed_source({IndexedOp::kMaxUnpool, d, DType::kInt64, ScatterReduction::kNone,
                                                         spec_of(specialize, pack(unpool))}));
      for (int64_t size : {1, 3, kDetMaxSize})
        compiles(str("det_", size, "_", name), det_source(d, spec_of(specialize, pack(DetParams{5, size}))));
    }
  }
  EXPECT_THROW(det_source(DType::kInt32, std::nullopt), Error);
}

// Det's shared memory: the largest matrix generic, exactly the shape's when specialized.
TEST(DetSource, SharedMemoryIsSizedForTheShapeWhenSpecialized) {
  EXPECT_NE(det_source(DType::kFloat32, std::nullopt).find(str("__shared__ double a[", kDetMaxSize * kDetMaxSize, "];")), std::string::npos);
  EXPECT_NE(det_source(DType::kFloat32, pack(DetParams{4, 3})).find("__shared__ double a[9];"), std::string::npos);
}

// Parameters of a self-attention over a packed [B, S, 3, H, D] projection, as the runtime fills them.
Params attention_params(int64_t batch, int64_t heads, int64_t seq, int64_t head_dim, bool causal, int64_t warps, int64_t vector_bits) {
  AttentionParams q{};
  const int64_t row = 3 * heads * head_dim;
  q.items = batch * heads * ((seq + 16 * warps - 1) / (16 * warps));
  q.batch = batch, q.heads = heads, q.q_len = seq, q.kv_len = seq, q.head_dim = head_dim;
  q.scale_bits = double_bits(0.125);
  q.causal = causal;
  long long* views[] = {q.q_view, q.k_view, q.v_view};
  for (int64_t i = 0; i < 3; ++i) {
    long long view[5] = {i * heads * head_dim, seq * row, head_dim, row, 1};
    std::copy(view, view + 5, views[i]);
  }
  long long out[5] = {0, seq * heads * head_dim, head_dim, heads * head_dim, 1};
  std::copy(out, out + 5, q.out_view);
  q.vector_bits = vector_bits;
  q.warps = warps;
  return pack(q);
}

// QuantizeLinear and DequantizeLinear as single-op kernels: every float side
// and division precision, with and without a zero point; int32 sides.
TEST_P(CompileForArch, QuantizeAndDequantizeForEveryType) {
  auto kernel = [](OpKind op, std::vector<DType> inputs, DType out, DType precision, const std::optional<Params>& spec) {
    ir::FusedInstruction in;
    in.op = op;
    for (size_t i = 0; i < inputs.size(); ++i) in.args[i] = int(i);
    in.params[0] = double(precision);
    in.params[1] = double(out);
    return elementwise_source({{in}, inputs, out, spec});
  };
  for (DType f : {DType::kFloat32, DType::kFloat16, DType::kBFloat16})
    for (DType q : {DType::kInt8, DType::kUInt8, DType::kInt16, DType::kUInt16}) {
      std::string name = str(dtype_name(f), "_", dtype_name(q));
      compiles("quantize_" + name, kernel(OpKind::kQuantizeLinear, {f, f, q}, q, f, std::nullopt));
      compiles("quantize_no_zero_" + name, kernel(OpKind::kQuantizeLinear, {f, DType::kFloat32}, q, DType::kFloat32, std::nullopt));
      compiles("dequantize_" + name, kernel(OpKind::kDequantizeLinear, {q, f, q}, f, f, std::nullopt));
      compiles("dequantize_no_zero_" + name, kernel(OpKind::kDequantizeLinear, {q, f}, DType::kFloat32, f, std::nullopt));
    }
  compiles("quantize_int32", kernel(OpKind::kQuantizeLinear, {DType::kInt32, DType::kFloat32}, DType::kInt8, DType::kFloat64, std::nullopt));
  compiles("dequantize_int32", kernel(OpKind::kDequantizeLinear, {DType::kInt32, DType::kFloat16}, DType::kFloat16, DType::kFloat16, std::nullopt));
  compiles("quantize_spec", kernel(OpKind::kQuantizeLinear, {DType::kFloat16, DType::kFloat16, DType::kInt8}, DType::kInt8,
                                   DType::kFloat32, some_params()));
}

// The narrow types: quantized to and dequantized from every one (float8
// saturating or not), generic and specialized; float8e8m0 scales (it
// quantizes nothing) of int8, float8 and float4e2m1 values.
TEST_P(CompileForArch, QuantizeAndDequantizeNarrowTypes) {
  for (DType q : kAllDTypes) {
    if (!is_narrow(q) || q == DType::kFloat8E8M0) continue;
    for (DType f : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) {
      std::string name = str(dtype_name(f), "_", dtype_name(q));
      ir::FusedInstruction in;
      in.op = OpKind::kQuantizeLinear;
      for (int i = 0; i < 3; ++i) in.args[i] = i;
      in.params[0] = double(f);
      in.params[1] = double(q);
      for (bool saturate : {true, false}) {
        ElementwiseSpec spec{{in}, {f, f, q}, q, std::nullopt};
        spec.saturate = saturate;
        compiles(str("quantize_", name, saturate ? "" : "_no_saturate"), elementwise_source(spec));
      }
      in.op = OpKind::kDequantizeLinear;
      compiles("dequantize_" + name, elementwise_source({{in}, {q, f, q}, f, std::nullopt}));
      compiles("dequantize_spec_" + name, elementwise_source({{in}, {q, f, q}, f, some_params()}));
    }
  }
  const DType e8m0 = DType::kFloat8E8M0;
  for (DType q : {DType::kInt8, DType::kFloat8E4M3FN, DType::kFloat4E2M1})
    for (DType f : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) {
      std::string name = str(dtype_name(f), "_", dtype_name(q), "_e8m0_scale");
      ir::FusedInstruction in;
      in.op = OpKind::kQuantizeLinear;
      for (int i = 0; i < 3; ++i) in.args[i] = i;
      in.params[0] = double(DType::kFloat32);  // quantize_precision of a float x and a float8e8m0 scale
      in.params[1] = double(q);
      compiles("quantize_" + name, elementwise_source({{in}, {f, e8m0, q}, q, std::nullopt}));
      compiles("quantize_spec_" + name, elementwise_source({{in}, {f, e8m0, q}, q, some_params()}));
      in.op = OpKind::kDequantizeLinear;
      compiles("dequantize_" + name, elementwise_source({{in}, {q, e8m0, q}, f, std::nullopt}));
      compiles("dequantize_spec_" + name, elementwise_source({{in}, {q, e8m0, q}, f, some_params()}));
    }
}

// MatMulInteger and QLinearMatMul, ConvInteger and QLinearConv: every pair of
// operand types, zero points present or not, every scale type, per-channel
// parameters and bias, generic and specialized.
TEST_P(CompileForArch, IntegerProductsForEveryType) {
  const DType q8[] = {DType::kInt8, DType::kUInt8};
  for (DType a : q8)
    for (DType b : q8) {
      std::string name = str(dtype_name(a), "_", dtype_name(b));
      compiles("matmul_integer_" + name, integer_matmul_source({a, b, DType::kInt32, true, true, false, DType::kFloat32, std::nullopt}));
      compiles("conv_integer_" + name, integer_conv_source({a, b, DType::kInt32, true, true, true, false, false, false, std::nullopt}));
      for (DType y : q8) {
        compiles("qlinear_conv_" + name + "_" + std::string(dtype_name(y)),
                 integer_conv_source({a, b, y, true, true, b == DType::kInt8, a == DType::kUInt8, true, y == DType::kInt8, std::nullopt}));
        for (DType scale : {DType::kFloat32, DType::kFloat16, DType::kBFloat16})
          compiles(str("qlinear_matmul_", name, "_", dtype_name(y), "_", dtype_name(scale)),
                   integer_matmul_source({a, b, y, true, true, true, scale, std::nullopt}));
      }
    }
  compiles("matmul_integer_no_zero", integer_matmul_source({DType::kUInt8, DType::kInt8, DType::kInt32, false, false, false,
                                                            DType::kFloat32, std::nullopt}));
  compiles("conv_integer_no_zero", integer_conv_source({DType::kInt8, DType::kInt8, DType::kInt32, false, false, false, false, false,
                                                        false, std::nullopt}));
  compiles("matmul_integer_spec", integer_matmul_source({DType::kUInt8, DType::kInt8, DType::kUInt8, true, true, true,
                                                         DType::kFloat16, some_params()}));
  compiles("conv_integer_spec", integer_conv_source({DType::kUInt8, DType::kInt8, DType::kInt8, true, true, true, true, true, true,
                                                     some_params()}));
  EXPECT_THROW(integer_matmul_source({DType::kFloat32, DType::kInt8, DType::kInt32, false, false, false, DType::kFloat32, std::nullopt}),
               Error);
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
  for (DType mask : {DType::kFloat16, DType::kBFloat16, DType::kFloat32, DType::kBool})
    compiles(str("attention_mma_mask_", dtype_name(mask)), attention_mma_source(DType::kFloat16, 64, std::nullopt, mask));
  compiles("attention_mma_mask_spec", attention_mma_source(DType::kBFloat16, 64, attention_params(8, 12, 128, 64, false, 4, 15), DType::kBFloat16));
}

// Every slot of a T a distinct value (slot i holds 1000 + i), as the host would fill it by name.
template <class T>
T numbered() {
  Params p;
  for (size_t i = 0; i < sizeof(T) / sizeof(long long); ++i) p.v[i] = 1000 + int64_t(i);
  T fields;
  std::memcpy(&fields, p.v, sizeof fields);
  return fields;
}

// `field`, written as the kernels write it, and its value on the host.
// Two trees over 3 features: a LEQ root (NaN goes true) into a set-membership
// node, and a tree that is one leaf; `targets` targets, the leaves on the first and last.
ir::TreeEnsembleAttrs small_forest(ir::TreeAggregate aggregate, ir::TreePostTransform post, int64_t targets) {
  ir::TreeEnsembleAttrs t;
  t.n_targets = targets, t.aggregate = aggregate, t.post_transform = post;
  t.roots = {0, 2};
  t.feature = {0, 2, 1}, t.true_id = {1, 1, 2}, t.false_id = {0, 3, 2};
  t.true_leaf = {false, true, true}, t.false_leaf = {true, true, true}, t.missing_tracks_true = {true, false, false};
  t.mode = {ir::TreeMode::kLeq, ir::TreeMode::kMember, ir::TreeMode::kGt};
  t.split = {0.5, 0, -INFINITY};
  t.members = {{}, {1, 2.5}, {}};
  t.leaf_target = {0, targets - 1, 0, targets - 1};
  t.leaf_weight = {0.5, -1.25, 2, 1e300};
  t.max_feature = 2;
  return t;
}

// Every aggregate with every post transform over one and two target groups, each floating type the op takes.
TEST_P(CompileForArch, TreeEnsembleForEveryFloatDtype) {
  const ir::TreePostTransform posts[] = {ir::TreePostTransform::kNone, ir::TreePostTransform::kSoftmax, ir::TreePostTransform::kLogistic,
                                         ir::TreePostTransform::kSoftmaxZero, ir::TreePostTransform::kProbit};
  for (DType d : {DType::kFloat32, DType::kFloat16, DType::kFloat64})
    for (size_t i = 0; i < std::size(posts); ++i) {
      auto aggregate = ir::TreeAggregate(i % 4);
      std::optional<Params> spec;
      if (i == 0) spec = pack(TreeEnsembleParams{1031, 3});
      compiles(str("tree_ensemble_", dtype_name(d), "_post", i, "_aggregate", i % 4, spec ? "_spec" : ""),
               tree_ensemble_source({d, small_forest(aggregate, posts[i], 3), spec}));
      if (posts[i] == ir::TreePostTransform::kSoftmax || posts[i] == ir::TreePostTransform::kSoftmaxZero) continue;  // one group only
      compiles(str("tree_ensemble_", dtype_name(d), "_post", i, "_groups"),
               tree_ensemble_source({d, small_forest(aggregate, posts[i], 2 * kTreeTargetsPerThread + 1), std::nullopt}));
    }
  for (ir::TreePostTransform softmax : {ir::TreePostTransform::kSoftmax, ir::TreePostTransform::kSoftmaxZero})
    EXPECT_THROW(tree_ensemble_source({DType::kFloat32, small_forest(ir::TreeAggregate::kSum, softmax, kTreeTargetsPerThread + 1),
                                       std::nullopt}),
                 Error);
}

ir::TensorData vector_of_bits(DType dtype, const void* data, size_t count) {
  ir::TensorData t;
  t.dtype = dtype;
  t.dims = {int64_t(count)};
  t.data = Buffer::copy_of(data, count * dtype_size(dtype));
  return t;
}

// Integer and float keys (a NaN key among them, a key given twice) to values of 1, 2, 4 and 8 bytes.
TEST_P(CompileForArch, LabelEncoderOfNumbers) {
  const int64_t ints[] = {7, -3, INT64_MIN, 7};
  const double doubles[] = {0.5, NAN, -0.0, 1e300};
  const float floats[] = {2.5f, -1.0f, NAN, 0.0f};
  const uint16_t halves[] = {0x3c00, 0xbc00, 0x7e00, 0x0000};
  const int32_t int32s[] = {1, 2, 3, 2};
  const uint8_t bools[] = {1, 0, 1, 1};
  std::vector<std::pair<ir::TensorData, ir::TensorData>> maps = {
      {vector_of_bits(DType::kInt64, ints, 4), vector_of_bits(DType::kFloat32, floats, 4)},
      {vector_of_bits(DType::kFloat64, doubles, 4), vector_of_bits(DType::kInt64, ints, 4)},
      {vector_of_bits(DType::kFloat32, floats, 4), vector_of_bits(DType::kFloat16, halves, 4)},
      {vector_of_bits(DType::kInt32, int32s, 4), vector_of_bits(DType::kBool, bools, 4)},
      {vector_of_bits(DType::kInt32, int32s, 0), vector_of_bits(DType::kFloat64, doubles, 0)},  // no keys: every element the default
  };
  for (auto& [keys, values] : maps)
    for (bool specialize : {false, true}) {
      const uint64_t zero = 0;
      ir::TensorData fallback = vector_of_bits(values.dtype, &zero, 1);
      std::optional<Params> spec;
      if (specialize) spec = pack(LabelEncoderParams{1031});
      compiles(str("label_encoder_", dtype_name(keys.dtype), "_", keys.dims[0], "_to_", dtype_name(values.dtype), specialize ? "_spec" : ""),
               label_encoder_source({{keys, values, fallback}, spec}));
    }
}

TEST_P(CompileForArch, ArrayFeatureExtractorAndTfIdfVectorizer) {
  for (DType d : {DType::kFloat32, DType::kFloat64, DType::kFloat16, DType::kInt64, DType::kInt32, DType::kUInt8})
    for (bool specialize : {false, true}) {
      std::optional<Params> spec;
      if (specialize) spec = pack(GatherParams{3 * 5, 3, 5, 1, 33});
      compiles(str("array_feature_extractor_", dtype_name(d), specialize ? "_spec" : ""), array_feature_extractor_source(d, spec));
    }
  for (DType input : {DType::kInt32, DType::kInt64})
    for (auto mode : {TfIdfSpec::kTF, TfIdfSpec::kIDF, TfIdfSpec::kTFIDF})
      for (bool weighted : {false, true}) {
        TfIdfSpec spec;
        spec.input = input, spec.mode = mode, spec.min_gram = 1, spec.max_gram = 3, spec.max_skip = 2;
        spec.grams = {{{4}, 0}, {{2}, 1}, {{2, 3}, 2}, {{INT64_MIN, 9}, 3}, {{5, 6, 7}, 4}};
        if (weighted) spec.weights = {0.5, 1, 2, 0.25, 3};
        if (weighted && mode == TfIdfSpec::kTF) spec.specialize = pack(TfIdfParams{7, 33, 5});
        compiles(str("tfidf_", dtype_name(input), "_mode", int(mode), weighted ? "_weighted" : "", spec.specialize ? "_spec" : ""),
                 tfidf_source(spec));
      }
  TfIdfSpec empty;  // no n-gram in the pool: every count 0
  empty.max_gram = 2;
  compiles("tfidf_empty_pool", tfidf_source(empty));
  TfIdfSpec strings;
  strings.input = DType::kString;
  EXPECT_THROW(tfidf_source(strings), Error);
}

#define KILN_FIELD(field) std::pair<std::string, long long>(#field, q.field)

class KernelParams : public CompileForArch {
 protected:
  // A specialized variant with `q` packed compiles, and on the device its fields hold what the host put in them.
  template <class T>
  void device_sees(const T& q, const std::vector<std::pair<std::string, long long>>& fields) {
    Params packed = pack(q);
    for (size_t i = sizeof(T) / sizeof(long long); i < size_t(kParamSlots); ++i) ASSERT_EQ(packed.v[i], 0) << "slot " << i;
    std::ostringstream s;
    s << prelude() << params_constants<T>(packed);
    s << "static_assert(sizeof(" << kParamsName<T> << ") == " << sizeof(T) << ", \"the host's size\");\n";
    for (const auto& [field, value] : fields)
      s << "static_assert(kiln_params." << field << " == " << value << "LL, \"" << field << "\");\n";
    s << "extern \"C\" __global__ void " << kEntry << "(long long* out, KParams p) {\n" << params_binding<T>(packed);
    s << "  out[0] = prm." << fields.front().first << ";\n}\n";
    compiles(str("fields_", kParamsName<T>), s.str());
  }
};

TEST_P(KernelParams, PackedFieldsReachTheKernelByName) {
  { auto q = numbered<ElementwiseParams>();
    device_sees(q, {KILN_FIELD(n), KILN_FIELD(contiguous), KILN_FIELD(out_dims[7]), KILN_FIELD(in_strides[0][0]),
                    KILN_FIELD(in_strides[3][5]), KILN_FIELD(in_strides[13][7]), KILN_FIELD(inner_vectors)}); }
  { auto q = numbered<RowParams>();
    device_sees(q, {KILN_FIELD(rows), KILN_FIELD(len), KILN_FIELD(inner), KILN_FIELD(path), KILN_FIELD(lanes), KILN_FIELD(vec)}); }
  { auto q = numbered<LineParams>();
    device_sees(q, {KILN_FIELD(lines), KILN_FIELD(select_last_index), KILN_FIELD(exclusive), KILN_FIELD(reverse), KILN_FIELD(rank),
                    KILN_FIELD(dims[0]), KILN_FIELD(dims[7])}); }
  { auto q = numbered<ReduceParams>();
    device_sees(q, {KILN_FIELD(outputs), KILN_FIELD(reduced_rank), KILN_FIELD(kept_dims[0]), KILN_FIELD(kept_strides[3]),
                    KILN_FIELD(reduced_dims[1]), KILN_FIELD(reduced_strides[7])}); }
  { auto q = numbered<RemapParams>();
    device_sees(q, {KILN_FIELD(n), KILN_FIELD(fill_bits), KILN_FIELD(dims[2]), KILN_FIELD(src_strides[0]),
                    KILN_FIELD(dst_strides[7]), KILN_FIELD(src_starts[1]), KILN_FIELD(src_steps[4]), KILN_FIELD(src_dims[5]),
                    KILN_FIELD(modulus[7]), KILN_FIELD(path), KILN_FIELD(vec_bytes)}); }
  { auto q = numbered<GatherParams>(); device_sees(q, {KILN_FIELD(n), KILN_FIELD(count), KILN_FIELD(axis_size)}); }
  { auto q = numbered<TriluParams>(); device_sees(q, {KILN_FIELD(n), KILN_FIELD(k), KILN_FIELD(upper)}); }
  { auto q = numbered<IndexedParams>();
    device_sees(q, {KILN_FIELD(n), KILN_FIELD(depth), KILN_FIELD(batch_stride), KILN_FIELD(axis_size), KILN_FIELD(dims[0]),
                    KILN_FIELD(strides[7])}); }
  { auto q = numbered<ResizeParams>();
    device_sees(q, {KILN_FIELD(n), KILN_FIELD(antialias), KILN_FIELD(extrapolation_bits), KILN_FIELD(in_dims[0]), KILN_FIELD(out_dims[3]),
                    KILN_FIELD(scale_bits[2]), KILN_FIELD(roi_start_bits[6]), KILN_FIELD(roi_end_bits[7]), KILN_FIELD(scale_index[0]),
                    KILN_FIELD(roi_index[7]), KILN_FIELD(roi_half)}); }
  { auto q = numbered<WindowParams>();
    device_sees(q, {KILN_FIELD(n), KILN_FIELD(count_include_pad), KILN_FIELD(in_size[0]), KILN_FIELD(out_size[2]),
                    KILN_FIELD(kernel[1]), KILN_FIELD(strides[0]), KILN_FIELD(dilations[2]), KILN_FIELD(pads_begin[1]),
                    KILN_FIELD(pads_end[2])}); }
  { auto q = numbered<DepthwiseParams>();
    device_sees(q, {KILN_FIELD(blocks), KILN_FIELD(multiplier), KILN_FIELD(tile_w), KILN_FIELD(smem_w), KILN_FIELD(in_h),
                    KILN_FIELD(kernel_w), KILN_FIELD(dilation_h), KILN_FIELD(pad_left)}); }
  { auto q = numbered<SkinnyParams>(); device_sees(q, {KILN_FIELD(rows), KILN_FIELD(depth), KILN_FIELD(alpha_bits)}); }
  { auto q = numbered<IntegerMatMulParams>();
    device_sees(q, {KILN_FIELD(n), KILN_FIELD(depth), KILN_FIELD(b_depth_stride), KILN_FIELD(out_dims[7]), KILN_FIELD(strides[0][0]),
                    KILN_FIELD(strides[5][7])}); }
  { auto q = numbered<AttentionParams>();
    device_sees(q, {KILN_FIELD(items), KILN_FIELD(causal), KILN_FIELD(q_view[0]), KILN_FIELD(k_view[4]), KILN_FIELD(v_view[2]),
                    KILN_FIELD(out_view[4]), KILN_FIELD(vector_bits), KILN_FIELD(warps)}); }
  { auto q = numbered<ConstantsParams>();
    device_sees(q, {KILN_FIELD(n), KILN_FIELD(elem), KILN_FIELD(values[0]), KILN_FIELD(values[119])}); }
  { auto q = numbered<TopkParams>(); device_sees(q, {KILN_FIELD(rows), KILN_FIELD(len), KILN_FIELD(inner), KILN_FIELD(k), KILN_FIELD(largest)}); }
  { auto q = numbered<EinsumParams>();
    device_sees(q, {KILN_FIELD(n), KILN_FIELD(sum_count), KILN_FIELD(out_dims[7]), KILN_FIELD(sum_dims[0]), KILN_FIELD(out_strides[0][0]),
                    KILN_FIELD(out_strides[5][7]), KILN_FIELD(sum_strides[2][3]), KILN_FIELD(sum_strides[5][7])}); }
  { auto q = numbered<RangeParams>(); device_sees(q, {KILN_FIELD(n)}); }
  { auto q = numbered<OneHotParams>(); device_sees(q, {KILN_FIELD(n), KILN_FIELD(depth), KILN_FIELD(inner)}); }
  { auto q = numbered<GroupNormParams>();
    device_sees(q, {KILN_FIELD(rows), KILN_FIELD(len), KILN_FIELD(groups), KILN_FIELD(spatial)}); }
  { auto q = numbered<LrnParams>(); device_sees(q, {KILN_FIELD(n), KILN_FIELD(channels), KILN_FIELD(spatial)}); }
  { auto q = numbered<GridSampleParams>();
    device_sees(q, {KILN_FIELD(n), KILN_FIELD(padding), KILN_FIELD(align_corners), KILN_FIELD(in_dims[0]), KILN_FIELD(out_dims[2])}); }
  { auto q = numbered<RoiAlignParams>();
    device_sees(q, {KILN_FIELD(n), KILN_FIELD(batch), KILN_FIELD(pooled_w), KILN_FIELD(half_pixel), KILN_FIELD(scale_bits)}); }
  { auto q = numbered<AffineGridParams>(); device_sees(q, {KILN_FIELD(n), KILN_FIELD(align_corners), KILN_FIELD(dims[2])}); }
  { auto q = numbered<RecurrentParams>();
    device_sees(q, {KILN_FIELD(n), KILN_FIELD(step), KILN_FIELD(hidden), KILN_FIELD(projected), KILN_FIELD(rh_offset)}); }
  { auto q = numbered<CausalConvParams>();
    device_sees(q, {KILN_FIELD(n), KILN_FIELD(outputs), KILN_FIELD(channels), KILN_FIELD(length), KILN_FIELD(kernel)}); }
  { auto q = numbered<LinearAttentionParams>();
    device_sees(q, {KILN_FIELD(threads), KILN_FIELD(steps), KILN_FIELD(group), KILN_FIELD(value_dim), KILN_FIELD(beta_width),
                    KILN_FIELD(scale_bits)}); }
  { auto q = numbered<Col2ImParams>();
    device_sees(q, {KILN_FIELD(n), KILN_FIELD(columns), KILN_FIELD(image[0]), KILN_FIELD(blocks[1]), KILN_FIELD(dilations[2]),
                    KILN_FIELD(pads[2])}); }
  { auto q = numbered<SignalWindowParams>();
    device_sees(q, {KILN_FIELD(n), KILN_FIELD(denom), KILN_FIELD(a0_bits), KILN_FIELD(a1_bits), KILN_FIELD(a2_bits)}); }
  { auto q = numbered<MelParams>(); device_sees(q, {KILN_FIELD(n), KILN_FIELD(mel_bins)}); }
  { auto q = numbered<DftParams>();
    device_sees(q, {KILN_FIELD(n), KILN_FIELD(out_len), KILN_FIELD(inner), KILN_FIELD(in_len), KILN_FIELD(dft_len),
                    KILN_FIELD(in_complex), KILN_FIELD(mode)}); }
  { auto q = numbered<StftParams>();
    device_sees(q, {KILN_FIELD(n), KILN_FIELD(frames), KILN_FIELD(bins), KILN_FIELD(signal_len), KILN_FIELD(frame_len),
                    KILN_FIELD(step), KILN_FIELD(in_complex)}); }
  { auto q = numbered<EyeLikeParams>(); device_sees(q, {KILN_FIELD(n), KILN_FIELD(cols), KILN_FIELD(k)}); }
  { auto q = numbered<ReverseSequenceParams>();
    device_sees(q, {KILN_FIELD(n), KILN_FIELD(batch), KILN_FIELD(time), KILN_FIELD(inner), KILN_FIELD(batch_major)}); }
  { auto q = numbered<TensorScatterParams>();
    device_sees(q, {KILN_FIELD(n), KILN_FIELD(seq), KILN_FIELD(max_seq), KILN_FIELD(inner), KILN_FIELD(per_batch), KILN_FIELD(circular)}); }
  { auto q = numbered<DetParams>(); device_sees(q, {KILN_FIELD(n), KILN_FIELD(size)}); }
  { auto q = numbered<DeformConvParams>();
    device_sees(q, {KILN_FIELD(n), KILN_FIELD(offset_group), KILN_FIELD(in_w), KILN_FIELD(kernel_h), KILN_FIELD(dilation_w),
                    KILN_FIELD(pad_left)}); }
  { auto q = numbered<RandomParams>();
    device_sees(q, {KILN_FIELD(n), KILN_FIELD(key), KILN_FIELD(a_bits), KILN_FIELD(b_bits), KILN_FIELD(classes), KILN_FIELD(samples)}); }
  { auto q = numbered<TreeEnsembleParams>(); device_sees(q, {KILN_FIELD(n), KILN_FIELD(features)}); }
  { auto q = numbered<TfIdfParams>(); device_sees(q, {KILN_FIELD(rows), KILN_FIELD(row_size), KILN_FIELD(width)}); }
  { auto q = numbered<LabelEncoderParams>(); device_sees(q, {KILN_FIELD(n)}); }
}

// Strided walks over the fewest dims: a transpose keeps its swapped dims, the
// contiguous runs on every side merge, size-1 dims go, one dim is always left.
TEST(MergeDimsTest, MergesOnlyWhereEveryStrideSetIsContiguous) {
  MergedDims copy = merge_dims({2, 3, 4, 5}, {{60, 20, 5, 1}, {60, 20, 5, 1}});
  EXPECT_EQ(copy.dims, std::vector<int64_t>({120}));
  EXPECT_EQ(copy.strides, std::vector<std::vector<int64_t>>({{1}, {1}}));
  // [2, 3, 4, 5] read through perm (0, 1, 3, 2): the last two stay apart, the first two merge.
  MergedDims transpose = merge_dims({2, 3, 5, 4}, {{60, 20, 1, 5}, {60, 20, 4, 1}});
  EXPECT_EQ(transpose.dims, std::vector<int64_t>({6, 5, 4}));
  EXPECT_EQ(transpose.strides, std::vector<std::vector<int64_t>>({{20, 1, 5}, {20, 4, 1}}));
  MergedDims ones = merge_dims({1, 7, 1, 3}, {{21, 3, 3, 1}, {0, 3, 0, 1}});
  EXPECT_EQ(ones.dims, std::vector<int64_t>({21}));
  MergedDims broadcast = merge_dims({4, 6}, {{0, 1}, {6, 1}});  // a row read for every output row
  EXPECT_EQ(broadcast.dims, std::vector<int64_t>({4, 6}));
  MergedDims single = merge_dims({1, 1}, {{1, 1}});
  EXPECT_EQ(single.dims, std::vector<int64_t>({1}));
  EXPECT_EQ(single.strides, std::vector<std::vector<int64_t>>({{0}}));
}

// Shapes to elementwise parameters, on the host: dims coalesced and
// right-aligned, each input's strides over them, the path for packs of `width`.
struct Expected {
  std::vector<int64_t> dims;
  std::vector<std::vector<int64_t>> strides;
  bool contiguous, inner_vectors;
};

void expect_params(const std::vector<int64_t>& out, const std::vector<std::vector<int64_t>>& inputs, int width, const Expected& e) {
  SCOPED_TRACE(str("out rank ", out.size(), ", ", inputs.size(), " inputs, width ", width));
  ElementwiseParams q = elementwise_params(out, inputs, width);
  int64_t n = 1;
  for (int64_t d : out) n *= d;
  EXPECT_EQ(q.n, n);
  ASSERT_EQ(q.rank, int64_t(e.dims.size()));
  size_t first = size_t(kMaxRank) - e.dims.size();
  for (size_t d = 0; d < size_t(kMaxRank); ++d) {
    EXPECT_EQ(q.out_dims[d], d < first ? 1 : e.dims[d - first]) << "dim " << d;
    for (size_t k = 0; k < inputs.size(); ++k)
      EXPECT_EQ(q.in_strides[k][d], d < first ? 0 : e.strides[k][d - first]) << "input " << k << " dim " << d;
  }
  EXPECT_EQ(q.contiguous, e.contiguous);
  EXPECT_EQ(q.inner_vectors, e.inner_vectors);
  bool packs = (e.contiguous || e.inner_vectors) && n < (int64_t(1) << 31);
  EXPECT_EQ(elementwise_threads(q, width), packs ? (n + width - 1) / width : n);
}

TEST(ElementwiseParamsTest, CoalescesDimsAndPicksThePath) {
  // Same shapes, any rank: one dim; size-1 dims dropped.
  expect_params({3, 5, 67}, {{3, 5, 67}, {3, 5, 67}}, 8, {{1005}, {{1}, {1}}, true, false});
  expect_params({2, 1, 8}, {{2, 1, 8}}, 8, {{16}, {{1}}, true, false});
  expect_params({1, 1}, {{1}, {1, 1}}, 4, {{1}, {{0}, {0}}, true, false});
  // [N, HW, C] + [C]: N and HW merge (both inputs contiguous or broadcast across them).
  expect_params({2, 49, 96}, {{2, 49, 96}, {96}}, 8, {{98, 96}, {{96, 1}, {0, 1}}, false, true});
  expect_params({2, 5, 7}, {{2, 5, 7}, {7}}, 8, {{10, 7}, {{7, 1}, {0, 1}}, false, false});
  // [N, C, H, W] * [C, 1, 1]: H and W merge; the scale is one element for a whole pack.
  expect_params({2, 16, 8, 8}, {{2, 16, 8, 8}, {16, 1, 1}}, 8, {{2, 16, 64}, {{1024, 64, 1}, {0, 1, 0}}, false, true});
  expect_params({2, 16, 7, 7}, {{2, 16, 7, 7}, {16, 1, 1}}, 4, {{2, 16, 49}, {{784, 49, 1}, {0, 1, 0}}, false, false});
  // [B, H, S, S] + [B, 1, 1, S]: H and the first S merge.
  expect_params({2, 4, 16, 16}, {{2, 4, 16, 16}, {2, 1, 1, 16}}, 8, {{2, 64, 16}, {{1024, 16, 1}, {16, 0, 1}}, false, true});
  // A scalar: one dim, the tail left to the elements.
  expect_params({1003}, {{1003}, {1}}, 8, {{1003}, {{1}, {0}}, false, true});
  expect_params({2, 3, 5}, {{}, {2, 3, 5}}, 2, {{30}, {{0}, {1}}, false, true});
  // [N, C] - [N, 1] and an outer product of broadcasts.
  expect_params({6, 32}, {{6, 32}, {6, 1}}, 8, {{6, 32}, {{32, 1}, {1, 0}}, false, true});
  expect_params({4, 3, 8}, {{4, 1, 8}, {1, 3, 8}}, 16, {{4, 3, 8}, {{8, 0, 1}, {0, 8, 1}}, false, false});
  expect_params({4, 3, 8}, {{4, 1, 8}, {1, 3, 8}}, 8, {{4, 3, 8}, {{8, 0, 1}, {0, 8, 1}}, false, true});
  // More elements than 32-bit vector indices reach: one thread an element.
  expect_params({int64_t(1) << 31}, {{int64_t(1) << 31}}, 8, {{int64_t(1) << 31}, {{1}}, true, false});
}

INSTANTIATE_TEST_SUITE_P(Arch, KernelParams, ::testing::Values(80, 90),
                         [](const auto& info) { return "sm_" + std::to_string(info.param); });

// Each generator reads the struct the runtime packs for it: generic variants
// view KParams as it, specialized ones compile in a constexpr one.
TEST(KernelParamsText, EachGeneratorBindsItsStruct) {
  auto binds = [](const std::string& source, const std::string& type, bool specialized) {
    std::string binding = "  const " + type + "& prm = " + (specialized ? "kiln_params;" : "*reinterpret_cast<const " + type + "*>(&p);");
    bool constants = source.find("__device__ constexpr " + type + " kiln_params = {") != std::string::npos;
    return source.find(binding) != std::string::npos && constants == specialized;
  };
  std::optional<Params> some = some_params();
  for (const std::optional<Params>& spec : {std::optional<Params>(), some}) {
    bool s = spec.has_value();
    ir::FusedInstruction relu;
    relu.op = OpKind::kRelu;
    relu.args[0] = 0;
    EXPECT_TRUE(binds(elementwise_source({{relu}, {DType::kFloat32}, DType::kFloat32, spec}), "ElementwiseParams", s));
    EXPECT_TRUE(binds(cast_source(DType::kFloat32, DType::kInt64, true, spec), "ElementwiseParams", s));
    EXPECT_TRUE(binds(row_source({RowOp::kSoftmax, DType::kFloat32, false, false, 1e-5, spec}), "RowParams", s));
    EXPECT_TRUE(binds(line_source(LineOp::kCumSum, DType::kFloat32, spec), "LineParams", s));
    EXPECT_TRUE(binds(reduce_source({ReduceOp::kSum, DType::kFloat32, spec}), "ReduceParams", s));
    EXPECT_TRUE(binds(remap_source({DType::kFloat32, spec}), "RemapParams", s));
    EXPECT_TRUE(binds(gather_source(DType::kFloat32, DType::kInt64, false, spec), "GatherParams", s));
    EXPECT_TRUE(binds(trilu_source(DType::kFloat32, spec), "TriluParams", s));
    for (IndexedOp op : {IndexedOp::kScatterND, IndexedOp::kScatterElements, IndexedOp::kGatherND})
      EXPECT_TRUE(binds(indexed_source({op, DType::kFloat32, DType::kInt64, ScatterReduction::kNone, spec}), "IndexedParams", s));
    EXPECT_TRUE(binds(resize_source({DType::kFloat32, DType::kFloat32, DType::kFloat32, spec}), "ResizeParams", s));
    EXPECT_TRUE(binds(window_source({WindowOp::kConv, DType::kFloat32, true, spec}), "WindowParams", s));
    EXPECT_TRUE(binds(depthwise_source({DType::kFloat32, true, spec}), "DepthwiseParams", s));
    EXPECT_TRUE(binds(skinny_matmul_source({DType::kFloat16, false, false, false, "none", spec}), "SkinnyParams", s));
    EXPECT_TRUE(binds(attention_source(DType::kFloat16, spec), "AttentionParams", s));
    EXPECT_TRUE(binds(attention_mma_source(DType::kFloat16, 64, spec), "AttentionParams", s));
    EXPECT_TRUE(binds(attention_mma_source(DType::kFloat16, 64, spec, DType::kBool), "AttentionParams", s));
    EXPECT_TRUE(binds(group_norm_source({DType::kFloat32, 1e-5, spec}), "GroupNormParams", s));
    EXPECT_TRUE(binds(lrn_source({DType::kFloat32, 1e-4, 0.75, 1.0, 5, spec}), "LrnParams", s));
    EXPECT_TRUE(binds(grid_sample_source({DType::kFloat32, DType::kFloat16, spec}), "GridSampleParams", s));
    EXPECT_TRUE(binds(roi_align_source(DType::kFloat32, spec), "RoiAlignParams", s));
    EXPECT_TRUE(binds(affine_grid_source(DType::kFloat32, spec), "AffineGridParams", s));
    EXPECT_TRUE(binds(col2im_source(DType::kFloat32, spec), "Col2ImParams", s));
    RecurrentSpec recurrent = recurrent_spec(OpKind::kLSTM, DType::kFloat32, RecurrentKernel::kInit, true, {});
    recurrent.specialize = spec;
    EXPECT_TRUE(binds(recurrent_source(recurrent), "RecurrentParams", s));
    EXPECT_TRUE(binds(causal_conv_source({DType::kFloat32, true, true, true, spec}), "CausalConvParams", s));
    EXPECT_TRUE(binds(linear_attention_source({DType::kFloat16, DType::kFloat32, true, true, true, true, spec}),
                      "LinearAttentionParams", s));
  }
  for (const std::optional<Params>& spec : {std::optional<Params>(), some}) {
    bool s = spec.has_value();
    EXPECT_TRUE(binds(topk_source(DType::kFloat32, spec), "TopkParams", s));
    EXPECT_TRUE(binds(einsum_source(DType::kFloat32, 2, spec), "EinsumParams", s));
    EXPECT_TRUE(binds(integer_matmul_source({DType::kInt8, DType::kUInt8, DType::kInt32, true, true, false, DType::kFloat32, spec}),
                      "IntegerMatMulParams", s));
    EXPECT_TRUE(binds(integer_conv_source({DType::kUInt8, DType::kInt8, DType::kInt32, true, true, false, false, false, false, spec}),
                      "WindowParams", s));
    EXPECT_TRUE(binds(range_source(DType::kInt64, spec), "RangeParams", s));
    EXPECT_TRUE(binds(onehot_source(DType::kFloat32, DType::kInt64, spec), "OneHotParams", s));
    EXPECT_TRUE(binds(signal_window_source(DType::kFloat32, spec), "SignalWindowParams", s));
    EXPECT_TRUE(binds(mel_weight_matrix_source(DType::kFloat32, DType::kInt64, DType::kFloat32, spec), "MelParams", s));
    EXPECT_TRUE(binds(dft_source(DType::kFloat32, spec), "DftParams", s));
    EXPECT_TRUE(binds(stft_source(DType::kFloat32, true, spec), "StftParams", s));
    EXPECT_TRUE(binds(eye_like_source(DType::kFloat32, spec), "EyeLikeParams", s));
    EXPECT_TRUE(binds(reverse_sequence_source(DType::kFloat32, spec), "ReverseSequenceParams", s));
    EXPECT_TRUE(binds(tensor_scatter_source(DType::kFloat32, true, spec), "TensorScatterParams", s));
    EXPECT_TRUE(binds(det_source(DType::kFloat32, spec), "DetParams", s));
    EXPECT_TRUE(binds(deform_conv_source({DType::kFloat32, true, true, spec}), "DeformConvParams", s));
    EXPECT_TRUE(binds(random_source({RandomKind::kNormal, DType::kFloat32, DType::kFloat32, spec}), "RandomParams", s));
    EXPECT_TRUE(binds(tree_ensemble_source({DType::kFloat32, small_forest(ir::TreeAggregate::kSum, ir::TreePostTransform::kNone, 2), spec}),
                      "TreeEnsembleParams", s));
    TfIdfSpec tfidf;
    tfidf.grams = {{{1}, 0}};
    tfidf.specialize = spec;
    EXPECT_TRUE(binds(tfidf_source(tfidf), "TfIdfParams", s));
    const int64_t keys[] = {1, 2};
    ir::TensorData k = vector_of_bits(DType::kInt64, keys, 2), fallback = vector_of_bits(DType::kInt64, keys, 1);
    EXPECT_TRUE(binds(label_encoder_source({{k, k, fallback}, spec}), "LabelEncoderParams", s));
    EXPECT_TRUE(binds(array_feature_extractor_source(DType::kFloat32, spec), "GatherParams", s));
  }
  EXPECT_TRUE(binds(constants_source(), "ConstantsParams", false));
}

// The kernels get the very text of kernel_params.h, which the host compiles.
// The random kernels get the very text of random_math.h, which the reference compiles.
TEST(RandomMathText, IsTheHeader) {
  std::ifstream file(KILN_RANDOM_MATH_PATH);
  ASSERT_TRUE(file) << KILN_RANDOM_MATH_PATH;
  std::stringstream text;
  text << file.rdbuf();
  EXPECT_EQ(random_math_source(), text.str());
  EXPECT_NE(random_source({RandomKind::kUniform, DType::kFloat32, DType::kFloat32, std::nullopt}).find(text.str()), std::string::npos);
}

TEST(KernelParamsText, IsTheHeader) {
  std::ifstream file(KILN_KERNEL_PARAMS_PATH);
  ASSERT_TRUE(file) << KILN_KERNEL_PARAMS_PATH;
  std::stringstream text;
  text << file.rdbuf();
  EXPECT_EQ(kernel_params_source(), text.str());
  EXPECT_NE(prelude().find(text.str()), std::string::npos);
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
