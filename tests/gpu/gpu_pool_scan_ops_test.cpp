// CumProd, LpPool, GlobalLpPool, LpNormalization, MaxUnpool, EyeLike,
// ReverseSequence, TensorScatter and Det on the GPU against the reference
// interpreter (float64 accumulation), on seeded random non-zero data, in models
// of float32, float16 and bfloat16, with the generic kernels and with kernels
// specialized for the shapes: odd sizes (1, 7, 33, 1000 and more), empty
// tensors where an op takes them, and indices or lengths out of range, which
// the CPU refuses and the GPU skips or clamps without touching memory outside
// the tensors.
#include <numeric>

#include "gpu_test_util.h"

namespace kiln::testing {
namespace {

using ir::OpKind;
using ir::ValueId;
using P = plan::Precision;
using S = runtime::KernelSpecialization;


class GpuPoolScanOps : public GpuDTypeAndStrategyTest {};

// Along the first, a middle and the last axis, rows of 1, 7, 33 and 1025,
// every exclusive/reverse pair; factors near 1 keep long products finite.
TEST_P(GpuPoolScanOps, CumProdMatchesReference) {
  KILN_REQUIRE_GPU();
  DType dtype = std::get<0>(GetParam());
  std::mt19937 rng(3301);
  OpNetwork m;
  const std::vector<std::pair<std::vector<int64_t>, int64_t>> cases = {{{1}, 0}, {{7, 33}, 0}, {{7, 33}, 1}, {{3, 1025, 2}, 1}, {{2, 0, 3}, 1}};
  for (size_t c = 0; c < cases.size(); ++c) {
    ValueId x = m.input(str("x", c), random_tensor(dtype, cases[c].first, rng, 0.9, 1.1));
    ValueId axis = m.net.add_weight(str("axis", c), reference::make_tensor(DType::kInt64, {}, {double(cases[c].second)}));
    for (int64_t exclusive : {0, 1})
      for (int64_t reverse : {0, 1})
        m.net.add_output(m.net.add_op1(OpKind::kCumProd, {x, axis}, attrs({{"exclusive", exclusive}, {"reverse", reverse}})));
  }
  expect_matches(m, OpKind::kCumProd, "cumprod");
}

// 1-D over 1025 positions (dilation, ceil_mode), 2-D over 7 x 33 (pads, SAME_UPPER), 3-D; p 1, 2 and 3.
TEST_P(GpuPoolScanOps, LpPoolMatchesReference) {
  KILN_REQUIRE_GPU();
  DType dtype = std::get<0>(GetParam());
  std::mt19937 rng(3302);
  OpNetwork m;
  ValueId x1 = m.input("x1", random_tensor(dtype, {1, 2, 1025}, rng));
  ValueId x2 = m.input("x2", random_tensor(dtype, {2, 3, 7, 33}, rng));
  ValueId x3 = m.input("x3", random_tensor(dtype, {1, 2, 3, 7, 5}, rng));
  using V = std::vector<int64_t>;
  for (int64_t p : {1, 2, 3}) {
    m.net.add_output(m.net.add_op1(OpKind::kLpPool, {x1}, attrs({{"kernel_shape", V{4}}, {"strides", V{3}}, {"dilations", V{2}},
                                                                 {"ceil_mode", int64_t(1)}, {"p", p}})));
    m.net.add_output(m.net.add_op1(OpKind::kLpPool, {x2}, attrs({{"kernel_shape", V{3, 2}}, {"strides", V{2, 1}},
                                                                 {"pads", V{1, 0, 2, 1}}, {"p", p}})));
    m.net.add_output(m.net.add_op1(OpKind::kLpPool, {x2}, attrs({{"kernel_shape", V{2, 3}}, {"auto_pad", std::string("SAME_UPPER")},
                                                                 {"strides", V{2, 2}}, {"p", p}})));
    m.net.add_output(m.net.add_op1(OpKind::kLpPool, {x3}, attrs({{"kernel_shape", V{2, 3, 2}}, {"p", p}})));
  }
  expect_matches(m, OpKind::kLpPool, "lppool");
}

TEST_P(GpuPoolScanOps, GlobalLpPoolMatchesReference) {
  KILN_REQUIRE_GPU();
  DType dtype = std::get<0>(GetParam());
  std::mt19937 rng(3303);
  OpNetwork m;
  std::vector<ValueId> xs = {m.input("a", random_tensor(dtype, {2, 3, 7, 33}, rng)), m.input("b", random_tensor(dtype, {1, 1, 1}, rng)),
                             m.input("c", random_tensor(dtype, {1, 2, 1025}, rng))};
  for (ValueId x : xs)
    for (int64_t p : {1, 2, 3}) m.net.add_output(m.net.add_op1(OpKind::kGlobalLpPool, {x}, attrs({{"p", p}})));
  expect_matches(m, OpKind::kGlobalLpPool, "globallppool");
}

// Rows on every path of the row kernel (lanes, a block, strided over inner
// dims and past the register span), a row of zeros, p 1 and 2.
TEST_P(GpuPoolScanOps, LpNormalizationMatchesReference) {
  KILN_REQUIRE_GPU();
  DType dtype = std::get<0>(GetParam());
  std::mt19937 rng(3304);
  OpNetwork m;
  ir::TensorData zero_row = random_tensor(dtype, {3, 33}, rng);
  std::vector<double> v = ir::read_doubles(zero_row);
  std::fill(v.begin() + 33, v.begin() + 66, 0.0);
  std::vector<std::pair<ValueId, int64_t>> cases = {{m.input("rows", reference::make_tensor(dtype, {3, 33}, v)), -1},
                                                    {m.input("one", random_tensor(dtype, {1, 1}, rng)), 0},
                                                    {m.input("inner", random_tensor(dtype, {7, 33, 5}, rng)), 1},
                                                    {m.input("block", random_tensor(dtype, {2, 1025}, rng)), 1},
                                                    {m.input("long", random_tensor(dtype, {2, 9000}, rng)), -1},
                                                    {m.input("empty", random_tensor(dtype, {0, 7}, rng)), 1}};
  for (auto [x, axis] : cases)
    for (int64_t p : {1, 2}) m.net.add_output(m.net.add_op1(OpKind::kLpNormalization, {x}, attrs({{"axis", axis}, {"p", p}})));
  expect_matches(m, OpKind::kLpNormalization, "lpnormalization");
}

// Indices of a 2 x 2 max pool of stride 2 (each window's position drawn at
// random, so every index is distinct), unpooled to the pooled input's size and
// into a larger output_shape; 1-D windows over 1000 positions too.
TEST_P(GpuPoolScanOps, MaxUnpoolMatchesReference) {
  KILN_REQUIRE_GPU();
  DType dtype = std::get<0>(GetParam());
  std::mt19937 rng(3305);
  OpNetwork m;
  std::vector<int64_t> idx;
  for (int64_t plane = 0; plane < 2 * 3; ++plane)
    for (int64_t h = 0; h < 7; ++h)
      for (int64_t w = 0; w < 33; ++w) idx.push_back((plane * 14 + 2 * h + int64_t(rng() % 2)) * 66 + 2 * w + int64_t(rng() % 2));
  ValueId x = m.input("x", random_tensor(dtype, {2, 3, 7, 33}, rng)), i = m.input("i", int64s({2, 3, 7, 33}, idx));
  using V = std::vector<int64_t>;
  ir::Attributes a = attrs({{"kernel_shape", V{2, 2}}, {"strides", V{2, 2}}});
  m.net.add_output(m.net.add_op1(OpKind::kMaxUnpool, {x, i}, a));
  ValueId larger = m.net.add_weight("larger", int64s({4}, {2, 3, 15, 67}));
  m.net.add_output(m.net.add_op1(OpKind::kMaxUnpool, {x, i, larger}, a));
  std::vector<int64_t> idx1;
  for (int64_t w = 0; w < 1000; ++w) idx1.push_back(3 * w + int64_t(rng() % 3));
  ValueId x1 = m.input("x1", random_tensor(dtype, {1, 1, 1000}, rng)), i1 = m.input("i1", int64s({1, 1, 1000}, idx1));
  m.net.add_output(m.net.add_op1(OpKind::kMaxUnpool, {x1, i1}, attrs({{"kernel_shape", V{3}}, {"strides", V{3}}})));
  expect_matches(m, OpKind::kMaxUnpool, "maxunpool");
}

// Square, wide and tall matrices, diagonals above, on and below, the input's
// type and (float32 models) int32 and bool outputs.
TEST_P(GpuPoolScanOps, EyeLikeMatchesReference) {
  KILN_REQUIRE_GPU();
  DType dtype = std::get<0>(GetParam());
  std::mt19937 rng(3306);
  OpNetwork m;
  for (const std::vector<int64_t>& dims : {std::vector<int64_t>{1, 1}, {7, 33}, {33, 7}, {1000, 3}, {0, 4}}) {
    ValueId x = m.input(str("x", dims[0], "_", dims[1]), random_tensor(dtype, dims, rng));
    for (int64_t k : {-2, 0, 5}) {
      m.net.add_output(m.net.add_op1(OpKind::kEyeLike, {x}, attrs({{"k", k}})));
      if (dtype == DType::kFloat32)
        for (DType out : {DType::kInt32, DType::kBool})
          m.net.add_output(m.net.add_op1(OpKind::kEyeLike, {x}, attrs({{"k", k}, {"dtype", int64_t(out)}})));
    }
  }
  expect_matches(m, OpKind::kEyeLike, "eyelike");
}

// Time-major [7, 5, 33] and batch-major [5, 1000, 3], lengths from 0 to the whole time axis.
TEST_P(GpuPoolScanOps, ReverseSequenceMatchesReference) {
  KILN_REQUIRE_GPU();
  DType dtype = std::get<0>(GetParam());
  std::mt19937 rng(3307);
  OpNetwork m;
  ValueId x = m.input("x", random_tensor(dtype, {7, 5, 33}, rng)), lens = m.input("lens", int64s({5}, {0, 7, 3, 1, 6}));
  m.net.add_output(m.net.add_op1(OpKind::kReverseSequence, {x, lens}));
  ValueId xb = m.input("xb", random_tensor(dtype, {5, 1000, 3}, rng)), lens_b = m.input("lens_b", int64s({5}, {1000, 999, 1, 0, 512}));
  m.net.add_output(m.net.add_op1(OpKind::kReverseSequence, {xb, lens_b}, attrs({{"batch_axis", int64_t(0)}, {"time_axis", int64_t(1)}})));
  expect_matches(m, OpKind::kReverseSequence, "reversesequence");
}

// A cache of 33 steps: linear writes up to its end, circular ones that wrap,
// writes at 0 without write_indices, along an inner axis and the last one.
TEST_P(GpuPoolScanOps, TensorScatterMatchesReference) {
  KILN_REQUIRE_GPU();
  DType dtype = std::get<0>(GetParam());
  std::mt19937 rng(3308);
  OpNetwork m;
  ValueId cache = m.input("cache", random_tensor(dtype, {3, 2, 33, 8}, rng));
  ValueId update = m.input("update", random_tensor(dtype, {3, 2, 7, 8}, rng));
  ValueId linear = m.input("linear", int64s({3}, {0, 26, 11})), circular = m.input("circular", int64s({3}, {30, 65, -3}));
  m.net.add_output(m.net.add_op1(OpKind::kTensorScatter, {cache, update, linear}));
  m.net.add_output(m.net.add_op1(OpKind::kTensorScatter, {cache, update, circular}, attrs({{"mode", std::string("circular")}})));
  m.net.add_output(m.net.add_op1(OpKind::kTensorScatter, {cache, update}));
  ValueId last = m.input("last", random_tensor(dtype, {2, 1000}, rng)), step = m.input("step", random_tensor(dtype, {2, 1}, rng));
  m.net.add_output(m.net.add_op1(OpKind::kTensorScatter, {last, step, m.input("at", int64s({2}, {999, 0}))}, attrs({{"axis", int64_t(-1)}})));
  expect_matches(m, OpKind::kTensorScatter, "tensorscatter");
}

// Batches of 1 x 1 to 7 x 7 matrices (and 33 and 64 rows in float32, whose
// determinants fp16 could not hold), a singular one and an empty batch.
TEST_P(GpuPoolScanOps, DetMatchesReference) {
  KILN_REQUIRE_GPU();
  DType dtype = std::get<0>(GetParam());
  std::mt19937 rng(3309);
  OpNetwork m;
  std::vector<std::vector<int64_t>> cases = {{2, 1, 1}, {5, 3, 3}, {2, 3, 7, 7}, {0, 4, 4}};
  const int64_t largest = 64;  // the largest matrix the GPU kernel takes (docs/ops.md)
  if (dtype == DType::kFloat32) cases.push_back({3, 33, 33}), cases.push_back({2, largest, largest});
  for (size_t c = 0; c < cases.size(); ++c) m.net.add_output(m.net.add_op1(OpKind::kDet, {m.input(str("x", c), random_tensor(dtype, cases[c], rng))}));
  ir::TensorData singular = random_tensor(dtype, {2, 4, 4}, rng);
  std::vector<double> v = ir::read_doubles(singular);
  for (size_t j = 0; j < 4; ++j) v[4 + j] = v[j];  // matrix 0: two equal rows
  m.net.add_output(m.net.add_op1(OpKind::kDet, {m.input("singular", reference::make_tensor(dtype, {2, 4, 4}, v))}));
  expect_matches(m, OpKind::kDet, "det");
}

INSTANTIATE_TEST_SUITE_P(Kernels, GpuPoolScanOps,
                         ::testing::Combine(::testing::Values(DType::kFloat32, DType::kFloat16, DType::kBFloat16),
                                            ::testing::Values(S::kNone, S::kEager)),
                         dtype_and_strategy_name);

// Integer products wrap as the reference's (int64 arithmetic, past float64's exact integers).
TEST(GpuPoolScanOpsIntegers, CumProdOfInt64AndInt32) {
  KILN_REQUIRE_GPU();
  OpNetwork m;
  std::vector<int64_t> v(40);
  std::iota(v.begin(), v.end(), 1);
  ValueId x = m.input("x", int64s({2, 20}, v));
  ValueId x32 = m.input("x32", reference::make_tensor(DType::kInt32, {2, 20}, std::vector<double>(v.begin(), v.end())));
  ValueId axis = m.net.add_weight("axis", reference::make_tensor(DType::kInt64, {}, {1}));
  m.net.add_output(m.net.add_op1(OpKind::kCumProd, {x, axis}));
  m.net.add_output(m.net.add_op1(OpKind::kCumProd, {x32, axis}, attrs({{"reverse", int64_t(1)}})));
  m.net.finalize();
  auto got = run_on_gpu(m.net, m.feeds, P::kFloat32, S::kNone);
  auto want = reference::run(m.net, m.feeds);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(ir::read_ints(got[i]), ir::read_ints(want[i])) << "output " << i;
}

// Indices and lengths the CPU refuses: the GPU skips a MaxUnpool index past
// the unpooled size and a linear TensorScatter write past the cache, and
// clamps ReverseSequence lengths to [0, time]; everything else is as ONNX says.
TEST(GpuPoolScanOpsOutOfRange, SkippedOrClampedWithinTheTensors) {
  KILN_REQUIRE_GPU();
  using V = std::vector<int64_t>;
  OpNetwork m;
  ValueId x = m.input("x", reference::make_tensor(DType::kFloat32, {1, 1, 2, 2}, {5, 6, 15, 16}));
  ValueId i = m.input("i", int64s({1, 1, 2, 2}, {5, 7, 16, -1}));
  m.net.add_output(m.net.add_op1(OpKind::kMaxUnpool, {x, i}, attrs({{"kernel_shape", V{2, 2}}, {"strides", V{2, 2}}})));
  ValueId seq = m.input("seq", reference::make_tensor(DType::kFloat32, {3, 2}, {0, 1, 2, 3, 4, 5}));  // time-major [3, 2]
  m.net.add_output(m.net.add_op1(OpKind::kReverseSequence, {seq, m.input("lens", int64s({2}, {9, -4}))}));
  ValueId cache = m.input("cache", reference::make_tensor(DType::kFloat32, {2, 3}, {0, 0, 0, 0, 0, 0}));
  ValueId update = m.input("update", reference::make_tensor(DType::kFloat32, {2, 2}, {1, 2, 3, 4}));
  m.net.add_output(m.net.add_op1(OpKind::kTensorScatter, {cache, update, m.input("at", int64s({2}, {2, -1}))}, attrs({{"axis", int64_t(1)}})));
  m.net.finalize();
  auto out = run_on_gpu(m.net, m.feeds, P::kFloat32, S::kNone);
  ASSERT_EQ(out.size(), 3u);
  std::vector<double> unpooled(16, 0.0);
  unpooled[5] = 5, unpooled[7] = 6;
  EXPECT_EQ(ir::read_doubles(out[0]), unpooled);
  EXPECT_EQ(ir::read_doubles(out[1]), (std::vector<double>{4, 1, 2, 3, 0, 5}));  // lengths 3 and 0
  EXPECT_EQ(ir::read_doubles(out[2]), (std::vector<double>{0, 0, 1, 4, 0, 0}));  // 2 past the end, -1 before the start
}

}  // namespace
}  // namespace kiln::testing
