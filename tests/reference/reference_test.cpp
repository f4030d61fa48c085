#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <tuple>

#include "kiln/error.h"
#include "kiln/ir/network.h"
#include "kiln/ir/shape_inference.h"
#include "kiln/reference.h"
#include "kernels.h"

namespace kiln::reference {
namespace {

using ir::Dim;
using ir::OpKind;

std::vector<double> values(const Tensor& t) {
  std::vector<double> out;
  visit_dtype(t.dtype, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_arithmetic_v<T>)
      for (int64_t i = 0; i < t.numel(); ++i) out.push_back(double(t.data.as<T>()[i]));
  });
  return out;
}

std::vector<double> random_values(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(0.1, 1.0);
  std::vector<double> v(n);
  for (auto& x : v) x = u(rng) * (rng() % 2 ? 1 : -1);
  return v;
}

TEST(Reference, ConvMatchesDirectSum) {
  // 1x2x5x5 input, 3 output channels, 3x3 kernel, stride 2, pad 1: against a naive 7-loop sum.
  const uint32_t seed = 42;
  std::vector<double> x = random_values(50, seed), w = random_values(54, seed + 1), b = random_values(3, seed + 2);
  ir::Network net;
  ir::ValueId xi = net.add_input("x", DType::kFloat32, {Dim(1), Dim(2), Dim(5), Dim(5)});
  ir::ValueId wi = net.add_weight("w", make_tensor(DType::kFloat32, {3, 2, 3, 3}, w));
  ir::ValueId bi = net.add_weight("b", make_tensor(DType::kFloat32, {3}, b));
  ir::Attributes a;
  a.set("strides", std::vector<int64_t>{2, 2});
  a.set("pads", std::vector<int64_t>{1, 1, 1, 1});
  ir::ValueId y = net.add_op1(OpKind::kConv, {xi, wi, bi}, a);
  net.add_output(y);
  net.finalize();
  Tensor xt = make_tensor(DType::kFloat32, {1, 2, 5, 5}, x);
  std::vector<double> xf = values(xt), wf = values(*net.value(wi).weight), bf = values(*net.value(bi).weight);
  auto out = values(run(net, {{"x", xt}})[0]);
  ASSERT_EQ(out.size(), 3u * 3 * 3) << "seed " << seed;
  for (int m = 0; m < 3; ++m)
    for (int oy = 0; oy < 3; ++oy)
      for (int ox = 0; ox < 3; ++ox) {
        double acc = bf[size_t(m)];
        for (int c = 0; c < 2; ++c)
          for (int ky = 0; ky < 3; ++ky)
            for (int kx = 0; kx < 3; ++kx) {
              int iy = oy * 2 - 1 + ky, ix = ox * 2 - 1 + kx;
              if (iy < 0 || iy >= 5 || ix < 0 || ix >= 5) continue;
              acc += xf[size_t(c * 25 + iy * 5 + ix)] * wf[size_t(((m * 2 + c) * 3 + ky) * 3 + kx)];
            }
        EXPECT_NEAR(out[size_t(m * 9 + oy * 3 + ox)], acc, 1e-5) << "seed " << seed;
      }
}

TEST(Reference, LayerNormAndSoftmaxRows) {
  ir::Network net;
  ir::ValueId x = net.add_input("x", DType::kFloat32, {Dim(2), Dim(4)});
  ir::ValueId scale = net.add_weight("g", make_tensor(DType::kFloat32, {4}, {1, 1, 1, 1}));
  ir::ValueId ln = net.add_op1(OpKind::kLayerNormalization, {x, scale});
  ir::ValueId sm = net.add_op1(OpKind::kSoftmax, {x});
  net.add_output(ln);
  net.add_output(sm);
  net.finalize();
  auto out = run(net, {{"x", make_tensor(DType::kFloat32, {2, 4}, {1, 2, 3, 4, -1, 0, 1, 2})}});
  auto l = values(out[0]), s = values(out[1]);
  double mean = 0, sum = 0;
  for (int i = 0; i < 4; ++i) {
    mean += l[size_t(i)];
    sum += s[size_t(i)];
  }
  EXPECT_NEAR(mean, 0.0, 1e-6);
  EXPECT_NEAR(sum, 1.0, 1e-6);
  EXPECT_NEAR(l[0], -1.3416355, 1e-5);  // (1-2.5)/sqrt(1.25+1e-5)
}

TEST(Reference, HalfPrecisionRoundsOutputs) {
  ir::Network net;
  ir::ValueId a = net.add_input("a", DType::kFloat16, {Dim(3)});
  ir::ValueId b = net.add_input("b", DType::kFloat16, {Dim(3)});
  net.add_output(net.add_op1(OpKind::kAdd, {a, b}));
  net.finalize();
  auto out = run(net, {{"a", make_tensor(DType::kFloat16, {3}, {1, 2048, 0.1})},
                       {"b", make_tensor(DType::kFloat16, {3}, {2, 1, 0.2})}});
  ASSERT_EQ(out[0].dtype, DType::kFloat16);
  const auto* h = out[0].data.as<Float16>();
  EXPECT_EQ(half_to_float(h[0].bits), 3.0f);
  EXPECT_EQ(half_to_float(h[1].bits), 2048.0f);  // 2049 is not representable: ties to even
  EXPECT_NEAR(half_to_float(h[2].bits), 0.3f, 1e-3);
}

// One node over inputs x (data), i (indices) and, for scatters, u (updates), run on `feeds`.
std::vector<double> run_indexed(OpKind op, const std::map<std::string, Tensor>& feeds, ir::Attributes attrs = {}) {
  ir::Network net;
  std::vector<ir::ValueId> in;
  for (const char* name : {"x", "i", "u"}) {
    if (!feeds.count(name)) continue;
    const Tensor& t = feeds.at(name);
    in.push_back(net.add_input(name, t.dtype, ir::shape_of(t.dims)));
  }
  net.add_output(net.add_op1(op, in, std::move(attrs), "node"));
  net.finalize();
  return values(run(net, feeds)[0]);
}

