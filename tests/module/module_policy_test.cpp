// The module layer's behavior matrix, decided without a GPU.
#include <gtest/gtest.h>

#include "module_policy.h"

namespace kiln::module {
namespace {

EngineFacts engine(const std::string& name, bool native, bool lazy = false, bool dynamic = false, bool capturable = true) {
  return EngineFacts{name, native, lazy, dynamic, capturable};
}

TEST(ModulePolicy, StandardRunsEachEngineAsConfigured) {
  ModulePlan p = plan_module(CudagraphsMode::kStandard, {engine("a", true), engine("b", false)});
  EXPECT_FALSE(p.outer_capture);
  EXPECT_EQ(p.engine_native, (std::vector<bool>{true, false}));
  EXPECT_TRUE(p.warnings.empty());
  EXPECT_TRUE(p.error.empty());
}

TEST(ModulePolicy, SubgraphSwitchesDisabledEnginesOnWithAWarningEach) {
  ModulePlan p = plan_module(CudagraphsMode::kSubgraph, {engine("a", true), engine("b", false)});
  EXPECT_FALSE(p.outer_capture);
  EXPECT_EQ(p.engine_native, (std::vector<bool>{true, true}));
  ASSERT_EQ(p.warnings.size(), 1u);
  EXPECT_NE(p.warnings[0].find("engine 'b'"), std::string::npos) << p.warnings[0];
  EXPECT_NE(p.warnings[0].find("whole_graph_capture"), std::string::npos) << p.warnings[0];
}

TEST(ModulePolicy, WholeGraphCapturesOnceWithEngineGraphsOff) {
  ModulePlan p = plan_module(CudagraphsMode::kWholeGraph, {engine("a", true), engine("b", false, true, false)});
  EXPECT_TRUE(p.outer_capture);
  EXPECT_TRUE(p.error.empty());
  EXPECT_EQ(p.engine_native, (std::vector<bool>{false, false}));
}

TEST(ModulePolicy, WholeGraphRefusesALazyDynamicEngineByName) {
  ModulePlan p = plan_module(CudagraphsMode::kWholeGraph, {engine("a", true), engine("encoder", false, true, true)});
  EXPECT_FALSE(p.outer_capture);
  EXPECT_NE(p.error.find("engine 'encoder'"), std::string::npos) << p.error;
  EXPECT_NE(p.error.find("lazy"), std::string::npos) << p.error;
}

TEST(ModulePolicy, WholeGraphRefusesAnEngineThatCannotBeCapturedOnTheStream) {
  ModulePlan p = plan_module(CudagraphsMode::kWholeGraph, {engine("a", true, false, false, false)});
  EXPECT_NE(p.error.find("engine 'a'"), std::string::npos) << p.error;
  EXPECT_NE(p.error.find("legacy default stream"), std::string::npos) << p.error;
}

TEST(ModulePolicy, WholeGraphRefusesADataDependentEngineNamingItsTensor) {
  EngineFacts e = engine("detector", true, false, false, false);
  e.capture_obstacle = "tensor 'boxes' (node 'nz', NonZero) has a size that depends on data: enqueue reads it back and waits for the GPU";
  ModulePlan p = plan_module(CudagraphsMode::kWholeGraph, {engine("a", true, false, false, true), e});
  EXPECT_FALSE(p.outer_capture);
  EXPECT_NE(p.error.find("engine 'detector'"), std::string::npos) << p.error;
  EXPECT_NE(p.error.find("tensor 'boxes'"), std::string::npos) << p.error;
  EXPECT_EQ(p.error.find("legacy default stream"), std::string::npos) << p.error;
}

TEST(ModulePolicy, ModeNamesRoundTrip) {
  for (auto m : {CudagraphsMode::kStandard, CudagraphsMode::kSubgraph, CudagraphsMode::kWholeGraph})
    EXPECT_EQ(parse_cudagraphs_mode(cudagraphs_mode_name(m)), m);
  EXPECT_FALSE(parse_cudagraphs_mode("sometimes"));
}

}  // namespace
}  // namespace kiln::module
