// The Triton backend's configuration parsing and model loading, without a server:
// JSON as Triton hands it over, the example MLP (x[batch,64] -> probs[batch,10])
// and a small plan.
#include <gtest/gtest.h>

#include <filesystem>

#include "../plan/small_plan.h"
#include "kiln/error.h"
#include "model_config.h"

namespace fs = std::filesystem;
using kiln::Error;
using namespace kiln::serving;

namespace {

std::string mlp_config(const std::string& extra = "", int max_batch_size = 8, const std::string& x_dims = "[\"64\"]") {
  return R"({"name":"mlp","backend":"kiln","max_batch_size":)" + std::to_string(max_batch_size) +
         R"(,"input":[{"name":"x","data_type":"TYPE_FP32","dims":)" + x_dims +
         R"(,"allow_ragged_batch":false,"optional":false,"is_shape_tensor":false}],)"
         R"("output":[{"name":"probs","data_type":"TYPE_FP32","dims":[10]}])" +
         extra + "}";
}

// The message of the kiln::Error that `body` throws ("" when it throws none).
template <class Body>
std::string error_of(Body&& body) {
  try {
    body();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

class ServedModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("kiln_triton_test_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "1");
  }
  void TearDown() override { fs::remove_all(dir_); }
  void use_example_mlp() { fs::copy_file(fs::path(KILN_EXAMPLES_DIR) / "mlp.onnx", dir_ / "1" / "model.onnx"); }
  fs::path dir_;
};

}  // namespace

TEST(TritonModelConfig, ReadsTensorsBatchAndParameters) {
  ModelConfig c = parse_model_config(mlp_config(
      R"(,"parameters":{"precision":{"string_value":"fp16"},"cuda_graph_strategy":{"string_value":"disabled"},)"
      R"("dynamic_shapes_kernel_specialization_strategy":{"string_value":"eager"},)"
      R"("runtime_cache_path":{"string_value":"/tmp/cache.bin"},"profile.x":{"string_value":"1x64,4x64,8x64"}})"));
  EXPECT_EQ(c.name, "mlp");
  EXPECT_EQ(c.max_batch_size, 8);
  ASSERT_EQ(c.inputs.size(), 1u);
  EXPECT_EQ(c.inputs[0].dims, std::vector<int64_t>{64});  // from the string Triton's JSON writes for int64
  EXPECT_EQ(c.outputs[0].dims, std::vector<int64_t>{10});
  EXPECT_EQ(c.settings.precision, kiln::plan::Precision::kFloat16);
  EXPECT_EQ(c.settings.cuda_graph_strategy, kiln::runtime::CudaGraphStrategy::kDisabled);
  EXPECT_EQ(c.settings.kernel_specialization, kiln::runtime::KernelSpecialization::kEager);
  EXPECT_EQ(c.settings.runtime_cache_path, "/tmp/cache.bin");
  EXPECT_EQ(c.settings.profiles.at("x").max, (std::vector<int64_t>{8, 64}));
}

TEST(TritonModelConfig, DefaultsToNativeGraphsAndLazySpecialization) {
  ModelConfig c = parse_model_config(mlp_config());
  EXPECT_EQ(c.settings.cuda_graph_strategy, kiln::runtime::CudaGraphStrategy::kWholeGraphCapture);
  EXPECT_EQ(c.settings.kernel_specialization, kiln::runtime::KernelSpecialization::kLazy);
  EXPECT_FALSE(c.settings.precision);
}

TEST(TritonModelConfig, RefusesUnknownParametersAndBadValuesByName) {
  EXPECT_NE(error_of([] { parse_model_config(mlp_config(R"(,"parameters":{"max_wrokspace":{"string_value":"1"}})")); })
                .find("unknown parameter 'max_wrokspace'"),
            std::string::npos);
  std::string bad = error_of([] {
    parse_model_config(mlp_config(R"(,"parameters":{"cuda_graph_strategy":{"string_value":"always"}})"));
  });
  EXPECT_NE(bad.find("parameter 'cuda_graph_strategy' is 'always'"), std::string::npos) << bad;
  EXPECT_NE(bad.find("whole_graph_capture"), std::string::npos) << bad;
  EXPECT_NE(error_of([] { parse_model_config(mlp_config(R"(,"parameters":{"precision":{"string_value":"fp8"}})")); })
                .find("'precision' is 'fp8'"),
            std::string::npos);
  for (const char* profile : {"1x64,8x64", "1x64,8x64,4x64", "1x64,8x64,32", "1xa,2x64,3x64", ""}) {
    std::string message = error_of([&] {
      parse_model_config(mlp_config(std::string(R"(,"parameters":{"profile.x":{"string_value":")") + profile +
                                    "\"}}"));
    });
    EXPECT_NE(message.find("parameter 'profile.x'"), std::string::npos) << profile << ": " << message;
  }
}

TEST(TritonModelConfig, RefusesWhatKilnDoesNotServe) {
  EXPECT_NE(error_of([] { parse_model_config(R"({"name":"m","input":[],"output":[]})"); }).find("must list every input"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              parse_model_config(R"({"name":"m","input":[{"name":"s","data_type":"TYPE_STRING","dims":[1]}],)"
                                 R"("output":[{"name":"y","data_type":"TYPE_FP32","dims":[1]}]})");
            }).find("input 's' has data_type TYPE_STRING"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              parse_model_config(R"({"name":"m","input":[{"name":"x","data_type":"TYPE_FP32","dims":[4],)"
                                 R"("reshape":{"shape":[2,2]}}],"output":[{"name":"y","data_type":"TYPE_FP32","dims":[1]}]})");
            }).find("has a reshape"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_model_config("not json"); }).find("not a JSON object"), std::string::npos);
}