TEST(Reference, ScatterNDWritesSlicesAndReducesDuplicatesInOrder) {
  Tensor x = make_tensor(DType::kInt64, {3, 2}, {1, 2, 3, 4, 5, 6});
  Tensor i = make_tensor(DType::kInt64, {3, 1}, {2, -1, 0});  // rows 2 (twice, -1 wraps) and 0
  Tensor u = make_tensor(DType::kInt64, {3, 2}, {10, 20, 30, 40, 50, 60});
  EXPECT_EQ(run_indexed(OpKind::kScatterND, {{"x", x}, {"i", i}, {"u", u}}), (std::vector<double>{50, 60, 3, 4, 30, 40}));
  ir::Attributes add;
  add.set("reduction", std::string("add"));
  EXPECT_EQ(run_indexed(OpKind::kScatterND, {{"x", x}, {"i", i}, {"u", u}}, add), (std::vector<double>{51, 62, 3, 4, 45, 66}));
  ir::Attributes mul;
  mul.set("reduction", std::string("mul"));
  EXPECT_EQ(run_indexed(OpKind::kScatterND, {{"x", x}, {"i", i}, {"u", u}}, mul), (std::vector<double>{50, 120, 3, 4, 1500, 4800}));
  // Full index tuples: single elements.
  Tensor pairs = make_tensor(DType::kInt32, {2, 2}, {1, 1, 0, -2});
  ir::Attributes min;
  min.set("reduction", std::string("min"));
  EXPECT_EQ(run_indexed(OpKind::kScatterND, {{"x", x}, {"i", pairs}, {"u", make_tensor(DType::kInt64, {2}, {-7, 9})}}, min),
            (std::vector<double>{1, 2, 3, -7, 5, 6}));
}

// Indices of the nonzero elements, one row per dim, in row-major order;
// floats by value (-0 is zero, NaN is not).
TEST(Reference, NonZeroListsIndicesInRowMajorOrder) {
  auto nonzero = [](const Tensor& x) {
    ir::Network net;
    net.add_output(net.add_op1(OpKind::kNonZero, {net.add_input("x", x.dtype, ir::shape_of(x.dims))}));
    net.finalize();
    return run(net, {{"x", x}}).at(0);
  };
  double nan = std::numeric_limits<double>::quiet_NaN();
  Tensor f = nonzero(make_tensor(DType::kFloat32, {2, 3}, {0, -0.0, 2, nan, 0, -1}));
  EXPECT_EQ(f.dtype, DType::kInt64);
  EXPECT_EQ(f.dims, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(ir::read_ints(f), (std::vector<int64_t>{0, 1, 1, 2, 0, 2}));
  Tensor b = nonzero(make_tensor(DType::kBool, {2, 1, 2}, {1, 0, 0, 1}));
  EXPECT_EQ(b.dims, (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(ir::read_ints(b), (std::vector<int64_t>{0, 1, 0, 0, 0, 1}));
  EXPECT_EQ(nonzero(make_tensor(DType::kInt32, {4}, {0, 0, 0, 0})).dims, (std::vector<int64_t>{1, 0}));
  Tensor scalar = nonzero(make_tensor(DType::kInt8, {}, {5}));
  EXPECT_EQ(scalar.dims, (std::vector<int64_t>{1, 1}));
  EXPECT_EQ(ir::read_ints(scalar), (std::vector<int64_t>{0}));
}

// Runs one node of `op` on `inputs` (named in0, in1, ...; nullopt leaves an optional input out).
std::vector<Tensor> run_node(OpKind op, const std::vector<std::optional<Tensor>>& inputs, const ir::Attributes& attrs = {},
                             int outputs = 1) {
  ir::Network net;
  std::map<std::string, Tensor> feeds;
  std::vector<ir::ValueId> in;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i]) {
      in.push_back(ir::kNoValue);
      continue;
    }
    std::string name = str("in", i);
    in.push_back(net.add_input(name, inputs[i]->dtype, ir::shape_of(inputs[i]->dims)));
    feeds[name] = *inputs[i];
  }
  for (ir::ValueId v : net.add_op(op, in, attrs, outputs)) net.add_output(v);
  net.finalize();
  return run(net, feeds);
}

ir::Attributes axis_attr(int64_t axis) {
  ir::Attributes a;
  a.set("axis", axis);
  return a;
}

