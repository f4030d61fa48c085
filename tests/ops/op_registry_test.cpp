// Every op kind of the IR, through each layer's real entry point, on a small
// sample network per op kind:
//   schema and shape inference  Network::finalize (check_node_schema, infer_node)
//   the CPU reference kernel    reference::run
//   the GPU runtime             runtime::gpu_support (make_op) agrees with what
//                               runtime::gpu_lowering states, which docs/ops.md shows:
//                               a kernel runs the node; no kernel, for the stated
//                               reason; or `kiln build` lowers it into ops that run
//   the ONNX front end          which ONNX ops become it
// An op kind without a sample below fails: adding an op means adding its
// sample and passing all of this.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <map>

#include "kiln/builder.h"
#include "kiln/error.h"
#include "kiln/ir/fused.h"
#include "kiln/onnx.h"
#include "kiln/reference.h"
#include "kiln/runtime.h"

namespace kiln {
namespace {

using ir::Dim;
using ir::OpKind;
using ir::ValueId;

// A network being built around one node named "node", with host tensors for its inputs.
class Sample {
 public:
  // An input filled with small positive values (alternating for bool), or with `values`.
  ValueId input(DType dtype, const std::vector<int64_t>& dims, std::vector<double> values = {}) {
    std::string name = str("in", feeds_.size());
    if (values.empty())
      for (int64_t i = 0; i < ir::checked_numel(dims); ++i) values.push_back(dtype == DType::kBool ? double(i % 2) : 0.1 * double(i % 9 + 1));
    feeds_[name] = reference::make_tensor(dtype, dims, values);
    ir::Shape shape(dims.begin(), dims.end());
    return net_.add_input(name, dtype, shape);
  }
  ValueId weight(DType dtype, const std::vector<int64_t>& dims, const std::vector<double>& values) {
    return net_.add_weight(str("w", net_.values().size()), reference::make_tensor(dtype, dims, values));
  }
  ValueId floats(const std::vector<int64_t>& dims, double value = 0.5) {
    return weight(DType::kFloat32, dims, std::vector<double>(size_t(ir::checked_numel(dims)), value));
  }
  ValueId ints(const std::vector<int64_t>& values) {
    return weight(DType::kInt64, {int64_t(values.size())}, std::vector<double>(values.begin(), values.end()));
  }
  ValueId int_scalar(int64_t value) { return weight(DType::kInt64, {}, {double(value)}); }
  ValueId strings(const std::vector<int64_t>& dims, std::vector<std::string> values) {
    std::string name = str("in", feeds_.size());
    feeds_[name] = reference::make_string_tensor(dims, std::move(values));
    return net_.add_input(name, DType::kString, ir::Shape(dims.begin(), dims.end()));
  }

  // The node under test; its outputs are the network's.
  Sample& node(OpKind op, std::vector<ValueId> inputs, ir::Attributes attrs = {}, int outputs = 1) {
    for (ValueId v : net_.add_op(op, std::move(inputs), std::move(attrs), outputs, "node")) net_.add_output(v);
    return *this;
  }

  ir::Network& net() { return net_; }
  const std::map<std::string, reference::Tensor>& feeds() const { return feeds_; }