TEST(TritonProfile, ParsesMinOptMax) {
  InputProfile p = parse_profile("1x16,8x64,32x128", "p");
  EXPECT_EQ(p.min, (std::vector<int64_t>{1, 16}));
  EXPECT_EQ(p.opt, (std::vector<int64_t>{8, 64}));
  EXPECT_EQ(p.max, (std::vector<int64_t>{32, 128}));
}

TEST_F(ServedModelTest, BuildsOnnxWithTheBatchRangeFromMaxBatchSize) {
  use_example_mlp();
  auto served = load_served_model(parse_model_config(mlp_config()), dir_ / "1");
  EXPECT_EQ(served->file, dir_ / "1" / "model.onnx");
  const auto& ranges = served->plan->network.dim_ranges();
  ASSERT_EQ(ranges.count("batch"), 1u);
  EXPECT_EQ(ranges.at("batch").min, 1);
  EXPECT_EQ(ranges.at("batch").max, 8);
}

TEST_F(ServedModelTest, ProfileParameterSetsTheRanges) {
  use_example_mlp();
  auto served = load_served_model(
      parse_model_config(mlp_config(R"(,"parameters":{"profile.x":{"string_value":"1x64,16x64,32x64"}})")), dir_ / "1");
  EXPECT_EQ(served->plan->network.dim_ranges().at("batch").max, 32);
  std::string small = error_of([&] {
    load_served_model(parse_model_config(mlp_config(R"(,"parameters":{"profile.x":{"string_value":"1x64,2x64,4x64"}})")),
                      dir_ / "1");
  });
  EXPECT_NE(small.find("must cover 1..max_batch_size (8)"), std::string::npos) << small;
}

TEST_F(ServedModelTest, ChecksTheConfigurationAgainstTheModel) {
  use_example_mlp();
  auto load = [&](const std::string& json) { return error_of([&] { load_served_model(parse_model_config(json), dir_ / "1"); }); };
  EXPECT_NE(load(mlp_config("", 8, "[\"63\"]")).find("input 'x' dim 1 is 64 in the model but 63 in config.pbtxt"),
            std::string::npos);
  EXPECT_NE(load(mlp_config("", 8, "[1,64]")).find("input 'x' has shape [batch,64] in the model but 2 dims"),
            std::string::npos);
  std::string unbatched = load(mlp_config("", 0, "[-1,64]"));
  EXPECT_NE(unbatched.find("needs a range: add parameters { key: \"profile.x\""), std::string::npos) << unbatched;
  std::string renamed = load(R"({"name":"mlp","max_batch_size":8,"input":[{"name":"x","data_type":"TYPE_FP32","dims":[64]}],)"
                             R"("output":[{"name":"y","data_type":"TYPE_FP32","dims":[10]}]})");
  EXPECT_NE(renamed.find("output 'probs', which config.pbtxt does not list"), std::string::npos) << renamed;
  std::string int_type = load(R"({"name":"mlp","max_batch_size":8,"input":[{"name":"x","data_type":"TYPE_INT32","dims":[64]}],)"
                              R"("output":[{"name":"probs","data_type":"TYPE_FP32","dims":[10]}]})");
  EXPECT_NE(int_type.find("input 'x' is float32 in the model but int32 in config.pbtxt"), std::string::npos) << int_type;
  std::string unknown_input = load(mlp_config(R"(,"parameters":{"profile.z":{"string_value":"1x1,1x1,1x1"}})"));
  EXPECT_NE(unknown_input.find("'profile.z' names no input"), std::string::npos) << unknown_input;
}