// Compress along an axis or flattened; a condition shorter than the axis
// drops the rest, one longer may only be false there (numpy).
TEST(Reference, CompressKeepsTheSelectedSlices) {
  Tensor x = make_tensor(DType::kFloat32, {3, 2}, {1, 2, 3, 4, 5, 6});
  Tensor rows = run_node(OpKind::kCompress, {x, make_tensor(DType::kBool, {2}, {0, 1})}, axis_attr(0)).at(0);
  EXPECT_EQ(rows.dims, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(values(rows), (std::vector<double>{3, 4}));
  Tensor cols = run_node(OpKind::kCompress, {x, make_tensor(DType::kBool, {3}, {1, 0, 0})}, axis_attr(-1)).at(0);
  EXPECT_EQ(cols.dims, (std::vector<int64_t>{3, 1}));
  EXPECT_EQ(values(cols), (std::vector<double>{1, 3, 5}));
  Tensor flat = run_node(OpKind::kCompress, {x, make_tensor(DType::kBool, {5}, {0, 1, 1, 0, 1})}).at(0);
  EXPECT_EQ(values(flat), (std::vector<double>{2, 3, 5}));
  EXPECT_EQ(run_node(OpKind::kCompress, {x, make_tensor(DType::kBool, {0}, {})}).at(0).dims, (std::vector<int64_t>{0}));
  EXPECT_THROW(run_node(OpKind::kCompress, {x, make_tensor(DType::kBool, {4}, {0, 0, 0, 1})}, axis_attr(0)), Error);
}

// numpy's unique: sorted values (NaN last, one NaN group), first
// occurrences, inverse indices and counts; unsorted keeps first-occurrence
// order; with an axis, whole slices compare in lexicographic order.
TEST(Reference, UniqueGroupsEqualValues) {
  double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<Tensor> u = run_node(OpKind::kUnique, {make_tensor(DType::kFloat32, {7}, {2, nan, 1, 2, -0.0, nan, 0})}, {}, 4);
  ASSERT_EQ(u.size(), 4u);
  std::vector<double> y = values(u[0]);
  ASSERT_EQ(y.size(), 4u);
  EXPECT_EQ(y[0], 0);
  EXPECT_EQ(y[1], 1);
  EXPECT_EQ(y[2], 2);
  EXPECT_TRUE(std::isnan(y[3]));
  EXPECT_EQ(ir::read_ints(u[1]), (std::vector<int64_t>{4, 2, 0, 1}));
  EXPECT_EQ(ir::read_ints(u[2]), (std::vector<int64_t>{2, 3, 1, 2, 0, 3, 0}));
  EXPECT_EQ(ir::read_ints(u[3]), (std::vector<int64_t>{2, 1, 2, 2}));

  ir::Attributes unsorted;
  unsorted.set("sorted", int64_t(0));
  u = run_node(OpKind::kUnique, {make_tensor(DType::kInt64, {6}, {5, 3, 5, 9, 3, 3})}, unsorted, 4);
  EXPECT_EQ(ir::read_ints(u[0]), (std::vector<int64_t>{5, 3, 9}));
  EXPECT_EQ(ir::read_ints(u[1]), (std::vector<int64_t>{0, 1, 3}));
  EXPECT_EQ(ir::read_ints(u[2]), (std::vector<int64_t>{0, 1, 0, 2, 1, 1}));
  EXPECT_EQ(ir::read_ints(u[3]), (std::vector<int64_t>{2, 3, 1}));

  // Columns of [[1, 0, 1, 0], [2, 5, 2, 4]]: [0, 4] < [0, 5] < [1, 2].
  u = run_node(OpKind::kUnique, {make_tensor(DType::kInt32, {2, 4}, {1, 0, 1, 0, 2, 5, 2, 4})}, axis_attr(1), 4);
  EXPECT_EQ(u[0].dims, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(ir::read_ints(u[0]), (std::vector<int64_t>{0, 0, 1, 4, 5, 2}));
  EXPECT_EQ(ir::read_ints(u[1]), (std::vector<int64_t>{3, 1, 0}));
  EXPECT_EQ(ir::read_ints(u[2]), (std::vector<int64_t>{2, 1, 2, 0}));
  EXPECT_EQ(ir::read_ints(u[3]), (std::vector<int64_t>{1, 1, 2}));
}

// Greedy selection per batch and class by descending score (ties by index),
// corner boxes in either order or center boxes; thresholds and the maximum
// as optional inputs.
TEST(Reference, NonMaxSuppressionKeepsTheBestBoxes) {
  // Box 1 overlaps box 0 by IoU 0.81; box 2 is apart; box 3 is box 0 with its corners swapped.
  Tensor boxes = make_tensor(DType::kFloat32, {1, 4, 4}, {0, 0, 1, 1, 0, 0.1, 1, 1.1, 0, 5, 1, 6, 1, 1, 0, 0});
  Tensor scores = make_tensor(DType::kFloat32, {1, 2, 4}, {0.9, 0.95, 0.3, 0.5, 0.1, 0.2, 0.7, 0.2});
  Tensor most = make_tensor(DType::kInt64, {1}, {3}), iou = make_tensor(DType::kFloat32, {1}, {0.5});
  auto nms = [&](std::optional<Tensor> m, std::optional<Tensor> i, std::optional<Tensor> s, int64_t center = 0) {
    ir::Attributes a;
    a.set("center_point_box", center);
    return ir::read_ints(run_node(OpKind::kNonMaxSuppression, {boxes, scores, m, i, s}, a).at(0));
  };
  // Class 0: box 1 (0.95) suppresses boxes 3 and 0, then box 2. Class 1: box 2 (0.7), box 1 (the
  // first of two 0.2s), which suppresses box 3 and then box 0. (onnx.reference's results.)
  EXPECT_EQ(nms(most, iou, std::nullopt), (std::vector<int64_t>{0, 0, 1, 0, 0, 2, 0, 1, 2, 0, 1, 1}));
  EXPECT_EQ(nms(most, iou, make_tensor(DType::kFloat32, {1}, {0.4})), (std::vector<int64_t>{0, 0, 1, 0, 1, 2}));
  EXPECT_EQ(nms(make_tensor(DType::kInt64, {1}, {1}), iou, std::nullopt), (std::vector<int64_t>{0, 0, 1, 0, 1, 2}));
  EXPECT_EQ(nms(std::nullopt, iou, std::nullopt).size(), 0u);  // no maximum: nothing selected
  // Read as center boxes [x, y, w, h], box 3 is apart from the others.
  EXPECT_EQ(nms(most, iou, std::nullopt, 1), (std::vector<int64_t>{0, 0, 1, 0, 0, 3, 0, 0, 2, 0, 1, 2, 0, 1, 1, 0, 1, 3}));
}

// Caffe's RoI max pooling: corners rounded after scaling, bins of the RoI's
// size, the max of each bin; a batch index out of range is an error.
TEST(Reference, MaxRoiPoolTakesEachBinsMax) {
  std::vector<double> x(32);
  for (size_t i = 0; i < x.size(); ++i) x[i] = double(i);
  Tensor xt = make_tensor(DType::kFloat32, {2, 1, 4, 4}, x);
  ir::Attributes a;
  a.set("pooled_shape", std::vector<int64_t>{2, 2});
  a.set("spatial_scale", 0.5);
  // RoI (1, 0, 0, 6, 2) -> pixels x 0..3, y 0..1 of batch 1: bins of 1 row by 2 columns.
  Tensor y = run_node(OpKind::kMaxRoiPool, {xt, make_tensor(DType::kFloat32, {1, 5}, {1, 0, 0, 6, 2})}, a).at(0);
  EXPECT_EQ(y.dims, (std::vector<int64_t>{1, 1, 2, 2}));
  EXPECT_EQ(values(y), (std::vector<double>{17, 19, 21, 23}));
  EXPECT_THROW(run_node(OpKind::kMaxRoiPool, {xt, make_tensor(DType::kFloat32, {1, 5}, {2, 0, 0, 1, 1})}, a), Error);
}

TEST(Reference, ScatterElementsAlongAnAxis) {
  Tensor x = make_tensor(DType::kFloat32, {2, 3}, {1, 2, 3, 4, 5, 6});
  Tensor i = make_tensor(DType::kInt64, {2, 2}, {2, 0, -1, 2});  // row 1 hits column 2 twice
  Tensor u = make_tensor(DType::kFloat32, {2, 2}, {7, 8, 9, 10});
  ir::Attributes axis1;
  axis1.set("axis", int64_t(1));
  EXPECT_EQ(run_indexed(OpKind::kScatterElements, {{"x", x}, {"i", i}, {"u", u}}, axis1), (std::vector<double>{8, 2, 7, 4, 5, 10}));
  axis1.set("reduction", std::string("max"));
  EXPECT_EQ(run_indexed(OpKind::kScatterElements, {{"x", x}, {"i", i}, {"u", u}}, axis1), (std::vector<double>{8, 2, 7, 4, 5, 10}));
  axis1.set("reduction", std::string("add"));
  EXPECT_EQ(run_indexed(OpKind::kScatterElements, {{"x", x}, {"i", i}, {"u", u}}, axis1), (std::vector<double>{9, 2, 10, 4, 5, 25}));
}

TEST(Reference, GatherNDWithBatchDims) {
  Tensor x = make_tensor(DType::kFloat32, {2, 2, 3}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11});
  Tensor i = make_tensor(DType::kInt64, {2, 2, 1}, {1, 0, -2, 1});
  ir::Attributes batch;
  batch.set("batch_dims", int64_t(1));
  EXPECT_EQ(run_indexed(OpKind::kGatherND, {{"x", x}, {"i", i}}, batch), (std::vector<double>{3, 4, 5, 0, 1, 2, 6, 7, 8, 9, 10, 11}));
  Tensor pairs = make_tensor(DType::kInt64, {2, 3}, {1, 0, 2, 0, 1, -3});
  EXPECT_EQ(run_indexed(OpKind::kGatherND, {{"x", x}, {"i", pairs}}), (std::vector<double>{8, 3}));
}

TEST(Reference, ScatterAndGatherNDIndexOutOfRangeNameTheNode) {
  Tensor x = make_tensor(DType::kFloat32, {3, 2}, {1, 2, 3, 4, 5, 6});
  Tensor bad = make_tensor(DType::kInt64, {1, 1}, {3});
  for (OpKind op : {OpKind::kScatterND, OpKind::kGatherND}) {
    std::map<std::string, Tensor> feeds{{"x", x}, {"i", bad}};
    if (op == OpKind::kScatterND) feeds["u"] = make_tensor(DType::kFloat32, {1, 2}, {1, 1});
    try {
      run_indexed(op, feeds);
      ADD_FAILURE() << ir::op_name(op) << " accepted index 3";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(str("node 'node' (", ir::op_name(op), "): index 3 is out of range for dim 0 of size 3")),
                std::string::npos) << e.what();
    }
  }
}

