#include <gtest/gtest.h>

#include <algorithm>
#include <optional>

#include "kiln/error.h"
#include "kiln/ir/network.h"
#include "kiln/ir/shape_inference.h"

namespace kiln::ir {
namespace {

TensorData ints(std::vector<int64_t> v) {
  TensorData t;
  t.dtype = DType::kInt64;
  t.dims = {int64_t(v.size())};
  t.data = Buffer::copy_of(v.data(), v.size() * sizeof(int64_t));
  return t;
}

TensorData floats(std::vector<int64_t> dims) {
  TensorData t;
  t.dims = dims;
  t.data = Buffer::from_bytes(std::vector<std::byte>(size_t(checked_numel(dims)) * 4));
  return t;
}

const Dim N = Dim::symbol("N"), S = Dim::symbol("S");

TEST(ShapeInference, ReshapeThroughShapeArithmetic) {
  // x[N,S,512] -> Shape -> Gather(0), Gather(1) -> Concat with [8,64] -> Reshape: [N,S,8,64]
  Network net;
  ValueId x = net.add_input("x", DType::kFloat32, {N, S, Dim(512)});
  ValueId shape = net.add_op1(OpKind::kShape, {x});
  Attributes axis0;
  axis0.set("axis", int64_t(0));
  ValueId n = net.add_op1(OpKind::kGather, {shape, net.add_weight("i0", ints({0}))}, axis0);
  ValueId s = net.add_op1(OpKind::kGather, {shape, net.add_weight("i1", ints({1}))}, axis0);
  ValueId target = net.add_op1(OpKind::kConcat, {n, s, net.add_weight("heads", ints({8, 64}))}, axis0);
  ValueId y = net.add_op1(OpKind::kReshape, {x, target});
  ValueId flat = net.add_op1(OpKind::kReshape, {y, net.add_weight("flat", ints({-1, 64}))});
  net.add_output(y);
  net.add_output(flat);
  net.finalize();
  EXPECT_EQ(shape_to_string(net.value(y).shape), "[N,S,8,64]");
  EXPECT_EQ(shape_to_string(net.value(flat).shape), "[8*N*S,64]");
  EXPECT_TRUE(net.data_dependent_symbols().empty());
}

TEST(ShapeInference, ExpandThroughWhereOfShapeValues) {
  // The TorchScript exporter's Expand: target = Where(Equal(shape, -1), ones, shape),
  // with shape = Concat(N, 1, 1, S) from the input: no data-dependent size.
  Network net;
  ValueId x = net.add_input("x", DType::kFloat32, {N, S});
  ValueId shape = net.add_op1(OpKind::kShape, {x});
  Attributes axis0;
  axis0.set("axis", int64_t(0));
  ValueId n = net.add_op1(OpKind::kGather, {shape, net.add_weight("i0", ints({0}))}, axis0);
  ValueId s = net.add_op1(OpKind::kGather, {shape, net.add_weight("i1", ints({1}))}, axis0);
  ValueId target = net.add_op1(OpKind::kConcat, {n, net.add_weight("ones", ints({1, 1})), s}, axis0);
  ValueId minus_one = net.add_op1(OpKind::kEqual, {target, net.add_weight("m1", ints({-1, -1, -1, -1}))});
  ValueId fixed = net.add_op1(OpKind::kWhere, {minus_one, net.add_weight("one", ints({1})), target});
  ValueId mask = net.add_input("mask", DType::kFloat32, {N, Dim(1), Dim(1), S});
  ValueId y = net.add_op1(OpKind::kExpand, {mask, fixed});
  // A comparison it cannot decide (N against S) keeps the size data-dependent.
  ValueId n_is_s = net.add_op1(OpKind::kEqual, {n, s});
  ValueId either = net.add_op1(OpKind::kWhere, {n_is_s, n, net.add_weight("two", ints({2}))});
  ValueId z = net.add_op1(OpKind::kExpand, {x, net.add_op1(OpKind::kConcat, {either, s}, axis0)});
  net.add_output(y);
  net.add_output(z);
  net.finalize();
  EXPECT_EQ(shape_to_string(net.value(y).shape), "[N,1,1,S]");
  std::set<std::string> symbols;
  net.value(z).shape[0].collect_symbols(symbols);
  EXPECT_TRUE(std::any_of(symbols.begin(), symbols.end(),
                          [&](const std::string& s) { return net.data_dependent_symbols().count(s) > 0; }));
}

TEST(ShapeInference, ConvAndPoolOutputSizes) {
  Network net;
  ValueId x = net.add_input("x", DType::kFloat32, {N, Dim(3), Dim(224), Dim(224)});
  Attributes conv;
  conv.set("strides", std::vector<int64_t>{2, 2});
  conv.set("pads", std::vector<int64_t>{3, 3, 3, 3});
  ValueId c = net.add_op1(OpKind::kConv, {x, net.add_weight("w", floats({64, 3, 7, 7}))}, conv);
  Attributes pool;
  pool.set("kernel_shape", std::vector<int64_t>{3, 3});
  pool.set("strides", std::vector<int64_t>{2, 2});
  pool.set("pads", std::vector<int64_t>{1, 1, 1, 1});
  ValueId p = net.add_op1(OpKind::kMaxPool, {c}, pool);
  net.add_output(p);
  net.finalize();
  EXPECT_EQ(shape_to_string(net.value(c).shape), "[N,64,112,112]");
  EXPECT_EQ(shape_to_string(net.value(p).shape), "[N,64,56,56]");
}

TEST(ShapeInference, SymbolicConvSpatialDims) {
  Network net;
  ValueId x = net.add_input("x", DType::kFloat32, {Dim(1), Dim(3), Dim::symbol("H"), Dim::symbol("W")});
  Attributes same;
  same.set("auto_pad", std::string("SAME_UPPER"));
  same.set("strides", std::vector<int64_t>{2, 2});
  ValueId c = net.add_op1(OpKind::kConv, {x, net.add_weight("w", floats({8, 3, 3, 3}))}, same);
  net.add_output(c);
  net.finalize();
  Dim h = net.value(c).shape[2];
  EXPECT_EQ(h.evaluate({{"H", 15}, {"W", 8}}), 8);
  EXPECT_EQ(h.evaluate({{"H", 16}, {"W", 8}}), 8);
}

TEST(ShapeInference, MatMulBroadcastsBatchDims) {
  Network net;
  ValueId a = net.add_input("a", DType::kFloat32, {Dim(2), Dim(1), N, Dim(16)});
  ValueId b = net.add_input("b", DType::kFloat32, {Dim(5), Dim(16), Dim(7)});
  ValueId y = net.add_op1(OpKind::kMatMul, {a, b});
  net.add_output(y);
  net.finalize();
  EXPECT_EQ(shape_to_string(net.value(y).shape), "[2,5,N,7]");
}

TEST(ShapeInference, MatMulInnerMismatchNamesTheNode) {
  Network net;
  ValueId a = net.add_input("a", DType::kFloat32, {Dim(4), Dim(16)});
  ValueId b = net.add_input("b", DType::kFloat32, {Dim(8), Dim(7)});
  net.add_output(net.add_op1(OpKind::kMatMul, {a, b}, {}, "proj"));
  try {
    net.finalize();
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kShapeError);
    EXPECT_NE(std::string(e.what()).find("node 'proj' (MatMul)"), std::string::npos) << e.what();
  }
}

TEST(ShapeInference, ConcatAddsSymbolicAxis) {
  Network net;
  ValueId a = net.add_input("a", DType::kFloat32, {N, S});
  ValueId b = net.add_input("b", DType::kFloat32, {N, Dim(3)});
  Attributes axis;
  axis.set("axis", int64_t(1));
  ValueId y = net.add_op1(OpKind::kConcat, {a, b}, axis);
  net.add_output(y);
  net.finalize();
  EXPECT_EQ(shape_to_string(net.value(y).shape), "[N,S + 3]");
}

TEST(ShapeInference, DataDependentSizesGetFreshSymbols) {
  Network net;
  ValueId x = net.add_input("x", DType::kFloat32, {Dim(10)});
  ValueId k = net.add_input("k", DType::kInt64, {Dim(1)});
  auto out = net.add_op(OpKind::kTopK, {x, k}, {}, 2);
  net.add_output(out[0]);
  net.finalize();
  EXPECT_EQ(net.data_dependent_symbols().size(), 1u);
  EXPECT_EQ(net.value(out[1]).dtype, DType::kInt64);
}

// Compress keeps the input's dims but the axis (no axis: one dim), whose
// size is the condition's count: a symbol, or known from a constant condition.
TEST(ShapeInference, CompressIsSizedByItsCondition) {
  Network net;
  ValueId x = net.add_input("x", DType::kFloat32, {N, Dim(4), Dim(5)});
  ValueId cond = net.add_input("cond", DType::kBool, {Dim(3)});
  Attributes axis1;
  axis1.set("axis", int64_t(-2));
  ValueId along = net.add_op1(OpKind::kCompress, {x, cond}, axis1);
  ValueId flat = net.add_op1(OpKind::kCompress, {x, cond});
  ValueId w = net.add_weight("w", TensorData{DType::kBool, {5}, Buffer::copy_of(std::vector<uint8_t>{1, 0, 1, 1, 0}.data(), 5), {}});
  ValueId known = net.add_op1(OpKind::kCompress, {x, w}, axis1);
  for (ValueId v : {along, flat, known}) net.add_output(v);
  net.finalize();
  EXPECT_EQ(net.data_dependent_symbols().size(), 2u);
  const Shape& a = net.value(along).shape;
  ASSERT_EQ(a.size(), 3u);
  EXPECT_EQ(a[0], N);
  EXPECT_TRUE(net.data_dependent_symbols().count(a[1].to_string())) << shape_to_string(a);
  EXPECT_EQ(a[2], Dim(5));
  EXPECT_EQ(net.value(flat).shape.size(), 1u);
  EXPECT_EQ(shape_to_string(net.value(known).shape), "[N,3,5]");

  // A constant condition true past the axis is numpy's error, named at build.
  Network bad;
  ValueId y = bad.add_input("y", DType::kFloat32, {Dim(2), Dim(2)});
  ValueId long_cond = bad.add_weight("c", TensorData{DType::kBool, {3}, Buffer::copy_of(std::vector<uint8_t>{0, 0, 1}.data(), 3), {}});
  Attributes axis0;
  axis0.set("axis", int64_t(0));
  bad.add_output(bad.add_op1(OpKind::kCompress, {y, long_cond}, axis0, "cmp"));
  try {
    bad.finalize();
    ADD_FAILURE() << "a condition true at position 2 of an axis of 2 passed";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("node 'cmp' (Compress): the condition, input 1 ('c'), is true at position 2"),
              std::string::npos) << e.what();
  }
}

