// Every GPU kernel family against the reference interpreter, on seeded random
// non-zero data, in fp32 and fp16 (and bf16 where it matters).
#include "gpu_test_util.h"
#include "kiln/error.h"

namespace kiln::testing {
namespace {

using ir::Dim;
using ir::OpKind;
using ir::ValueId;
using P = plan::Precision;

struct Case {
  std::string name;
  std::function<void(ir::Network&, std::mt19937&)> build;  // adds inputs, weights, nodes, outputs
  std::vector<std::pair<std::string, std::vector<int64_t>>> inputs;
  bool fp32_only = false;  // argmax-like results are not comparable after rounding inputs to half precision
};

ValueId weight(ir::Network& net, const std::string& name, std::vector<int64_t> dims, std::mt19937& rng) {
  return net.add_weight(name, random_tensor(DType::kFloat32, dims, rng));
}

ValueId ints(ir::Network& net, const std::string& name, std::vector<int64_t> v) {
  return net.add_weight(name, reference::make_tensor(DType::kInt64, {int64_t(v.size())}, std::vector<double>(v.begin(), v.end())));
}

// Exported multi-head attention (3 heads of 24): the builder fuses it into one
// Attention kernel reading the QKV projection through views, and the residual
// Add behind the output projection's views into its epilogue. seq_len 0: a
// symbolic length "seq" (reshapes keep it with 0 and -1, as exporters do).
void exported_attention_block(ir::Network& n, std::mt19937& r, int64_t seq_len) {
  const int64_t heads = 3, hd = 24, e = heads * hd, seq = seq_len, any = seq_len ? seq_len : -1;
  ValueId x = n.add_input("x", DType::kFloat32, {Dim(1), seq_len ? Dim(seq_len) : Dim::symbol("seq"), Dim(e)});
  auto perm = [](std::vector<int64_t> p) { return attrs({{"perm", p}}); };
  ValueId xt = n.add_op1(OpKind::kTranspose, {x}, perm({1, 0, 2}));
  ValueId qkv = n.add_op1(OpKind::kAdd, {n.add_op1(OpKind::kMatMul, {xt, weight(n, "w_in", {e, 3 * e}, r)}), weight(n, "b_in", {3 * e}, r)});
  ValueId split = n.add_op1(OpKind::kReshape, {qkv, ints(n, "s1", {seq, 1, 3, e})});
  split = n.add_op1(OpKind::kTranspose, {n.add_op1(OpKind::kUnsqueeze, {split, ints(n, "a0", {0})})}, perm({3, 1, 2, 0, 4}));
  split = n.add_op1(OpKind::kSqueeze, {split, ints(n, "a3", {3})});
  std::vector<ValueId> parts;
  for (int i = 0; i < 3; ++i) {
    ValueId part = n.add_op1(OpKind::kGather, {split, n.add_weight(str("i", i), reference::make_tensor(DType::kInt64, {}, {double(i)}))},
                             attrs({{"axis", int64_t(0)}}));
    part = n.add_op1(OpKind::kTranspose, {n.add_op1(OpKind::kReshape, {part, ints(n, str("h", i), {seq, heads, hd})})}, perm({1, 0, 2}));
    parts.push_back(n.add_op1(OpKind::kReshape, {part, ints(n, str("b", i), {1, heads, any, hd})}));
  }
  ValueId q = n.add_op1(OpKind::kMul, {parts[0], n.add_weight("scale", reference::make_tensor(DType::kFloat32, {}, {0.3}))});
  ValueId scores = n.add_op1(OpKind::kMatMul, {q, n.add_op1(OpKind::kTranspose, {parts[1]}, perm({0, 1, 3, 2}))});
  ValueId probs = n.add_op1(OpKind::kSoftmax, {scores}, attrs({{"axis", int64_t(-1)}}));
  ValueId merged = n.add_op1(OpKind::kTranspose, {n.add_op1(OpKind::kMatMul, {probs, parts[2]})}, perm({2, 0, 1, 3}));
  merged = n.add_op1(OpKind::kReshape, {merged, ints(n, "m", {seq, e})});
  ValueId projected = n.add_op1(OpKind::kGemm, {merged, weight(n, "w_out", {e, e}, r), weight(n, "b_out", {e}, r)},
                                attrs({{"transB", int64_t(1)}}));
  projected = n.add_op1(OpKind::kTranspose, {n.add_op1(OpKind::kReshape, {projected, ints(n, "r", {seq, 1, e})})}, perm({1, 0, 2}));
  ValueId residual = n.add_op1(OpKind::kAdd, {x, projected});
  n.add_output(n.add_op1(OpKind::kLayerNormalization, {residual, weight(n, "ln_g", {e}, r), weight(n, "ln_b", {e}, r)}));
}

std::vector<Case> cases() {
  std::vector<Case> c;
  auto in = [](ir::Network& net, const std::string& name, std::vector<int64_t> dims) {
    return net.add_input(name, DType::kFloat32, ir::shape_of(dims));
  };
  c.push_back({"matmul_bias_relu_residual", [&](ir::Network& n, std::mt19937& r) {
    ValueId x = in(n, "x", {3, 5, 64});
    ValueId h = n.add_op1(OpKind::kRelu, {n.add_op1(OpKind::kAdd, {n.add_op1(OpKind::kMatMul, {x, weight(n, "w", {64, 64}, r)}), weight(n, "b", {64}, r)})});
    ValueId g = n.add_op1(OpKind::kGelu, {n.add_op1(OpKind::kMatMul, {h, weight(n, "w2", {64, 64}, r)})});
    n.add_output(n.add_op1(OpKind::kAdd, {x, n.add_op1(OpKind::kMatMul, {g, weight(n, "w3", {64, 64}, r)})}));
  }, {{"x", {3, 5, 64}}}});
  c.push_back({"skinny_matmuls_every_epilogue", [&](ir::Network& n, std::mt19937& r) {
    ValueId x = in(n, "x", {2, 3, 96});  // 6 rows and a short K: the skinny kernel
    ValueId h = n.add_op1(OpKind::kGelu, {n.add_op1(OpKind::kAdd, {n.add_op1(OpKind::kMatMul, {x, weight(n, "w", {96, 80}, r)}), weight(n, "b", {80}, r)})});
    ValueId s2 = n.add_op1(OpKind::kSigmoid, {n.add_op1(OpKind::kMatMul, {h, weight(n, "w2", {80, 96}, r)})});
    n.add_output(n.add_op1(OpKind::kAdd, {x, n.add_op1(OpKind::kMatMul, {s2, weight(n, "w3", {96, 96}, r)})}));
    ValueId t = n.add_op1(OpKind::kGemm, {n.add_op1(OpKind::kReshape, {x, ints(n, "flat", {6, 96})}), weight(n, "wt", {40, 96}, r), weight(n, "bt", {40}, r)},
                          attrs({{"transB", int64_t(1)}, {"alpha", 0.5}}));
    n.add_output(n.add_op1(OpKind::kTanh, {t}));
  }, {{"x", {2, 3, 96}}}});
  c.push_back({"skinny_eight_rows_wide", [&](ir::Network& n, std::mt19937& r) {
    ValueId x = in(n, "x", {8, 64});  // 8 rows and 32 blocks of columns each way: the skinny kernel
    ValueId h = n.add_op1(OpKind::kGemm, {x, weight(n, "w", {256, 64}, r), weight(n, "b", {256}, r)}, attrs({{"transB", int64_t(1)}}));
    h = n.add_op1(OpKind::kGelu, {h});
    ValueId wide = n.add_op1(OpKind::kMatMul, {x, weight(n, "w2", {64, 1024}, r)});
    n.add_output(n.add_op1(OpKind::kAdd, {wide, n.add_op1(OpKind::kMatMul, {h, weight(n, "w3", {256, 1024}, r)})}));
    // w5: a long K over two blocks of columns goes to cuBLASLt.
    n.add_output(n.add_op1(OpKind::kMatMul, {n.add_op1(OpKind::kMatMul, {x, weight(n, "w4", {64, 1024}, r)}), weight(n, "w5", {1024, 64}, r)}));
  }, {{"x", {8, 64}}}});
  c.push_back({"gemm_transb_gelu_tanh", [&](ir::Network& n, std::mt19937& r) {
    ValueId x = in(n, "x", {4, 48});
    ValueId y = n.add_op1(OpKind::kGemm, {x, weight(n, "w", {32, 48}, r), weight(n, "b", {32}, r)}, attrs({{"transB", int64_t(1)}}));
    n.add_output(n.add_op1(OpKind::kGelu, {y}, attrs({{"approximate", std::string("tanh")}})));
  }, {{"x", {4, 48}}}});
  c.push_back({"batched_matmul_and_softmax", [&](ir::Network& n, std::mt19937& r) {
    ValueId q = in(n, "q", {2, 4, 7, 16}), k = in(n, "k", {2, 4, 16, 7});
    ValueId s = n.add_op1(OpKind::kMul, {n.add_op1(OpKind::kMatMul, {q, k}), n.add_weight("scale", reference::make_tensor(DType::kFloat32, {}, {0.25}))});
    n.add_output(n.add_op1(OpKind::kSoftmax, {s}));
    n.add_output(n.add_op1(OpKind::kLogSoftmax, {s}, attrs({{"axis", int64_t(2)}})));
  }, {{"q", {2, 4, 7, 16}}, {"k", {2, 4, 16, 7}}}});
  c.push_back({"attention_scores_with_scaled_operands_and_k_transposed", [&](ir::Network& n, std::mt19937& r) {
    // As exported attention has it: q and k scaled by constants, k^T a Transpose (the builder folds both into the matmul).
    ValueId q = in(n, "q", {2, 4, 9, 16}), k = in(n, "k", {2, 4, 9, 16}), v = in(n, "v", {2, 4, 9, 16});
    ValueId c = n.add_weight("c", reference::make_tensor(DType::kFloat32, {}, {0.5}));
    ValueId kt = n.add_op1(OpKind::kTranspose, {n.add_op1(OpKind::kMul, {k, c})}, attrs({{"perm", std::vector<int64_t>{0, 1, 3, 2}}}));
    ValueId p = n.add_op1(OpKind::kSoftmax, {n.add_op1(OpKind::kMatMul, {n.add_op1(OpKind::kMul, {q, c}), kt})});
    n.add_output(n.add_op1(OpKind::kMatMul, {p, v}));
  }, {{"q", {2, 4, 9, 16}}, {"k", {2, 4, 9, 16}}, {"v", {2, 4, 9, 16}}}});
  c.push_back({"layernorm_then_elementwise_chain", [&](ir::Network& n, std::mt19937& r) {
    ValueId x = in(n, "x", {6, 96});
    ValueId ln = n.add_op1(OpKind::kLayerNormalization, {x, weight(n, "g", {96}, r), weight(n, "b", {96}, r)});
    ValueId e = n.add_op1(OpKind::kMul, {ln, n.add_op1(OpKind::kSigmoid, {ln})});
    // The divisor stays in [1, 4]: half precision must not divide by near-zero values.
    ValueId c2 = n.add_weight("c", reference::make_tensor(DType::kFloat32, {6, 1}, {2, 2.5, 3, 2.2, 2.8, 2.1}));
    ValueId t = n.add_op1(OpKind::kDiv, {n.add_op1(OpKind::kTanh, {e}), n.add_op1(OpKind::kAdd, {c2, x})});
    n.add_output(n.add_op1(OpKind::kWhere, {n.add_input("mask", DType::kBool, {Dim(1), Dim(96)}), t, x}));
  }, {{"x", {6, 96}}, {"mask", {1, 96}}}});
  for (const char* op : {"ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceL2", "ReduceLogSumExp", "ReduceSumSquare"}) {
    c.push_back({std::string(op) + "_axes_0_2", [op](ir::Network& n, std::mt19937& r) {
      ValueId x = n.add_input("x", DType::kFloat32, {Dim(3), Dim(4), Dim(5)});
      n.add_output(n.add_op1(*ir::op_from_name(op), {x, ints(n, "axes", {0, 2})}));
      n.add_output(n.add_op1(*ir::op_from_name(op), {x}, attrs({{"keepdims", int64_t(0)}})));
    }, {{"x", {3, 4, 5}}}});
  }
  c.push_back({"movement", [&](ir::Network& n, std::mt19937& r) {
    ValueId x = in(n, "x", {2, 3, 4, 5});
    n.add_output(n.add_op1(OpKind::kTranspose, {x}, attrs({{"perm", std::vector<int64_t>{0, 3, 1, 2}}})));
    n.add_output(n.add_op1(OpKind::kSlice, {x, ints(n, "st", {1, -1}), ints(n, "en", {3, -6}), ints(n, "ax", {1, 3}), ints(n, "sp", {1, -2})}));
    n.add_output(n.add_op1(OpKind::kExpand, {weight(n, "e", {3, 1, 5}, r), ints(n, "shape", {2, 3, 4, 5})}));
    n.add_output(n.add_op1(OpKind::kTile, {x, ints(n, "reps", {1, 2, 1, 3})}));
    auto parts = n.add_op(OpKind::kSplit, {x, ints(n, "split", {1, 3, 1})}, attrs({{"axis", int64_t(3)}}), 3);
    n.add_output(n.add_op1(OpKind::kConcat, {parts[2], parts[0], parts[1]}, attrs({{"axis", int64_t(3)}})));
    n.add_output(n.add_op1(OpKind::kReshape, {x, ints(n, "rs", {6, -1})}));
  }, {{"x", {2, 3, 4, 5}}}});
  for (const char* mode : {"constant", "edge", "reflect", "wrap"}) {
    c.push_back({std::string("pad_") + mode, [mode](ir::Network& n, std::mt19937& r) {
      ValueId x = n.add_input("x", DType::kFloat32, {Dim(2), Dim(3), Dim(4)});
      ValueId value = n.add_weight("v", reference::make_tensor(DType::kFloat32, {}, {2.5}));
      n.add_output(n.add_op1(OpKind::kPad, {x, ints(n, "pads", {0, 2, 1, 0, 1, 3}), value}, attrs({{"mode", std::string(mode)}})));
    }, {{"x", {2, 3, 4}}}});
  }
  c.push_back({"gather_and_depth_space", [&](ir::Network& n, std::mt19937& r) {
    ValueId x = in(n, "x", {2, 8, 4, 6});
    ValueId idx = n.add_weight("i", reference::make_tensor(DType::kInt64, {2, 2}, {3, -1, 0, 5}));
    n.add_output(n.add_op1(OpKind::kGather, {x, idx}, attrs({{"axis", int64_t(1)}})));
    for (const char* mode : {"DCR", "CRD"})
      n.add_output(n.add_op1(OpKind::kDepthToSpace, {x}, attrs({{"blocksize", int64_t(2)}, {"mode", std::string(mode)}})));
    n.add_output(n.add_op1(OpKind::kSpaceToDepth, {x}, attrs({{"blocksize", int64_t(2)}})));
  }, {{"x", {2, 8, 4, 6}}}});
  c.push_back({"conv_pool", [&](ir::Network& n, std::mt19937& r) {
    ValueId x = in(n, "x", {2, 4, 11, 9});
    ValueId conv = n.add_op1(OpKind::kConv, {x, weight(n, "w", {6, 2, 3, 3}, r), weight(n, "b", {6}, r)},
                             attrs({{"group", int64_t(2)}, {"strides", std::vector<int64_t>{2, 1}},
                                    {"pads", std::vector<int64_t>{1, 0, 1, 2}}, {"dilations", std::vector<int64_t>{1, 2}}}));
    n.add_output(conv);
    n.add_output(n.add_op1(OpKind::kMaxPool, {conv}, attrs({{"kernel_shape", std::vector<int64_t>{3, 2}}, {"strides", std::vector<int64_t>{2, 2}}, {"pads", std::vector<int64_t>{1, 1, 1, 1}}})));
    n.add_output(n.add_op1(OpKind::kAveragePool, {conv}, attrs({{"kernel_shape", std::vector<int64_t>{2, 3}}, {"count_include_pad", int64_t(1)}, {"pads", std::vector<int64_t>{1, 1, 0, 1}}})));
    n.add_output(n.add_op1(OpKind::kGlobalAveragePool, {conv}));
    n.add_output(n.add_op1(OpKind::kGlobalMaxPool, {conv}));
    n.add_output(n.add_op1(OpKind::kConvTranspose, {x, weight(n, "wt", {4, 3, 3, 2}, r), weight(n, "bt", {6}, r)},
                           attrs({{"group", int64_t(2)}, {"strides", std::vector<int64_t>{2, 3}}, {"pads", std::vector<int64_t>{1, 0, 0, 1}},
                                  {"output_padding", std::vector<int64_t>{1, 0}}})));
  }, {{"x", {2, 4, 11, 9}}}});
  c.push_back({"conv_bn_relu_folded", [&](ir::Network& n, std::mt19937& r) {
    ValueId x = in(n, "x", {1, 3, 16, 16});
    ValueId conv = n.add_op1(OpKind::kConv, {x, weight(n, "w", {8, 3, 3, 3}, r)}, attrs({{"pads", std::vector<int64_t>{1, 1, 1, 1}}}));
    std::uniform_real_distribution<double> pos(0.5, 1.5);
    std::vector<double> var(8);
    for (auto& v : var) v = pos(r);
    ValueId bn = n.add_op1(OpKind::kBatchNormalization, {conv, weight(n, "s", {8}, r), weight(n, "bb", {8}, r), weight(n, "m", {8}, r),
                                                         n.add_weight("v", reference::make_tensor(DType::kFloat32, {8}, var))});
    n.add_output(n.add_op1(OpKind::kRelu, {bn}));
  }, {{"x", {1, 3, 16, 16}}}});
  // In half precision the builder makes these Convs and the MaxPool channels-last
  // (cuDNN) and the biases ride in the ReLU kernels; the depthwise Conv stays
  // channels-first between layout transposes.
  c.push_back({"resnet_block_channels_last", [&](ir::Network& n, std::mt19937& r) {
    ValueId x = in(n, "x", {2, 8, 12, 10});
    auto conv = [&](ValueId v, const std::string& name, int64_t cin, int64_t cout, int64_t k, int64_t stride, int64_t group) {
      return n.add_op1(OpKind::kConv, {v, weight(n, name + "_w", {cout, cin / group, k, k}, r), weight(n, name + "_b", {cout}, r)},
                       attrs({{"pads", std::vector<int64_t>(4, k / 2)}, {"strides", std::vector<int64_t>{stride, stride}},
                              {"group", group}}));
    };
    ValueId stem = n.add_op1(OpKind::kRelu, {conv(x, "stem", 8, 16, 3, 1, 1)});
    ValueId pooled = n.add_op1(OpKind::kMaxPool, {stem}, attrs({{"kernel_shape", std::vector<int64_t>{3, 3}}, {"strides", std::vector<int64_t>{2, 2}},
                                                                  {"pads", std::vector<int64_t>{1, 1, 1, 1}}}));
    ValueId a = n.add_op1(OpKind::kRelu, {conv(pooled, "a", 16, 16, 3, 1, 1)});
    ValueId block = n.add_op1(OpKind::kRelu, {n.add_op1(OpKind::kAdd, {conv(a, "b", 16, 16, 3, 1, 1), pooled})});
    ValueId depthwise = n.add_op1(OpKind::kSigmoid, {conv(block, "dw", 16, 16, 3, 2, 16)});
    n.add_output(n.add_op1(OpKind::kGlobalAveragePool, {conv(depthwise, "down", 16, 24, 1, 1, 1)}));
    n.add_output(block);
  }, {{"x", {2, 8, 12, 10}}}});
  c.push_back({"exported_attention_fused", [&](ir::Network& n, std::mt19937& r) { exported_attention_block(n, r, 40); },
               {{"x", {1, 40, 72}}}});
  // GPT-2's attention: a Split of the projection, scores / sqrt(D), a causal
  // Where mask; fused with causal=1 (40 rows: the second key tile is partly masked).
  c.push_back({"causal_attention_fused", [&](ir::Network& n, std::mt19937& r) {
    const int64_t seq = 40, heads = 2, hd = 32, e = heads * hd;
    ValueId x = in(n, "x", {1, seq, e});
    auto perm = [](std::vector<int64_t> p) { return attrs({{"perm", p}}); };
    auto parts = n.add_op(OpKind::kSplit, {n.add_op1(OpKind::kMatMul, {x, weight(n, "w_qkv", {e, 3 * e}, r)}), ints(n, "sizes", {e, e, e})},
                          attrs({{"axis", int64_t(2)}}), 3);
    std::vector<ValueId> h;
    for (int i = 0; i < 3; ++i)
      h.push_back(n.add_op1(OpKind::kTranspose, {n.add_op1(OpKind::kReshape, {parts[size_t(i)], ints(n, str("h", i), {1, seq, heads, hd})})},
                            perm({0, 2, 1, 3})));
    ValueId scores = n.add_op1(OpKind::kMatMul, {h[0], n.add_op1(OpKind::kTranspose, {h[1]}, perm({0, 1, 3, 2}))});
    scores = n.add_op1(OpKind::kDiv, {scores, n.add_weight("root_d", reference::make_tensor(DType::kFloat32, {}, {std::sqrt(double(hd))}))});
    std::vector<double> upper(size_t(seq * seq));
    for (int64_t i = 0; i < seq; ++i)
      for (int64_t j = 0; j < seq; ++j) upper[size_t(i * seq + j)] = j > i;
    ValueId masked = n.add_op1(OpKind::kWhere, {n.add_weight("mask", reference::make_tensor(DType::kBool, {seq, seq}, upper)),
                                                n.add_weight("minus_inf", reference::make_tensor(DType::kFloat32, {}, {-INFINITY})), scores});
    ValueId probs = n.add_op1(OpKind::kSoftmax, {masked}, attrs({{"axis", int64_t(-1)}}));
    ValueId merged = n.add_op1(OpKind::kTranspose, {n.add_op1(OpKind::kMatMul, {probs, h[2]})}, perm({0, 2, 1, 3}));
    n.add_output(n.add_op1(OpKind::kReshape, {merged, ints(n, "m", {1, seq, e})}));
  }, {{"x", {1, 40, 64}}}});
  c.push_back({"resize", [&](ir::Network& n, std::mt19937& r) {
    ValueId x = in(n, "x", {1, 2, 5, 6});
    ValueId scales = n.add_weight("scales", reference::make_tensor(DType::kFloat32, {4}, {1, 1, 1.6, 0.75}));
    n.add_output(n.add_op1(OpKind::kResize, {x, ir::kNoValue, scales}, attrs({{"mode", std::string("linear")}})));
    n.add_output(n.add_op1(OpKind::kResize, {x, ir::kNoValue, scales},
                           attrs({{"mode", std::string("cubic")}, {"coordinate_transformation_mode", std::string("align_corners")}})));
    n.add_output(n.add_op1(OpKind::kResize, {x, ir::kNoValue, ir::kNoValue, ints(n, "sizes", {1, 2, 9, 4})},
                           attrs({{"mode", std::string("nearest")}, {"nearest_mode", std::string("ceil")}})));
  }, {{"x", {1, 2, 5, 6}}}});
  // Resize-18's antialiasing: downscaling by 0.3 and 0.45 stretches the filters over 8 and 6 (linear)
  // or 16 and 12 (cubic, exclude_outside) taps; upscaling with it is plain interpolation.
  c.push_back({"resize_antialias", [&](ir::Network& n, std::mt19937& r) {
    ValueId x = in(n, "x", {1, 2, 17, 23});
    ValueId down = n.add_weight("down", reference::make_tensor(DType::kFloat32, {4}, {1, 1, 0.3, 0.45}));
    ValueId up = n.add_weight("up", reference::make_tensor(DType::kFloat32, {4}, {1, 1, 1.6, 0.45}));
    n.add_output(n.add_op1(OpKind::kResize, {x, ir::kNoValue, down}, attrs({{"mode", std::string("linear")}, {"antialias", int64_t(1)}})));
    n.add_output(n.add_op1(OpKind::kResize, {x, ir::kNoValue, ir::kNoValue, ints(n, "sizes", {1, 2, 5, 7})},
                           attrs({{"mode", std::string("cubic")}, {"antialias", int64_t(1)}, {"exclude_outside", int64_t(1)}})));
    n.add_output(n.add_op1(OpKind::kResize, {x, ir::kNoValue, up},
                           attrs({{"mode", std::string("cubic")}, {"antialias", int64_t(1)},
                                  {"coordinate_transformation_mode", std::string("pytorch_half_pixel")}})));
  }, {{"x", {1, 2, 17, 23}}}});
  c.push_back({"lines_and_rows", [&](ir::Network& n, std::mt19937& r) {
    ValueId x = in(n, "x", {3, 7, 5});
    n.add_output(n.add_op1(OpKind::kHardmax, {x}, attrs({{"axis", int64_t(1)}})));
    n.add_output(n.add_op1(OpKind::kArgMax, {x}, attrs({{"axis", int64_t(1)}, {"keepdims", int64_t(0)}})));
    n.add_output(n.add_op1(OpKind::kArgMin, {x}, attrs({{"axis", int64_t(-1)}, {"select_last_index", int64_t(1)}})));
    ValueId axis = n.add_weight("axis", reference::make_tensor(DType::kInt64, {}, {1}));
    n.add_output(n.add_op1(OpKind::kCumSum, {x, axis}, attrs({{"reverse", int64_t(1)}, {"exclusive", int64_t(1)}})));
    n.add_output(n.add_op1(OpKind::kTrilu, {x, n.add_weight("k", reference::make_tensor(DType::kInt64, {}, {1}))}, attrs({{"upper", int64_t(0)}})));
    auto ln = n.add_op(OpKind::kLayerNormalization, {x, weight(n, "g", {5}, r)}, attrs({{"epsilon", 1e-3}}), 3);
    for (ValueId v : ln) n.add_output(v);
  }, {{"x", {3, 7, 5}}}, true});
  return c;
}

// Every case in every precision, with the generic kernels (none) and with
// kernels specialized for the case's shapes (eager).
class GpuOps : public ::testing::TestWithParam<std::tuple<P, runtime::KernelSpecialization>> {};

TEST_P(GpuOps, MatchReference) {
  KILN_REQUIRE_GPU();
  P precision = std::get<0>(GetParam());
  runtime::KernelSpecialization strategy = std::get<1>(GetParam());
  double tol = precision == P::kFloat32 ? 2e-5 : precision == P::kFloat16 ? 2e-2 : 6e-2;
  uint32_t seed = 1234;
  for (const Case& c : cases()) {
    if (c.fp32_only && precision != P::kFloat32) continue;
    std::mt19937 rng(seed);
    ir::Network net;
    c.build(net, rng);
    net.finalize();
    std::map<std::string, ir::TensorData> inputs;
    for (auto& [name, dims] : c.inputs) {
      DType d = net.value(*net.find_value(name)).dtype;
      if (d == DType::kBool) {
        std::vector<double> bits(size_t(ir::checked_numel(dims)));
        for (auto& b : bits) b = rng() % 2;
        inputs[name] = reference::make_tensor(d, dims, bits);
      } else {
        inputs[name] = random_tensor(d, dims, rng);
      }
    }
    expect_gpu_matches_reference(net, inputs, precision, tol, kiln::str(c.name, " seed ", seed), strategy);
  }
}

// One engine over lengths 1..64: the fused attention's views follow the length
// call by call on one context (40 and 64 keys take two shared-memory tiles).
TEST(GpuAttention, DynamicLengthsOnOneContextMatchReference) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(99);
  ir::Network net;
  exported_attention_block(net, rng, 0);
  net.set_dim_range("seq", {1, 16, 64});
  net.finalize();
  for (P precision : {P::kFloat32, P::kFloat16}) {
    builder::BuildOptions options;
    options.precision = precision;
    plan::Plan plan = builder::build(net, options);
    ASSERT_EQ(std::count_if(plan.network.nodes().begin(), plan.network.nodes().end(),
                            [](const ir::Node& node) { return node.op == OpKind::kAttention; }),
              1);
    auto engine = runtime::Engine::create(plan, {});
    auto context = engine->create_context();
    for (int64_t seq : {7, 40, 1, 64, 16}) {
      SCOPED_TRACE(str(plan::precision_name(precision), " seq ", seq));
      std::map<std::string, ir::TensorData> inputs{{"x", random_tensor(DType::kFloat32, {1, seq, 72}, rng)}};
      expect_outputs_close(runtime::run_with_host_tensors(*context, *engine, inputs), reference::run(net, inputs),
                           precision == P::kFloat32 ? 2e-5 : 2e-2);
    }
  }
}

// ---- attention on tensor cores (fp16, bf16) -----------------------------------------

// One Attention node as `kiln build` makes them, over operands laid out as
// models leave them. kPacked: one [B, S, 3, H, D] projection (q_len == kv_len);
// kSeparateQ: Q [B, H, Sq, D] beside a packed [B, Sk, 2, H, D] K/V projection;
// kKTransposed: Q, K^T as [B, H, D, Sk] (K read element by element) and V. The
// output is [B, Sq, H, D], the heads merged as out_perm writes them.
enum class QkvLayout { kPacked, kSeparateQ, kKTransposed };

struct AttentionCase {
  int64_t batch, heads, q_len, kv_len, head_dim;
  bool causal;
  QkvLayout layout;
  std::string name() const {
    const char* layouts[] = {"packed", "separate_q", "k_transposed"};
    return str(layouts[int(layout)], " B", batch, " H", heads, " Sq", q_len, " Sk", kv_len, " D", head_dim, causal ? " causal" : "");
  }
};

ir::Network attention_network(const AttentionCase& c) {
  ir::Network net;
  const int64_t b = c.batch, h = c.heads, d = c.head_dim;
  auto input = [&](const std::string& name, std::vector<int64_t> dims) { return net.add_input(name, DType::kFloat32, ir::shape_of(dims)); };
  // Projection part `index` of a [B, S, parts, H, D] tensor as [B, H, S, D].
  auto heads_of = [](int64_t index) {
    return std::vector<int64_t>{int64_t(ir::ViewStep::kPick), 3, 2, index, 0, int64_t(ir::ViewStep::kTranspose), 4, 0, 2, 1, 3};
  };
  ir::Attributes a = attrs({{"scale", 1.0 / std::sqrt(double(d))}, {"causal", int64_t(c.causal)},
                            {"out_perm", std::vector<int64_t>{0, 2, 1, 3}}});
  std::vector<ValueId> operands;
  switch (c.layout) {
    case QkvLayout::kPacked: {
      ValueId qkv = input("qkv", {b, c.q_len, 3, h, d});
      operands = {qkv, qkv, qkv};
      a.set("q_view", heads_of(0));
      a.set("k_view", heads_of(1));
      a.set("v_view", heads_of(2));
      break;
    }
    case QkvLayout::kSeparateQ: {
      ValueId kv = input("kv", {b, c.kv_len, 2, h, d});
      operands = {input("q", {b, h, c.q_len, d}), kv, kv};
      a.set("k_view", heads_of(0));
      a.set("v_view", heads_of(1));
      break;
    }
    case QkvLayout::kKTransposed:
      operands = {input("q", {b, h, c.q_len, d}), input("k", {b, h, d, c.kv_len}), input("v", {b, h, c.kv_len, d})};
      a.set("k_transposed", int64_t(1));
      break;
  }
  net.add_output(net.add_op1(OpKind::kAttention, operands, a, "attention"));
  net.finalize();
  return net;
}

// Lengths 1 to 4096, q_len != kv_len both ways, ragged last tiles, causal on
// and off, head dims 7 to 128 (multiples of 16, of 8, neither), and blocks of
// 1, 2 and 4 warps (the runtime picks them from B * H * q_len).
std::vector<AttentionCase> attention_cases() {
  using L = QkvLayout;
  return {
      {1, 1, 1, 1, 64, false, L::kPacked},        {2, 3, 7, 7, 32, true, L::kPacked},
      {1, 2, 33, 33, 80, true, L::kPacked},       {2, 6, 197, 197, 64, false, L::kPacked},   // ViT-S/16: 6 heads of 64, 197 tokens
      {1, 12, 400, 400, 32, true, L::kPacked},    {4, 8, 300, 300, 64, false, L::kPacked},  // blocks of 2, then 4 warps
      {1, 2, 1000, 1000, 128, true, L::kPacked},  {1, 1, 4096, 4096, 64, true, L::kPacked},
      {2, 2, 1, 100, 64, true, L::kSeparateQ},    {1, 3, 33, 197, 128, false, L::kSeparateQ},
      {1, 2, 197, 33, 32, true, L::kSeparateQ},   {1, 1, 1000, 7, 80, false, L::kSeparateQ},
      {2, 2, 40, 70, 96, true, L::kKTransposed},  {1, 2, 50, 50, 20, true, L::kPacked},      // rows not 16-byte aligned
      {1, 1, 9, 9, 7, false, L::kPacked},
  };
}

// Each case in fp16 and bf16, one with the generic kernel and the other with
// the kernel specialized for its shape, against the reference in float64 on
// the float inputs. Tolerances: about 4x the error of rounding Q, K, V, P and
// the output to the type, as a numpy model of the kernel's arithmetic shows.
TEST(GpuAttention, TensorCoreKernelMatchesReference) {
  KILN_REQUIRE_GPU();
  auto cache = std::make_shared<runtime::RuntimeCache>(runtime::compiler_version());  // generic kernels compile once
  const uint32_t seed = 4321;
  std::vector<AttentionCase> cases = attention_cases();
  for (size_t i = 0; i < cases.size(); ++i) {
    const AttentionCase& c = cases[i];
    std::mt19937 rng(seed + uint32_t(i));
    ir::Network net = attention_network(c);
    std::map<std::string, ir::TensorData> inputs;
    for (ValueId id : net.inputs()) {
      const ir::Value& value = net.value(id);
      inputs[value.name] = random_tensor(DType::kFloat32, ir::shape_constants(value.shape), rng);
    }
    std::vector<ir::TensorData> want = reference::run(net, inputs);
    for (P precision : {P::kFloat16, P::kBFloat16}) {
      auto strategy = (i + (precision == P::kBFloat16)) % 2 ? runtime::KernelSpecialization::kEager : runtime::KernelSpecialization::kNone;
      SCOPED_TRACE(str(c.name(), " ", plan::precision_name(precision), " ", runtime::kernel_specialization_name(strategy), " seed ",
                       seed + uint32_t(i)));
      builder::BuildOptions options;
      options.precision = precision;
      for (auto& [name, tensor] : inputs) builder::add_input_profile(net, name, tensor.dims, tensor.dims, tensor.dims, options);
      plan::Plan plan = builder::build(net, options);
      ASSERT_EQ(std::count_if(plan.network.nodes().begin(), plan.network.nodes().end(),
                              [](const ir::Node& node) { return node.op == OpKind::kAttention; }),
                1);
      runtime::RuntimeConfig config;
      config.dynamic_shapes_kernel_specialization_strategy = strategy;
      config.cache = cache;
      auto engine = runtime::Engine::create(plan, config);
      auto context = engine->create_context();
      expect_outputs_close(runtime::run_with_host_tensors(*context, *engine, inputs), want, precision == P::kFloat16 ? 3e-3 : 2e-2);
    }
  }
}

// ---- attention masked by data --------------------------------------------------------

// The masks `kiln build` fuses: a padding mask added ([B, 1, 1, Sk], 0 or
// -10000), a position bias added ([1, H, Sq, Sk]), a bool padding mask
// keeping the scores where true ([B, 1, 1, Sk], fill -inf) and a bool mask
// per query dropping them where true ([B, 1, Sq, Sk], fill -1e9). Key 0 is
// never masked, so no row is left without keys; but for ONNX's Attention
// ([B, 1, Sq, Sk] of 0 and -inf, every third row all -inf, empty_rows_zero).
enum class AttentionMask { kPaddingAdded, kBiasAdded, kKeepWhereTrue, kDropWhereTrue, kEmptyRowsZeroed };

ir::Network masked_attention_network(const AttentionCase& c, AttentionMask mask, std::mt19937& rng,
                                     std::map<std::string, ir::TensorData>& inputs) {
  ir::Network net;
  const int64_t b = c.batch, h = c.heads, d = c.head_dim;
  std::vector<ValueId> operands;
  for (auto [name, len] : {std::pair<const char*, int64_t>{"q", c.q_len}, {"k", c.kv_len}, {"v", c.kv_len}}) {
    operands.push_back(net.add_input(name, DType::kFloat32, ir::shape_of({b, h, len, d})));
    inputs[name] = random_tensor(DType::kFloat32, {b, h, len, d}, rng);
  }
  const bool per_query = mask != AttentionMask::kPaddingAdded && mask != AttentionMask::kKeepWhereTrue;
  std::vector<int64_t> mask_dims = mask == AttentionMask::kBiasAdded ? std::vector<int64_t>{1, h, c.q_len, c.kv_len}
                                                                     : std::vector<int64_t>{b, 1, per_query ? c.q_len : 1, c.kv_len};
  std::vector<double> values(size_t(ir::checked_numel(mask_dims)));
  std::uniform_real_distribution<double> bias(-2, 2);
  for (size_t i = 0; i < values.size(); ++i) {
    const bool first_key = int64_t(i) % c.kv_len == 0, masked = !first_key && rng() % 3 == 0;
    switch (mask) {
      case AttentionMask::kPaddingAdded: values[i] = masked ? -10000 : 0; break;
      case AttentionMask::kBiasAdded: values[i] = bias(rng); break;
      case AttentionMask::kKeepWhereTrue: values[i] = !masked; break;
      case AttentionMask::kDropWhereTrue: values[i] = masked; break;
      case AttentionMask::kEmptyRowsZeroed: values[i] = masked || int64_t(i) / c.kv_len % 3 == 1 ? -INFINITY : 0; break;
    }
  }
  const bool boolean = mask == AttentionMask::kKeepWhereTrue || mask == AttentionMask::kDropWhereTrue;
  DType mask_dtype = boolean ? DType::kBool : DType::kFloat32;
  operands.push_back(net.add_input("mask", mask_dtype, ir::shape_of(mask_dims)));
  inputs["mask"] = reference::make_tensor(mask_dtype, mask_dims, values);
  ir::Attributes a = attrs({{"scale", 1.0 / std::sqrt(double(d))}, {"causal", int64_t(c.causal)},
                            {"out_perm", std::vector<int64_t>{0, 2, 1, 3}}});
  if (mask == AttentionMask::kDropWhereTrue) {
    a.set("mask_keep", int64_t(0));
    a.set("mask_fill", -1e9);
  }
  if (mask == AttentionMask::kEmptyRowsZeroed) a.set("empty_rows_zero", int64_t(1));
  net.add_output(net.add_op1(OpKind::kAttention, operands, a, "attention"));
  net.finalize();
  return net;
}

// Each mask over odd lengths (1, 7, 33, 197, one and several key tiles, q_len
// != kv_len), causal on and off, in float32 (the scalar kernel) and fp16 and
// bf16 (tensor cores), generic and specialized kernels, against the reference.
TEST(GpuAttention, MasksMatchReference) {
  KILN_REQUIRE_GPU();
  auto cache = std::make_shared<runtime::RuntimeCache>(runtime::compiler_version());
  using L = QkvLayout;
  const std::vector<AttentionCase> cases = {{1, 1, 1, 1, 64, false, L::kPacked},  {2, 3, 7, 7, 32, true, L::kPacked},
                                            {3, 2, 33, 70, 80, false, L::kPacked}, {2, 4, 197, 197, 64, false, L::kPacked},
                                            {1, 2, 150, 150, 128, true, L::kPacked}, {2, 2, 5, 130, 16, false, L::kPacked}};
  int run = 0;
  for (AttentionMask mask : {AttentionMask::kPaddingAdded, AttentionMask::kBiasAdded, AttentionMask::kKeepWhereTrue,
                             AttentionMask::kDropWhereTrue, AttentionMask::kEmptyRowsZeroed})
    for (const AttentionCase& c : cases) {
      std::mt19937 rng(uint32_t(700 + run));
      std::map<std::string, ir::TensorData> inputs;
      ir::Network net = masked_attention_network(c, mask, rng, inputs);
      std::vector<ir::TensorData> want = reference::run(net, inputs);
      for (P precision : {P::kFloat32, P::kFloat16, P::kBFloat16}) {
        auto strategy = ++run % 2 ? runtime::KernelSpecialization::kEager : runtime::KernelSpecialization::kNone;
        SCOPED_TRACE(str("mask ", int(mask), " ", c.name(), " ", plan::precision_name(precision), " ",
                         runtime::kernel_specialization_name(strategy)));
        builder::BuildOptions options;
        options.precision = precision;
        for (auto& [name, tensor] : inputs) builder::add_input_profile(net, name, tensor.dims, tensor.dims, tensor.dims, options);
        runtime::RuntimeConfig config;
        config.dynamic_shapes_kernel_specialization_strategy = strategy;
        config.cache = cache;
        auto engine = runtime::Engine::create(builder::build(net, options), config);
        auto context = engine->create_context();
        expect_outputs_close(runtime::run_with_host_tensors(*context, *engine, inputs), want,
                             precision == P::kFloat32 ? 2e-5 : precision == P::kFloat16 ? 3e-3 : 2e-2);
      }
    }
}

INSTANTIATE_TEST_SUITE_P(
    Precision, GpuOps,
    ::testing::Combine(::testing::Values(P::kFloat32, P::kFloat16, P::kBFloat16),
                       ::testing::Values(runtime::KernelSpecialization::kNone, runtime::KernelSpecialization::kEager)),
    [](const auto& info) {
      return std::string(plan::precision_name(std::get<0>(info.param))) + "_" +
             std::string(runtime::kernel_specialization_name(std::get<1>(info.param)));
    });

}  // namespace
}  // namespace kiln::testing