// Updates and indices with symbols of their own agree only at run time: a
// mismatch is refused before anything is written.
TEST(Reference, ScatterUpdatesThatDoNotFitTheIndicesAreRefused) {
  ir::Network net;
  ir::ValueId x = net.add_input("x", DType::kFloat32, {Dim(4), Dim(3)});
  ir::ValueId i = net.add_input("i", DType::kInt64, {Dim::symbol("n"), Dim(1)});
  ir::ValueId u = net.add_input("u", DType::kFloat32, {Dim::symbol("m"), Dim(3)});
  net.add_output(net.add_op1(OpKind::kScatterND, {x, i, u}, {}, "scatter"));
  net.set_dim_range("n", {1, 2, 4});
  net.set_dim_range("m", {1, 2, 4});
  net.finalize();
  std::map<std::string, Tensor> feeds{{"x", make_tensor(DType::kFloat32, {4, 3}, std::vector<double>(12, 1.0))},
                                      {"i", make_tensor(DType::kInt64, {2, 1}, {0, 3})},
                                      {"u", make_tensor(DType::kFloat32, {3, 3}, std::vector<double>(9, 2.0))}};
  try {
    run(net, feeds);
    ADD_FAILURE() << "updates of 3 rows for 2 indices were accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kShapeError);
    EXPECT_NE(std::string(e.what()).find("node 'scatter' (ScatterND): updates [3,3] should be [2,3]"), std::string::npos) << e.what();
  }
  feeds["u"] = make_tensor(DType::kFloat32, {2, 3}, std::vector<double>(6, 2.0));
  EXPECT_EQ(values(run(net, feeds)[0]), (std::vector<double>{2, 2, 2, 1, 1, 1, 1, 1, 1, 2, 2, 2}));
}

