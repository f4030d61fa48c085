// Each family file (src/ir/ops/<family>.cpp) holds the schemas and the shape
// inference of its own ops and of no other family's: schema.cpp and
// shape_inference.cpp reach a family's file only for ops family_of puts there,
// so a case in another file would be dead code, and an op its own file lacks
// must be an internal error that names the op and that file.
#include <gtest/gtest.h>

#include "ops/family.h"

namespace kiln::ir {
namespace {

struct FamilyFile {
  OpFamily family;
  OpSchema (*schema)(OpKind);
  void (*infer)(Ctx&);
};

const FamilyFile kFiles[] = {
    {OpFamily::kElementwise, elementwise_schema, infer_elementwise},
    {OpFamily::kLinalg, linalg_schema, infer_linalg},
    {OpFamily::kConv, conv_schema, infer_conv},
    {OpFamily::kPool, pool_schema, infer_pool},
    {OpFamily::kNormalization, normalization_schema, infer_normalization},
    {OpFamily::kReduce, reduce_schema, infer_reduce},
    {OpFamily::kMovement, movement_schema, infer_movement},
    {OpFamily::kGenerator, generator_schema, infer_generator},
    {OpFamily::kVision, vision_schema, infer_vision},
    {OpFamily::kRecurrent, recurrent_schema, infer_recurrent},
    {OpFamily::kControlFlow, control_flow_schema, infer_control_flow},
    {OpFamily::kText, text_schema, infer_text},
    {OpFamily::kMl, ml_schema, infer_ml},
};

std::string file_of(OpFamily family) { return str("src/ir/ops/", family_name(family), ".cpp"); }

TEST(OpFamilies, EveryFamilyHasAFile) {
  ASSERT_EQ(std::size(kFiles), size_t(kOpFamilyCount));
  for (int f = 0; f < kOpFamilyCount; ++f) EXPECT_EQ(kFiles[f].family, OpFamily(f));
}

TEST(OpFamilies, EachFileHasTheSchemasOfItsOwnOpsOnly) {
  for (int i = 0; i < op_count(); ++i) {
    OpKind op = OpKind(i);
    for (const FamilyFile& f : kFiles)
      EXPECT_EQ(f.schema(op).defined, f.family == family_of(op)) << op_name(op) << " in " << file_of(f.family);
  }
}

TEST(OpFamilies, AnotherFamilysOpIsAnInternalErrorNamingTheOpAndItsFile) {
  std::vector<InferInput> no_inputs;
  std::function<Dim()> fresh = [] { return Dim::symbol("s"); };
  for (int i = 0; i < op_count(); ++i) {
    Node node{"n", OpKind(i), {}, {0}, {}};
    std::string own_file = file_of(family_of(node.op));
    EXPECT_EQ(family_file(node.op), own_file);
    for (const FamilyFile& f : kFiles) {
      if (f.family == family_of(node.op)) continue;  // its own file: tests/ops/op_registry_test.cpp runs it
      Ctx c(node, no_inputs, fresh);
      try {
        f.infer(c);
        ADD_FAILURE() << file_of(f.family) << " inferred " << op_name(node.op);
      } catch (const Error& e) {
        std::string what = e.what();
        EXPECT_EQ(e.code(), ErrorCode::kInternal) << file_of(f.family) << " has a case for " << op_name(node.op) << ": " << what;
        EXPECT_NE(what.find(str("(", op_name(node.op), ")")), std::string::npos) << what;
        EXPECT_NE(what.find(own_file), std::string::npos) << what;
      }
    }
  }
}

}  // namespace
}  // namespace kiln::ir