// Unique's Y, indices and counts share one data-dependent size; the inverse
// indices follow the input (its elements, or its axis).
TEST(ShapeInference, UniqueOutputsShareOneCount) {
  Network net;
  ValueId x = net.add_input("x", DType::kInt32, {N, Dim(3)});
  auto flat = net.add_op(OpKind::kUnique, {x}, {}, 4);
  Attributes axis;
  axis.set("axis", int64_t(1));
  auto cols = net.add_op(OpKind::kUnique, {x}, axis, 4);
  for (ValueId v : flat) net.add_output(v);
  for (ValueId v : cols) net.add_output(v);
  net.finalize();
  EXPECT_EQ(net.data_dependent_symbols().size(), 2u);
  Dim u = net.value(flat[0]).shape.at(0);
  EXPECT_TRUE(net.data_dependent_symbols().count(u.to_string()));
  EXPECT_EQ(net.value(flat[0]).dtype, DType::kInt32);
  for (size_t i : {1, 3}) {
    EXPECT_EQ(net.value(flat[i]).shape, Shape{u});
    EXPECT_EQ(net.value(flat[i]).dtype, DType::kInt64);
  }
  EXPECT_EQ(net.value(flat[2]).shape, Shape{shape_numel({N, Dim(3)})});
  Dim v = net.value(cols[1]).shape.at(0);
  EXPECT_NE(u, v);
  EXPECT_EQ(net.value(cols[0]).shape, (Shape{N, v}));
  EXPECT_EQ(net.value(cols[2]).shape, Shape{Dim(3)});

  Network bad;
  Attributes sorted;
  sorted.set("sorted", int64_t(2));
  bad.add_output(bad.add_op(OpKind::kUnique, {bad.add_input("x", DType::kFloat32, {Dim(4)})}, sorted, 1, "u")[0]);
  EXPECT_THROW(bad.finalize(), Error);
}

