// The ai.onnx.ml ops the GPU runs after `kiln build` lowers them (Binarizer as
// Greater and Cast, ArrayFeatureExtractor of constant indices as Gather),
// against the reference interpreter; and a plan of string tensors refused by
// Engine::create with the node and the tensor, before anything runs.
#include <random>

#include "gpu_test_util.h"

namespace kiln::testing {
namespace {

using ir::Dim;
using ir::OpKind;
using runtime::KernelSpecialization;

constexpr KernelSpecialization kStrategies[] = {KernelSpecialization::kNone, KernelSpecialization::kEager};

// x of `dtype` [rows, 5] -> Binarizer(threshold) -> its dtype.
ir::Network binarizer(DType dtype, double threshold) {
  ir::Network net;
  ir::ValueId x = net.add_input("x", dtype, {Dim::symbol("rows"), Dim(5)});
  net.add_output(net.add_op1(OpKind::kBinarizer, {x}, attrs({{"threshold", threshold}}), "binarize"));
  return net;
}

TEST(GpuMlOps, BinarizerMatchesTheReference) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(7);
  for (DType dtype : {DType::kFloat32, DType::kFloat64, DType::kInt32, DType::kInt64})
    for (int64_t rows : {1, 7, 33, 1031})
      for (KernelSpecialization strategy : kStrategies) {
        // Random values in [-1, 1] (integers in [-3, 3]), every tenth the threshold's float32 rounding itself.
        ir::TensorData x = is_floating(dtype) ? random_tensor(dtype, {rows, 5}, rng, 0.0, 1.0) : random_ints(dtype, {rows, 5}, rng, -3, 3);
        if (is_floating(dtype)) {
          std::vector<double> v = ir::read_doubles(x);
          for (size_t i = 0; i < v.size(); i += 10) v[i] = double(float(0.3));
          x = reference::make_tensor(dtype, x.dims, v);
        }
        expect_gpu_matches_reference_exactly(binarizer(dtype, is_floating(dtype) ? 0.3 : 1.5), {{"x", x}}, strategy,
                                             str(dtype_name(dtype), " rows ", rows));
      }
}

// x [.., features] -> ArrayFeatureExtractor by constant indices (repeats allowed).
ir::Network extractor(DType dtype, std::vector<Dim> dims, std::vector<int64_t> indices) {
  ir::Network net;
  ir::ValueId x = net.add_input("x", dtype, dims);
  ir::ValueId y = net.add_weight("y", reference::make_tensor(DType::kInt64, {int64_t(indices.size())},
                                                             std::vector<double>(indices.begin(), indices.end())));
  net.add_output(net.add_op1(OpKind::kArrayFeatureExtractor, {x, y}, {}, "extract"));
  return net;
}

TEST(GpuMlOps, ArrayFeatureExtractorMatchesTheReference) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(11);
  for (DType dtype : {DType::kFloat32, DType::kFloat64, DType::kInt32, DType::kInt64})
    for (int64_t features : {1, 7, 33, 1031})
      for (KernelSpecialization strategy : kStrategies) {
        std::vector<int64_t> picked = {features - 1, 0, features / 2, features - 1};
        ir::TensorData x = is_floating(dtype) ? random_tensor(dtype, {3, features}, rng) : random_ints(dtype, {3, features}, rng, -9, 9);
        expect_gpu_matches_reference_exactly(extractor(dtype, {Dim(3), Dim(features)}, picked), {{"x", x}}, strategy,
                                             str(dtype_name(dtype), " features ", features));
      }
  // A vector gives [1, k].
  ir::TensorData v = random_tensor(DType::kFloat32, {7}, rng);
  expect_gpu_matches_reference_exactly(extractor(DType::kFloat32, {Dim(7)}, {6, 2}), {{"x", v}}, KernelSpecialization::kNone, "vector");
}

TEST(GpuMlOps, StringPlansAreRefusedBeforeAnythingRuns) {
  KILN_REQUIRE_GPU();
  ir::Network net;
  ir::ValueId x = net.add_input("words", DType::kString, {Dim(2), Dim(3)});
  net.add_output(net.add_op1(OpKind::kTranspose, {x}, {}, "flip"));
  net.finalize();
  builder::BuildOptions options;
  try {
    runtime::Engine::create(builder::build(net, options), {});
    FAIL() << "an engine holds a string tensor";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'words') is a string tensor"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace kiln::testing