class ReferenceInputs : public ::testing::Test {
 protected:
  void SetUp() override {
    ir::ValueId x = net.add_input("x", DType::kFloat32, {Dim::symbol("N"), Dim(3)});
    ir::ValueId y = net.add_input("y", DType::kFloat32, {Dim::symbol("N"), Dim(3)});
    net.add_output(net.add_op1(OpKind::kAdd, {x, y}));
    net.set_dim_range("N", {1, 2, 4});
    net.finalize();
  }
  void expect_error(const std::map<std::string, Tensor>& in, const std::string& needle) {
    try {
      run(net, in);
      FAIL() << "expected '" << needle << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  }
  Tensor t(std::vector<int64_t> dims, DType d = DType::kFloat32) {
    return make_tensor(d, dims, std::vector<double>(size_t(ir::checked_numel(dims)), 1.0));
  }
  ir::Network net;
};

TEST_F(ReferenceInputs, Valid) { EXPECT_EQ(run(net, {{"x", t({2, 3})}, {"y", t({2, 3})}})[0].dims, (std::vector<int64_t>{2, 3})); }
TEST_F(ReferenceInputs, Missing) { expect_error({{"x", t({2, 3})}}, "input 'y' is not given"); }
TEST_F(ReferenceInputs, Unknown) { expect_error({{"x", t({2, 3})}, {"y", t({2, 3})}, {"z", t({1})}}, "'z' is not an input"); }
TEST_F(ReferenceInputs, WrongDtype) { expect_error({{"x", t({2, 3}, DType::kFloat64)}, {"y", t({2, 3})}}, "must be float32"); }
TEST_F(ReferenceInputs, WrongConstantDim) { expect_error({{"x", t({2, 4})}, {"y", t({2, 4})}}, "dim 1 must be 3"); }
TEST_F(ReferenceInputs, SymbolsDisagree) { expect_error({{"x", t({2, 3})}, {"y", t({3, 3})}}, "another input set 'N'"); }
TEST_F(ReferenceInputs, OutsideRange) { expect_error({{"x", t({5, 3})}, {"y", t({5, 3})}}, "outside its range [1, 4]"); }

// One binary (or unary, b empty) bit op on constants of `dtype`, run by the reference.
std::vector<double> bit_op(OpKind op, DType dtype, std::vector<double> a, std::vector<double> b, const char* direction = nullptr) {
  ir::Network net;
  ir::Attributes attrs;
  if (direction) attrs.set("direction", std::string(direction));
  std::vector<ir::ValueId> in = {net.add_input("a", dtype, {Dim(int64_t(a.size()))})};
  std::map<std::string, Tensor> feeds = {{"a", make_tensor(dtype, {int64_t(a.size())}, a)}};
  if (!b.empty()) {
    in.push_back(net.add_input("b", dtype, {Dim(int64_t(b.size()))}));
    feeds["b"] = make_tensor(dtype, {int64_t(b.size())}, b);
  }
  net.add_output(net.add_op1(op, in, attrs));
  net.finalize();
  return values(run(net, feeds)[0]);
}

TEST(Reference, BitwiseOpsWrapIntoTheDtype) {
  using V = std::vector<double>;
  EXPECT_EQ(bit_op(OpKind::kBitwiseAnd, DType::kUInt8, {0xF0, 0x3C, 255}, {0x3C, 0x0F, 128}), (V{0x30, 0x0C, 128}));
  EXPECT_EQ(bit_op(OpKind::kBitwiseOr, DType::kInt8, {-128, 5, 0}, {1, 2, -1}), (V{-127, 7, -1}));
  EXPECT_EQ(bit_op(OpKind::kBitwiseXor, DType::kInt32, {-1, 6, 0x7fffffff}, {5, 3, -1}), (V{-6, 5, -2147483648.0}));
  EXPECT_EQ(bit_op(OpKind::kBitwiseNot, DType::kUInt8, {0, 0x0F, 255}, {}), (V{255, 0xF0, 0}));
  EXPECT_EQ(bit_op(OpKind::kBitwiseNot, DType::kInt64, {0, 5, -6}, {}), (V{-1, -6, 5}));
}

TEST(Reference, BitShiftByTheWidthOrMoreLeavesTheSignFill) {
  using V = std::vector<double>;
  // uint8: bits past the top are dropped; shifts of 8 or more give 0.
  EXPECT_EQ(bit_op(OpKind::kBitShift, DType::kUInt8, {1, 3, 255, 7}, {7, 7, 8, 200}, "LEFT"), (V{128, 128, 0, 0}));
  EXPECT_EQ(bit_op(OpKind::kBitShift, DType::kUInt8, {200, 255, 128}, {3, 7, 8}, "RIGHT"), (V{25, 1, 0}));
  // Signed (BitShift-28): arithmetic right shifts; negative or too large amounts give the sign fill.
  EXPECT_EQ(bit_op(OpKind::kBitShift, DType::kInt8, {-128, -128, 64, -7, 5}, {1, 9, 1, -1, 8}, "RIGHT"), (V{-64, -1, 32, -1, 0}));
  EXPECT_EQ(bit_op(OpKind::kBitShift, DType::kInt8, {64, 1, -1, 3}, {1, 7, 8, -2}, "LEFT"), (V{-128, -128, 0, 0}));
  EXPECT_EQ(bit_op(OpKind::kBitShift, DType::kInt64, {-8, 1, -1}, {1, 63, 64}, "RIGHT"), (V{-4, 0, -1}));
  EXPECT_EQ(bit_op(OpKind::kBitShift, DType::kInt32, {1, 3, 1}, {31, 30, 32}, "LEFT"), (V{-2147483648.0, -1073741824.0, 0}));
}

TEST(Reference, ModByMinusOneIsZeroEvenForTheSmallestInt) {
  std::vector<double> got = bit_op(OpKind::kMod, DType::kInt64, {-9223372036854775808.0, 7, -7}, {-1, -1, 3});
  EXPECT_EQ(got, (std::vector<double>{0, 0, 2}));
}

TEST(Reference, LrnSumsSquaresOverAWindowOfChannels) {
  // x[1, 3, 1, 2]; alpha / size = 1, beta 1, bias 1: y = x / (1 + sum of squares in the window).
  auto lrn = [](int64_t size) {
    ir::Network net;
    ir::Attributes a;
    a.set("size", size);
    a.set("alpha", double(size));
    a.set("beta", 1.0);
    ir::ValueId x = net.add_input("x", DType::kFloat32, {Dim(1), Dim(3), Dim(1), Dim(2)});
    net.add_output(net.add_op1(OpKind::kLRN, {x}, a));
    net.finalize();
    return values(run(net, {{"x", make_tensor(DType::kFloat32, {1, 3, 1, 2}, {1, -1, 2, 0.5, 3, 2})}})[0]);
  };
  // size 3: channels c-1..c+1. Position 0 holds 1, 2, 3; position 1 holds -1, 0.5, 2.
  std::vector<double> want3 = {1 / 6.0, -1 / 2.25, 2 / 15.0, 0.5 / 6.25, 3 / 14.0, 2 / 5.25};
  // size 2: floor(1 / 2) = 0 channels before, ceil(1 / 2) = 1 after.
  std::vector<double> want2 = {1 / 6.0, -1 / 2.25, 2 / 14.0, 0.5 / 5.25, 3 / 10.0, 2 / 5.0};
  std::vector<double> got3 = lrn(3), got2 = lrn(2);
  for (size_t i = 0; i < 6; ++i) {
    EXPECT_NEAR(got3[i], want3[i], 1e-6) << i;
    EXPECT_NEAR(got2[i], want2[i], 1e-6) << i;
  }
}

// CausalConvWithState on x [1, 1, len] with taps {0.5, -1, 2} and bias 0.25;
// returns the output and present_state.
std::pair<std::vector<double>, std::vector<double>> causal_conv(std::vector<double> x, std::vector<double> past,
                                                                const char* activation = "none") {
  ir::Network net;
  ir::Attributes a;
  a.set("activation", std::string(activation));
  int64_t len = int64_t(x.size());
  std::map<std::string, Tensor> feeds = {{"x", make_tensor(DType::kFloat32, {1, 1, len}, x)}};
  std::vector<ir::ValueId> in{net.add_input("x", DType::kFloat32, {Dim(1), Dim(1), Dim(len)}),
                              net.add_weight("w", make_tensor(DType::kFloat32, {1, 1, 3}, {0.5, -1, 2})),
                              net.add_weight("b", make_tensor(DType::kFloat32, {1}, {0.25}))};
  if (!past.empty()) {
    in.push_back(net.add_input("past", DType::kFloat32, {Dim(1), Dim(1), Dim(2)}));
    feeds["past"] = make_tensor(DType::kFloat32, {1, 1, 2}, past);
  }
  for (ir::ValueId v : net.add_op(OpKind::kCausalConvWithState, in, a, 2)) net.add_output(v);
  net.finalize();
  auto out = run(net, feeds);
  return {values(out[0]), values(out[1])};
}

TEST(Reference, CausalConvWithStateSlidesOverThePastThenTheInput) {
  using V = std::vector<double>;
  // The sequence 4, 5 | 1, 2, 3: each output is 0.25 + 0.5 s[t] - s[t + 1] + 2 s[t + 2].
  EXPECT_EQ(causal_conv({1, 2, 3}, {4, 5}), (std::pair<V, V>{{-0.75, 5.75, 4.75}, {2, 3}}));
  // No past_state: zeros before the input; an input shorter than k - 1 leaves part of them in the state.
  EXPECT_EQ(causal_conv({1}, {}), (std::pair<V, V>{{2.25}, {0, 1}}));
  auto [silu, state] = causal_conv({1, 2, 3}, {4, 5}, "silu");
  V want = {-0.75, 5.75, 4.75};
  for (size_t i = 0; i < 3; ++i) EXPECT_NEAR(silu[i], want[i] / (1 + std::exp(-want[i])), 1e-6) << i;
  EXPECT_EQ(state, (V{2, 3}));
}

TEST(Reference, LinearAttentionRunsTheGatedDeltaRuleWithGroupedHeads) {
  // B 1, T 2, one kv head of d_k 2 and d_v 1 read by two query heads; decay halves the state each step.
  ir::Network net;
  ir::Attributes a;
  a.set("q_num_heads", int64_t(2));
  a.set("kv_num_heads", int64_t(1));
  a.set("scale", 1.0);
  auto input = [&](const char* name, std::vector<int64_t> dims) {
    return net.add_input(name, DType::kFloat32, ir::shape_of(dims));
  };
  std::vector<ir::ValueId> in{input("q", {1, 2, 4}), input("k", {1, 2, 2}), input("v", {1, 2, 1}), ir::kNoValue,
                              input("decay", {1, 2, 1}), input("beta", {1, 2, 1})};
  for (ir::ValueId v : net.add_op(OpKind::kLinearAttention, in, a, 2)) net.add_output(v);
  net.finalize();
  double half = std::log(0.5);
  auto out = run(net, {{"q", make_tensor(DType::kFloat32, {1, 2, 4}, {1, 1, 2, 0, 0, 2, 2, 0})},
                       {"k", make_tensor(DType::kFloat32, {1, 2, 2}, {1, 0, 1, 1})},
                       {"v", make_tensor(DType::kFloat32, {1, 2, 1}, {2, 3})},
                       {"decay", make_tensor(DType::kFloat32, {1, 2, 1}, {half, half})},
                       {"beta", make_tensor(DType::kFloat32, {1, 2, 1}, {0.5, 1})}});
  // Step 1: S = 0, write 0.5 * (2 - 0) = 1 along k = (1, 0): S = (1, 0); outputs q.S = 1 and 2.
  // Step 2: S = (0.5, 0), recalled S.k = 0.5, write 1 * (3 - 0.5) = 2.5 along (1, 1): S = (3, 2.5);
  // outputs (0, 2).S = 5 and (2, 0).S = 6.
  std::vector<double> got = values(out[0]), state = values(out[1]);
  std::vector<double> want = {1, 2, 5, 6}, want_state = {3, 2.5};
  for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(got[i], want[i], 1e-6) << i;
  for (size_t i = 0; i < 2; ++i) EXPECT_NEAR(state[i], want_state[i], 1e-6) << i;
}

TEST(Reference, BitCastKeepsTheBitsAndMakesBoolsOfNonzeroBytes) {
  auto bitcast = [](DType from, DType to, std::vector<double> x) {
    ir::Network net;
    ir::Attributes a;
    a.set("to", int64_t(to));
    net.add_output(net.add_op1(OpKind::kBitCast, {net.add_input("x", from, {Dim(int64_t(x.size()))})}, a));
    net.finalize();
    return values(run(net, {{"x", make_tensor(from, {int64_t(x.size())}, x)}})[0]);
  };
  EXPECT_EQ(bitcast(DType::kFloat32, DType::kInt32, {1.0, -2.0, 0.0}), (std::vector<double>{1065353216, -1073741824, 0}));
  EXPECT_EQ(bitcast(DType::kInt8, DType::kUInt8, {-1, 5, -128}), (std::vector<double>{255, 5, 128}));
  EXPECT_EQ(bitcast(DType::kUInt8, DType::kBool, {0, 1, 7}), (std::vector<double>{0, 1, 1}));
  EXPECT_EQ(bitcast(DType::kInt64, DType::kFloat64, {4607182418800017408.0}), (std::vector<double>{1.0}));
}

// One node of `op` over `inputs` (name, tensor), its first output.
Tensor run_one(OpKind op, const std::vector<std::pair<std::string, Tensor>>& inputs, const ir::Attributes& a = {}) {
  ir::Network net;
  std::vector<ir::ValueId> ids;
  std::map<std::string, Tensor> feeds;
  for (const auto& [name, t] : inputs) {
    ids.push_back(net.add_input(name, t.dtype, ir::shape_of(t.dims)));
    feeds[name] = t;
  }
  net.add_output(net.add_op1(op, ids, a, "node"));
  net.finalize();
  return run(net, feeds)[0];
}

ir::Attributes attrs(std::initializer_list<std::pair<const char*, ir::AttrValue>> list) {
  ir::Attributes a;
  for (auto& [name, value] : list) a.set(name, value);
  return a;
}

TEST(Reference, CumProdInEveryDirectionAndExactIntegers) {
  Tensor x = make_tensor(DType::kFloat32, {4}, {1, 2, 3, 4});
  Tensor axis = make_tensor(DType::kInt64, {}, {0});
  auto cumprod = [&](int64_t exclusive, int64_t reverse) {
    return values(run_one(OpKind::kCumProd, {{"x", x}, {"axis", axis}}, attrs({{"exclusive", exclusive}, {"reverse", reverse}})));
  };
  EXPECT_EQ(cumprod(0, 0), (std::vector<double>{1, 2, 6, 24}));
  EXPECT_EQ(cumprod(1, 0), (std::vector<double>{1, 1, 2, 6}));
  EXPECT_EQ(cumprod(0, 1), (std::vector<double>{24, 24, 12, 4}));
  EXPECT_EQ(cumprod(1, 1), (std::vector<double>{24, 12, 4, 1}));
  // 3^39 is past float64's exact integers; int64 products stay exact.
  int64_t p20 = 3486784401, p19 = 1162261467;
  Tensor big = make_tensor(DType::kInt64, {2}, {double(p20), double(p19)});
  Tensor got = run_one(OpKind::kCumProd, {{"x", big}, {"axis", axis}});
  EXPECT_EQ(got.data.as<int64_t>()[1], p20 * p19);
}

TEST(Reference, LpPoolIsTheNormOfTheTapsInsideTheInput) {
  // x[1, 1, 3, 3] = 1..9, a 2 x 2 window, stride 1, a pad of 1 at the start: the corner window holds x[0, 0] only.
  Tensor x = make_tensor(DType::kFloat32, {1, 1, 3, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9});
  ir::Attributes a = attrs({{"kernel_shape", std::vector<int64_t>{2, 2}}, {"pads", std::vector<int64_t>{1, 1, 0, 0}}, {"p", int64_t(3)}});
  std::vector<double> y = values(run_one(OpKind::kLpPool, {{"x", x}}, a));
  ASSERT_EQ(y.size(), 9u);
  EXPECT_NEAR(y[0], 1, 1e-6);
  EXPECT_NEAR(y[4], std::cbrt(1 + 8 + 64 + 125.0), 1e-5);  // x[0..1, 0..1]
  EXPECT_NEAR(y[8], std::cbrt(125 + 216 + 512 + 729.0), 1e-4);
  std::vector<double> g = values(run_one(OpKind::kGlobalLpPool, {{"x", x}}, attrs({{"p", int64_t(1)}})));
  EXPECT_EQ(g, (std::vector<double>{45}));
}

TEST(Reference, MaxUnpoolPlacesValuesAtTheirIndicesWithinTheUnpooledSize) {
  // ONNX's example: a 4 x 4 unpooled size inside a 5 x 5 output_shape.
  Tensor x = make_tensor(DType::kFloat32, {1, 1, 2, 2}, {5, 6, 15, 16});
  Tensor idx = make_tensor(DType::kInt64, {1, 1, 2, 2}, {5, 7, 13, 15});
  ir::Attributes a = attrs({{"kernel_shape", std::vector<int64_t>{2, 2}}, {"strides", std::vector<int64_t>{2, 2}}});
  ir::Network net;
  ir::ValueId xi = net.add_input("x", DType::kFloat32, ir::shape_of(x.dims)), ii = net.add_input("i", DType::kInt64, ir::shape_of(idx.dims));
  ir::ValueId shape = net.add_weight("shape", make_tensor(DType::kInt64, {4}, {1, 1, 5, 5}));
  net.add_output(net.add_op1(OpKind::kMaxUnpool, {xi, ii, shape}, a, "node"));
  net.finalize();
  std::vector<double> y = values(run(net, {{"x", x}, {"i", idx}})[0]);
  std::vector<double> want(25, 0.0);
  want[1 * 5 + 1] = 5, want[1 * 5 + 3] = 6, want[3 * 5 + 1] = 15, want[3 * 5 + 3] = 16;
  EXPECT_EQ(y, want);
  EXPECT_EQ(values(run_one(OpKind::kMaxUnpool, {{"x", x}, {"i", idx}}, a)).size(), 16u);
  Tensor outside = make_tensor(DType::kInt64, {1, 1, 2, 2}, {5, 7, 13, 16});
  try {
    run_one(OpKind::kMaxUnpool, {{"x", x}, {"i", outside}}, a);
    ADD_FAILURE() << "an index past the unpooled size ran";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("index 16 at position 3 of I is outside the unpooled size [1,1,4,4]"), std::string::npos)
        << e.what();
  }
}