// NonMaxSuppression: [selected, 3]; no selection at all (constant 0) without
// max_output_boxes_per_class; mismatched boxes and scores are named.
TEST(ShapeInference, NonMaxSuppressionSelectsRowsOfThree) {
  Network net;
  ValueId boxes = net.add_input("boxes", DType::kFloat32, {N, Dim(10), Dim(4)});
  ValueId scores = net.add_input("scores", DType::kFloat32, {N, Dim(2), Dim(10)});
  ValueId most = net.add_input("most", DType::kInt64, {Dim(1)});
  ValueId sel = net.add_op1(OpKind::kNonMaxSuppression, {boxes, scores, most});
  ValueId none = net.add_op1(OpKind::kNonMaxSuppression, {boxes, scores});
  net.add_output(sel);
  net.add_output(none);
  net.finalize();
  const Shape& s = net.value(sel).shape;
  ASSERT_EQ(s.size(), 2u);
  EXPECT_TRUE(net.data_dependent_symbols().count(s[0].to_string())) << shape_to_string(s);
  EXPECT_EQ(s[1], Dim(3));
  EXPECT_EQ(net.value(sel).dtype, DType::kInt64);
  EXPECT_EQ(shape_to_string(net.value(none).shape), "[0,3]");

  Network bad;
  ValueId b = bad.add_input("boxes", DType::kFloat32, {Dim(1), Dim(10), Dim(4)});
  ValueId c = bad.add_input("scores", DType::kFloat32, {Dim(1), Dim(2), Dim(9)});
  bad.add_output(bad.add_op1(OpKind::kNonMaxSuppression, {b, c}, {}, "nms"));
  try {
    bad.finalize();
    ADD_FAILURE() << "10 boxes with 9 scores passed";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("node 'nms' (NonMaxSuppression)"), std::string::npos) << e.what();
  }
}

TEST(ShapeInference, MaxRoiPoolIsRoisByChannelsByPooledShape) {
  Network net;
  ValueId x = net.add_input("x", DType::kFloat16, {Dim(2), Dim(3), Dim(8), Dim(8)});
  ValueId rois = net.add_input("rois", DType::kFloat16, {S, Dim(5)});
  Attributes pooled;
  pooled.set("pooled_shape", std::vector<int64_t>{2, 3});
  ValueId y = net.add_op1(OpKind::kMaxRoiPool, {x, rois}, pooled);
  net.add_output(y);
  net.finalize();
  EXPECT_EQ(shape_to_string(net.value(y).shape), "[S,3,2,3]");
  EXPECT_EQ(net.value(y).dtype, DType::kFloat16);

  Network bad;
  ValueId bx = bad.add_input("x", DType::kFloat32, {Dim(1), Dim(1), Dim(4), Dim(4)});
  ValueId br = bad.add_input("rois", DType::kFloat32, {Dim(1), Dim(4)});
  bad.add_output(bad.add_op1(OpKind::kMaxRoiPool, {bx, br}, pooled));
  EXPECT_THROW(bad.finalize(), Error);  // rois of 4 columns
}

