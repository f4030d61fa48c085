// Shapes the runtime is asked for are checked against the plan's ranges
// before anything is compiled or launched; these run without a GPU through
// warm_cache, which takes the same checks as a context's first call at a shape.
#include <gtest/gtest.h>

#include "../core/log_capture.h"
#include "kiln/builder.h"
#include "kiln/error.h"
#include "kiln/ir/shape_inference.h"
#include "kiln/reference.h"
#include "kiln/runtime.h"

namespace kiln::runtime {
namespace {

using ir::Dim;
using ir::OpKind;

// x[n,8] and y[2*n,8]: Concat(x, x) + y, then a MatMul so values live in the arena.
ir::Network two_input_network() {
  ir::Network net;
  auto x = net.add_input("x", DType::kFloat32, {Dim::symbol("n"), Dim(8)});
  auto y = net.add_input("y", DType::kFloat32, {Dim::symbol("n") * Dim(2), Dim(8)});
  auto w = net.add_weight("w", reference::make_tensor(DType::kFloat32, {8, 8}, std::vector<double>(64, 0.5)));
  ir::Attributes axis;
  axis.set("axis", int64_t(0));
  auto both = net.add_op1(OpKind::kConcat, {x, x}, axis);
  net.add_output(net.add_op1(OpKind::kRelu, {net.add_op1(OpKind::kMatMul, {net.add_op1(OpKind::kAdd, {both, y}), w})}));
  net.set_dim_range("n", {1, 2, 8});
  net.finalize();
  return net;
}

plan::Plan two_input_plan() { return builder::build(two_input_network(), {}, "two inputs"); }

// The error warm_cache raises for these shapes, having compiled nothing.
Error refused(const plan::Plan& p, const InputShapes& shapes) {
  RuntimeCache cache(compiler_version());
  std::vector<std::string> progress;
  try {
    warm_cache(p, 90, cache, [&](const std::string& line) { progress.push_back(line); }, {shapes});
  } catch (const Error& e) {
    EXPECT_TRUE(progress.empty()) << "compiled before refusing: " << progress[0];
    EXPECT_EQ(cache.entry_count(), 0u);
    return e;
  }
  ADD_FAILURE() << "the shapes were accepted";
  return Error(ErrorCode::kInternal, "");
}

TEST(RuntimeShapes, ShapesOutsideTheRangesAreRefusedBeforeCompiling) {
  plan::Plan p = two_input_plan();
  Error e = refused(p, {{"x", {9, 8}}, {"y", {18, 8}}});
  EXPECT_EQ(e.code(), ErrorCode::kShapeError);
  EXPECT_NE(std::string(e.what()).find("input 'x' dim 0 ('n') is 9, outside the range [1, 8] of 'n' in profile 0 (the plan's "
                                       "only profile)"),
            std::string::npos)
      << e.what();
  EXPECT_EQ(refused(p, {{"x", {0, 8}}, {"y", {0, 8}}}).code(), ErrorCode::kShapeError);
  EXPECT_EQ(refused(p, {{"x", {2, 9}}, {"y", {4, 8}}}).code(), ErrorCode::kShapeError);
  EXPECT_EQ(refused(p, {{"x", {2, 8, 1}}, {"y", {4, 8}}}).code(), ErrorCode::kShapeError);
  EXPECT_EQ(refused(p, {{"x", {2, 8}}}).code(), ErrorCode::kInvalidArgument);  // y not set
}

TEST(RuntimeShapes, AnInputDimThatIsAnExpressionMustAgreeWithTheOthers) {
  plan::Plan p = two_input_plan();
  // y is [2*n, 8]: with n = 3 from x it must be [6, 8]; 7 rows would be read as 6.
  Error e = refused(p, {{"x", {3, 8}}, {"y", {7, 8}}});
  EXPECT_EQ(e.code(), ErrorCode::kShapeError);
  EXPECT_NE(std::string(e.what()).find("was set to [7,8] but the other inputs make it [6,8]"), std::string::npos) << e.what();
  // Its size is not n's: n = 5 (in n's range [1, 8]) makes y [10, 8].
  EXPECT_NO_THROW(plan::check_input_shape(p, 0, "y", {10, 8}));
}

// x[n,8] and y[2*n,8] with two profiles: n in 1..4 and 5..16.
plan::Plan two_profile_plan() {
  ir::Network net = two_input_network();
  builder::BuildOptions options;
  builder::add_input_profile(net, "x", {1, 8}, {2, 8}, {4, 8}, options, 0);
  builder::add_input_profile(net, "x", {5, 8}, {8, 8}, {16, 8}, options, 1);
  return builder::build(net, options, "two profiles");
}

TEST(RuntimeShapes, AShapeOutsideTheSelectedProfileNamesTheProfileThatAcceptsIt) {
  plan::Plan p = two_profile_plan();
  ASSERT_EQ(p.profiles.size(), 2u);
  EXPECT_NO_THROW(plan::check_input_shape(p, 0, "x", {4, 8}));
  EXPECT_NO_THROW(plan::check_input_shape(p, 1, "x", {16, 8}));
  try {
    plan::check_input_shape(p, 0, "x", {9, 8});
    FAIL() << "profile 0 took n = 9";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kShapeError);
    EXPECT_NE(std::string(e.what()).find("input 'x' dim 0 ('n') is 9, outside the range [1, 4] of 'n' in profile 0; profile 1 "
                                         "accepts this shape of 'x' ([9,8]): select profile 1"),
              std::string::npos)
        << e.what();
  }
  try {
    plan::check_input_shape(p, 1, "x", {17, 8});
    FAIL() << "profile 1 took n = 17";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("outside the range [5, 16] of 'n' in profile 1; no profile of the plan accepts it ('n' "
                                         "ranges over [1, 4] in profile 0, [5, 16] in profile 1)"),
              std::string::npos)
        << e.what();
  }
  try {
    plan::check_input_shape(p, 2, "x", {2, 8});
    FAIL() << "a third profile";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("optimization profile 2 does not exist: the plan has 2 profiles (0 to 1)"),
              std::string::npos)
        << e.what();
  }
  EXPECT_TRUE(plan::profile_accepts(p, 1, "x", {5, 8}));
  EXPECT_FALSE(plan::profile_accepts(p, 0, "x", {5, 8}));
  EXPECT_FALSE(plan::profile_accepts(p, 1, "z", {5, 8}));
  EXPECT_FALSE(plan::profile_accepts(p, -1, "x", {5, 8}));
}

