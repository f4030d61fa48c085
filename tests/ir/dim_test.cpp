#include <gtest/gtest.h>

#include <limits>

#include "kiln/error.h"
#include "kiln/ir/dim.h"

namespace kiln::ir {
namespace {

TEST(Dim, ConstantArithmetic) {
  EXPECT_EQ(Dim(3) + Dim(4), Dim(7));
  EXPECT_EQ(Dim(3) * Dim(4), Dim(12));
  EXPECT_EQ(floor_div(Dim(-7), Dim(2)), Dim(-4));
  EXPECT_EQ(ceil_div(Dim(7), Dim(2)), Dim(4));
  EXPECT_EQ(dim_max(Dim(3), Dim(9)), Dim(9));
  EXPECT_EQ(floor_mod(Dim(-7), Dim(3)), Dim(2));
}

TEST(Dim, SymbolicCanonicalForm) {
  Dim n = Dim::symbol("N"), s = Dim::symbol("S");
  EXPECT_EQ(n * s, s * n);
  EXPECT_EQ(n + n, Dim(2) * n);
  EXPECT_EQ(n - n, Dim(0));
  EXPECT_TRUE((n - n).is_constant());
  EXPECT_EQ((n * s * Dim(512)).to_string(), "512*N*S");
  EXPECT_EQ((n + Dim(3)).to_string(), "N + 3");
}

TEST(Dim, ExactDivisionSimplifies) {
  Dim n = Dim::symbol("N"), s = Dim::symbol("S");
  EXPECT_EQ(floor_div(n * s * Dim(512), Dim(512)), n * s);
  EXPECT_EQ(floor_div(n * s * Dim(512), n * Dim(8)), Dim(64) * s);
  Dim opaque = floor_div(n + Dim(1), Dim(2));
  EXPECT_FALSE(opaque.is_constant());
  EXPECT_EQ(opaque.evaluate({{"N", 6}}), 3);
}

TEST(Dim, LowerBoundsAssumeSizesAreNeverNegative) {
  Dim n = Dim::symbol("N"), s = Dim::symbol("S");
  EXPECT_EQ(dim_lower_bound(Dim(-3)), -3);
  EXPECT_EQ(dim_lower_bound(n), 0);
  EXPECT_EQ(dim_lower_bound(n * s * Dim(4) + Dim(2)), 2);
  EXPECT_EQ(dim_lower_bound(dim_max(n, Dim(5)) + Dim(1)), 6);
  EXPECT_EQ(dim_lower_bound(floor_div(n + Dim(7), Dim(2))), 3);
  EXPECT_EQ(dim_lower_bound(floor_mod(n, Dim(3))), 0);
  EXPECT_EQ(dim_lower_bound(n - s), std::nullopt);  // could be anything
  EXPECT_EQ(dim_lower_bound(Dim(2) - n), std::nullopt);
  EXPECT_EQ(dim_lower_bound(dim_min(n, Dim(0) - s)), std::nullopt);
}

TEST(Dim, EvaluateNeedsEveryBinding) {
  Dim e = Dim::symbol("N") * Dim(3) + Dim::symbol("S");
  EXPECT_EQ(e.evaluate({{"N", 2}, {"S", 5}}), 11);
  EXPECT_FALSE(e.evaluate({{"N", 2}}).has_value());
  std::set<std::string> symbols;
  e.collect_symbols(symbols);
  EXPECT_EQ(symbols, (std::set<std::string>{"N", "S"}));
}

TEST(Dim, OverflowIsAnError) {
  Dim big(std::numeric_limits<int64_t>::max() / 2);
  EXPECT_THROW(big * Dim(3), Error);
  EXPECT_THROW(checked_numel({int64_t(1) << 40, int64_t(1) << 40}), Error);
  EXPECT_THROW(floor_div(Dim(1), Dim(0)), Error);
}

TEST(Dim, ConstantOfSymbolicThrows) {
  EXPECT_THROW(Dim::symbol("N").constant(), Error);
  EXPECT_EQ(shape_to_string({Dim(1), Dim::symbol("N")}), "[1,N]");
}

}  // namespace
}  // namespace kiln::ir