TEST(ShapeInference, NonZeroIsRankByADataDependentCount) {
  Network net;
  ValueId x = net.add_input("x", DType::kFloat16, {Dim::symbol("N"), Dim(3)});
  ValueId nz = net.add_op1(OpKind::kNonZero, {x});
  ValueId s = net.add_input("s", DType::kBool, {});
  ValueId nz_scalar = net.add_op1(OpKind::kNonZero, {s});  // a scalar counts as one dim (numpy)
  // A weight's count is known: no symbol for it.
  ValueId w = net.add_weight("w", TensorData{DType::kInt64, {2, 2}, Buffer::copy_of(std::vector<int64_t>{0, 5, 0, 7}.data(), 32), {}});
  ValueId nz_weight = net.add_op1(OpKind::kNonZero, {w});
  for (ValueId v : {nz, nz_scalar, nz_weight}) net.add_output(v);
  net.finalize();
  EXPECT_EQ(net.data_dependent_symbols().size(), 2u);
  EXPECT_EQ(net.value(nz).dtype, DType::kInt64);
  const Shape& shape = net.value(nz).shape;
  ASSERT_EQ(shape.size(), 2u);
  EXPECT_EQ(shape[0], Dim(2));
  EXPECT_TRUE(net.data_dependent_symbols().count(shape[1].to_string())) << shape_to_string(shape);
  EXPECT_EQ(net.value(nz_scalar).shape[0], Dim(1));
  EXPECT_EQ(shape_to_string(net.value(nz_weight).shape), "[2,2]");
}

TEST(ShapeInference, ReshapeElementCountMismatch) {
  Network net;
  ValueId x = net.add_input("x", DType::kFloat32, {Dim(4), Dim(6)});
  net.add_output(net.add_op1(OpKind::kReshape, {x, net.add_weight("s", ints({5, 5}))}, {}, "bad_reshape"));
  EXPECT_THROW(net.finalize(), Error);
}

TEST(ShapeInference, WindowGeometryForSamePadding) {
  Node node;
  node.op = OpKind::kConv;
  node.attrs.set("auto_pad", std::string("SAME_LOWER"));
  node.attrs.set("strides", std::vector<int64_t>{2});
  WindowGeometry g = window_geometry(node, {10}, {4});
  EXPECT_EQ(g.output, std::vector<int64_t>{5});
  EXPECT_EQ(g.pads_begin[0] + g.pads_end[0], 2);
  EXPECT_EQ(g.pads_begin[0], 1);
}

