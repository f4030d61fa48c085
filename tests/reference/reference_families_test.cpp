// Each family file of the reference (src/reference/<family>.cpp) has the
// kernels of its own ops and of no other family's, and has_kernel answers
// from those files.
#include <gtest/gtest.h>

#include "kernels.h"

namespace kiln::reference {
namespace {

struct FamilyFile {
  ir::OpFamily family;
  Kernel (*kernel)(ir::OpKind);
};

const FamilyFile kFiles[] = {
    {ir::OpFamily::kElementwise, elementwise_kernel}, {ir::OpFamily::kLinalg, linalg_kernel},
    {ir::OpFamily::kConv, conv_kernel},               {ir::OpFamily::kPool, pool_kernel},
    {ir::OpFamily::kNormalization, normalization_kernel}, {ir::OpFamily::kReduce, reduce_kernel},
    {ir::OpFamily::kMovement, movement_kernel},       {ir::OpFamily::kGenerator, generator_kernel},
    {ir::OpFamily::kVision, vision_kernel},       {ir::OpFamily::kRecurrent, recurrent_kernel},
    {ir::OpFamily::kControlFlow, control_flow_kernel},
    {ir::OpFamily::kText, text_kernel},
    {ir::OpFamily::kMl, ml_kernel},
};

TEST(ReferenceFamilies, EveryFamilyHasAFile) {
  ASSERT_EQ(std::size(kFiles), size_t(ir::kOpFamilyCount));
  for (int f = 0; f < ir::kOpFamilyCount; ++f) EXPECT_EQ(kFiles[f].family, ir::OpFamily(f));
}

TEST(ReferenceFamilies, EachFileHasTheKernelsOfItsOwnOpsOnly) {
  for (int i = 0; i < ir::op_count(); ++i) {
    auto op = ir::OpKind(i);
    for (const FamilyFile& f : kFiles)
      EXPECT_EQ(f.kernel(op) != nullptr, f.family == ir::family_of(op))
          << ir::op_name(op) << " in src/reference/" << ir::family_name(f.family) << ".cpp";
    EXPECT_TRUE(has_kernel(op)) << ir::op_name(op);
  }
}

}  // namespace
}  // namespace kiln::reference
