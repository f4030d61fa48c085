// Runs the kiln binary like a script would and checks exit codes and output.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>

namespace {

struct Result {
  int code;
  std::string output;
};

Result kiln(const std::string& args) {
  std::string cmd = std::string(KILN_BINARY) + " " + args + " 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  std::string out;
  std::array<char, 4096> buf{};
  while (size_t n = fread(buf.data(), 1, buf.size(), pipe)) out.append(buf.data(), n);
  int status = pclose(pipe);
  return {WEXITSTATUS(status), out};
}

const std::string kExamples = KILN_EXAMPLES_DIR;

TEST(Cli, HelpAndUsage) {
  EXPECT_EQ(kiln("--help").code, 0);
  EXPECT_NE(kiln("--help").output.find("exit codes"), std::string::npos);
  EXPECT_EQ(kiln("").code, 2);
  EXPECT_EQ(kiln("frobnicate").code, 2);
  EXPECT_EQ(kiln("run " + kExamples + "/mlp.onnx --bogus").code, 2);
  EXPECT_EQ(kiln("run " + kExamples + "/mlp.onnx --device tpu").code, 2);
}

TEST(Cli, InspectExample) {
  Result r = kiln("inspect " + kExamples + "/tiny_cnn.onnx");
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("image: float32[batch,3,32,32]"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("Conv 2"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("status:     ok"), std::string::npos) << r.output;
}

TEST(Cli, RunWritesNpyOutputs) {
  auto dir = std::filesystem::temp_directory_path() / "kiln_cli_out";
  std::filesystem::remove_all(dir);
  Result r = kiln("run " + kExamples + "/tiny_cnn.onnx --shapes image:2x3x32x32 --seed 7 --output-dir " + dir.string());
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("output logits: float32[2,10]"), std::string::npos) << r.output;
  EXPECT_TRUE(std::filesystem::exists(dir / "logits.npy"));
  // Same seed, same inputs: feeding the written file back must work.
  Result again = kiln("run " + kExamples + "/mlp.onnx --input x:" + (dir / "logits.npy").string());
  EXPECT_EQ(again.code, 5) << again.output;  // logits are [2,10]; the MLP wants [N,64]
  EXPECT_NE(again.output.find("dim 1 must be 64"), std::string::npos) << again.output;
  std::filesystem::remove_all(dir);
}

TEST(Cli, BadFilesGiveDistinctExitCodes) {
  EXPECT_EQ(kiln("inspect /nonexistent/model.onnx").code, 3);
  auto garbage = std::filesystem::temp_directory_path() / "kiln_garbage.onnx";
  std::ofstream(garbage) << "definitely not protobuf \xff\xff\xff";
  Result r = kiln("run " + garbage.string());
  EXPECT_EQ(r.code, 3) << r.output;
  EXPECT_NE(r.output.find("not a valid ONNX"), std::string::npos) << r.output;
  std::filesystem::remove(garbage);
  EXPECT_EQ(kiln("run " + kExamples + "/mlp.onnx --shapes x:2x63").code, 5);
  EXPECT_EQ(kiln("run " + kExamples + "/mlp.onnx --shapes x:2xq").code, 2);
}

}  // namespace

namespace {

TEST(Cli, BuildInspectAndRunAPlan) {
  auto plan = std::filesystem::temp_directory_path() / "kiln_cli_test.kiln";
  Result b = kiln("build " + kExamples + "/mlp.onnx -o " + plan.string() + " --profile x:1x64/4x64/16x64 --precision fp16");
  ASSERT_EQ(b.code, 0) << b.output;
  EXPECT_NE(b.output.find("fuse matmul epilogues: 5 rewrites, 4 nodes"), std::string::npos) << b.output;
  Result i = kiln("inspect " + plan.string());
  EXPECT_EQ(i.code, 0) << i.output;
  EXPECT_NE(i.output.find("precision:  fp16"), std::string::npos) << i.output;
  EXPECT_NE(i.output.find("batch: min 1, opt 4, max 16"), std::string::npos) << i.output;
  EXPECT_NE(i.output.find("FusedMatMul 3"), std::string::npos) << i.output;
  Result r = kiln("run " + plan.string() + " --shapes x:3x64");
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("output probs: float32[3,10]"), std::string::npos) << r.output;
  std::filesystem::remove(plan);
}

TEST(Cli, BuildRejectsBadProfilesAndMissingRanges) {
  auto plan = std::filesystem::temp_directory_path() / "kiln_cli_bad.kiln";
  EXPECT_EQ(kiln("build " + kExamples + "/mlp.onnx -o " + plan.string() + " --profile x:1x64/4x64").code, 2);
  EXPECT_EQ(kiln("build " + kExamples + "/mlp.onnx -o " + plan.string() + " --profile x:1x63/4x63/8x63").code, 2);
  EXPECT_EQ(kiln("build " + kExamples + "/mlp.onnx -o " + plan.string() + " --precision fp8").code, 2);
  Result missing = kiln("build " + kExamples + "/mlp.onnx -o " + plan.string());
  EXPECT_EQ(missing.code, 4) << missing.output;
  EXPECT_NE(missing.output.find("--profile"), std::string::npos) << missing.output;
  EXPECT_FALSE(std::filesystem::exists(plan));
}