// warm_cache takes a set of shapes that any one profile accepts.
TEST(RuntimeShapes, WarmCacheTakesShapesOfEveryProfile) {
  plan::Plan p = two_profile_plan();
  RuntimeCache cache(compiler_version());
  std::vector<std::string> lines;
  auto say = [&](const std::string& line) { lines.push_back(line); };
  EXPECT_GT(warm_cache(p, 90, cache, say, {{{"x", {2, 8}}, {"y", {4, 8}}}, {{"x", {12, 8}}, {"y", {24, 8}}}}), 0);
  Error e = refused(p, {{"x", {17, 8}}, {"y", {34, 8}}});
  EXPECT_NE(std::string(e.what()).find("in profile 0; no profile of the plan accepts it"), std::string::npos) << e.what();
}

// The guard a context runs when it prepares a shape: whatever the ranges say,
// no value may outgrow the slot planned for it at the largest shapes.
TEST(RuntimeShapes, AValueThatWouldOutgrowItsSlotIsRefused) {
  plan::Plan p = two_input_plan();
  auto dims_at = [&](int64_t n) {
    std::vector<std::vector<int64_t>> dims;
    for (const ir::Value& v : p.network.values()) dims.push_back(*ir::evaluate_dims(v.shape, {{"n", n}}));
    return dims;
  };
  EXPECT_NO_THROW(plan::check_arena_fits(p, dims_at(8)));
  EXPECT_NO_THROW(plan::check_arena_fits(p, dims_at(1)));
  try {
    plan::check_arena_fits(p, dims_at(9));
    FAIL() << "n = 9 fit the slots planned for n = 8";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kShapeError);
    EXPECT_NE(std::string(e.what()).find("arena slot"), std::string::npos) << e.what();
  }
}

