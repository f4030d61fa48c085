// kiln debug --compare-layers from the command line: argument checks, help,
// the CPU mode (the plan's network on the reference against the model), the
// JSON document, inputs saved by kiln run and loaded back, and inspect's
// float32 line for half-precision plans.
#include <gtest/gtest.h>

#include <stdlib.h>

#include <array>
#include <cstdio>
#include <filesystem>

#include <nlohmann/json.hpp>

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct Result {
  int code;
  std::string output;
};

// `stderr_too`: both streams (what a user sees); otherwise stdout only (the --json document).
Result kiln(const std::string& args, bool stderr_too = true) {
  std::string cmd = std::string(KILN_BINARY) + " " + args + (stderr_too ? " 2>&1" : " 2>/dev/null");
  FILE* pipe = popen(cmd.c_str(), "r");
  std::string out;
  std::array<char, 4096> buf{};
  while (size_t n = fread(buf.data(), 1, buf.size(), pipe)) out.append(buf.data(), n);
  int status = pclose(pipe);
  return {WEXITSTATUS(status), out};
}

json kiln_json(const std::string& args, int expected_code) {
  Result r = kiln(args + " --json", false);
  EXPECT_EQ(r.code, expected_code) << args << ": " << r.output;
  json doc = json::parse(r.output, nullptr, false);
  EXPECT_FALSE(doc.is_discarded()) << args << ": not JSON: " << r.output;
  return doc;
}

struct TempDir {
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "kiln_cli_debug_XXXXXX").string();
    if (::mkdtemp(pattern.data())) path = pattern;
  }
  ~TempDir() { fs::remove_all(path); }
  fs::path path;
};

const std::string kExamples = KILN_EXAMPLES_DIR;
const std::string kMlp = kExamples + "/mlp.onnx", kCnn = kExamples + "/tiny_cnn.onnx";

bool has(const Result& r, const std::string& text) { return r.output.find(text) != std::string::npos; }

TEST(CliDebug, HelpStatesTheDefaultTolerancesAndTheCpuMode) {
  Result help = kiln("debug --help");
  EXPECT_EQ(help.code, 0) << help.output;
  EXPECT_EQ(help.output.rfind("usage: kiln debug ", 0), 0u) << help.output;
  for (const char* text : {"--compare-layers", "--rtol", "1e-4 for fp32 plans, 1e-2 for fp16", "--atol", "1e-5 for fp32 plans",
                           "--load-inputs", "--reference", "--device", "--model", "Exit code 6"})
    EXPECT_TRUE(has(help, text)) << text << "\n" << help.output;
  EXPECT_TRUE(has(kiln("--help"), "debug --compare-layers: tensors beyond --rtol/--atol"));
}

TEST(CliDebug, ArgumentsAreChecked) {
  Result no_check = kiln("debug " + kMlp);
  EXPECT_EQ(no_check.code, 2) << no_check.output;
  EXPECT_TRUE(has(no_check, "needs --compare-layers")) << no_check.output;
  EXPECT_EQ(kiln("debug " + kMlp + " --compare-layers --reference bogus").code, 2);
  EXPECT_EQ(kiln("debug " + kMlp + " --compare-layers --rtol -1").code, 2);
  EXPECT_EQ(kiln("debug " + kMlp + " --compare-layers --device tpu").code, 2);
  Result mistyped = kiln("debug " + kMlp + " --compare-layer");
  EXPECT_EQ(mistyped.code, 2);
  EXPECT_TRUE(has(mistyped, "did you mean --compare-layers?")) << mistyped.output;
  Result both = kiln("debug " + kMlp + " --compare-layers --model " + kMlp + " --device cpu");
  EXPECT_EQ(both.code, 2) << both.output;
  EXPECT_TRUE(has(both, "is a model itself")) << both.output;
  Result missing = kiln("debug " + kMlp + " --compare-layers --device cpu --load-inputs /nonexistent/inputs");
  EXPECT_EQ(missing.code, 3) << missing.output;
}

