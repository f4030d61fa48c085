// Data-dependent sizes through `kiln build`: each gets an upper bound (one
// that follows from the largest input shapes, or one given by tensor name),
// stored as its symbol's range, so the memory plan holds it and a plan keeps
// it across a save and a load.
#include <gtest/gtest.h>

#include <algorithm>

#include "kiln/builder.h"
#include "kiln/error.h"
#include "kiln/ir/shape_inference.h"
#include "kiln/plan.h"
#include "kiln/reference.h"

namespace kiln::builder {
namespace {

using ir::Dim;
using ir::OpKind;
using ir::ValueId;

// The range of the data-dependent symbol in dim `dim` of tensor `name` of `plan`.
ir::DimRange bound_of(const plan::Plan& plan, const std::string& name, size_t dim) {
  auto id = plan.network.find_value(name);
  if (!id) {
    ADD_FAILURE() << "no tensor '" << name << "' in the plan";
    return {};
  }
  const ir::Value& v = plan.network.value(*id);
  std::string symbol = v.shape.at(dim).to_string();
  EXPECT_TRUE(plan.network.data_dependent_symbols().count(symbol)) << name << " dim " << dim << " is " << symbol;
  return plan.network.dim_ranges().at(symbol);
}

// "batch 1/2/8; " per symbol, a line per profile.
std::string ranges_text(const std::vector<ir::DimRanges>& profiles) {
  std::string out;
  for (const ir::DimRanges& profile : profiles) {
    for (auto& [s, r] : profile) out += str(s, " ", r.min, "/", r.opt, "/", r.max, "; ");
    out += "\n";
  }
  return out;
}

std::string message_of(const ir::Network& net, const BuildOptions& options) {
  try {
    build(net, options);
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "the build succeeded";
  return "";
}

// x [batch, 6] -> NonZero -> Transpose -> Mul by 2: the indices of x's
// nonzero elements, one row each.
ir::Network nonzero_network() {
  ir::Network net;
  ValueId x = net.add_input("x", DType::kFloat32, {Dim::symbol("batch"), Dim(6)});
  ValueId nz = net.add_op1(OpKind::kNonZero, {x}, {}, "nz");
  ir::Attributes perm;
  perm.set("perm", std::vector<int64_t>{1, 0});
  ValueId t = net.add_op1(OpKind::kTranspose, {nz}, perm, "rows");
  ValueId two = net.add_weight("two", reference::make_tensor(DType::kInt64, {}, {2}));
  net.add_output(net.add_op1(OpKind::kMul, {t, two}, {}, "twice"));
  net.set_dim_range("batch", {1, 2, 8});
  net.finalize();
  return net;
}

TEST(DataDependentBuild, NonZeroIsBoundedByItsInputAtTheLargestShapes) {
  ir::Network net = nonzero_network();
  ASSERT_EQ(net.data_dependent_symbols().size(), 1u);
  plan::Plan p = build(net, {});
  ir::DimRange r = bound_of(p, "nz_out_0", 1);
  EXPECT_EQ(r.min, 0);
  EXPECT_EQ(r.max, 8 * 6);  // every element of x at batch 8
  std::string symbol = p.network.value(*p.network.find_value("nz_out_0")).shape[1].to_string();
  for (const ir::DimRanges& profile : p.profiles) EXPECT_EQ(profile.at(symbol).max, 48);
  // The arena holds the indices at the bound: 2 rows of 48 int64.
  ValueId nz = *p.network.find_value("nz_out_0");
  ASSERT_GE(p.arena_offset[size_t(nz)], 0);
  EXPECT_GE(p.arena_bytes, 2 * 48 * 8);

  // The plan computes what the network does.
  std::map<std::string, reference::Tensor> feeds{
      {"x", reference::make_tensor(DType::kFloat32, {3, 6}, {0, 1, 0, 0, -2, 0, 0, 0, 0, 0, 0, 0, 3, -0.0, 0, 0, 0, 4})}};
  std::vector<reference::Tensor> want = reference::run(net, feeds), got = reference::run(p.network, feeds);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].dims, (std::vector<int64_t>{4, 2}));
  EXPECT_EQ(ir::read_ints(got[0]), ir::read_ints(want[0]));
  EXPECT_EQ(ir::read_ints(got[0]), (std::vector<int64_t>{0, 2, 0, 8, 4, 0, 4, 10}));
}

// Compress by the shorter of its condition and its axis, Unique by the slices
// along its axis (its elements without one), NonMaxSuppression by every box of
// every batch and class, fewer where max_output_boxes_per_class is a smaller
// constant; Unique's outputs share the one bound.
TEST(DataDependentBuild, DetectionOpsAreBoundedByTheirInputs) {
  ir::Network net;
  ValueId x = net.add_input("x", DType::kFloat32, {Dim::symbol("batch"), Dim(6)});
  ValueId cond = net.add_input("cond", DType::kBool, {Dim(4)});
  ir::Attributes axis1;
  axis1.set("axis", int64_t(1));
  ValueId cols = net.add_op1(OpKind::kCompress, {x, cond}, axis1, "cols");
  ValueId flat = net.add_op1(OpKind::kCompress, {x, cond}, {}, "flat");
  std::vector<ValueId> uniq = net.add_op(OpKind::kUnique, {x}, {}, 4, "uniq");
  ir::Attributes axis0;
  axis0.set("axis", int64_t(0));
  ValueId rows = net.add_op(OpKind::kUnique, {x}, axis0, 1, "rows")[0];
  ValueId boxes = net.add_input("boxes", DType::kFloat32, {Dim::symbol("batch"), Dim(50), Dim(4)});
  ValueId scores = net.add_input("scores", DType::kFloat32, {Dim::symbol("batch"), Dim(3), Dim(50)});
  ValueId most = net.add_weight("most", reference::make_tensor(DType::kInt64, {1}, {10}));
  ValueId nms = net.add_op1(OpKind::kNonMaxSuppression, {boxes, scores, most}, {}, "nms");
  ValueId nms_k = net.add_op1(OpKind::kNonMaxSuppression, {boxes, scores, net.add_input("k", DType::kInt64, {Dim(1)})}, {}, "nms_k");
  for (ValueId v : {cols, flat, rows, nms, nms_k}) net.add_output(v);
  for (ValueId v : uniq) net.add_output(v);
  net.set_dim_range("batch", {1, 2, 8});
  net.finalize();
  plan::Plan p = build(net, {});
  auto bound = [&](ValueId v, size_t dim) { return bound_of(p, net.value(v).name, dim).max; };
  EXPECT_EQ(bound(cols, 1), 4);     // the condition, shorter than 6 columns
  EXPECT_EQ(bound(flat, 0), 4);     // the condition, shorter than 48 elements
  EXPECT_EQ(bound(uniq[0], 0), 48);  // every element at batch 8
  EXPECT_EQ(bound(uniq[3], 0), 48);
  EXPECT_EQ(bound(rows, 0), 8);     // every row
  EXPECT_EQ(bound(nms, 0), 8 * 3 * 10);
  EXPECT_EQ(bound(nms_k, 0), 8 * 3 * 50);
}

TEST(DataDependentBuild, BoundsSurviveASaveAndALoad) {
  plan::Plan p = build(nonzero_network(), {});
  std::string bytes = plan::serialize(p);
  plan::Plan back = plan::deserialize(Buffer::copy_of(bytes.data(), bytes.size()));
  EXPECT_EQ(back.network.data_dependent_symbols(), p.network.data_dependent_symbols());
  EXPECT_EQ(bound_of(back, "nz_out_0", 1).max, 48);
  EXPECT_EQ(ranges_text(back.profiles), ranges_text(p.profiles));
  EXPECT_EQ(plan::serialize(back), bytes);
}

// x [24] -> Relu -> Reshape to a shape given as data -> Relu: each dim of the
// reshape is bounded alone (24 each), so their product at the largest shapes
// (24^3) is far more than the 24 elements the view shares with its input. The
// plan holds it in its input's slot, and a load must accept that.
TEST(DataDependentBuild, AReshapeToAShapeGivenAsDataLoadsInItsInputsSlot) {
  ir::Network net;
  ValueId x = net.add_input("x", DType::kFloat32, {Dim(24)});
  ValueId shape = net.add_input("shape", DType::kInt64, {Dim(3)});
  ValueId r = net.add_op1(OpKind::kRelu, {x}, {}, "first");
  ValueId view = net.add_op1(OpKind::kReshape, {r, shape}, {}, "view");
  net.add_output(net.add_op1(OpKind::kRelu, {view}, {}, "second"));
  net.finalize();
  BuildOptions options;
  options.default_data_dependent_bound = 24;
  plan::Plan p = build(net, options);
  auto reshape = std::find_if(p.network.nodes().begin(), p.network.nodes().end(),
                              [](const ir::Node& n) { return n.op == OpKind::kReshape; });
  ASSERT_NE(reshape, p.network.nodes().end());
  EXPECT_NE(p.arena_offset[size_t(reshape->outputs[0])], -1);
  EXPECT_EQ(p.arena_offset[size_t(reshape->outputs[0])], p.arena_offset[size_t(reshape->inputs[0])]);
  EXPECT_LT(p.arena_bytes, int64_t(24 * 24 * 24 * sizeof(float)));
  std::string bytes = plan::serialize(p);
  plan::Plan back = plan::deserialize(Buffer::copy_of(bytes.data(), bytes.size()));
  EXPECT_EQ(plan::serialize(back), bytes);
  reference::Tensor xs = reference::make_tensor(DType::kFloat32, {24}, std::vector<double>(24, -1.5));
  reference::Tensor dims = reference::make_tensor(DType::kInt64, {3}, {2, 3, 4});
  auto y = reference::run(back.network, {{"x", xs}, {"shape", dims}});
  EXPECT_EQ(y.at(0).dims, (std::vector<int64_t>{2, 3, 4}));
}

TEST(DataDependentBuild, PlansWithoutThemKeepTheirRanges) {
  ir::Network net;
  ValueId x = net.add_input("x", DType::kFloat32, {Dim::symbol("batch"), Dim(6)});
  net.add_output(net.add_op1(OpKind::kRelu, {x}));
  net.set_dim_range("batch", {1, 2, 8});
  net.finalize();
  plan::Plan p = build(net, {});
  EXPECT_TRUE(p.network.data_dependent_symbols().empty());
  EXPECT_EQ(p.network.dim_ranges().size(), 1u);
  EXPECT_EQ(ranges_text(p.profiles), "batch 1/2/8; \n");
  EXPECT_EQ(p.format_version, plan::kFormatVersion);
}

TEST(DataDependentBuild, TopKOfAnInputKIsBoundedByItsAxis) {
  ir::Network net;
  ValueId x = net.add_input("x", DType::kFloat32, {Dim(2), Dim::symbol("n")});
  ValueId k = net.add_input("k", DType::kInt64, {Dim(1)});
  for (ValueId v : net.add_op(OpKind::kTopK, {x, k}, {}, 2, "top")) net.add_output(v);
  net.set_dim_range("n", {1, 10, 100});
  net.finalize();
  plan::Plan p = build(net, {});
  EXPECT_EQ(bound_of(p, "top_out_0", 1).max, 100);
}

// Axes given as data: keepdims=0 takes the rank from their count (every
// axis for none, no axis with noop_with_empty_axes), and each output dim,
// one of x's dims or 1, is bounded by x's largest dim. A reference run shows
// the sizes the data decides.
TEST(DataDependentBuild, AReductionOverAxesGivenAsDataKeepsTheRankTheirCountGives) {
  for (int64_t keep : {0, 1}) {
    ir::Network net;
    ValueId x = net.add_input("x", DType::kFloat32, {Dim(3), Dim::symbol("n"), Dim(5)});
    ValueId axes = net.add_input("axes", DType::kInt64, {Dim(2)});
    ir::Attributes attrs;
    attrs.set("keepdims", int64_t(keep));
    net.add_output(net.add_op1(OpKind::kReduceSum, {x, axes}, attrs, "sum"));
    net.set_dim_range("n", {1, 10, 40});
    net.finalize();
    plan::Plan p = build(net, {});
    ValueId out = p.network.outputs()[0];
    ASSERT_EQ(p.network.value(out).shape.size(), keep ? 3u : 1u) << keep;
    EXPECT_EQ(bound_of(p, p.network.value(out).name, 0).max, 40) << keep;
    reference::Tensor xs = reference::make_tensor(DType::kFloat32, {3, 7, 5}, std::vector<double>(105, 0.5));
    reference::Tensor as = reference::make_tensor(DType::kInt64, {2}, {0, -1});
    auto y = reference::run(p.network, {{"x", xs}, {"axes", as}});
    std::vector<int64_t> expected = keep ? std::vector<int64_t>{1, 7, 1} : std::vector<int64_t>{7};
    EXPECT_EQ(y.at(0).dims, expected) << keep;
  }
  for (auto [count, noop, rank] : {std::tuple{0, 0, 0}, std::tuple{0, 1, 3}}) {
    ir::Network net;
    ValueId x = net.add_input("x", DType::kFloat32, {Dim(3), Dim(4), Dim(5)});
    ValueId axes = net.add_input("axes", DType::kInt64, {Dim(count)});
    ir::Attributes attrs;
    attrs.set("keepdims", int64_t(0));
    attrs.set("noop_with_empty_axes", int64_t(noop));
    net.add_output(net.add_op1(OpKind::kReduceMax, {x, axes}, attrs, "max"));
    net.finalize();
    EXPECT_EQ(net.value(net.outputs()[0]).shape.size(), size_t(rank)) << noop;
  }
  ir::Network too_many;
  ValueId x = too_many.add_input("x", DType::kFloat32, {Dim(3), Dim(4)});
  ValueId axes = too_many.add_input("axes", DType::kInt64, {Dim(3)});
  ir::Attributes attrs;
  attrs.set("keepdims", int64_t(0));
  too_many.add_output(too_many.add_op1(OpKind::kReduceMean, {x, axes}, attrs, "mean"));
  EXPECT_THROW(too_many.finalize(), Error);
}

// x [n, 4] reshaped to a shape given as data: its element count bounds every
// dim, unless x may be empty (n from 0), when any dims with a 0 among them fit.
TEST(DataDependentBuild, AReshapeIsBoundedByItsElementsUnlessItMayBeEmpty) {
  for (int64_t least : {1, 0}) {
    ir::Network net;
    ValueId x = net.add_input("x", DType::kFloat32, {Dim::symbol("n"), Dim(4)});
    ValueId shape = net.add_input("shape", DType::kInt64, {Dim(2)});
    net.add_output(net.add_op1(OpKind::kReshape, {x, shape}, {}, "r"));
    net.set_dim_range("n", {least, 3, 5});
    net.finalize();
    SCOPED_TRACE(str("n from ", least));
    if (least == 1) {
      EXPECT_EQ(bound_of(build(net, {}), "r_out_0", 0).max, 20);
      continue;
    }
    std::string why = message_of(net, {});
    EXPECT_NE(why.find("--data-dependent-bound r_out_0=N"), std::string::npos) << why;
    BuildOptions options;
    options.default_data_dependent_bound = 7;
    EXPECT_EQ(bound_of(build(net, options), "r_out_0", 1).max, 7);
  }
}

// Range(0, limit, 1) with limit a graph input: no bound follows from shapes.
ir::Network range_network() {
  ir::Network net;
  ValueId limit = net.add_input("limit", DType::kInt64, {});
  ValueId zero = net.add_weight("zero", reference::make_tensor(DType::kInt64, {}, {0}));
  ValueId one = net.add_weight("one", reference::make_tensor(DType::kInt64, {}, {1}));
  ValueId r = net.add_op1(OpKind::kRange, {zero, limit, one}, {}, "r");
  net.add_output(net.add_op1(OpKind::kNeg, {r}, {}, "neg"));
  net.finalize();
  return net;
}

TEST(DataDependentBuild, ARangeOfDataBoundsNeedsABoundNamedAfterItsTensor) {
  ir::Network net = range_network();
  std::string why = message_of(net, {});
  EXPECT_NE(why.find("tensor 'r_out_0' (node 'r', Range) dim 0"), std::string::npos) << why;
  EXPECT_NE(why.find("--data-dependent-bound r_out_0=N"), std::string::npos) << why;
  EXPECT_NE(why.find("BuildOptions::data_dependent_bounds"), std::string::npos) << why;

  BuildOptions options;
  options.data_dependent_bounds = {{"r_out_0", 1000}};
  plan::Plan p = build(net, options);
  EXPECT_EQ(bound_of(p, "r_out_0", 0).max, 1000);
  EXPECT_EQ(bound_of(p, "neg_out_1", 0).max, 1000);  // the same symbol downstream

  // A default bound stands in where none is named; a named one wins.
  BuildOptions fallback;
  fallback.default_data_dependent_bound = 64;
  EXPECT_EQ(bound_of(build(net, fallback), "r_out_0", 0).max, 64);
  fallback.data_dependent_bounds = {{"r_out_0", 5}};
  EXPECT_EQ(bound_of(build(net, fallback), "r_out_0", 0).max, 5);
}

TEST(DataDependentBuild, BoundsNamingOtherTensorsAreRefused) {
  ir::Network net = range_network();
  BuildOptions downstream;
  downstream.data_dependent_bounds = {{"r_out_0", 10}, {"neg_out_1", 10}};
  std::string why = message_of(net, downstream);
  EXPECT_NE(why.find("names 'neg_out_1', whose size does not depend on input data by itself"), std::string::npos) << why;

  BuildOptions unknown;
  unknown.data_dependent_bounds = {{"r_out_0", 10}, {"nothing", 10}};
  why = message_of(net, unknown);
  EXPECT_NE(why.find("names 'nothing', which is not a tensor of the built network"), std::string::npos) << why;

  BuildOptions negative;
  negative.data_dependent_bounds = {{"r_out_0", -1}};
  why = message_of(net, negative);
  EXPECT_NE(why.find("tensor 'r_out_0'"), std::string::npos) << why;
  EXPECT_NE(why.find("the bound -1 is outside"), std::string::npos) << why;
}

}  // namespace
}  // namespace kiln::builder
