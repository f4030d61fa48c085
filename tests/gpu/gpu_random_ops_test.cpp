// The random ops on the GPU: every element equal to the reference's, byte for
// byte, for the same seed (and, without one, the same node name), generic and
// shape-specialized kernels, in every float type they make; and the GPU's
// numbers have their distribution's support and moments over 10^5 draws
// (within 5 standard errors). Sizes 1, odd ones past 10^5, and empty.
#include <cstring>

#include "gpu_test_util.h"

namespace kiln::testing {
namespace {

using ir::OpKind;
using ir::ValueId;
using S = runtime::KernelSpecialization;

constexpr int64_t kDraws = 100003;

// The network's outputs on the GPU, after checking each equals the reference's bytes.
std::vector<ir::TensorData> gpu_equals_reference(const OpNetwork& on, S strategy, const std::string& label) {
  SCOPED_TRACE(label);
  std::vector<ir::TensorData> got = run_on_gpu(on.net, on.feeds, plan::Precision::kFloat32, strategy),
                              want = reference::run(on.net, on.feeds);
  EXPECT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size() && i < want.size(); ++i) {
    EXPECT_EQ(got[i].dtype, want[i].dtype) << "output " << i;
    EXPECT_EQ(got[i].dims, want[i].dims) << "output " << i;
    bool same = got[i].data.size() == want[i].data.size() &&
                std::memcmp(got[i].data.data(), want[i].data.data(), got[i].data.size()) == 0;
    EXPECT_TRUE(same) << "output " << i << " differs from the reference";
  }
  return got;
}

struct Moments {
  double mean = 0, variance = 0;
};
Moments moments(const ir::TensorData& t) {
  std::vector<double> v = ir::read_doubles(t);
  Moments m;
  for (double x : v) m.mean += x / double(v.size());
  for (double x : v) m.variance += (x - m.mean) * (x - m.mean) / double(v.size() - 1);
  return m;
}

class GpuRandom : public ::testing::TestWithParam<std::tuple<DType, S>> {};

// RandomUniform on [-2, 3) and RandomNormal of mean 1.5 and scale 2, seeded,
// 100003 draws; their Like forms over a 7 x 33, a 1 and an empty input
// without seeds (keyed by the nodes' names).
TEST_P(GpuRandom, UniformAndNormalEqualTheReference) {
  KILN_REQUIRE_GPU();
  auto [dtype, strategy] = GetParam();
  OpNetwork on;
  ir::Attributes uniform = attrs({{"shape", std::vector<int64_t>{kDraws}}, {"low", -2.0}, {"high", 3.0}, {"seed", 7.0},
                                  {"dtype", int64_t(dtype)}});
  ir::Attributes normal = attrs({{"shape", std::vector<int64_t>{kDraws}}, {"mean", 1.5}, {"scale", 2.0}, {"seed", 3.0},
                                 {"dtype", int64_t(dtype)}});
  on.net.add_output(on.net.add_op1(OpKind::kRandomUniform, {}, uniform, "uniform"));
  on.net.add_output(on.net.add_op1(OpKind::kRandomNormal, {}, normal, "normal"));
  std::mt19937 rng(31);
  for (const std::vector<int64_t>& dims : {std::vector<int64_t>{7, 33}, std::vector<int64_t>{1}, std::vector<int64_t>{0, 5}}) {
    ValueId like = on.input(str("like", dims[0]), random_tensor(dtype, dims, rng));
    for (OpKind op : {OpKind::kRandomUniformLike, OpKind::kRandomNormalLike})
      on.net.add_output(on.net.add_op1(op, {like}, {}, str(ir::op_name(op), "_", dims[0])));
  }
  on.net.finalize();
  std::vector<ir::TensorData> got = gpu_equals_reference(on, strategy, str(dtype_name(dtype), " ", spec_name(strategy)));
  ASSERT_EQ(got.size(), 8u);
  for (double x : ir::read_doubles(got[0])) ASSERT_TRUE(x >= -2 && x < 3) << x;
  Moments u = moments(got[0]), n = moments(got[1]);
  EXPECT_NEAR(u.mean, 0.5, 5 * std::sqrt(25.0 / 12 / kDraws));
  EXPECT_NEAR(u.variance, 25.0 / 12, 0.05);
  EXPECT_NEAR(n.mean, 1.5, 5 * 2.0 / std::sqrt(double(kDraws)) + 0.01);  // + the output type's rounding (bfloat16: 2^-8)
  EXPECT_NEAR(n.variance, 4.0, 5 * 4.0 * std::sqrt(2.0 / kDraws) + 0.05);
}

// Bernoulli of probabilities 0, 1 and 0.3 (mixed), into the input's type,
// bool and int64; seeded and keyed by name.
TEST_P(GpuRandom, BernoulliEqualsTheReference) {
  KILN_REQUIRE_GPU();
  auto [dtype, strategy] = GetParam();
  std::vector<double> p(static_cast<size_t>(kDraws));
  for (size_t i = 0; i < p.size(); ++i) p[i] = i % 4 == 0 ? 0.0 : i % 4 == 1 ? 1.0 : 0.3;
  OpNetwork on;
  ValueId in = on.input("p", reference::make_tensor(dtype, {kDraws}, p));
  on.net.add_output(on.net.add_op1(OpKind::kBernoulli, {in}, attrs({{"seed", 0.0}}), "same_type"));
  on.net.add_output(on.net.add_op1(OpKind::kBernoulli, {in}, attrs({{"dtype", int64_t(DType::kBool)}}), "to_bool"));
  on.net.add_output(on.net.add_op1(OpKind::kBernoulli, {in}, attrs({{"dtype", int64_t(DType::kInt64)}, {"seed", 2.0}}), "to_int64"));
  on.net.finalize();
  std::vector<ir::TensorData> got = gpu_equals_reference(on, strategy, str(dtype_name(dtype), " ", spec_name(strategy)));
  for (const ir::TensorData& t : got) {
    std::vector<double> v = ir::read_doubles(t);
    double ones = 0;
    for (size_t i = 0; i < v.size(); ++i) {
      ASSERT_TRUE(v[i] == 0 || v[i] == 1) << v[i];
      if (i % 4 < 2) {
        ASSERT_EQ(v[i], p[i]) << "element " << i;
      } else {
        ones += v[i];
      }
    }
    double n = double(kDraws) / 2;
    EXPECT_NEAR(ones / n, 0.3, 5 * std::sqrt(0.3 * 0.7 / n));
  }
}

// Multinomial of 7 rows of 33 random logits and a row where one class has
// all the mass, 1000 samples a row, int32 and int64.
TEST_P(GpuRandom, MultinomialEqualsTheReference) {
  KILN_REQUIRE_GPU();
  auto [dtype, strategy] = GetParam();
  std::mt19937 rng(47);
  ir::TensorData logits = random_tensor(DType::kFloat64, {8, 33}, rng, 0.0, 3.0);
  std::vector<double> v = ir::read_doubles(logits);
  for (int64_t j = 0; j < 33; ++j) v[size_t(7 * 33 + j)] = j == 5 ? 0.0 : -INFINITY;
  OpNetwork on;
  ValueId in = on.input("logits", reference::make_tensor(dtype, {8, 33}, v));
  on.net.add_output(on.net.add_op1(OpKind::kMultinomial, {in}, attrs({{"sample_size", int64_t(1000)}, {"seed", 9.0}}), "int32"));
  on.net.add_output(on.net.add_op1(OpKind::kMultinomial, {in}, attrs({{"sample_size", int64_t(1000)}, {"dtype", int64_t(DType::kInt64)}}),
                                   "int64"));
  on.net.finalize();
  std::vector<ir::TensorData> got = gpu_equals_reference(on, strategy, str(dtype_name(dtype), " ", spec_name(strategy)));
  for (const ir::TensorData& t : got) {
    std::vector<int64_t> classes = ir::read_ints(t);
    for (size_t i = 0; i < classes.size(); ++i) {
      ASSERT_TRUE(classes[i] >= 0 && classes[i] < 33) << classes[i];
      if (i >= 7 * 1000) {
        ASSERT_EQ(classes[i], 5) << "sample " << i;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    DtypesAndSpecialization, GpuRandom,
    ::testing::Combine(::testing::Values(DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kFloat64),
                       ::testing::Values(S::kNone, S::kEager)),
    [](const auto& info) { return std::string(dtype_name(std::get<0>(info.param))) + "_" + spec_name(std::get<1>(info.param)); });

}  // namespace
}  // namespace kiln::testing
