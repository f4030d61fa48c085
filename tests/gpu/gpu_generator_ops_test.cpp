// TopK, Range, OneHot and Einsum on the GPU against the reference interpreter,
// on seeded random non-zero data: fp32 and fp16 (as the network's dtype and as
// the plan's precision) and the other dtypes each op takes, with the generic
// kernels and with kernels specialized for the shapes.
#include <algorithm>

#include "gpu_test_util.h"

namespace kiln::testing {
namespace {

using ir::Dim;
using ir::OpKind;
using ir::ValueId;
using P = plan::Precision;
using S = runtime::KernelSpecialization;

const DType kIntegers[] = {DType::kInt64, DType::kInt32, DType::kInt8, DType::kUInt8};

// Non-zero multiples of 1/4 up to `top` in magnitude (positive only for uint8): exact in every
// dtype here, and few enough distinct values that ties are common.
ir::TensorData quarters(DType dtype, const std::vector<int64_t>& dims, std::mt19937& rng, int top = 5) {
  bool integer = !is_floating(dtype);
  std::vector<double> v(size_t(ir::checked_numel(dims)));
  for (auto& x : v) {
    double magnitude = integer ? double(1 + rng() % uint32_t(top)) : double(1 + rng() % uint32_t(4 * top)) / 4;
    x = dtype == DType::kUInt8 || rng() % 2 ? magnitude : -magnitude;
  }
  return reference::make_tensor(dtype, dims, v);
}

class GpuGeneratorOps : public ::testing::TestWithParam<S> {};

// TopK outputs values and indices; the data has many ties, which must resolve
// to the lower index as in the reference. Rows from 1 to 100000 elements, k from
// 1 to the whole row, along the last axis and an inner one, largest and smallest.
TEST_P(GpuGeneratorOps, TopKMatchesReference) {
  KILN_REQUIRE_GPU();
  struct Shape {
    std::vector<int64_t> dims;
    int64_t axis, k, largest;
  };
  const Shape shapes[] = {{{3, 1000}, -1, 37, 1}, {{2, 300, 5}, 1, 300, 0}, {{4, 7}, 1, 1, 1}, {{2, 100000}, 1, 2500, 1},
                          {{6, 40, 3}, -2, 17, 0}};
  auto topk_net = [](DType dtype, const Shape& s) {
    ir::Network net;
    ValueId x = net.add_input("x", dtype, ir::shape_of(s.dims));
    ValueId k = net.add_weight("k", reference::make_tensor(DType::kInt64, {1}, {double(s.k)}));
    auto out = net.add_op(OpKind::kTopK, {x, k}, attrs({{"axis", s.axis}, {"largest", s.largest}}), 2);
    for (ValueId v : out) net.add_output(v);
    net.finalize();
    return net;
  };
  std::vector<std::pair<DType, P>> types = {{DType::kFloat32, P::kFloat32}, {DType::kFloat16, P::kFloat32},
                                            {DType::kFloat32, P::kFloat16}, {DType::kBFloat16, P::kFloat32},
                                            {DType::kFloat64, P::kFloat32}};
  for (DType d : kIntegers) types.push_back({d, P::kFloat32});
  uint32_t seed = 77;
  for (auto [dtype, precision] : types)
    for (const Shape& s : shapes) {
      SCOPED_TRACE(str("TopK ", dtype_name(dtype), " at ", plan::precision_name(precision), " over ", ir::shape_to_string(ir::shape_of(s.dims)),
                       " axis ", s.axis, " k ", s.k, " largest ", s.largest, " seed ", seed));
      std::mt19937 rng(seed++);
      expect_op_matches_reference(topk_net(dtype, s), OpKind::kTopK, {{{"x", quarters(dtype, s.dims, rng, 24)}}}, precision,
                                  GetParam(), 0);
    }
}

// K from the input's shape (shape arithmetic), at two sizes on one context.
TEST_P(GpuGeneratorOps, TopKWithKFromTheShape) {
  KILN_REQUIRE_GPU();
  ir::Network net;
  ValueId x = net.add_input("x", DType::kFloat32, {Dim::symbol("n"), Dim(64)});
  ValueId rows = net.add_op1(OpKind::kShape, {x}, attrs({{"start", int64_t(0)}, {"end", int64_t(1)}}));
  auto out = net.add_op(OpKind::kTopK, {x, rows}, attrs({{"axis", int64_t(1)}}), 2);  // the n best of each row
  for (ValueId v : out) net.add_output(v);
  net.finalize();
  std::mt19937 rng(5);
  expect_op_matches_reference(net, OpKind::kTopK, {{{"x", random_tensor(DType::kFloat32, {9, 64}, rng)}},
                                                   {{"x", random_tensor(DType::kFloat32, {40, 64}, rng)}}},
                              P::kFloat32, GetParam(), 0);
}

// Range's length from the input's shape: positions start + i * delta up to the
// sequence length, empty where it is short; at three lengths on one context.
TEST_P(GpuGeneratorOps, RangeFromTheShapeMatchesReference) {
  KILN_REQUIRE_GPU();
  ir::Network net;
  ValueId x = net.add_input("x", DType::kFloat32, {Dim(2), Dim::symbol("seq")});
  ValueId len = net.add_op1(OpKind::kGather, {net.add_op1(OpKind::kShape, {x}), scalar(net, "one", DType::kInt64, 1)},
                            attrs({{"axis", int64_t(0)}}));
  net.add_output(net.add_op1(OpKind::kRange, {scalar(net, "start", DType::kInt64, 2), len, scalar(net, "delta", DType::kInt64, 3)}));
  net.add_output(net.add_op1(OpKind::kRange, {scalar(net, "top", DType::kInt64, 5), len, scalar(net, "down", DType::kInt64, -1)}));
  net.finalize();
  std::mt19937 rng(11);
  std::vector<Feeds> runs;
  for (int64_t seq : {17, 2, 64}) runs.push_back({{"x", random_tensor(DType::kFloat32, {2, seq}, rng)}});
  expect_op_matches_reference(net, OpKind::kRange, runs, P::kFloat32, GetParam(), 0);
}

// Ranges of constants that are network outputs (so `kiln build` leaves them to
// the GPU), in every dtype Range takes and at fp16 precision.
TEST_P(GpuGeneratorOps, RangeOfConstantsMatchesReference) {
  KILN_REQUIRE_GPU();
  std::vector<std::pair<DType, P>> types = {{DType::kFloat32, P::kFloat32}, {DType::kFloat16, P::kFloat32},
                                            {DType::kFloat32, P::kFloat16}, {DType::kFloat64, P::kFloat32},
                                            {DType::kInt64, P::kFloat32}, {DType::kInt32, P::kFloat32}};
  for (auto [dtype, precision] : types) {
    SCOPED_TRACE(str("Range ", dtype_name(dtype), " at ", plan::precision_name(precision)));
    bool floating = is_floating(dtype);
    ir::Network net;
    ValueId x = net.add_input("x", DType::kFloat32, {Dim(3)});
    net.add_output(net.add_op1(OpKind::kRelu, {x}));  // a network needs an input
    net.add_output(net.add_op1(OpKind::kRange, {scalar(net, "start", dtype, floating ? -0.5 : -7), scalar(net, "limit", dtype, floating ? 7.3 : 40),
                                                scalar(net, "delta", dtype, floating ? 0.25 : 3)}));
    net.finalize();
    std::mt19937 rng(3);
    expect_op_matches_reference(net, OpKind::kRange, {{{"x", quarters(DType::kFloat32, {3}, rng)}}}, precision, GetParam(), 0);
  }
}

// OneHot along each axis, with negative and out-of-range indices, integer and
// floating indices, and values of several dtypes.
TEST_P(GpuGeneratorOps, OneHotMatchesReference) {
  KILN_REQUIRE_GPU();
  const int64_t depth = 10;
  struct Types {
    DType index, values;
    P precision;
  };
  const Types types[] = {{DType::kInt64, DType::kFloat32, P::kFloat32}, {DType::kInt32, DType::kFloat16, P::kFloat32},
                         {DType::kFloat32, DType::kInt64, P::kFloat32}, {DType::kInt64, DType::kFloat32, P::kFloat16},
                         {DType::kInt8, DType::kInt32, P::kFloat32}};
  uint32_t seed = 21;
  for (const Types& t : types)
    for (int64_t axis : {-1, 0, 1, 2}) {
      SCOPED_TRACE(str("OneHot indices ", dtype_name(t.index), " values ", dtype_name(t.values), " at ",
                       plan::precision_name(t.precision), " axis ", axis, " seed ", seed));
      std::mt19937 rng(seed++);
      ir::Network net;
      ValueId idx = net.add_input("idx", t.index, {Dim(3), Dim(7)});
      ValueId values = net.add_weight("values", reference::make_tensor(t.values, {2}, {-3, 5}));
      net.add_output(net.add_op1(OpKind::kOneHot, {idx, scalar(net, "depth", DType::kInt64, double(depth)), values},
                                 attrs({{"axis", axis}})));
      net.finalize();
      // Indices in [-depth - 2, depth + 2): negative ones count from the end, the rest of the range is all off.
      std::vector<double> v(21);
      for (auto& i : v) i = double(int64_t(rng() % uint32_t(2 * depth + 4)) - depth - 2) + (is_floating(t.index) ? 0.5 : 0);
      expect_op_matches_reference(net, OpKind::kOneHot, {{{"idx", reference::make_tensor(t.index, {3, 7}, v)}}}, t.precision,
                                  GetParam(), 0);
    }
}

// Einsum: products, batches, diagonals, traces, ellipses with broadcasting,
// implicit outputs, three operands; fp32, fp16 and integers.
TEST_P(GpuGeneratorOps, EinsumMatchesReference) {
  KILN_REQUIRE_GPU();
  struct Equation {
    std::string text;
    std::vector<std::vector<int64_t>> shapes;
  };
  const Equation equations[] = {
      {"ij,jk->ik", {{5, 7}, {7, 3}}},
      {"bij,bjk->bik", {{2, 4, 33}, {2, 33, 6}}},
      {"ij,kj", {{4, 9}, {5, 9}}},
      {"ii->i", {{6, 6}}},
      {"ii", {{6, 6}}},
      {"i,i", {{50}, {50}}},
      {"i,j->ij", {{4}, {3}}},
      {"ij->", {{7, 8}}},
      {"ij->ji", {{3, 5}}},
      {"...ij,...jk->...ik", {{2, 1, 4, 5}, {3, 5, 6}}},
      {"b...i,i->b...", {{2, 3, 4, 5}, {5}}},
      {"bn,anm,bm->ba", {{2, 4}, {3, 4, 5}, {2, 5}}},
      {"iij,jk->ik", {{3, 3, 4}, {4, 2}}},
  };
  const std::pair<DType, P> types[] = {{DType::kFloat32, P::kFloat32}, {DType::kFloat16, P::kFloat32},
                                       {DType::kFloat32, P::kFloat16}, {DType::kInt64, P::kFloat32},
                                       {DType::kInt32, P::kFloat32}};
  uint32_t seed = 400;
  for (auto [dtype, precision] : types)
    for (const Equation& e : equations) {
      SCOPED_TRACE(str("Einsum '", e.text, "' ", dtype_name(dtype), " at ", plan::precision_name(precision), " seed ", seed));
      std::mt19937 rng(seed++);
      ir::Network net;
      std::vector<ValueId> operands;
      Feeds feeds;
      // In half precision, operands it holds exactly: what is left to check is the sum (in float) and its one rounding.
      bool half = dtype == DType::kFloat16 || precision == P::kFloat16;
      for (size_t i = 0; i < e.shapes.size(); ++i) {
        operands.push_back(net.add_input(str("x", i), dtype, ir::shape_of(e.shapes[i])));
        feeds[str("x", i)] = dtype == DType::kFloat32 && !half ? random_tensor(dtype, e.shapes[i], rng) : quarters(dtype, e.shapes[i], rng, 4);
      }
      net.add_output(net.add_op1(OpKind::kEinsum, operands, attrs({{"equation", e.text}})));
      net.finalize();
      double tolerance = half ? 1e-3 : is_floating(dtype) ? 2e-5 : 0;
      expect_op_matches_reference(net, OpKind::kEinsum, {feeds}, precision, GetParam(), tolerance);
    }
}

INSTANTIATE_TEST_SUITE_P(Kernels, GpuGeneratorOps, ::testing::Values(S::kNone, S::kEager),
                         [](const auto& info) { return std::string(runtime::kernel_specialization_name(info.param)); });

}  // namespace
}  // namespace kiln::testing