// Without a GPU the default device says what it needs and offers the CPU mode; with one it runs.
TEST(CliDebug, TheGpuModeNeedsAGpuAndSaysSo) {
  Result r = kiln("debug " + kMlp + " --compare-layers --shapes x:2x64");
  if (r.code == 5) {
    EXPECT_TRUE(has(r, "runs the plan on a GPU")) << r.output;
    EXPECT_TRUE(has(r, "--device cpu")) << r.output;
  } else {
    EXPECT_EQ(r.code, 0) << r.output;
    EXPECT_TRUE(has(r, "0 beyond")) << r.output;
  }
}

// The CPU mode checks the builder: every fp32 and fp16 tensor that has a model
// counterpart is within the default tolerance; a zero tolerance fails at fp16,
// naming the first node.
TEST(CliDebug, CpuModeComparesTheBuildersPlanWithTheModel) {
  for (const char* precision : {"fp32", "fp16", "bf16"}) {
    Result r = kiln("debug " + kCnn + " --compare-layers --device cpu --shapes image:2x3x32x32 --precision " + precision);
    EXPECT_EQ(r.code, 0) << precision << ": " << r.output;
    EXPECT_TRUE(has(r, " 0 beyond")) << precision << ": " << r.output;
    EXPECT_TRUE(has(r, "pass")) << r.output;
  }
  Result exact = kiln("debug " + kCnn + " --compare-layers --device cpu --precision fp16 --rtol 0 --atol 0");
  EXPECT_EQ(exact.code, 6) << exact.output;
  EXPECT_TRUE(has(exact, "first failure: node '")) << exact.output;
  EXPECT_TRUE(has(exact, "its inputs:")) << exact.output;
  EXPECT_TRUE(has(exact, "tensors differ from the reference beyond the tolerance")) << exact.output;
}

TEST(CliDebug, APlanNeedsItsModelForTheCpuMode) {
  TempDir dir;
  std::string plan = (dir.path / "cnn.kiln").string();
  ASSERT_EQ(kiln("build " + kCnn + " -o " + plan + " --precision fp16 --profile image:1x3x32x32/2x3x32x32/4x3x32x32").code, 0);
  Result alone = kiln("debug " + plan + " --compare-layers --device cpu");
  EXPECT_EQ(alone.code, 2) << alone.output;
  EXPECT_TRUE(has(alone, "--model MODEL.onnx")) << alone.output;
  Result with_model = kiln("debug " + plan + " --compare-layers --device cpu --model " + kCnn);
  EXPECT_EQ(with_model.code, 0) << with_model.output;
  Result wrong_reference = kiln("debug " + plan + " --compare-layers --reference model");
  EXPECT_EQ(wrong_reference.code, 2) << wrong_reference.output;
}

TEST(CliDebug, JsonListsEveryTensorInPlanOrder) {
  json doc = kiln_json("debug " + kCnn + " --compare-layers --device cpu --precision fp16 --seed 3", 0);
  EXPECT_EQ(doc["command"], "debug");
  EXPECT_EQ(doc["precision"], "fp16");
  const json& report = doc["compare_layers"];
  EXPECT_EQ(report["reference"], "model");
  EXPECT_EQ(report["tolerance"]["rtol"], 1e-2);
  EXPECT_EQ(report["failed"], 0);
  ASSERT_GT(report["tensors"].size(), 3u);
  size_t last = 0, compared = 0, not_comparable = 0;
  for (const json& t : report["tensors"]) {
    EXPECT_GE(t["node_index"].get<size_t>(), last);
    last = t["node_index"];
    if (t["compared"]) {
      ++compared;
      EXPECT_TRUE(t["pass"]);
      EXPECT_TRUE(t["relative_l2"].is_number());
    } else {
      ++not_comparable;
      EXPECT_FALSE(t["why_not"].get<std::string>().empty());
    }
  }
  EXPECT_EQ(report["compared"], compared);
  EXPECT_EQ(report["not_comparable"], not_comparable);
  json failing = kiln_json("debug " + kCnn + " --compare-layers --device cpu --precision fp16 --atol 0 --rtol 0", 6);
  ASSERT_TRUE(failing["compare_layers"].contains("first_failure"));
  EXPECT_FALSE(failing["compare_layers"]["first_failure"]["inputs"].empty());
  EXPECT_EQ(failing["exit_code"], 6);
}