TEST(Reference, LpNormalizationOverAnAxisWithZeroRows) {
  Tensor x = make_tensor(DType::kFloat32, {2, 3}, {3, 0, -4, 0, 0, 0});
  EXPECT_EQ(values(run_one(OpKind::kLpNormalization, {{"x", x}}, attrs({{"p", int64_t(2)}}))),
            (std::vector<double>{0.6000000238418579, 0, -0.800000011920929, 0, 0, 0}));
  std::vector<double> l1 = values(run_one(OpKind::kLpNormalization, {{"x", x}}, attrs({{"p", int64_t(1)}, {"axis", int64_t(0)}})));
  EXPECT_EQ(l1, (std::vector<double>{1, 0, -1, 0, 0, 0}));
}

TEST(Reference, EyeLikeOnAnOffDiagonalInAnotherType) {
  Tensor x = make_tensor(DType::kFloat32, {3, 2}, {9, 9, 9, 9, 9, 9});
  Tensor y = run_one(OpKind::kEyeLike, {{"x", x}}, attrs({{"k", int64_t(-1)}, {"dtype", int64_t(DType::kInt32)}}));
  EXPECT_EQ(y.dtype, DType::kInt32);
  EXPECT_EQ(values(y), (std::vector<double>{0, 0, 1, 0, 0, 1}));
}