// Compiling for sm_90 needs no GPU: warm_cache's progress goes to the log as
// info, unless the caller passes a callback of its own.
TEST(RuntimeShapes, CompileProgressGoesToTheLogUnlessACallbackTakesIt) {
  plan::Plan p = two_input_plan();
  RuntimeCache cache(compiler_version());
  {
    testing::LogCapture log(Severity::kInfo);
    warm_cache(p, 90, cache);
    EXPECT_GE(log.count(Severity::kInfo, "kernels for sm_90"), 1u) << log.text();
    EXPECT_EQ(log.count(Severity::kInfo, "kernels from the runtime cache"), 1u) << log.text();
  }
  testing::LogCapture log(Severity::kVerbose);
  std::vector<std::string> lines;
  warm_cache(p, 90, cache, [&](const std::string& line) { lines.push_back(line); }, {{{"x", {2, 8}}, {"y", {4, 8}}}});
  EXPECT_TRUE(log.entries().empty()) << log.text();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_NE(lines[1].find("specialized for x:2x8,y:4x8"), std::string::npos) << lines[1];
}

// Half-precision attention takes the tensor-core kernel from sm_80 on (mma.sync,
// cp.async) and the scalar kernel before: each compiles for its architecture,
// generic and specialized for a length.
TEST(RuntimeShapes, AttentionKernelsCompileForTheirArchitecture) {
  ir::Network net;
  auto qkv = net.add_input("qkv", DType::kFloat32, {Dim(1), Dim::symbol("seq"), Dim(3), Dim(6), Dim(64)});
  ir::Attributes a;
  const char* views[] = {"q_view", "k_view", "v_view"};
  for (int64_t i = 0; i < 3; ++i)  // part i of the projection as [B, H, S, D]
    a.set(views[i], std::vector<int64_t>{int64_t(ir::ViewStep::kPick), 3, 2, i, 0, int64_t(ir::ViewStep::kTranspose), 4, 0, 2, 1, 3});
  a.set("out_perm", std::vector<int64_t>{0, 2, 1, 3});
  a.set("scale", 0.125);
  net.add_output(net.add_op1(OpKind::kAttention, {qkv, qkv, qkv}, a, "attention"));
  net.set_dim_range("seq", {1, 197, 512});
  net.finalize();
  for (plan::Precision precision : {plan::Precision::kFloat16, plan::Precision::kBFloat16}) {
    builder::BuildOptions options;
    options.precision = precision;
    plan::Plan p = builder::build(net, options, "attention");
    for (int arch : {75, 80, 90}) {
      SCOPED_TRACE(str(plan::precision_name(precision), " sm_", arch));
      RuntimeCache cache(compiler_version());
      EXPECT_NO_THROW(warm_cache(p, arch, cache, {}, {{{"qkv", {1, 197, 3, 6, 64}}}}));
    }
  }
}

// ScatterND's indices and updates with symbols of their own: shape inference
// cannot compare them, so the runtime checks at each shape that the updates
// fit the indices (the kernel addresses memory by both).
TEST(RuntimeShapes, ScatterUpdatesMustFitTheIndicesAtEachShape) {
  ir::Network net;
  auto x = net.add_input("x", DType::kFloat32, {Dim(4), Dim(3)});
  auto i = net.add_input("i", DType::kInt64, {Dim::symbol("n"), Dim(1)});
  auto u = net.add_input("u", DType::kFloat32, {Dim::symbol("m"), Dim(3)});
  net.add_output(net.add_op1(OpKind::kScatterND, {x, i, u}, {}, "scatter"));
  net.set_dim_range("n", {1, 2, 4});
  net.set_dim_range("m", {1, 2, 4});
  net.finalize();
  plan::Plan p = builder::build(net, {}, "scatter");
  RuntimeCache cache(compiler_version());
  EXPECT_NO_THROW(warm_cache(p, 90, cache, {}, {{{"x", {4, 3}}, {"i", {2, 1}}, {"u", {2, 3}}}}));
  try {
    warm_cache(p, 90, cache, {}, {{{"x", {4, 3}}, {"i", {2, 1}}, {"u", {3, 3}}}});
    ADD_FAILURE() << "updates of 3 rows for 2 indices were accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kShapeError);
    EXPECT_NE(std::string(e.what()).find("node 'scatter' (ScatterND): updates [3,3] should be [2,3]"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace kiln::runtime