// The error of finalizing `net`, which must fail.
Error finalize_error(Network& net) {
  try {
    net.finalize();
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "finalize accepted the network";
  return Error(ErrorCode::kInternal, "");
}

TEST(ShapeInference, GatherNDKeepsBatchDimsAndTheSliceAfterTheIndexedDims) {
  Network net;
  ValueId x = net.add_input("x", DType::kFloat16, {N, Dim(3), Dim(4), Dim(6)});
  ValueId i = net.add_input("i", DType::kInt32, {N, Dim(5), Dim(2)});
  Attributes batch;
  batch.set("batch_dims", int64_t(1));
  ValueId y = net.add_op1(OpKind::kGatherND, {x, i}, batch);
  ValueId z = net.add_op1(OpKind::kGatherND, {x, net.add_input("j", DType::kInt64, {Dim(7), Dim(4)})});
  net.add_output(y);
  net.add_output(z);
  net.finalize();
  EXPECT_EQ(shape_to_string(net.value(y).shape), "[N,5,6]");
  EXPECT_EQ(shape_to_string(net.value(z).shape), "[7]");
  EXPECT_EQ(net.value(y).dtype, DType::kFloat16);
}

TEST(ShapeInference, ScatterKeepsTheDataShape) {
  Network net;
  ValueId x = net.add_input("x", DType::kInt32, {N, Dim(4), Dim(3)});
  ValueId nd = net.add_op1(OpKind::kScatterND, {x, net.add_input("i", DType::kInt64, {Dim(2), Dim(2)}),
                                                net.add_input("u", DType::kInt32, {Dim(2), Dim(3)})});
  Attributes axis;
  axis.set("axis", int64_t(-1));
  axis.set("reduction", std::string("max"));
  ValueId el = net.add_op1(OpKind::kScatterElements, {x, net.add_input("j", DType::kInt32, {Dim(1), Dim(2), Dim(5)}),
                                                      net.add_input("v", DType::kInt32, {Dim(1), Dim(2), Dim(5)})}, axis);
  net.add_output(nd);
  net.add_output(el);
  net.finalize();
  EXPECT_EQ(shape_to_string(net.value(nd).shape), "[N,4,3]");
  EXPECT_EQ(shape_to_string(net.value(el).shape), "[N,4,3]");
  EXPECT_EQ(net.value(el).dtype, DType::kInt32);
}

TEST(ShapeInference, ScatterNDUpdatesOfTheWrongShapeNameTheNode) {
  Network net;
  ValueId x = net.add_input("x", DType::kFloat32, {Dim(4), Dim(3)});
  net.add_output(net.add_op1(OpKind::kScatterND, {x, net.add_input("i", DType::kInt64, {Dim(2), Dim(1)}),
                                                  net.add_input("u", DType::kFloat32, {Dim(2), Dim(4)})}, {}, "sc"));
  Error e = finalize_error(net);
  EXPECT_EQ(e.code(), ErrorCode::kShapeError);
  std::string what = e.what();
  EXPECT_NE(what.find("node 'sc' (ScatterND)"), std::string::npos) << what;
  EXPECT_NE(what.find("updates [2,4] should be [2,3]"), std::string::npos) << what;
}

TEST(ShapeInference, ScatterAndGatherNDRefuseBadAttributesAndIndexDepths) {
  {
    Network net;
    Attributes a;
    a.set("reduction", std::string("mean"));
    ValueId x = net.add_input("x", DType::kFloat32, {Dim(2), Dim(3)});
    ValueId i = net.add_input("i", DType::kInt64, {Dim(2), Dim(3)});
    net.add_output(net.add_op1(OpKind::kScatterElements, {x, i, x}, a, "se"));
    Error e = finalize_error(net);
    EXPECT_EQ(e.code(), ErrorCode::kInvalidModel);
    EXPECT_NE(std::string(e.what()).find("node 'se' (ScatterElements): reduction 'mean'"), std::string::npos) << e.what();
  }
  {
    Network net;
    ValueId x = net.add_input("x", DType::kFloat32, {Dim(2), Dim(3)});
    net.add_output(net.add_op1(OpKind::kGatherND, {x, net.add_input("i", DType::kInt64, {Dim(4), Dim(3)})}, {}, "g"));
    Error e = finalize_error(net);
    EXPECT_EQ(e.code(), ErrorCode::kShapeError);
    EXPECT_NE(std::string(e.what()).find("node 'g' (GatherND): indices [4,3] index 3 dims; data has 2"), std::string::npos) << e.what();
  }
  {
    Network net;
    Attributes a;
    a.set("batch_dims", int64_t(2));
    ValueId x = net.add_input("x", DType::kFloat32, {Dim(2), Dim(3)});
    net.add_output(net.add_op1(OpKind::kGatherND, {x, net.add_input("i", DType::kInt64, {Dim(2), Dim(3), Dim(1)})}, a, "g"));
    EXPECT_NE(std::string(finalize_error(net).what()).find("batch_dims 2 must be below the ranks"), std::string::npos);
  }
}

// The message of the error finalize() throws, or "" when it does not.
std::string finalize_message(Network& net) {
  try {
    net.finalize();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ShapeInference, BitOpsBroadcastIntegersOnly) {
  Network net;
  ValueId a = net.add_input("a", DType::kInt32, {N, Dim(1), Dim(3)}), b = net.add_input("b", DType::kInt32, {Dim(2), Dim(3)});
  Attributes left;
  left.set("direction", std::string("LEFT"));
  ValueId shift = net.add_op1(OpKind::kBitShift, {a, b}, left);
  ValueId x = net.add_op1(OpKind::kBitwiseXor, {a, b});
  ValueId inv = net.add_op1(OpKind::kBitwiseNot, {net.add_input("u", DType::kUInt8, {S})});
  for (ValueId v : {shift, x, inv}) net.add_output(v);
  net.finalize();
  EXPECT_EQ(net.value(shift).shape, (Shape{N, Dim(2), Dim(3)}));
  EXPECT_EQ(net.value(shift).dtype, DType::kInt32);
  EXPECT_EQ(net.value(x).shape, (Shape{N, Dim(2), Dim(3)}));
  EXPECT_EQ(net.value(inv).shape, Shape{S});
  EXPECT_EQ(net.value(inv).dtype, DType::kUInt8);
}

TEST(ShapeInference, BitOpsRefuseFloatsMixedTypesAndBadDirections) {
  auto error_of = [](OpKind op, DType da, DType db, const char* direction) {
    Network net;
    ValueId a = net.add_input("a", da, {Dim(3)}), b = net.add_input("b", db, {Dim(3)});
    Attributes attrs;
    if (direction) attrs.set("direction", std::string(direction));
    net.add_output(net.add_op1(op, {a, b}, attrs, "bits"));
    return finalize_message(net);
  };
  EXPECT_NE(error_of(OpKind::kBitwiseAnd, DType::kFloat32, DType::kFloat32, nullptr)
                .find("node 'bits' (BitwiseAnd): input 0 has dtype float32; expected an integer type"),
            std::string::npos);
  EXPECT_NE(error_of(OpKind::kBitwiseOr, DType::kInt8, DType::kInt32, nullptr).find("inputs 0 and 1 have dtypes int8 and int32"),
            std::string::npos);
  EXPECT_NE(error_of(OpKind::kBitShift, DType::kUInt8, DType::kUInt8, "UP").find("direction 'UP' is not LEFT or RIGHT"),
            std::string::npos);
  EXPECT_NE(error_of(OpKind::kBitShift, DType::kUInt8, DType::kUInt8, nullptr).find("direction '' is not LEFT or RIGHT"),
            std::string::npos);
  EXPECT_EQ(error_of(OpKind::kBitShift, DType::kUInt8, DType::kUInt8, "RIGHT"), "");
}

TEST(ShapeInference, LrnKeepsTheShapeAndNeedsASize) {
  auto run = [](DType dtype, Shape shape, std::optional<int64_t> size, ValueId* out) {
    Network net;
    Attributes attrs;
    if (size) attrs.set("size", *size);
    ValueId y = net.add_op1(OpKind::kLRN, {net.add_input("x", dtype, shape)}, attrs, "lrn");
    net.add_output(y);
    std::string e = finalize_message(net);
    if (out && e.empty()) {
      EXPECT_EQ(net.value(y).shape, shape);
      EXPECT_EQ(net.value(y).dtype, dtype);
    }
    return e;
  };
  ValueId y;
  EXPECT_EQ(run(DType::kFloat16, {N, Dim(5), S, Dim(7)}, 3, &y), "");
  EXPECT_NE(run(DType::kFloat32, {N, Dim(5)}, std::nullopt, nullptr).find("node 'lrn' (LRN): attribute 'size' is required"),
            std::string::npos);
  EXPECT_NE(run(DType::kFloat32, {N, Dim(5)}, 0, nullptr).find("size 0 must be >= 1"), std::string::npos);
  EXPECT_NE(run(DType::kFloat32, {Dim(5)}, 3, nullptr).find("input 0 has rank 1"), std::string::npos);
  EXPECT_NE(run(DType::kInt32, {N, Dim(5)}, 3, nullptr).find("expected a float type"), std::string::npos);
}

TEST(ShapeInference, CausalConvWithStateKeepsTheInputAndCarriesKMinusOnePositions) {
  Network net;
  ValueId x = net.add_input("x", DType::kFloat16, {N, Dim(6), S});
  ValueId w = net.add_input("w", DType::kFloat16, {Dim(6), Dim(1), Dim(4)});
  ValueId past = net.add_input("past", DType::kFloat16, {N, Dim(6), Dim(3)});
  auto outs = net.add_op(OpKind::kCausalConvWithState, {x, w, kNoValue, past}, {}, 2, "conv");
  for (ValueId v : outs) net.add_output(v);
  net.finalize();
  EXPECT_EQ(net.value(outs[0]).shape, (Shape{N, Dim(6), S}));
  EXPECT_EQ(net.value(outs[1]).shape, (Shape{N, Dim(6), Dim(3)}));
  EXPECT_EQ(net.value(outs[1]).dtype, DType::kFloat16);
}

TEST(ShapeInference, CausalConvWithStateRefusesWhatItCannotRun) {
  auto error_of = [](Shape w, Shape past, const char* activation) {
    Network net;
    ValueId x = net.add_input("x", DType::kFloat32, {Dim(2), Dim(4), Dim(5)});
    Attributes a;
    if (activation) a.set("activation", std::string(activation));
    std::vector<ValueId> in{x, net.add_input("w", DType::kFloat32, w), kNoValue};
    if (!past.empty()) in.push_back(net.add_input("past", DType::kFloat32, past));
    for (ValueId v : net.add_op(OpKind::kCausalConvWithState, in, a, 2, "conv")) net.add_output(v);
    return finalize_message(net);
  };
  EXPECT_EQ(error_of({Dim(4), Dim(1), Dim(3)}, {Dim(2), Dim(4), Dim(2)}, "swish"), "");
  EXPECT_NE(error_of({Dim(4), Dim(2), Dim(3)}, {}, nullptr).find("node 'conv' (CausalConvWithState): weight of shape [4,2,3] is not "
                                                                 "depthwise"),
            std::string::npos);
  EXPECT_NE(error_of({Dim(3), Dim(1), Dim(3)}, {}, nullptr).find("weight dim 0 and input channels do not match: 3 vs 4"),
            std::string::npos);
  EXPECT_NE(error_of({Dim(4), Dim(1), Dim(0)}, {}, nullptr).find("has no taps"), std::string::npos);
  EXPECT_NE(error_of({Dim(4), Dim(1), Dim(3)}, {Dim(2), Dim(4), Dim(3)}, nullptr).find("past_state and [batch, channels, k - 1] do not "
                                                                                       "match: 3 vs 2"),
            std::string::npos);
  EXPECT_NE(error_of({Dim(4), Dim(1), Dim(3)}, {}, "relu").find("activation 'relu' is not one of none, silu, swish"), std::string::npos);
}

// LinearAttention with query [B, T, 4 * 8], key [B, T, 2 * 8], value [B, T, 2 * 5].
std::string linear_attention_error(const char* rule, std::vector<std::optional<Shape>> gates, int64_t q_heads = 4,
                                   DType past = DType::kFloat32, ValueId* out = nullptr, ValueId* present = nullptr) {
  Network net;
  Attributes a;
  a.set("q_num_heads", q_heads);
  a.set("kv_num_heads", int64_t(2));
  if (rule) a.set("update_rule", std::string(rule));
  std::vector<ValueId> in{net.add_input("q", DType::kFloat32, {N, S, Dim(32)}), net.add_input("k", DType::kFloat32, {N, S, Dim(16)}),
                          net.add_input("v", DType::kFloat32, {N, S, Dim(10)}),
                          net.add_input("past", past, {N, Dim(2), Dim(8), Dim(5)})};
  for (size_t i = 0; i < gates.size(); ++i)
    in.push_back(gates[i] ? net.add_input(str("gate", i), DType::kFloat32, *gates[i]) : kNoValue);
  auto outs = net.add_op(OpKind::kLinearAttention, in, a, 2, "la");
  for (ValueId v : outs) net.add_output(v);
  std::string e = finalize_message(net);
  if (out && e.empty()) {
    *out = outs[0];
    *present = outs[1];
    EXPECT_EQ(net.value(outs[0]).shape, (Shape{N, S, Dim(4 * 5)}));
    EXPECT_EQ(net.value(outs[1]).shape, (Shape{N, Dim(2), Dim(8), Dim(5)}));
    EXPECT_EQ(net.value(outs[0]).dtype, DType::kFloat32);
    EXPECT_EQ(net.value(outs[1]).dtype, past);
  }
  return e;
}

TEST(ShapeInference, LinearAttentionUnpacksHeadsAndKeepsTheStateType) {
  ValueId out, present;
  EXPECT_EQ(linear_attention_error("linear", {}, 4, DType::kFloat32, &out, &present), "");
  EXPECT_EQ(linear_attention_error("gated", {Shape{N, S, Dim(2)}}, 4, DType::kFloat16, &out, &present), "");
  EXPECT_EQ(linear_attention_error("gated", {Shape{N, S, Dim(16)}}, 4, DType::kBFloat16, &out, &present), "");
  EXPECT_EQ(linear_attention_error("delta", {std::nullopt, Shape{N, S, Dim(1)}}), "");
  EXPECT_EQ(linear_attention_error(nullptr, {Shape{N, S, Dim(2)}, Shape{N, S, Dim(2)}}), "");  // gated_delta by default
}

TEST(ShapeInference, LinearAttentionRefusesInputsTheRuleDoesNotFit) {
  EXPECT_NE(linear_attention_error(nullptr, {}).find("node 'la' (LinearAttention): update_rule 'gated_delta' needs decay"),
            std::string::npos);
  EXPECT_NE(linear_attention_error("linear", {Shape{N, S, Dim(2)}}).find("update_rule 'linear' takes no decay"), std::string::npos);
  EXPECT_NE(linear_attention_error("delta", {std::nullopt, Shape{N, S, Dim(3)}}).find("input 5 ('gate1') has width 3; expected 2 or 1"),
            std::string::npos);
  EXPECT_NE(linear_attention_error("gated", {Shape{N, S, Dim(8)}}).find("input 4 ('gate0') has width 8; expected 2 or 16"),
            std::string::npos);
  EXPECT_NE(linear_attention_error("mamba", {}).find("update_rule 'mamba' is not one of"), std::string::npos);
  EXPECT_NE(linear_attention_error("linear", {}, 3).find("q_num_heads (3) must be a positive multiple of kv_num_heads (2)"),
            std::string::npos);
  EXPECT_NE(linear_attention_error("linear", {}, 8).find("input 1 ('k') has width 16; expected kv_num_heads * d_k = 2 * 4"),
            std::string::npos);
}

TEST(ShapeInference, BitCastKeepsTheShapeAndNeedsOneWidth) {
  auto run = [](DType from, DType to) {
    Network net;
    Attributes a;
    a.set("to", int64_t(to));
    ValueId y = net.add_op1(OpKind::kBitCast, {net.add_input("x", from, {N, Dim(3)})}, a, "bc");
    net.add_output(y);
    std::string e = finalize_message(net);
    if (e.empty()) {
      EXPECT_EQ(net.value(y).shape, (Shape{N, Dim(3)}));
      EXPECT_EQ(net.value(y).dtype, to);
    }
    return e;
  };
  EXPECT_EQ(run(DType::kFloat32, DType::kInt32), "");
  EXPECT_EQ(run(DType::kFloat16, DType::kBFloat16), "");
  EXPECT_EQ(run(DType::kInt64, DType::kFloat64), "");
  EXPECT_EQ(run(DType::kUInt8, DType::kBool), "");
  EXPECT_NE(run(DType::kFloat32, DType::kFloat16)
                .find("node 'bc' (BitCast): input 0 of float32 (32 bits) cannot be read as float16 (16 bits)"),
            std::string::npos);
}

// The shape of one node's output, or its error ("error: ...").
std::string infer_one(OpKind op, const std::vector<std::pair<DType, Shape>>& inputs, const Attributes& a = {},
                      std::optional<std::vector<int64_t>> constant_last = std::nullopt) {
  Network net;
  std::vector<ValueId> ids;
  for (size_t i = 0; i < inputs.size(); ++i) ids.push_back(net.add_input(str("in", i), inputs[i].first, inputs[i].second));
  if (constant_last) ids.push_back(net.add_weight("constant", ints(*constant_last)));
  ValueId y = net.add_op1(op, ids, a, "node");
  net.add_output(y);
  try {
    net.finalize();
  } catch (const Error& e) {
    return str("error: ", e.what());
  }
  return str(dtype_name(net.value(y).dtype), " ", shape_to_string(net.value(y).shape));
}

TEST(ShapeInference, OpsOfPoolingNormsScansAndCaches) {
  const DType f32 = DType::kFloat32, i64 = DType::kInt64;
  Attributes unpool;
  unpool.set("kernel_shape", std::vector<int64_t>{2, 3});
  unpool.set("strides", std::vector<int64_t>{2, 2});
  unpool.set("pads", std::vector<int64_t>{0, 1, 0, 0});
  Shape pooled{N, Dim(3), Dim(4), S};
  EXPECT_EQ(infer_one(OpKind::kMaxUnpool, {{f32, pooled}, {i64, pooled}}, unpool), "float32 [N,3,8,2*S]");
  EXPECT_EQ(infer_one(OpKind::kMaxUnpool, {{f32, {Dim(1), Dim(3), Dim(4), Dim(4)}}, {i64, {Dim(1), Dim(3), Dim(4), Dim(4)}}}, unpool,
                      std::vector<int64_t>{1, 3, 9, 9}),
            "float32 [1,3,9,9]");
  EXPECT_NE(infer_one(OpKind::kMaxUnpool, {{f32, {Dim(1), Dim(3), Dim(4), Dim(4)}}, {i64, {Dim(1), Dim(3), Dim(4), Dim(4)}}}, unpool,
                      std::vector<int64_t>{1, 3, 7, 9})
                .find("is smaller than the unpooled size [1,3,8,8]"),
            std::string::npos);
  Attributes lp;
  lp.set("kernel_shape", std::vector<int64_t>{3});
  lp.set("p", int64_t(0));
  EXPECT_NE(infer_one(OpKind::kLpPool, {{f32, {N, Dim(2), Dim(9)}}}, lp).find("p 0 must be >= 1"), std::string::npos);
  lp.set("p", int64_t(3));
  EXPECT_EQ(infer_one(OpKind::kLpPool, {{f32, {N, Dim(2), Dim(9)}}}, lp), "float32 [N,2,7]");
  EXPECT_EQ(infer_one(OpKind::kGlobalLpPool, {{f32, {N, Dim(2), Dim(9), S}}}), "float32 [N,2,1,1]");
  Attributes p3;
  p3.set("p", int64_t(3));
  EXPECT_NE(infer_one(OpKind::kLpNormalization, {{f32, {N, S}}}, p3).find("p 3 is not 1 or 2"), std::string::npos);
  EXPECT_EQ(infer_one(OpKind::kDet, {{f32, {N, Dim(3), Dim(3)}}}), "float32 [N]");
  EXPECT_NE(infer_one(OpKind::kDet, {{f32, {Dim(3), Dim(4)}}}).find("rows and columns do not match"), std::string::npos);
  Attributes eye;
  eye.set("dtype", int64_t(DType::kBool));
  EXPECT_EQ(infer_one(OpKind::kEyeLike, {{f32, {N, S}}}, eye), "bool [N,S]");
  EXPECT_NE(infer_one(OpKind::kEyeLike, {{f32, {N, S, S}}}).find("expected 2"), std::string::npos);
  Attributes same_axes;
  same_axes.set("batch_axis", int64_t(0));
  same_axes.set("time_axis", int64_t(0));
  EXPECT_NE(infer_one(OpKind::kReverseSequence, {{f32, {S, N, Dim(4)}}, {i64, {N}}}, same_axes).find("must be 0 and 1"), std::string::npos);
  EXPECT_EQ(infer_one(OpKind::kReverseSequence, {{f32, {S, N, Dim(4)}}, {i64, {N}}}), "float32 [S,N,4]");
  Attributes batch_axis;
  batch_axis.set("axis", int64_t(0));
  EXPECT_NE(infer_one(OpKind::kTensorScatter, {{f32, {N, Dim(8), Dim(4)}}, {f32, {N, Dim(8), Dim(4)}}}, batch_axis).find("axis 0 is the batch dim"),
            std::string::npos);
  EXPECT_EQ(infer_one(OpKind::kTensorScatter, {{f32, {N, Dim(2), Dim(8), Dim(4)}}, {f32, {N, Dim(2), S, Dim(4)}}, {i64, {N}}}),
            "float32 [N,2,8,4]");
  EXPECT_NE(infer_one(OpKind::kTensorScatter, {{f32, {N, Dim(8), Dim(4)}}, {f32, {N, Dim(9), Dim(4)}}}).find("is longer along axis 1"),
            std::string::npos);
  EXPECT_EQ(infer_one(OpKind::kCumProd, {{i64, {N, S}}}, {}, std::vector<int64_t>{1}), "int64 [N,S]");
}

}  // namespace
}  // namespace kiln::ir