TEST(Reference, ReverseSequenceAlongEitherAxis) {
  // ONNX's two examples.
  std::vector<double> v(16);
  for (size_t i = 0; i < 16; ++i) v[i] = double(i);
  Tensor time_major = make_tensor(DType::kFloat32, {4, 4}, {0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15});
  EXPECT_EQ(values(run_one(OpKind::kReverseSequence, {{"x", time_major}, {"lens", make_tensor(DType::kInt64, {4}, {4, 3, 2, 1})}})),
            (std::vector<double>{3, 6, 9, 12, 2, 5, 8, 13, 1, 4, 10, 14, 0, 7, 11, 15}));
  EXPECT_EQ(values(run_one(OpKind::kReverseSequence,
                           {{"x", make_tensor(DType::kFloat32, {4, 4}, v)}, {"lens", make_tensor(DType::kInt64, {4}, {1, 2, 3, 4})}},
                           attrs({{"batch_axis", int64_t(0)}, {"time_axis", int64_t(1)}}))),
            (std::vector<double>{0, 1, 2, 3, 5, 4, 6, 7, 10, 9, 8, 11, 15, 14, 13, 12}));
  EXPECT_THROW(run_one(OpKind::kReverseSequence, {{"x", time_major}, {"lens", make_tensor(DType::kInt64, {4}, {4, 5, 2, 1})}}), Error);
}