TEST_F(ServedModelTest, LoadsAPlanAndRefusesBuildParametersForIt) {
  kiln::plan::save(kiln::plan::testing::small_plan(4), dir_ / "1" / "model.kiln");
  auto config = [](int max_batch_size, const std::string& extra = "") {
    return R"({"name":"small","max_batch_size":)" + std::to_string(max_batch_size) +
           R"(,"input":[{"name":"x","data_type":"TYPE_FP32","dims":[8]}],)"
           R"("output":[{"name":")" + std::string("y") + R"(","data_type":"TYPE_FP32","dims":[8]}])" + extra + "}";
  };
  // The small plan's output is named by the builder; read it to write the configuration.
  auto plan = kiln::plan::load(dir_ / "1" / "model.kiln");
  std::string output = plan.network.value(plan.network.outputs()[0]).name;
  auto with_output = [&](std::string json) {
    json.replace(json.find("\"y\""), 3, "\"" + output + "\"");
    return json;
  };
  auto served = load_served_model(parse_model_config(with_output(config(4))), dir_ / "1");
  EXPECT_EQ(served->file.filename(), "model.kiln");
  std::string too_big = error_of([&] { load_served_model(parse_model_config(with_output(config(16))), dir_ / "1"); });
  EXPECT_NE(too_big.find("does not cover 1..max_batch_size (16)"), std::string::npos) << too_big;
  std::string precision = error_of([&] {
    load_served_model(parse_model_config(with_output(config(4, R"(,"parameters":{"precision":{"string_value":"fp16"}})"))),
                      dir_ / "1");
  });
  EXPECT_NE(precision.find("parameter 'precision' applies to model.onnx"), std::string::npos) << precision;
}

// An output whose first dim is a count found in the data has no batch to split.
TEST_F(ServedModelTest, ServesDataDependentFirstDimsOnlyUnbatched) {
  kiln::plan::Plan plan = kiln::plan::testing::nonzero_rows_plan();
  const std::string output = plan.network.value(plan.network.outputs()[0]).name;
  kiln::plan::save(plan, dir_ / "1" / "model.kiln");
  auto config = [&](int max_batch_size) {
    std::string dims = max_batch_size ? "[]" : "[-1]";
    return R"({"name":"rows","max_batch_size":)" + std::to_string(max_batch_size) +
           R"(,"input":[{"name":"x","data_type":"TYPE_FP32","dims":)" + dims + R"(}],"output":[{"name":")" + output +
           R"(","data_type":"TYPE_INT64","dims":)" + (max_batch_size ? "[1]" : "[-1,1]") + "}]}";
  };
  auto served = load_served_model(parse_model_config(config(0)), dir_ / "1");
  EXPECT_EQ(served->config.max_batch_size, 0);
  std::string batched = error_of([&] { load_served_model(parse_model_config(config(4)), dir_ / "1"); });
  EXPECT_NE(batched.find("output '" + output + "'"), std::string::npos) << batched;
  EXPECT_NE(batched.find("depends on data, not the batch; serve the model with max_batch_size: 0"), std::string::npos)
      << batched;
}

TEST_F(ServedModelTest, SaysWhichFileIsMissing) {
  std::string missing = error_of([&] { load_served_model(parse_model_config(mlp_config()), dir_ / "1"); });
  EXPECT_NE(missing.find("model.kiln or model.onnx"), std::string::npos) << missing;
}