 private:
  ir::Network net_;
  std::map<std::string, reference::Tensor> feeds_;
};

ir::Attributes attrs(std::initializer_list<std::pair<const char*, ir::AttrValue>> list) {
  ir::Attributes a;
  for (auto& [name, value] : list) a.set(name, value);
  return a;
}

constexpr DType f32 = DType::kFloat32;

// n integers from `first` on.
std::vector<double> sequence(int n, int first) {
  std::vector<double> v;
  for (int i = 0; i < n; ++i) v.push_back(first + i);
  return v;
}

// A subgraph of inputs `inputs` whose outputs `make` returns from them.
ir::Subgraph subgraph(const std::vector<std::pair<DType, std::vector<int64_t>>>& inputs,
                      const std::function<std::vector<ValueId>(ir::Network&, const std::vector<ValueId>&)>& make) {
  auto g = std::make_shared<ir::Network>();
  std::vector<ValueId> in;
  for (auto& [dtype, dims] : inputs) in.push_back(g->add_input(str("b", in.size()), dtype, ir::Shape(dims.begin(), dims.end())));
  for (ValueId v : make(*g, in)) g->add_output(v);
  g->finalize();
  return g;
}

// The sample network of each op kind (no default: a new op kind is a compiler warning here, and a failure below).
std::optional<Sample> sample_for(OpKind op) {
  Sample s;
  switch (op) {
    case OpKind::kAbs: case OpKind::kNeg: case OpKind::kSqrt: case OpKind::kReciprocal: case OpKind::kExp:
    case OpKind::kLog: case OpKind::kFloor: case OpKind::kCeil: case OpKind::kRound: case OpKind::kSign:
    case OpKind::kRelu: case OpKind::kSigmoid: case OpKind::kTanh: case OpKind::kErf: case OpKind::kSoftplus:
    case OpKind::kSoftsign: case OpKind::kSin: case OpKind::kCos: case OpKind::kTan: case OpKind::kAsin:
    case OpKind::kAcos: case OpKind::kAtan: case OpKind::kSinh: case OpKind::kCosh: case OpKind::kAsinh:
    case OpKind::kAcosh: case OpKind::kAtanh: case OpKind::kLeakyRelu: case OpKind::kElu: case OpKind::kSelu:
    case OpKind::kCelu: case OpKind::kHardSigmoid: case OpKind::kHardSwish: case OpKind::kGelu:
    case OpKind::kThresholdedRelu: case OpKind::kShrink: case OpKind::kIsNaN: case OpKind::kIsInf:
    case OpKind::kIdentity: case OpKind::kDropout: case OpKind::kSoftmax: case OpKind::kLogSoftmax: case OpKind::kHardmax:
      return s.node(op, {s.input(f32, {2, 3})});
    case OpKind::kClip: return s.node(op, {s.input(f32, {2, 3}), s.floats({}, 0.2), s.floats({}, 0.6)});
    case OpKind::kNot: return s.node(op, {s.input(DType::kBool, {2, 3})});
    case OpKind::kCast: return s.node(op, {s.input(f32, {2, 3})}, attrs({{"to", int64_t(DType::kFloat16)}}));
    case OpKind::kCastLike: return s.node(op, {s.input(f32, {2, 3}), s.input(DType::kFloat16, {1})});
    case OpKind::kAdd: case OpKind::kSub: case OpKind::kMul: case OpKind::kDiv: case OpKind::kPow: case OpKind::kEqual:
    case OpKind::kLess: case OpKind::kLessOrEqual: case OpKind::kGreater: case OpKind::kGreaterOrEqual:
    case OpKind::kMin: case OpKind::kMax: case OpKind::kMean: case OpKind::kSum:
      return s.node(op, {s.input(f32, {2, 3}), s.input(f32, {2, 3})});
    case OpKind::kMod: return s.node(op, {s.input(f32, {2, 3}), s.input(f32, {3})}, attrs({{"fmod", int64_t(1)}}));
    case OpKind::kPRelu: return s.node(op, {s.input(f32, {2, 3}), s.input(f32, {3})});
    case OpKind::kAnd: case OpKind::kOr: case OpKind::kXor:
      return s.node(op, {s.input(DType::kBool, {2, 3}), s.input(DType::kBool, {2, 3})});
    case OpKind::kWhere: return s.node(op, {s.input(DType::kBool, {2, 3}), s.input(f32, {2, 3}), s.input(f32, {2, 3})});
    case OpKind::kBitShift:
      return s.node(op, {s.input(DType::kUInt8, {2, 3}, {1, 2, 3, 4, 5, 6}), s.input(DType::kUInt8, {3}, {1, 2, 3})},
                    attrs({{"direction", std::string("LEFT")}}));
    case OpKind::kBitwiseAnd: case OpKind::kBitwiseOr: case OpKind::kBitwiseXor:
      return s.node(op, {s.input(DType::kInt32, {2, 3}, {1, -2, 3, -4, 5, -6}), s.input(DType::kInt32, {3}, {7, 8, -9})});
    case OpKind::kBitwiseNot: return s.node(op, {s.input(DType::kInt8, {2, 3}, {1, -2, 3, -4, 5, -6})});
    case OpKind::kQuantizeLinear:  // per axis
      return s.node(op, {s.input(f32, {2, 3}), s.floats({3}, 0.01), s.weight(DType::kInt8, {3}, {-1, 0, 1})});
    case OpKind::kDequantizeLinear:
      return s.node(op, {s.input(DType::kUInt8, {2, 3}, {0, 50, 100, 150, 200, 250}), s.floats({}, 0.1), s.weight(DType::kUInt8, {}, {128})});

    case OpKind::kMatMul: return s.node(op, {s.input(f32, {2, 3}), s.floats({3, 4})});
    case OpKind::kGemm: return s.node(op, {s.input(f32, {2, 3}), s.floats({3, 4}), s.floats({4})});
    case OpKind::kEinsum: return s.node(op, {s.input(f32, {2, 3}), s.input(f32, {3, 4})}, attrs({{"equation", std::string("ij,jk->ik")}}));
    case OpKind::kMatMulInteger:  // zero points per row of A and per tensor for B
      return s.node(op, {s.input(DType::kUInt8, {2, 3}, {1, 20, 30, 40, 250, 6}), s.weight(DType::kInt8, {3, 4}, sequence(12, -6)),
                         s.weight(DType::kUInt8, {2}, {3, 4}), s.weight(DType::kInt8, {}, {-1})});
    case OpKind::kQLinearMatMul:
      return s.node(op, {s.input(DType::kInt8, {2, 3}, {1, -20, 30, -40, 120, 6}), s.floats({}, 0.1), s.weight(DType::kInt8, {}, {2}),
                         s.weight(DType::kUInt8, {3, 4}, sequence(12, 100)), s.floats({4}, 0.2), s.weight(DType::kUInt8, {4}, {1, 2, 3, 4}),
                         s.floats({}, 0.05), s.weight(DType::kUInt8, {}, {128})});
    case OpKind::kConvInteger:
      return s.node(op, {s.input(DType::kUInt8, {1, 2, 5, 5}, sequence(50, 0)), s.weight(DType::kInt8, {3, 2, 3, 3}, sequence(54, -27)),
                         s.weight(DType::kUInt8, {}, {25}), s.weight(DType::kInt8, {3}, {0, 1, -1})},
                    attrs({{"pads", std::vector<int64_t>{1, 1, 1, 1}}}));
    case OpKind::kQLinearConv:
      return s.node(op, {s.input(DType::kUInt8, {1, 2, 5, 5}, sequence(50, 0)), s.floats({}, 0.1), s.weight(DType::kUInt8, {}, {25}),
                         s.weight(DType::kInt8, {3, 2, 3, 3}, sequence(54, -27)), s.floats({3}, 0.02), s.weight(DType::kInt8, {3}, {0, 1, -1}),
                         s.floats({}, 0.3), s.weight(DType::kInt8, {}, {-5}), s.weight(DType::kInt32, {3}, {100, -200, 300})},
                    attrs({{"pads", std::vector<int64_t>{1, 1, 1, 1}}}));
    case OpKind::kLinearAttention:  // gated delta rule, two query heads a kv head, d_k 3, d_v 2
      return s.node(op, {s.input(f32, {1, 2, 12}), s.input(f32, {1, 2, 6}), s.input(f32, {1, 2, 4}), s.input(f32, {1, 2, 3, 2}),
                         s.input(f32, {1, 2, 2}, {-0.1, -0.2, -0.3, -0.4}), s.input(f32, {1, 2, 2})},
                    attrs({{"q_num_heads", int64_t(4)}, {"kv_num_heads", int64_t(2)}}), 2);
    case OpKind::kConv:
      return s.node(op, {s.input(f32, {1, 2, 5, 5}), s.floats({3, 2, 3, 3})}, attrs({{"pads", std::vector<int64_t>{1, 1, 1, 1}}}));
    case OpKind::kConvTranspose: return s.node(op, {s.input(f32, {1, 2, 3, 3}), s.floats({2, 3, 3, 3})});
    case OpKind::kCausalConvWithState:
      return s.node(op, {s.input(f32, {1, 2, 5}), s.floats({2, 1, 3}), s.floats({2}), s.input(f32, {1, 2, 2})},
                    attrs({{"activation", std::string("silu")}}), 2);
    case OpKind::kDeformConv:  // two offset groups, a mask and a bias
      return s.node(op, {s.input(f32, {1, 2, 4, 4}), s.floats({3, 2, 2, 2}), s.input(f32, {1, 16, 3, 3}), s.floats({3}),
                         s.input(f32, {1, 8, 3, 3})},
                    attrs({{"offset_group", int64_t(2)}}));
    case OpKind::kBatchNormalization:
      return s.node(op, {s.input(f32, {1, 2, 3, 3}), s.floats({2}), s.floats({2}), s.floats({2}), s.floats({2})});
    case OpKind::kInstanceNormalization: return s.node(op, {s.input(f32, {1, 2, 3, 3}), s.floats({2}), s.floats({2})});
    case OpKind::kLayerNormalization: return s.node(op, {s.input(f32, {2, 3, 4}), s.floats({4}), s.floats({4})});
    case OpKind::kGroupNormalization:
      return s.node(op, {s.input(f32, {1, 4, 3, 3}), s.floats({4}), s.floats({4})}, attrs({{"num_groups", int64_t(2)}}));
    case OpKind::kLRN: return s.node(op, {s.input(f32, {1, 4, 3, 3})}, attrs({{"size", int64_t(3)}}));
    case OpKind::kMaxPool: case OpKind::kAveragePool:
      return s.node(op, {s.input(f32, {1, 2, 4, 4})}, attrs({{"kernel_shape", std::vector<int64_t>{2, 2}}}));
    case OpKind::kGlobalAveragePool: case OpKind::kGlobalMaxPool: return s.node(op, {s.input(f32, {1, 2, 4, 4})});
    case OpKind::kLpPool:
      return s.node(op, {s.input(f32, {1, 2, 4, 4})}, attrs({{"kernel_shape", std::vector<int64_t>{2, 2}}, {"p", int64_t(3)}}));
    case OpKind::kGlobalLpPool: return s.node(op, {s.input(f32, {1, 2, 4, 4})}, attrs({{"p", int64_t(3)}}));
    case OpKind::kMaxUnpool:
      return s.node(op, {s.input(f32, {1, 1, 2, 2}), s.input(DType::kInt64, {1, 1, 2, 2}, {5, 7, 13, 15})},
                    attrs({{"kernel_shape", std::vector<int64_t>{2, 2}}, {"strides", std::vector<int64_t>{2, 2}}}));
    case OpKind::kLpNormalization: return s.node(op, {s.input(f32, {2, 3})}, attrs({{"p", int64_t(1)}}));
    case OpKind::kDet: return s.node(op, {s.input(f32, {2, 3, 3}, {2, 1, 0, 1, 3, 1, 0, 1, 4, 1, 2, 3, 4, 5, 6, 7, 8, 10})});

    case OpKind::kReduceMean: case OpKind::kReduceSum: case OpKind::kReduceMax: case OpKind::kReduceMin:
    case OpKind::kReduceProd: case OpKind::kReduceL1: case OpKind::kReduceL2: case OpKind::kReduceLogSum:
    case OpKind::kReduceLogSumExp: case OpKind::kReduceSumSquare:
      return s.node(op, {s.input(f32, {2, 3, 4}), s.ints({1})});
    case OpKind::kArgMax: case OpKind::kArgMin: return s.node(op, {s.input(f32, {2, 3})}, attrs({{"axis", int64_t(1)}}));
    case OpKind::kCumSum: case OpKind::kCumProd: return s.node(op, {s.input(f32, {2, 3}), s.int_scalar(1)});
    case OpKind::kTopK: return s.node(op, {s.input(f32, {2, 5}), s.ints({2})}, {}, 2);

    case OpKind::kReshape: return s.node(op, {s.input(f32, {2, 3, 4}), s.ints({6, 4})});
    case OpKind::kFlatten: return s.node(op, {s.input(f32, {2, 3, 4})}, attrs({{"axis", int64_t(1)}}));
    case OpKind::kSqueeze: return s.node(op, {s.input(f32, {2, 1, 3}), s.ints({1})});
    case OpKind::kUnsqueeze: return s.node(op, {s.input(f32, {2, 3}), s.ints({0})});
    case OpKind::kTranspose: return s.node(op, {s.input(f32, {2, 3})}, attrs({{"perm", std::vector<int64_t>{1, 0}}}));
    case OpKind::kConcat: return s.node(op, {s.input(f32, {2, 3}), s.input(f32, {2, 3})}, attrs({{"axis", int64_t(0)}}));
    case OpKind::kSplit: return s.node(op, {s.input(f32, {4, 3})}, attrs({{"num_outputs", int64_t(2)}}), 2);
    case OpKind::kSlice: return s.node(op, {s.input(f32, {4, 3}), s.ints({1}), s.ints({3})});
    case OpKind::kGather: return s.node(op, {s.input(f32, {4, 3}), s.ints({0, 2})});
    case OpKind::kGatherElements:
      return s.node(op, {s.input(f32, {2, 3}), s.weight(DType::kInt64, {2, 3}, {0, 1, 0, 1, 0, 1})});
    case OpKind::kGatherND:
      return s.node(op, {s.input(f32, {2, 3, 4}), s.weight(DType::kInt64, {2, 1, 2}, {0, 1, 2, -1})}, attrs({{"batch_dims", int64_t(1)}}));
    case OpKind::kScatterND:
      return s.node(op, {s.input(f32, {4, 3}), s.weight(DType::kInt64, {2, 1}, {3, 0}), s.input(f32, {2, 3})});
    case OpKind::kNonZero: return s.node(op, {s.input(f32, {2, 3}, {0, 1, 0, -2, 0, 3})});
    case OpKind::kCompress:
      return s.node(op, {s.input(f32, {3, 2}), s.input(DType::kBool, {3}, {1, 0, 1})}, attrs({{"axis", int64_t(0)}}));
    case OpKind::kUnique: return s.node(op, {s.input(f32, {6}, {2, 1, 2, 3, 1, 2})}, {}, 4);
    case OpKind::kBitCast: return s.node(op, {s.input(f32, {2, 3})}, attrs({{"to", int64_t(DType::kInt32)}}));
    case OpKind::kScatterElements:
      return s.node(op, {s.input(f32, {2, 3}), s.weight(DType::kInt64, {2, 2}, {2, 0, 1, 1}), s.input(f32, {2, 2})},
                    attrs({{"axis", int64_t(1)}, {"reduction", std::string("add")}}));
    case OpKind::kReverseSequence:
      return s.node(op, {s.input(f32, {3, 2, 2}), s.input(DType::kInt64, {2}, {3, 1})});
    case OpKind::kTensorScatter:
      return s.node(op, {s.input(f32, {2, 5, 3}), s.input(f32, {2, 2, 3}), s.input(DType::kInt64, {2}, {1, 3})});
    case OpKind::kExpand: return s.node(op, {s.input(f32, {3, 1}), s.ints({3, 4})});
    case OpKind::kTile: return s.node(op, {s.input(f32, {2, 3}), s.ints({2, 1})});
    case OpKind::kPad: return s.node(op, {s.input(f32, {2, 3}), s.ints({0, 1, 0, 1})});
    case OpKind::kShape: case OpKind::kSize: return s.node(op, {s.input(f32, {2, 3})});
    case OpKind::kConstantOfShape: return s.node(op, {s.ints({2, 3})});
    case OpKind::kRange:  // constants: a network output, so `kiln build` leaves it to the GPU
      return s.node(op, {s.int_scalar(0), s.int_scalar(5), s.int_scalar(1)});
    case OpKind::kTrilu: return s.node(op, {s.input(f32, {3, 3})});
    case OpKind::kEyeLike: return s.node(op, {s.input(f32, {3, 4})}, attrs({{"k", int64_t(1)}, {"dtype", int64_t(DType::kInt32)}}));
    case OpKind::kRandomUniform: case OpKind::kRandomNormal:
      return s.node(op, {}, attrs({{"shape", std::vector<int64_t>{2, 3}}, {"seed", 1.0}}));
    case OpKind::kRandomUniformLike: case OpKind::kRandomNormalLike:
      return s.node(op, {s.input(DType::kInt32, {2, 3})}, attrs({{"dtype", int64_t(DType::kFloat16)}}));
    case OpKind::kBernoulli: return s.node(op, {s.input(f32, {2, 3})}, attrs({{"dtype", int64_t(DType::kBool)}}));
    case OpKind::kMultinomial: return s.node(op, {s.input(f32, {2, 3})}, attrs({{"sample_size", int64_t(4)}}));
    case OpKind::kResize:
      return s.node(op, {s.input(f32, {1, 1, 2, 2}), ir::kNoValue, s.weight(f32, {4}, {1, 1, 2, 2})});
    case OpKind::kDepthToSpace: return s.node(op, {s.input(f32, {1, 4, 2, 2})}, attrs({{"blocksize", int64_t(2)}}));
    case OpKind::kSpaceToDepth: return s.node(op, {s.input(f32, {1, 1, 4, 4})}, attrs({{"blocksize", int64_t(2)}}));
    case OpKind::kOneHot:
      return s.node(op, {s.input(DType::kInt64, {3}, {0, 2, 1}), s.int_scalar(4), s.weight(f32, {2}, {0, 1})});
    case OpKind::kGridSample: return s.node(op, {s.input(f32, {1, 2, 3, 4}), s.floats({1, 2, 3, 2}, 0.25)});
    case OpKind::kRoiAlign:
      return s.node(op, {s.input(f32, {2, 2, 5, 5}), s.weight(f32, {2, 4}, {0, 0, 3, 3, 1, 1, 4, 2}), s.ints({1, 0})},
                    attrs({{"output_height", int64_t(2)}, {"output_width", int64_t(2)}}));
    case OpKind::kAffineGrid: return s.node(op, {s.input(f32, {1, 2, 3}), s.ints({1, 1, 3, 4})});
    case OpKind::kCol2Im: return s.node(op, {s.input(f32, {1, 4, 4}), s.ints({3, 3}), s.ints({2, 2})});
    case OpKind::kMaxRoiPool:
      return s.node(op, {s.input(f32, {1, 2, 4, 4}), s.weight(f32, {2, 5}, {0, 0, 0, 2, 2, 0, 1, 1, 3, 3})},
                    attrs({{"pooled_shape", std::vector<int64_t>{2, 2}}}));
    case OpKind::kNonMaxSuppression:
      return s.node(op, {s.input(f32, {1, 3, 4}, {0, 0, 1, 1, 0, 0.1, 1, 1.1, 0, 2, 1, 3}), s.input(f32, {1, 2, 3}),
                         s.int_scalar(2), s.floats({}, 0.5), s.floats({}, 0.15)});
    case OpKind::kImageDecoder: {
      // A 2 x 1 binary PPM as a weight: inference decodes it, so its dims need no bound.
      std::string ppm = "P6\n2 1\n255\n\x10\x20\x30\x40\x50\x60";
      return s.node(op, {s.weight(DType::kUInt8, {int64_t(ppm.size())}, std::vector<double>(ppm.begin(), ppm.end()))});
    }
    // With the scratch output `kiln build` adds, which the GPU runtime needs.
    case OpKind::kRNN: return s.node(op, {s.input(f32, {2, 1, 3}), s.floats({1, 4, 3}, 0.1), s.floats({1, 4, 4}, 0.2)}, {}, 3);
    case OpKind::kGRU:
      return s.node(op, {s.input(f32, {2, 1, 3}), s.floats({1, 12, 3}, 0.1), s.floats({1, 12, 4}, 0.2), s.floats({1, 24}, 0.3)},
                    attrs({{"direction", std::string("reverse")}}), 3);
    case OpKind::kLSTM:
      return s.node(op, {s.input(f32, {2, 1, 3}), s.floats({2, 16, 3}, 0.1), s.floats({2, 16, 4}, 0.2), s.floats({2, 32}, 0.3),
                         s.input(DType::kInt32, {1}, {1}), s.input(f32, {2, 1, 4}), s.input(f32, {2, 1, 4}), s.floats({2, 12}, 0.4)},
                    attrs({{"direction", std::string("bidirectional")}}), 4);
    case OpKind::kIf: {
      auto branch = [](OpKind unary) {
        return subgraph({{f32, {2, 3}}}, [unary](ir::Network& g, const std::vector<ValueId>& in) {
          return std::vector<ValueId>{g.add_op1(unary, {in[0]})};
        });
      };
      return s.node(op, {s.input(DType::kBool, {}, {1}), s.input(f32, {2, 3})},
                    attrs({{"then_branch", branch(OpKind::kRelu)}, {"else_branch", branch(OpKind::kNeg)}}));
    }
    case OpKind::kLoop: {  // three trips doubling x, each x a slice of the scan output
      ir::Subgraph body = subgraph({{DType::kInt64, {}}, {DType::kBool, {}}, {f32, {2}}}, [](ir::Network& g, const std::vector<ValueId>& in) {
        ValueId y = g.add_op1(OpKind::kAdd, {in[2], in[2]});
        return std::vector<ValueId>{in[1], y, y};
      });
      return s.node(op, {s.int_scalar(3), ir::kNoValue, s.input(f32, {2})}, attrs({{"body", body}}), 2);
    }
    case OpKind::kScan: {  // a running sum over the rows of x
      ir::Subgraph body = subgraph({{f32, {2}}, {f32, {2}}}, [](ir::Network& g, const std::vector<ValueId>& in) {
        ValueId sum = g.add_op1(OpKind::kAdd, {in[0], in[1]});
        return std::vector<ValueId>{sum, sum};
      });
      return s.node(op, {s.input(f32, {2}), s.input(f32, {3, 2})}, attrs({{"body", body}, {"num_scan_inputs", int64_t(1)}}), 2);
    }
    case OpKind::kHannWindow: case OpKind::kHammingWindow: case OpKind::kBlackmanWindow:
      return s.node(op, {s.int_scalar(8)}, attrs({{"periodic", int64_t(0)}}));
    case OpKind::kMelWeightMatrix:
      return s.node(op, {s.int_scalar(4), s.int_scalar(16), s.int_scalar(8000), s.weight(f32, {}, {0}), s.weight(f32, {}, {4000})});
    case OpKind::kDFT: return s.node(op, {s.input(f32, {2, 8, 1}), ir::kNoValue, s.int_scalar(1)}, attrs({{"onesided", int64_t(1)}}));
    case OpKind::kSTFT: return s.node(op, {s.input(f32, {1, 32, 1}), s.int_scalar(4), s.floats({8})});

    case OpKind::kFusedMatMul:
      return s.node(op, {s.input(f32, {2, 3}), s.floats({3, 4})}, attrs({{"activation", std::string("relu")}}));
    case OpKind::kFusedElementwise: {
      ir::FusedInstruction add{OpKind::kAdd, {0, 1, -1}}, relu{OpKind::kRelu, {2, -1, -1}};
      ir::Attributes program;
      ir::encode_fused_program({add, relu}, program);
      return s.node(op, {s.input(f32, {2, 3}), s.input(f32, {2, 3})}, program);
    }
    case OpKind::kConvChannelsLast:
      return s.node(op, {s.input(f32, {1, 5, 5, 2}), s.floats({3, 3, 3, 2})}, attrs({{"pads", std::vector<int64_t>{1, 1, 1, 1}}}));
    case OpKind::kMaxPoolChannelsLast:
      return s.node(op, {s.input(f32, {1, 4, 4, 2})}, attrs({{"kernel_shape", std::vector<int64_t>{2, 2}}}));
    case OpKind::kAttention:
      return s.node(op, {s.input(f32, {1, 2, 4, 8}), s.input(f32, {1, 2, 4, 8}), s.input(f32, {1, 2, 4, 8})},
                    attrs({{"scale", 0.35}}));

    case OpKind::kStringConcat: return s.node(op, {s.strings({2}, {"a", "b"}), s.strings({1}, {"!"})});
    case OpKind::kStringSplit: return s.node(op, {s.strings({2}, {"a.b", "c"})}, attrs({{"delimiter", std::string(".")}}), 2);
    case OpKind::kStringNormalizer:
      return s.node(op, {s.strings({3}, {"Mon", "tue", "mon"})},
                    attrs({{"case_change_action", std::string("UPPER")}, {"stopwords", std::vector<std::string>{"mon"}}}));
    case OpKind::kRegexFullMatch: return s.node(op, {s.strings({2}, {"ab1", "x"})}, attrs({{"pattern", std::string("[a-z]+\\d")}}));
    case OpKind::kTfIdfVectorizer:
      return s.node(op, {s.input(DType::kInt64, {2, 4}, {1, 2, 3, 1, 2, 2, 3, 3})},
                    attrs({{"mode", std::string("TF")}, {"min_gram_length", int64_t(1)}, {"max_gram_length", int64_t(2)},
                           {"max_skip_count", int64_t(1)}, {"ngram_counts", std::vector<int64_t>{0, 2}},
                           {"ngram_indexes", std::vector<int64_t>{0, 1, 2}}, {"pool_int64s", std::vector<int64_t>{2, 3, 2, 3}}}));
    case OpKind::kLabelEncoder:
      return s.node(op, {s.input(DType::kInt64, {3}, {1, 3, 9})},
                    attrs({{"keys_int64s", std::vector<int64_t>{1, 2, 3}}, {"values_floats", std::vector<double>{0.5, 1.5, 2.5}}}));
    case OpKind::kBinarizer: return s.node(op, {s.input(f32, {2, 3})}, attrs({{"threshold", 0.35}}));
    case OpKind::kArrayFeatureExtractor: return s.node(op, {s.input(f32, {2, 3}), s.ints({2, 0})});
    case OpKind::kTreeEnsemble: {  // one stump on feature 1: <= 0.3 gives 1, else 2
      ir::TensorData modes = reference::make_tensor(DType::kUInt8, {1}, {0});
      return s.node(op, {s.input(f32, {2, 3})},
                    attrs({{"nodes_splits", reference::make_tensor(f32, {1}, {0.3})}, {"nodes_modes", modes},
                           {"nodes_featureids", std::vector<int64_t>{1}}, {"nodes_truenodeids", std::vector<int64_t>{0}},
                           {"nodes_falsenodeids", std::vector<int64_t>{1}}, {"nodes_trueleafs", std::vector<int64_t>{1}},
                           {"nodes_falseleafs", std::vector<int64_t>{1}}, {"leaf_targetids", std::vector<int64_t>{0, 0}},
                           {"leaf_weights", reference::make_tensor(f32, {2}, {1, 2})}, {"tree_roots", std::vector<int64_t>{0}},
                           {"n_targets", int64_t(1)}}));
    }
  }
  return std::nullopt;
}

// The support of the node named "node" in `plan`.
runtime::NodeSupport support_of_node(const plan::Plan& plan) {
  for (runtime::NodeSupport& s : runtime::gpu_support(plan))
    if (s.node == "node") return s;
  ADD_FAILURE() << "no node named 'node' in the plan";
  return {};
}

// Every unsupported node of `plan`, one per line.
std::string unsupported_nodes(const plan::Plan& plan) {
  std::string list;
  for (const runtime::NodeSupport& s : runtime::gpu_support(plan))
    if (!s.supported) list += str(s.node, " (", ir::op_name(s.op), "): ", s.reason, "\n");
  return list;
}

class OpRegistry : public ::testing::TestWithParam<int> {};

TEST_P(OpRegistry, EveryLayerHandlesTheOp) {
  auto op = OpKind(GetParam());
  std::optional<Sample> sample = sample_for(op);
  ASSERT_TRUE(sample) << ir::op_name(op) << " has no sample in tests/ops/op_registry_test.cpp: add one (see docs/ops.md)";
  ir::Network& net = sample->net();
  try {
    net.finalize();  // schema and shape inference
  } catch (const Error& e) {
    FAIL() << "finalize: " << e.what();
  }

  EXPECT_TRUE(reference::has_kernel(op));
  try {
    reference::run(net, sample->feeds());
  } catch (const Error& e) {
    ADD_FAILURE() << "reference::run: " << e.what();
  }

  std::vector<std::string> onnx = onnx::onnx_op_types(op);
  if (ir::is_builder_op(op)) EXPECT_TRUE(onnx.empty()) << "a builder op is never imported";
  else if (ir::family_of(op) == ir::OpFamily::kMl)
    EXPECT_EQ(onnx, std::vector<std::string>{str("ai.onnx.ml::", ir::op_name(op))}) << "the ai.onnx.ml op of its name";
  else EXPECT_NE(std::find(onnx.begin(), onnx.end(), ir::op_name(op)), onnx.end()) << "the ONNX op of its name is not imported as it";

  // The node as it is, in a plan without the builder's passes (no arena slots: no views).
  runtime::GpuLowering lowering = runtime::gpu_lowering(op);
  ASSERT_FALSE(lowering.detail.empty()) << "runtime::gpu_lowering states nothing for " << ir::op_name(op);
  plan::Plan direct;
  direct.network = net;
  direct.arena_offset.assign(net.values().size(), -1);
  direct.source = "sample";
  direct.profiles = {net.dim_ranges()};
  runtime::NodeSupport node = support_of_node(direct);
  switch (lowering.kind) {
    case runtime::GpuLowering::kKernel:
      // Control flow runs its subgraphs as `kiln build` builds them (with their memory plans), never as imported.
      if (ir::family_of(op) == ir::OpFamily::kControlFlow) EXPECT_NE(node.reason.find("`kiln build` builds the subgraphs"), std::string::npos) << node.reason;
      else EXPECT_TRUE(node.supported) << node.reason;
      break;
    case runtime::GpuLowering::kHost:
      EXPECT_TRUE(node.supported) << node.reason;
      EXPECT_NE(node.host_note.find("runs on the host inside the GPU engine"), std::string::npos) << node.host_note;
      break;
    case runtime::GpuLowering::kNone:
      EXPECT_FALSE(node.supported);
      EXPECT_EQ(node.reason, lowering.detail);
      return;  // the CPU device runs it; whether `kiln build` can fold it away depends on the model
    case runtime::GpuLowering::kByBuilder: break;
  }

  // And as `kiln build` makes it: every node the builder leaves runs on the GPU
  // (a string op's sizes may follow from its data: bounded here).
  plan::Plan built;
  builder::BuildOptions options;
  if (lowering.kind == runtime::GpuLowering::kHost) options.default_data_dependent_bound = 8;
  try {
    built = builder::build(net, options, "sample");
  } catch (const Error& e) {
    FAIL() << "builder::build: " << e.what();
  }
  EXPECT_EQ(unsupported_nodes(built), "") << ir::dump_network(built.network);
  if (lowering.kind == runtime::GpuLowering::kByBuilder) {
    for (const ir::Node& n : built.network.nodes()) EXPECT_NE(n.op, op) << "`kiln build` left it: " << ir::dump_network(built.network);
  }
}

INSTANTIATE_TEST_SUITE_P(EveryOpKind, OpRegistry, ::testing::Range(0, ir::op_count()),
                         [](const ::testing::TestParamInfo<int>& info) { return std::string(ir::op_name(OpKind(info.param))); });

// gpu_support asks make_op only: a plan with an op the GPU cannot run is
// answered without a device, with the node and the reason.
TEST(GpuSupport, NamesTheNodesTheGpuCannotRun) {
  Sample s;
  ValueId x = s.input(f32, {2, 3});
  ValueId y = s.net().add_op1(OpKind::kRelu, {x}, {}, "relu");
  std::vector<ValueId> operands{y};
  for (int i = 0; i < 6; ++i) operands.push_back(s.input(f32, {3}));
  s.node(OpKind::kEinsum, operands, attrs({{"equation", std::string("ij,j,j,j,j,j,j->i")}}));  // one operand over the kernel's
  s.net().finalize();
  plan::Plan p = builder::build(s.net(), {}, "sample");
  std::vector<runtime::NodeSupport> nodes = runtime::gpu_support(p);
  ASSERT_EQ(nodes.size(), 2u);
  EXPECT_TRUE(nodes[0].supported) << nodes[0].reason;
  EXPECT_EQ(nodes[0].reason, "");
  EXPECT_FALSE(nodes[1].supported);
  EXPECT_EQ(nodes[1].node, "node");
  EXPECT_EQ(nodes[1].op, OpKind::kEinsum);
  EXPECT_EQ(nodes[1].reason, "7 operands; the GPU kernel takes at most 6");
}

// String tensors stay in host memory: a node that reads or writes one runs
// on the host inside the GPU engine, whatever its op (here ops the GPU runs
// on numbers), and the answer names the tensor.
TEST(GpuSupport, StringTensorsRunOnTheHostInsideTheEngine) {
  Sample s;
  ValueId words = s.strings({2, 2}, {"a", "b", "c", "d"});
  ValueId flipped = s.net().add_op1(OpKind::kTranspose, {words}, {}, "transpose");
  ValueId numbers = s.net().add_op1(OpKind::kCast, {s.input(f32, {2})}, attrs({{"to", int64_t(DType::kString)}}), "cast");
  s.net().add_output(numbers);
  s.node(OpKind::kEqual, {flipped, words});
  s.net().finalize();
  plan::Plan p = builder::build(s.net(), {}, "sample");
  std::map<std::string, std::string> notes;
  for (const runtime::NodeSupport& n : runtime::gpu_support(p)) {
    EXPECT_TRUE(n.supported) << n.node << ": " << n.reason;
    notes[n.node] = n.host_note;
  }
  ASSERT_EQ(notes.size(), 3u);
  EXPECT_EQ(notes["transpose"], "runs on the host inside the GPU engine: input 0 ('in0') is a string tensor, and string tensors "
                                "live in host memory (the reference kernel runs between the launches)");
  EXPECT_NE(notes["cast"].find("output 0"), std::string::npos) << notes["cast"];
  EXPECT_NE(notes["node"].find("is a string tensor"), std::string::npos) << notes["node"];
}

// Nodes on numbers only run as kernels: no host note, even beside string nodes.
TEST(GpuSupport, NumericNodesBesideStringOnesRunOnTheGpu) {
  Sample s;
  ValueId x = s.input(f32, {2, 3});
  ValueId relu = s.net().add_op1(OpKind::kRelu, {x}, {}, "relu");
  ValueId text = s.net().add_op1(OpKind::kCast, {relu}, attrs({{"to", int64_t(DType::kString)}}), "to_text");
  ValueId same = s.net().add_op1(OpKind::kEqual, {text, text}, {}, "same");
  s.node(OpKind::kNot, {same});
  s.net().finalize();
  plan::Plan p = builder::build(s.net(), {}, "sample");
  std::map<std::string, runtime::NodeSupport> support;
  for (runtime::NodeSupport& n : runtime::gpu_support(p)) support[n.node] = n;
  ASSERT_EQ(support.size(), 4u);
  for (auto& [name, n] : support) EXPECT_TRUE(n.supported) << name << ": " << n.reason;
  EXPECT_EQ(support["relu"].host_note, "");
  EXPECT_EQ(support["node"].host_note, "");
  EXPECT_NE(support["to_text"].host_note.find("output 0 ("), std::string::npos) << support["to_text"].host_note;
  EXPECT_NE(support["same"].host_note.find("input 0"), std::string::npos) << support["same"].host_note;
}

// The ml ops and TfIdfVectorizer run on the GPU where their data are numbers;
// gpu_support (what `kiln inspect` shows) answers without a device, and names
// what runs on the host inside the GPU engine (string tensors) and what stays
// on the CPU device (a SOFTMAX over more targets than a GPU thread holds).
TEST(GpuSupport, MlAndTextOpsOfNumbersRunOnTheGpu) {
  Sample s;
  ir::Network& net = s.net();
  ValueId x = s.input(f32, {2, 3});
  net.add_output(net.add_op1(OpKind::kArrayFeatureExtractor, {x, s.input(DType::kInt64, {2}, {2, 0})}, {}, "extract"));
  ir::Attributes tfidf = attrs({{"mode", std::string("TFIDF")}, {"min_gram_length", int64_t(1)}, {"max_gram_length", int64_t(1)},
                                {"ngram_counts", std::vector<int64_t>{0}}, {"ngram_indexes", std::vector<int64_t>{0, 1}},
                                {"pool_int64s", std::vector<int64_t>{4, 7}}, {"weights", std::vector<double>{0.5, 2}}});
  net.add_output(net.add_op1(OpKind::kTfIdfVectorizer, {s.input(DType::kInt32, {3, 4})}, tfidf, "tfidf"));
  net.add_output(net.add_op1(OpKind::kLabelEncoder, {s.input(DType::kFloat32, {5})},
                             attrs({{"keys_floats", std::vector<double>{0.5, NAN}}, {"values_int64s", std::vector<int64_t>{1, 2}}}),
                             "numbers"));
  net.add_output(net.add_op1(OpKind::kLabelEncoder, {s.strings({2}, {"a", "b"})},
                             attrs({{"keys_strings", std::vector<std::string>{"a"}}, {"values_int64s", std::vector<int64_t>{1}}}), "words"));
  auto forest = [&](int64_t targets, int64_t post, const std::string& name) {
    ir::Attributes a = attrs({{"nodes_splits", reference::make_tensor(f32, {1}, {0.3})},
                              {"nodes_modes", reference::make_tensor(DType::kUInt8, {1}, {0})},
                              {"nodes_featureids", std::vector<int64_t>{1}}, {"nodes_truenodeids", std::vector<int64_t>{0}},
                              {"nodes_falsenodeids", std::vector<int64_t>{1}}, {"nodes_trueleafs", std::vector<int64_t>{1}},
                              {"nodes_falseleafs", std::vector<int64_t>{1}}, {"leaf_targetids", std::vector<int64_t>{0, targets - 1}},
                              {"leaf_weights", reference::make_tensor(f32, {2}, {1, 2})}, {"tree_roots", std::vector<int64_t>{0}},
                              {"n_targets", targets}, {"post_transform", post}});
    net.add_output(net.add_op1(OpKind::kTreeEnsemble, {x}, a, name));
  };
  forest(32, 1, "softmax_in_one_thread");  // a GPU thread holds 32 targets of a row
  forest(33, 2, "logistic_over_two_threads");
  forest(33, 1, "softmax_over_two_threads");
  net.finalize();
  plan::Plan p = builder::build(net, {}, "sample");
  std::map<std::string, runtime::NodeSupport> support;
  for (const runtime::NodeSupport& n : runtime::gpu_support(p)) support[n.node] = n;
  for (const char* name : {"extract", "tfidf", "numbers", "words", "softmax_in_one_thread", "logistic_over_two_threads",
                           "softmax_over_two_threads"})
    ASSERT_EQ(support.count(name), 1u) << name << " is not in the plan:\n" << ir::dump_network(p.network);
  for (const char* name : {"extract", "tfidf", "numbers", "softmax_in_one_thread", "logistic_over_two_threads"})
    EXPECT_TRUE(support[name].supported) << name << ": " << support[name].reason;
  EXPECT_EQ(support["extract"].op, OpKind::kArrayFeatureExtractor);  // indices that are tensor data: the node's own kernel
  EXPECT_TRUE(support["words"].supported) << support["words"].reason;
  EXPECT_NE(support["words"].host_note.find("is a string tensor"), std::string::npos) << support["words"].host_note;
  EXPECT_EQ(support["numbers"].host_note, "");
  EXPECT_FALSE(support["softmax_over_two_threads"].supported);
  EXPECT_EQ(support["softmax_over_two_threads"].reason,
            "SOFTMAX over 33 targets; the GPU kernel holds at most 32 a row (runs on the CPU device)");
}

// Range, OneHot and TopK whose output sizes follow from tensor data: the GPU
// runtime runs them (enqueue reads the sizes back), and `kiln build` bounds
// them: TopK by its axis, the others by the bounds given, naming the tensor
// when one is missing.
TEST(GpuSupport, DataDependentSizesRunWithTheirBounds) {
  Sample s;
  ValueId start = s.input(DType::kInt64, {}, {0});
  s.net().add_output(s.net().add_op1(OpKind::kRange, {start, s.input(DType::kInt64, {}, {4}), s.int_scalar(1)}, {}, "range"));
  s.net().add_output(s.net().add_op1(OpKind::kOneHot, {s.input(DType::kInt64, {2}, {1, 0}), s.input(DType::kInt64, {}, {3}),
                                                       s.floats({2})}, {}, "onehot"));
  for (ValueId v : s.net().add_op(OpKind::kTopK, {s.input(f32, {5}), s.input(DType::kInt64, {1}, {2})}, {}, 2, "topk"))
    s.net().add_output(v);
  s.net().finalize();
  const ir::Network& net = s.net();
  std::string range = net.value(net.nodes()[0].outputs[0]).name, onehot = net.value(net.nodes()[1].outputs[0]).name;
  try {
    builder::build(net, {}, "sample");
    ADD_FAILURE() << "built without a bound for '" << range << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    EXPECT_NE(std::string(e.what()).find(str("tensor '", range, "'")), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(str("--data-dependent-bound ", range, "=N")), std::string::npos) << e.what();
  }
  builder::BuildOptions options;
  options.data_dependent_bounds = {{range, 10}, {onehot, 7}};
  plan::Plan p = builder::build(net, options, "sample");
  EXPECT_EQ(unsupported_nodes(p), "") << ir::dump_network(p.network);
  std::vector<int64_t> bounds;
  for (const ir::Node& node : p.network.nodes()) {
    ir::Shape shape = p.network.value(node.outputs[0]).shape;
    for (const ir::Dim& d : shape)
      if (!d.is_constant()) bounds.push_back(p.network.dim_ranges().at(d.to_string()).max);
  }
  EXPECT_EQ(bounds, (std::vector<int64_t>{10, 7, 5}));  // Range, OneHot's depth, TopK's axis
}

}  // namespace
}  // namespace kiln