TEST(Reference, TensorScatterLinearAndCircular) {
  // cache[2, 4, 1] of zeros, update[2, 2, 1]: batch 0 writes at 1, batch 1 at 3 (circular: 3, then 0).
  Tensor cache = make_tensor(DType::kFloat32, {2, 4, 1}, std::vector<double>(8, 0.0));
  Tensor update = make_tensor(DType::kFloat32, {2, 2, 1}, {1, 2, 3, 4});
  Tensor at = make_tensor(DType::kInt64, {2}, {1, 3});
  EXPECT_EQ(values(run_one(OpKind::kTensorScatter, {{"cache", cache}, {"update", update}, {"at", at}}, attrs({{"mode", std::string("circular")}}))),
            (std::vector<double>{0, 1, 2, 0, 4, 0, 0, 3}));
  EXPECT_EQ(values(run_one(OpKind::kTensorScatter, {{"cache", cache}, {"update", update}})), (std::vector<double>{1, 2, 0, 0, 3, 4, 0, 0}));
  try {
    run_one(OpKind::kTensorScatter, {{"cache", cache}, {"update", update}, {"at", at}});
    ADD_FAILURE() << "a linear write past the cache ran";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("write_indices[1] = 3 writes step 1 at 4, outside the cache's 4"), std::string::npos) << e.what();
  }
}

TEST(Reference, DetPivotsAndFindsSingularMatrices) {
  // [[2, 1], [1, 3]]: 5; [[0, 1], [1, 0]]: a row swap, -1; [[1, 2], [2, 4]]: singular; a 3 x 3 needing pivots.
  Tensor x = make_tensor(DType::kFloat64, {3, 2, 2}, {2, 1, 1, 3, 0, 1, 1, 0, 1, 2, 2, 4});
  std::vector<double> d = values(run_one(OpKind::kDet, {{"x", x}}));
  ASSERT_EQ(d.size(), 3u);
  EXPECT_NEAR(d[0], 5, 1e-12);
  EXPECT_NEAR(d[1], -1, 1e-12);
  EXPECT_EQ(d[2], 0);
  Tensor m = make_tensor(DType::kFloat64, {3, 3}, {0, 2, 1, 1, 1, 1, 3, 0, 2});  // 0*(2-0) - 2*(2-3) + 1*(0-3) = -1
  EXPECT_NEAR(values(run_one(OpKind::kDet, {{"x", m}}))[0], -1, 1e-12);
}

// Integer MatMuls sum exactly in 64 bits and wrap: (2^62 * 4 + 3 * 5) mod 2^64 = 15,
// 2^53 + 1 past float64's exact integers, and int32 results wrapped at 32 bits.
TEST(Reference, IntegerMatMulIsExactAndWraps) {
  const int64_t big = int64_t(1) << 62, past_double = (int64_t(1) << 53) + 1;
  Tensor a = from_ints(DType::kInt64, {2, 2}, {big, 3, past_double, 0});
  Tensor b = from_ints(DType::kInt64, {2, 1}, {4, 5});
  EXPECT_EQ(ir::read_ints(run_one(OpKind::kMatMul, {{"a", a}, {"b", b}})), (std::vector<int64_t>{15, past_double * 4}));
  Tensor a32 = from_ints(DType::kInt32, {2}, {65536, 1});
  Tensor b32 = from_ints(DType::kInt32, {3, 2, 1}, {65536, 7, 65536, 0, -3, 2});  // a vector times a batch of columns
  EXPECT_EQ(ir::read_ints(run_one(OpKind::kMatMul, {{"a", a32}, {"b", b32}})), (std::vector<int64_t>{7, 0, -196606}));
}

// Max and Min over nothing: an integer type's lowest and highest value, bool's false and true.
TEST(Reference, EmptySetMaxAndMinAreTheTypesExtremes) {
  Tensor axes = from_ints(DType::kInt64, {1}, {1});
  for (auto [dtype, lo, hi] : {std::tuple{DType::kInt8, -128, 127}, std::tuple{DType::kUInt8, 0, 255}, std::tuple{DType::kBool, 0, 1}}) {
    Tensor x = from_ints(dtype, {2, 0}, {});
    EXPECT_EQ(ir::read_ints(run_one(OpKind::kReduceMax, {{"x", x}, {"axes", axes}})), (std::vector<int64_t>{lo, lo}));
    EXPECT_EQ(ir::read_ints(run_one(OpKind::kReduceMin, {{"x", x}, {"axes", axes}})), (std::vector<int64_t>{hi, hi}));
  }
}

}  // namespace
}  // namespace kiln::reference
