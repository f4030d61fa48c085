// The random ops' numbers (kiln/ir/random_math.h) and reference kernels:
// Philox-4x32-10 against Random123's known answers, kiln's own log and exp
// against the C library's, each distribution's support and moments over
// 10^5 draws (within 5 standard errors), and keys: a seed gives the same
// numbers every run, another seed or another node name others.
#include <gtest/gtest.h>

#include <cmath>

#include "kiln/error.h"
#include "kiln/ir/network.h"
#include "kiln/ir/shape_inference.h"
#include "kiln/ir/random.h"
#include "kiln/reference.h"

namespace kiln::reference {
namespace {

using ir::OpKind;

ir::Attributes attrs(std::initializer_list<std::pair<const char*, ir::AttrValue>> list) {
  ir::Attributes a;
  for (auto& [name, value] : list) a.set(name, value);
  return a;
}

// One node named `name` over inputs "in0", ...; its output.
Tensor run_node(OpKind op, const std::vector<Tensor>& inputs, const ir::Attributes& a, const std::string& name = "node") {
  ir::Network net;
  std::map<std::string, Tensor> feeds;
  std::vector<ir::ValueId> in;
  for (size_t i = 0; i < inputs.size(); ++i) {
    std::string input = str("in", i);
    in.push_back(net.add_input(input, inputs[i].dtype, ir::Shape(inputs[i].dims.begin(), inputs[i].dims.end())));
    feeds[input] = inputs[i];
  }
  net.add_output(net.add_op1(op, in, a, name));
  net.finalize();
  return run(net, feeds)[0];
}

struct Moments {
  double mean = 0, variance = 0;
};
Moments moments(const std::vector<double>& v) {
  Moments m;
  for (double x : v) m.mean += x / double(v.size());
  for (double x : v) m.variance += (x - m.mean) * (x - m.mean) / double(v.size() - 1);
  return m;
}

constexpr int64_t kDraws = 100000;

TEST(RandomNumbers, PhiloxMatchesRandom123sKnownAnswers) {
  struct Case {
    KilnPhilox counter;
    unsigned int k0, k1;
    KilnPhilox want;
  };
  const Case cases[] = {
      {{{0, 0, 0, 0}}, 0, 0, {{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}}},
      {{{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}}, 0xffffffff, 0xffffffff, {{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}}},
      {{{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}}, 0xa4093822, 0x299f31d0, {{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}}},
  };
  for (const Case& c : cases) {
    KilnPhilox got = kiln_philox4x32_10(c.counter, c.k0, c.k1);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(got.v[i], c.want.v[i]) << "word " << i << " of counter " << std::hex << c.counter.v[0];
  }
}

TEST(RandomNumbers, OwnLogAndExpAreWithinAFewUlpsOfTheLibrarys) {
  for (double x = 1e-300; x < 1; x *= 1.001) EXPECT_NEAR(kiln_random_log(x), std::log(x), 4e-16 * std::fabs(std::log(x))) << x;
  for (double x = -700; x <= 0; x += 0.0137) EXPECT_NEAR(kiln_random_exp(x), std::exp(x), 4e-16 * std::exp(x)) << x;
  EXPECT_EQ(kiln_random_exp(-800), 0);
  EXPECT_EQ(kiln_random_exp(-INFINITY), 0);
  EXPECT_EQ(kiln_random_exp(NAN), 0);
}

TEST(ReferenceRandom, UniformStaysInsideLowHighAtEveryPrecision) {
  for (DType dtype : {DType::kFloat16, DType::kBFloat16, DType::kFloat32, DType::kFloat64}) {
    SCOPED_TRACE(dtype_name(dtype));
    Tensor t = run_node(OpKind::kRandomUniform, {},
                        attrs({{"shape", std::vector<int64_t>{kDraws}}, {"low", -2.0}, {"high", 3.0}, {"seed", 7.0},
                               {"dtype", int64_t(dtype)}}));
    ASSERT_EQ(t.dtype, dtype);
    std::vector<double> v = ir::read_doubles(t);
    // Without redrawing, float16 and bfloat16 would round up to 3 about once in 5000 and 640 draws.
    for (double x : v) ASSERT_TRUE(x >= -2 && x < 3) << x;
    Moments m = moments(v);
    double se = std::sqrt(25.0 / 12 / kDraws);  // the variance of U(-2, 3) is 5^2 / 12
    EXPECT_NEAR(m.mean, 0.5, 5 * se);
    EXPECT_NEAR(m.variance, 25.0 / 12, 0.05);
  }
}

TEST(ReferenceRandom, NormalHasItsMeanAndScale) {
  Tensor t = run_node(OpKind::kRandomNormal, {},
                      attrs({{"shape", std::vector<int64_t>{kDraws}}, {"mean", 1.5}, {"scale", 2.0}, {"seed", 3.0},
                             {"dtype", int64_t(DType::kFloat64)}}));
  Moments m = moments(ir::read_doubles(t));
  EXPECT_NEAR(m.mean, 1.5, 5 * 2.0 / std::sqrt(double(kDraws)));
  EXPECT_NEAR(m.variance, 4.0, 5 * 4.0 * std::sqrt(2.0 / kDraws));  // the variance's standard error: sigma^2 sqrt(2 / n)
}

TEST(ReferenceRandom, LikeFormsTakeTheInputsShapeAndDtype) {
  Tensor in = make_tensor(DType::kFloat16, {3, 5}, std::vector<double>(15, 0.0));
  Tensor u = run_node(OpKind::kRandomUniformLike, {in}, {}), n = run_node(OpKind::kRandomNormalLike, {in}, {});
  EXPECT_EQ(u.dims, (std::vector<int64_t>{3, 5}));
  EXPECT_EQ(u.dtype, DType::kFloat16);
  EXPECT_EQ(n.dtype, DType::kFloat16);
  for (double x : ir::read_doubles(u)) EXPECT_TRUE(x >= 0 && x < 1) << x;
}

TEST(ReferenceRandom, BernoulliDrawsOnesWithTheirProbability) {
  std::vector<double> p(kDraws);
  for (size_t i = 0; i < p.size(); ++i) p[i] = i % 4 == 0 ? 0.0 : i % 4 == 1 ? 1.0 : 0.3;
  Tensor t = run_node(OpKind::kBernoulli, {make_tensor(DType::kFloat32, {kDraws}, p)}, attrs({{"dtype", int64_t(DType::kInt64)}}));
  std::vector<double> v = ir::read_doubles(t);
  double ones = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    ASSERT_TRUE(v[i] == 0 || v[i] == 1) << v[i];
    if (p[i] == 0 || p[i] == 1) {
      ASSERT_EQ(v[i], p[i]) << "element " << i;
    }
    if (i % 4 >= 2) ones += v[i];
  }
  double n = kDraws / 2.0;
  EXPECT_NEAR(ones / n, 0.3, 5 * std::sqrt(0.3 * 0.7 / n));
}

TEST(ReferenceRandom, MultinomialDrawsClassesByTheirSoftmax) {
  // Row 0: classes 1 and 2 three times as likely as class 0, class 3 never (-inf); row 1: only class 2.
  double l3 = std::log(3.0);
  Tensor logits = make_tensor(DType::kFloat32, {2, 4}, {0, l3, l3, -INFINITY, -INFINITY, -INFINITY, 5, -INFINITY});
  Tensor t = run_node(OpKind::kMultinomial, {logits}, attrs({{"sample_size", kDraws}, {"seed", 11.0}}));
  ASSERT_EQ(t.dtype, DType::kInt32);
  ASSERT_EQ(t.dims, (std::vector<int64_t>{2, kDraws}));
  std::vector<int64_t> v = ir::read_ints(t);
  double count[4] = {};
  for (int64_t s = 0; s < kDraws; ++s) {
    ASSERT_GE(v[size_t(s)], 0);
    ASSERT_LT(v[size_t(s)], 3);
    count[v[size_t(s)]] += 1;
    ASSERT_EQ(v[size_t(kDraws + s)], 2);
  }
  double se = std::sqrt(1.0 / 7 * 6.0 / 7 / kDraws);
  EXPECT_NEAR(count[0] / kDraws, 1.0 / 7, 5 * se);
  EXPECT_NEAR(count[1] / kDraws, 3.0 / 7, 5 * std::sqrt(3.0 / 7 * 4.0 / 7 / kDraws));
}

TEST(ReferenceRandom, TheSeedOrElseTheNodesNameDecidesTheNumbers) {
  auto uniform = [](ir::Attributes a, const std::string& name) {
    a.set("shape", std::vector<int64_t>{64});
    return ir::read_doubles(run_node(OpKind::kRandomUniform, {}, a, name));
  };
  EXPECT_EQ(uniform(attrs({{"seed", 5.0}}), "a"), uniform(attrs({{"seed", 5.0}}), "b"));
  EXPECT_NE(uniform(attrs({{"seed", 5.0}}), "a"), uniform(attrs({{"seed", 6.0}}), "a"));
  EXPECT_EQ(uniform({}, "a"), uniform({}, "a"));
  EXPECT_NE(uniform({}, "a"), uniform({}, "b"));
}

}  // namespace
}  // namespace kiln::reference