// Inputs saved by kiln run load back into kiln debug: the same report as with --input.
TEST(CliDebug, SavedInputsLoadBack) {
  TempDir dir;
  Result saved = kiln("run " + kMlp + " --shapes x:3x64 --seed 5 --save-inputs " + dir.path.string());
  ASSERT_EQ(saved.code, 0) << saved.output;
  json loaded = kiln_json("debug " + kMlp + " --compare-layers --device cpu --load-inputs " + dir.path.string(), 0);
  json given = kiln_json("debug " + kMlp + " --compare-layers --device cpu --input x:" + (dir.path / "x.npy").string(), 0);
  json random = kiln_json("debug " + kMlp + " --compare-layers --device cpu --shapes x:3x64 --seed 6", 0);
  EXPECT_EQ(loaded["inputs"][0]["dims"], json::parse("[3, 64]"));
  EXPECT_EQ(loaded["compare_layers"]["tensors"], given["compare_layers"]["tensors"]);
  EXPECT_NE(loaded["compare_layers"]["tensors"], random["compare_layers"]["tensors"]) << "another seed, other inputs";
}

// onnxruntime's CPU provider as the oracle: the builder's fp32 plan agrees with
// it tensor by tensor; an fp16 plan at zero tolerance does not, and the report
// says the values came from onnxruntime.
TEST(CliDebug, OnnxruntimeStandsInForTheReference) {
  if (std::system("python3 -c 'import onnx, onnxruntime' >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "python3 has no onnx and onnxruntime packages (scripts/setup.sh installs them)";
  json doc = kiln_json("debug " + kCnn + " --compare-layers --device cpu --reference onnxruntime --seed 4", 0);
  const json& report = doc["compare_layers"];
  EXPECT_EQ(report["reference"], "onnxruntime");
  EXPECT_EQ(report["failed"], 0);
  EXPECT_GE(report["compared"].get<int>(), 3) << report.dump(1);
  Result exact = kiln("debug " + kCnn + " --compare-layers --device cpu --reference onnxruntime --precision fp16 --rtol 0 --atol 0");
  EXPECT_EQ(exact.code, 6) << exact.output;
  EXPECT_TRUE(has(exact, "against onnxruntime's CPU provider")) << exact.output;
  EXPECT_TRUE(has(exact, "differ from onnxruntime beyond the tolerance")) << exact.output;

  TempDir dir;
  std::string plan = (dir.path / "mlp.kiln").string();
  ASSERT_EQ(kiln("build " + kMlp + " -o " + plan + " --profile x:1x64/2x64/4x64").code, 0);
  Result without_model = kiln("debug " + plan + " --compare-layers --device cpu --reference onnxruntime");
  EXPECT_EQ(without_model.code, 2) << without_model.output;
  EXPECT_TRUE(has(without_model, "--model MODEL.onnx")) << without_model.output;
  json with_model = kiln_json("debug " + plan + " --compare-layers --device cpu --reference onnxruntime --model " + kMlp, 0);
  EXPECT_GE(with_model["compare_layers"]["compared"].get<int>(), 1);
}

TEST(CliDebug, OnnxruntimeWithoutAUsablePythonSaysWhatToDo) {
  setenv("KILN_PYTHON", "/nonexistent/python3", 1);
  Result missing = kiln("debug " + kMlp + " --compare-layers --device cpu --reference onnxruntime");
  unsetenv("KILN_PYTHON");
  EXPECT_EQ(missing.code, 2) << missing.output;
  EXPECT_TRUE(has(missing, "/nonexistent/python3")) << missing.output;
  EXPECT_TRUE(has(missing, "KILN_PYTHON")) << missing.output;
}

TEST(CliInspect, HalfPrecisionPlansSayWhichNodesStayInFloat32) {
  TempDir dir;
  std::string plan = (dir.path / "cnn.kiln").string();
  ASSERT_EQ(kiln("build " + kCnn + " -o " + plan + " --precision fp16 --profile image:1x3x32x32/2x3x32x32/4x3x32x32").code, 0);
  Result r = kiln("inspect " + plan);
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(has(r, "float32:    no node (every float op computes in fp16)")) << r.output;
  json doc = kiln_json("inspect " + plan, 0);
  EXPECT_EQ(doc["float32_nodes"], json::array());
}

}  // namespace