TEST(Cli, BenchUsageErrors) {
  EXPECT_EQ(kiln("bench " + kExamples + "/mlp.onnx --trace x:1x64").code, 2);  // needs a plan
  auto plan = std::filesystem::temp_directory_path() / "kiln_cli_bench.kiln";
  ASSERT_EQ(kiln("build " + kExamples + "/mlp.onnx -o " + plan.string() + " --profile x:1x64/4x64/16x64").code, 0);
  EXPECT_EQ(kiln("bench " + plan.string()).code, 2);  // no trace
  EXPECT_EQ(kiln("bench " + plan.string() + " --trace x:1y64").code, 2);
  EXPECT_EQ(kiln("bench " + plan.string() + " --trace x:1x64 --repeat many").code, 2);
  EXPECT_EQ(kiln("bench " + plan.string() + " --trace x:1x64 --kernel-specialization always").code, 2);
  std::filesystem::remove(plan);
}

TEST(Cli, CorruptPlansAreRejected) {
  auto plan = std::filesystem::temp_directory_path() / "kiln_cli_corrupt.kiln";
  ASSERT_EQ(kiln("build " + kExamples + "/mlp.onnx -o " + plan.string() + " --profile x:1x64/4x64/16x64").code, 0);
  std::filesystem::resize_file(plan, std::filesystem::file_size(plan) - 100);
  Result r = kiln("inspect " + plan.string());
  EXPECT_EQ(r.code, 3) << r.output;
  EXPECT_NE(r.output.find("truncated"), std::string::npos) << r.output;
  std::filesystem::remove(plan);
}

}  // namespace

namespace {

TEST(Cli, EveryCommandHasItsOwnHelp) {
  for (const char* command : {"inspect", "build", "run", "bench", "cache", "conformance"}) {
    Result r = kiln(std::string(command) + " --help");
    EXPECT_EQ(r.code, 0) << command << ": " << r.output;
    EXPECT_EQ(r.output.rfind(std::string("usage: kiln ") + command + " ", 0), 0u) << r.output;
  }
  EXPECT_NE(kiln("bench -h").output.find("--trace"), std::string::npos);
  EXPECT_NE(kiln("nope --help").code, 0);
}

TEST(Cli, CacheWarmInfoClear) {
  auto dir = std::filesystem::temp_directory_path() / "kiln_cli_cache";
  std::filesystem::remove_all(dir);
  auto plan = dir / "mlp.kiln", cache = dir / "cache.bin";
  std::filesystem::create_directories(dir);
  ASSERT_EQ(kiln("build " + kExamples + "/mlp.onnx -o " + plan.string() + " --profile x:1x64/4x64/16x64").code, 0);
  Result w = kiln("cache warm " + plan.string() + " --arch sm_90 --cache " + cache.string());
  EXPECT_EQ(w.code, 0) << w.output;
  Result i = kiln("cache info " + cache.string());
  EXPECT_EQ(i.code, 0) << i.output;
  EXPECT_NE(i.output.find("entries: "), std::string::npos) << i.output;
  EXPECT_NE(i.output.find("sm_90: "), std::string::npos) << i.output;
  EXPECT_EQ(i.output.find("entries: 0\n"), std::string::npos) << i.output;
  Result again = kiln("cache warm " + plan.string() + " --arch sm_90 --cache " + cache.string());
  EXPECT_NE(again.output.find(", 0 new entries"), std::string::npos) << again.output;
  Result shaped = kiln("cache warm " + plan.string() + " --arch sm_90 --cache " + cache.string() + " --shapes x:4x64 --shapes x:2x64");
  EXPECT_EQ(shaped.code, 0) << shaped.output;
  EXPECT_NE(shaped.output.find("specialized for x:4x64: 4 kernels, 4 new"), std::string::npos) << shaped.output;
  EXPECT_NE(shaped.output.find("specialized for x:2x64: 4 kernels, 4 new"), std::string::npos) << shaped.output;
  EXPECT_EQ(kiln("cache warm " + plan.string() + " --arch sm_90 --cache " + cache.string() + " --shapes x:4x63").code, 5);
  EXPECT_EQ(kiln("cache warm " + plan.string() + " --arch ninety --cache " + cache.string()).code, 2);
  EXPECT_EQ(kiln("cache clear " + cache.string()).code, 0);
  EXPECT_NE(kiln("cache info " + cache.string()).output.find("entries: 0\n"), std::string::npos);
  EXPECT_EQ(kiln("cache info " + (dir / "missing.bin").string()).code, 3);
  std::filesystem::remove_all(dir);
}

}  // namespace
