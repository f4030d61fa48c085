// Runs the kiln binary like a script would and checks exit codes and output.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "../frontend/model_builder.h"

namespace {

struct Result {
  int code;
  std::string output;
};

Result kiln_with_prefix(const std::string& prefix, const std::string& args) {
  std::string cmd = prefix + std::string(KILN_BINARY) + " " + args + " 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  std::string out;
  std::array<char, 4096> buf{};
  while (size_t n = fread(buf.data(), 1, buf.size(), pipe)) out.append(buf.data(), n);
  int status = pclose(pipe);
  return {WEXITSTATUS(status), out};
}

Result kiln(const std::string& args) { return kiln_with_prefix("", args); }

// The same, killed after 20 s (exit 124) so that a hang fails the test.
Result kiln_timeout(const std::string& args) { return kiln_with_prefix("timeout 20 ", args); }

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

// Random inputs saved with --save-inputs give the same run again through --input.
TEST(Cli, SavedInputsRepeatARunAndTheComparisonSaysItsTolerance) {
  auto dir = std::filesystem::temp_directory_path() / "kiln_cli_saved_inputs";
  std::filesystem::remove_all(dir);
  Result first = kiln("run " + kExamples + "/mlp.onnx --shapes x:3x64 --seed 11 --save-inputs " + dir.string() +
                      " --compare-reference --rtol 0 --atol 0");
  EXPECT_EQ(first.code, 0) << first.output;
  EXPECT_NE(first.output.find("within rtol 0, atol 0"), std::string::npos) << first.output;
  ASSERT_TRUE(std::filesystem::exists(dir / "x.npy")) << first.output;
  Result again = kiln("run " + kExamples + "/mlp.onnx --input x:" + (dir / "x.npy").string());
  EXPECT_EQ(again.code, 0) << again.output;
  auto output_line = [](const std::string& text) { return text.substr(text.find("output probs")); };
  EXPECT_EQ(output_line(again.output), output_line(first.output));
  EXPECT_EQ(kiln("run " + kExamples + "/mlp.onnx --compare-reference --rtol -1").code, 2);
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
  for (const char* command : {"inspect", "build", "run", "profile", "bench", "cache", "conformance"}) {
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

namespace {

using kiln::testing::ModelBuilder;
using ::onnx::TensorProto;

// Writes a model for the kiln binary to read; removed when the test ends.
struct ModelFile {
  std::filesystem::path path;
  ModelFile(const ModelBuilder& m, const std::string& name)
      : path(std::filesystem::temp_directory_path() / (name + "_" + std::to_string(getpid()) + ".onnx")) {
    std::ofstream(path, std::ios::binary) << m.bytes();
  }
  ~ModelFile() { std::filesystem::remove(path); }
};

ModelBuilder layer_norm(const std::vector<int64_t>& scale, const std::vector<int64_t>& bias) {
  ModelBuilder m(17);
  m.input("x", TensorProto::FLOAT, {"2", "3", "4"});
  auto count = [](const std::vector<int64_t>& dims) {
    int64_t n = 1;
    for (int64_t d : dims) n *= d;
    return size_t(n);
  };
  m.initializer("scale", scale, std::vector<float>(count(scale), 1.0f));
  m.initializer("bias", bias, std::vector<float>(count(bias), 0.0f));
  ModelBuilder::attr(m.node("LayerNormalization", {"x", "scale", "bias"}, {"y"}), "axis", int64_t(-1));
  m.output("y");
  return m;
}

TEST(Cli, BuildRefusesLayerNormParametersThatDoNotFit) {
  auto plan = std::filesystem::temp_directory_path() / ("kiln_cli_ln_" + std::to_string(getpid()) + ".kiln");
  ModelFile good(layer_norm({4}, {4}), "kiln_cli_ln_good");
  Result ok = kiln("build " + good.path.string() + " -o " + plan.string());
  EXPECT_EQ(ok.code, 0) << ok.output;
  struct Case {
    std::vector<int64_t> scale, bias;
    std::string tensor, shape;
  };
  for (const Case& k : {Case{{3, 4}, {4}, "('scale')", "[3,4]"}, Case{{3}, {4}, "('scale')", "[3]"}, Case{{4}, {0}, "('bias')", "[0]"}}) {
    std::filesystem::remove(plan);
    ModelFile bad(layer_norm(k.scale, k.bias), "kiln_cli_ln_bad");
    Result b = kiln("build " + bad.path.string() + " -o " + plan.string());
    EXPECT_EQ(b.code, 4) << b.output;
    EXPECT_NE(b.output.find("shape error"), std::string::npos) << b.output;
    EXPECT_NE(b.output.find("LayerNormalization"), std::string::npos) << b.output;
    EXPECT_NE(b.output.find(k.tensor + " of shape " + k.shape), std::string::npos) << b.output;
    EXPECT_FALSE(std::filesystem::exists(plan));
    Result r = kiln("run " + bad.path.string() + " --device cpu");
    EXPECT_EQ(r.code, 4) << r.output;
  }
  std::filesystem::remove(plan);
}

TEST(Cli, ModelShapeAndTypeErrorsExitFour) {
  ModelBuilder types;
  types.input("x", TensorProto::FLOAT, {"3"});
  types.input("i", TensorProto::INT64, {"3"});
  types.node("Add", {"x", "i"}, {"y"});
  types.output("y");
  ModelFile typed(types, "kiln_cli_type_error");
  for (const char* command : {"inspect ", "build ", "run "}) {
    Result r = kiln(command + typed.path.string() + (std::string(command) == "build " ? " -o /dev/null" : ""));
    EXPECT_EQ(r.code, 4) << command << r.output;
    EXPECT_NE(r.output.find("float32 and int64"), std::string::npos) << r.output;
  }
  ModelBuilder shapes;
  shapes.input("x", TensorProto::FLOAT, {"3"});
  shapes.input("z", TensorProto::FLOAT, {"4"});
  shapes.node("Add", {"x", "z"}, {"y"});
  shapes.output("y");
  ModelFile shaped(shapes, "kiln_cli_shape_error");
  Result r = kiln("run " + shaped.path.string());
  EXPECT_EQ(r.code, 4) << r.output;
  EXPECT_NE(r.output.find("shape error"), std::string::npos) << r.output;
}

TEST(Cli, OverflowingSizesAreErrorsNotCrashes) {
  // Conv whose pads make [1, 4, 2^62+1]: known at load, so the model is at fault.
  ModelBuilder conv;
  conv.input("x", TensorProto::FLOAT, {"1", "1", "1"});
  conv.initializer("w", {4, 1, 1}, {1, 1, 1, 1});
  ModelBuilder::attr(conv.node("Conv", {"x", "w"}, {"y"}), "pads", std::vector<int64_t>{int64_t(1) << 62, 0});
  conv.output("y");
  ModelFile conv_file(conv, "kiln_cli_conv_overflow");
  Result c = kiln("run " + conv_file.path.string() + " --device cpu");
  EXPECT_EQ(c.code, 4) << c.output;
  EXPECT_NE(c.output.find("4611686018427387905"), std::string::npos) << c.output;

  // Gemm of A[2^32,0] and B[0,2^32]: sizes from the command line, so the inputs are at fault.
  ModelBuilder gemm;
  gemm.input("a", TensorProto::FLOAT, {"M", "K"});
  gemm.input("b", TensorProto::FLOAT, {"K", "N"});
  gemm.node("Gemm", {"a", "b"}, {"y"});
  gemm.output("y");
  ModelFile gemm_file(gemm, "kiln_cli_gemm_overflow");
  Result g = kiln("run " + gemm_file.path.string() + " --device cpu --shapes a:4294967296x0,b:0x4294967296");
  EXPECT_EQ(g.code, 5) << g.output;
  EXPECT_NE(g.output.find("shape error"), std::string::npos) << g.output;
  EXPECT_NE(g.output.find("[4294967296,4294967296]"), std::string::npos) << g.output;
}

}  // namespace

// Cache and plan files given by mistake, planted links, FIFOs, files others can write.
namespace {

namespace fs = std::filesystem;

// A private (0700) folder for one test, removed at the end.
struct TempDir {
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "kiln_cli_files_XXXXXX").string();
    if (::mkdtemp(pattern.data())) path = pattern;
  }
  ~TempDir() { fs::remove_all(path); }
  std::vector<std::string> listing() const {
    std::vector<std::string> names;
    for (auto& e : fs::directory_iterator(path)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }
  fs::path path;
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(Cli, CacheClearLeavesAPlanOrModelUntouchedAndFails) {
  TempDir dir;
  fs::path plan = dir.path / "mlp.kiln", model = dir.path / "mlp.onnx";
  ASSERT_EQ(kiln("build " + kExamples + "/mlp.onnx -o " + plan.string() + " --profile x:1x64/4x64/16x64").code, 0);
  fs::copy_file(kExamples + "/mlp.onnx", model);
  auto before_listing = dir.listing();
  for (const fs::path& file : {plan, model}) {
    std::string before = slurp(file);
    Result r = kiln("cache clear " + file.string());
    EXPECT_EQ(r.code, 3) << r.output;
    EXPECT_NE(r.output.find("not a kiln runtime cache"), std::string::npos) << r.output;
    EXPECT_EQ(slurp(file), before) << file;
  }
  EXPECT_EQ(dir.listing(), before_listing);  // no lock file next to them either
}

TEST(Cli, CacheInfoReadsOnly) {
  TempDir dir;
  fs::path cache = dir.path / "cache.bin", plan = dir.path / "mlp.kiln";
  ASSERT_EQ(kiln("cache clear " + cache.string()).code, 0);
  fs::remove(dir.path / "cache.bin.lock");
  ASSERT_EQ(kiln("build " + kExamples + "/mlp.onnx -o " + plan.string() + " --profile x:1x64/4x64/16x64").code, 0);
  auto before = dir.listing();
  Result i = kiln("cache info " + cache.string());
  EXPECT_EQ(i.code, 0) << i.output;
  EXPECT_NE(i.output.find("trusted: yes"), std::string::npos) << i.output;
  Result p = kiln("cache info " + plan.string());
  EXPECT_EQ(p.code, 3) << p.output;
  EXPECT_NE(p.output.find("not a runtime cache"), std::string::npos) << p.output;
  EXPECT_EQ(dir.listing(), before);  // no .lock next to either file
}

TEST(Cli, CachePathThatIsAFolderOrFifoIsAClearError) {
  TempDir dir;
  fs::path fifo = dir.path / "pipe";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  for (const fs::path& file : {dir.path, fifo}) {
    for (const char* verb : {"info", "clear"}) {
      // `timeout` turns a hang into exit 124 instead of a stuck suite.
      Result r = kiln_timeout(std::string("cache ") + verb + " " + file.string());
      EXPECT_EQ(r.code, 3) << verb << " " << file << ": " << r.output;
      EXPECT_EQ(r.output.find("internal error"), std::string::npos) << r.output;
      EXPECT_TRUE(r.output.find("folder") != std::string::npos || r.output.find("FIFO") != std::string::npos) << r.output;
    }
  }
  EXPECT_TRUE(fs::is_directory(dir.path));
}

TEST(Cli, CacheOthersCanWriteNeedsTheSharedOptIn) {
  TempDir dir;
  fs::path cache = dir.path / "cache.bin";
  ASSERT_EQ(kiln("cache clear " + cache.string()).code, 0);
  fs::permissions(cache, fs::perms(0666));
  Result refused = kiln("cache clear " + cache.string());
  EXPECT_EQ(refused.code, 3) << refused.output;
  EXPECT_NE(refused.output.find("not trusted"), std::string::npos) << refused.output;
  EXPECT_NE(refused.output.find("--shared-runtime-cache"), std::string::npos) << refused.output;
  Result info = kiln("cache info " + cache.string());
  EXPECT_EQ(info.code, 0) << info.output;
  EXPECT_NE(info.output.find("trusted: no"), std::string::npos) << info.output;
  Result shared = kiln("cache clear " + cache.string() + " --shared-runtime-cache");
  EXPECT_EQ(shared.code, 0) << shared.output;
  EXPECT_NE(kiln("cache --help").output.find("--shared-runtime-cache"), std::string::npos);
}

TEST(Cli, BuildNeverWritesThroughAPlantedTemporaryName) {
  TempDir dir;
  fs::path victim = dir.path / "victim", plan = dir.path / "mlp.kiln";
  std::ofstream(victim) << "precious";
  fs::create_symlink(victim, dir.path / "mlp.kiln.tmp");  // the name builds used to write first
  Result b = kiln("build " + kExamples + "/mlp.onnx -o " + plan.string() + " --profile x:1x64/4x64/16x64");
  ASSERT_EQ(b.code, 0) << b.output;
  EXPECT_EQ(slurp(victim), "precious");
  EXPECT_TRUE(fs::is_regular_file(fs::symlink_status(plan)));
  EXPECT_EQ(kiln("inspect " + plan.string()).code, 0);
}

TEST(Cli, RunOutputsNeverWriteThroughALinkAndABadOutputDirIsAnIoError) {
  TempDir dir;
  fs::path victim = dir.path / "victim", out = dir.path / "out";
  std::ofstream(victim) << "precious";
  fs::create_directory(out);
  fs::create_symlink(victim, out / "probs.npy");
  Result r = kiln("run " + kExamples + "/mlp.onnx --shapes x:2x64 --output-dir " + out.string());
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(slurp(victim), "precious");
  EXPECT_TRUE(fs::is_regular_file(fs::symlink_status(out / "probs.npy")));
  Result bad = kiln("run " + kExamples + "/mlp.onnx --shapes x:2x64 --output-dir " + victim.string());
  EXPECT_EQ(bad.code, 3) << bad.output;
  EXPECT_EQ(bad.output.find("internal error"), std::string::npos) << bad.output;
}

}  // namespace

// The command line itself: allowed values, usage, suggestions, how NAME:VALUE splits.
namespace {

// Output of a command with stderr thrown away: what a script reads from stdout.
Result kiln_stdout(const std::string& args) {
  std::string cmd = std::string(KILN_BINARY) + " " + args + " 2>/dev/null";
  FILE* pipe = popen(cmd.c_str(), "r");
  std::string out;
  std::array<char, 4096> buf{};
  while (size_t n = fread(buf.data(), 1, buf.size(), pipe)) out.append(buf.data(), n);
  int status = pclose(pipe);
  return {WEXITSTATUS(status), out};
}

TEST(CliParsing, NoArgumentsPrintsUsageToStderrAndExitsTwo) {
  Result all = kiln("");
  EXPECT_EQ(all.code, 2);
  EXPECT_EQ(all.output.rfind("usage: kiln ", 0), 0u) << all.output;
  EXPECT_EQ(kiln_stdout("").output, "");
  EXPECT_EQ(kiln("help run").code, 0);
  EXPECT_EQ(kiln("help run").output.rfind("usage: kiln run ", 0), 0u);
  EXPECT_NE(kiln("--version").output.find("kiln "), std::string::npos);
}

TEST(CliParsing, AllowedValuesAreCheckedOnEveryDevice) {
  const std::string mlp = kExamples + "/mlp.onnx";
  struct Case {
    std::string args, flag, allowed;
  };
  for (const Case& c : {Case{"run " + mlp + " --kernel-specialization bogus", "--kernel-specialization", "lazy, eager, none"},
                        Case{"run " + mlp + " --device cpu --cuda-graphs bogus", "--cuda-graphs", "whole_graph_capture, disabled"},
                        Case{"run " + mlp + " --precision fp8", "--precision", "fp32, fp16, bf16"},
                        Case{"run " + mlp + " --device tpu", "--device", "cpu"},
                        Case{"build " + mlp + " -o /dev/null --precision fp8", "--precision", "fp32, fp16, bf16"},
                        Case{"conformance /nonexistent --device gpu", "--device", "cpu, plan, cuda"}}) {
    Result r = kiln(c.args);
    EXPECT_EQ(r.code, 2) << c.args << ": " << r.output;
    EXPECT_NE(r.output.find(c.flag), std::string::npos) << r.output;
    EXPECT_NE(r.output.find(c.allowed), std::string::npos) << r.output;
  }
  for (const char* bad : {"--seed -1", "--seed 99999999999999999999", "--warmup many", "--iterations -3"}) {
    Result r = kiln("run " + mlp + " " + bad);
    EXPECT_EQ(r.code, 2) << bad << ": " << r.output;
  }
}

TEST(CliParsing, MistypedCommandsAndFlagsGetASuggestion) {
  Result command = kiln("rnu " + kExamples + "/mlp.onnx");
  EXPECT_EQ(command.code, 2);
  EXPECT_NE(command.output.find("unknown command 'rnu' (did you mean run?)"), std::string::npos) << command.output;
  Result flag = kiln("run " + kExamples + "/mlp.onnx --iteration 5");
  EXPECT_EQ(flag.code, 2);
  EXPECT_NE(flag.output.find("unknown option --iteration (did you mean --iterations?)"), std::string::npos) << flag.output;
  Result verb = kiln("cache ifno x.bin");
  EXPECT_EQ(verb.code, 2);
  EXPECT_NE(verb.output.find("did you mean info?"), std::string::npos) << verb.output;
  Result far = kiln("run " + kExamples + "/mlp.onnx --zzzzzzzz");
  EXPECT_EQ(far.code, 2);
  EXPECT_EQ(far.output.find("did you mean"), std::string::npos) << far.output;
  EXPECT_EQ(kiln("run " + kExamples + "/mlp.onnx extra.onnx").code, 2);
  // A flag that repeats takes one value each time: the model after it stays the model.
  EXPECT_EQ(kiln("run --shapes x:2x64 " + kExamples + "/mlp.onnx").code, 0);
}

// Names with ':' (TensorFlow-style "in:0") and ',' split where the value syntax says.
TEST(CliParsing, NamesWithColonsAndCommas) {
  ModelBuilder m;
  m.input("in:0", TensorProto::FLOAT, {"N", "4"});
  m.input("x,y", TensorProto::FLOAT, {"N", "4"});
  m.node("Add", {"in:0", "x,y"}, {"out:0"});
  m.output("out:0");
  ModelFile model(m, "kiln_cli_colons");
  TempDir dir;
  Result shapes = kiln("run " + model.path.string() + " --shapes 'in:0:2x4,x,y:2x4' --output-dir " + dir.path.string());
  ASSERT_EQ(shapes.code, 0) << shapes.output;
  EXPECT_NE(shapes.output.find("output out:0: float32[2,4]"), std::string::npos) << shapes.output;
  // A path with ':' too: the name is the longest prefix that names an input.
  fs::path npy = dir.path / "a:b.npy";
  fs::copy_file(dir.path / "out_0.npy", npy);
  Result input = kiln("run " + model.path.string() + " --input 'in:0:" + npy.string() + "' --input 'x,y:" + npy.string() + "'");
  EXPECT_EQ(input.code, 0) << input.output;
  Result unknown = kiln("run " + model.path.string() + " --input 'nope:" + npy.string() + "'");
  EXPECT_EQ(unknown.code, 2) << unknown.output;
  EXPECT_NE(unknown.output.find("inputs: in:0, x,y"), std::string::npos) << unknown.output;
  fs::path plan = dir.path / "colons.kiln";
  Result build = kiln("build " + model.path.string() + " -o " + plan.string() +
                      " --profile 'in:0:1x4/2x4/8x4' --profile 'x,y:1x4/2x4/8x4'");
  EXPECT_EQ(build.code, 0) << build.output;
}

}  // namespace

// --json: one document on stdout, text on stderr, finite numbers only.
namespace {

using nlohmann::json;

// Parses what `kiln ARGS --json` printed on stdout; fails the test when it is not one JSON document.
json kiln_json(const std::string& args, int expected_code = 0) {
  Result r = kiln_stdout(args + " --json");
  EXPECT_EQ(r.code, expected_code) << args << ": " << r.output;
  json doc = json::parse(r.output, nullptr, false);
  EXPECT_FALSE(doc.is_discarded()) << args << ": not JSON: " << r.output;
  if (!doc.is_discarded()) {
    EXPECT_EQ(doc.value("exit_code", -1), expected_code) << r.output;
  }
  return doc;
}

TEST(CliJson, EveryCommandPrintsOneDocument) {
  TempDir dir;
  std::string plan = (dir.path / "mlp.kiln").string(), cache = (dir.path / "cache.bin").string();
  json model = kiln_json("inspect " + kExamples + "/tiny_cnn.onnx");
  EXPECT_EQ(model["kind"], "model");
  EXPECT_EQ(model["inputs"][0]["shape"], json::parse(R"(["batch", 3, 32, 32])"));
  EXPECT_EQ(model["ops"]["Conv"], 2);
  EXPECT_EQ(model["status"], "ok");
  json built = kiln_json("build " + kExamples + "/mlp.onnx -o " + plan + " --profile x:1x64/4x64/16x64");
  EXPECT_EQ(built["ranges"]["batch"]["max"], 16);
  json inspected = kiln_json("inspect " + plan);
  EXPECT_EQ(inspected["kind"], "plan");
  EXPECT_EQ(inspected["precision"], "fp32");
  json ran = kiln_json("run " + plan + " --shapes x:3x64 --compare-reference");
  EXPECT_EQ(ran["outputs"][0]["name"], "probs");
  EXPECT_EQ(ran["outputs"][0]["dims"], json::parse("[3, 10]"));
  EXPECT_TRUE(ran["compare"][0]["max_abs_error"].is_number());
  ASSERT_EQ(kiln("cache clear " + cache).code, 0);
  json info = kiln_json("cache info " + cache);
  EXPECT_EQ(info["entries"], 0);
  EXPECT_EQ(info["trusted"], true);
  // A failure is a document too, with the exit code and the error.
  json missing = kiln_json("inspect " + (dir.path / "missing.onnx").string(), 3);
  EXPECT_EQ(missing["error"]["kind"], "I/O error");
}

TEST(CliJson, ConformanceCountsMatchTheText) {
  const std::string node_tests = "/usr/share/libonnx-testdata/data/node";
  if (!fs::exists(node_tests)) GTEST_SKIP() << node_tests << " is not installed";
  json doc = kiln_json("conformance " + node_tests + " --filter test_relu");
  EXPECT_GE(doc["passed"].get<int>(), 1);
  EXPECT_EQ(doc["failed"], 0);
  EXPECT_TRUE(doc["failures"].is_array());
  EXPECT_GT(doc["total_seconds"].get<double>(), 0);
  json verbose = kiln_json("conformance " + node_tests + " --filter test_relu --verbose");
  ASSERT_FALSE(verbose["cases"].empty());
  for (const json& c : verbose["cases"]) EXPECT_GT(c["seconds"].get<double>(), 0) << c.dump();
}

// Debian's Bernoulli tests (plain and expanded into RandomUniformLike) expect
// numpy's numbers: they count apart, checked for shape, dtype and support.
TEST(CliJson, ConformanceCountsRandomOpsApart) {
  const std::string node_tests = "/usr/share/libonnx-testdata/data/node";
  if (!fs::exists(node_tests)) GTEST_SKIP() << node_tests << " is not installed";
  json doc = kiln_json("conformance " + node_tests + " --filter test_bernoulli --verbose");
  EXPECT_EQ(doc["random_checked"], 6);
  EXPECT_EQ(doc["passed"], 0);
  EXPECT_EQ(doc["failed"], 0);
  EXPECT_EQ(doc["per_op"]["Bernoulli"]["random_checked"], 3);
  for (const json& c : doc["cases"]) {
    EXPECT_EQ(c["status"], "RANDOM") << c.dump();
    EXPECT_EQ(c["detail"], "random: shape, dtype and support checked") << c.dump();
  }
}

TEST(CliJson, NonFiniteNumbersBecomeNullWithANote) {
  ModelBuilder m;
  m.input("x", TensorProto::FLOAT, {"2"});
  m.node("Sub", {"x", "x"}, {"zero"});
  m.node("Div", {"x", "zero"}, {"y"});  // +-inf from non-zero random inputs
  m.output("y");
  ModelFile model(m, "kiln_cli_inf");
  Result r = kiln_stdout("run " + model.path.string() + " --json");
  ASSERT_EQ(r.code, 0) << r.output;
  json doc = json::parse(r.output);  // strict: NaN or Infinity tokens would throw
  EXPECT_TRUE(doc["outputs"][0]["max"].is_null()) << r.output;
  ASSERT_TRUE(doc["notes"].is_array()) << r.output;
  EXPECT_NE(doc["notes"].dump().find("/outputs/0/max: inf"), std::string::npos) << r.output;
}

}  // namespace

// trtexec spellings mean what they mean there.
namespace {

TEST(CliAliases, TrtexecSpellingsBuildAndRunTheSamePlan) {
  TempDir dir;
  std::string plan = (dir.path / "mlp.kiln").string();
  Result b = kiln("build --onnx " + kExamples + "/mlp.onnx --saveEngine " + plan +
                  " --minShapes x:1x64 --optShapes x:4x64 --maxShapes x:16x64 --fp16");
  ASSERT_EQ(b.code, 0) << b.output;
  Result i = kiln("inspect --loadEngine " + plan);
  EXPECT_NE(i.output.find("precision:  fp16"), std::string::npos) << i.output;
  EXPECT_NE(i.output.find("batch: min 1, opt 4, max 16"), std::string::npos) << i.output;
  Result fixed = kiln("build " + kExamples + "/mlp.onnx -o " + plan + " --optShapes x:4x64 --bf16");
  ASSERT_EQ(fixed.code, 0) << fixed.output;
  EXPECT_NE(kiln("inspect " + plan).output.find("batch: min 4, opt 4, max 4"), std::string::npos);
  Result r = kiln("run --loadEngine " + plan + " --shapes x:4x64 --useCudaGraph");
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("output probs: float32[4,10]"), std::string::npos) << r.output;
}

TEST(CliAliases, ContradictionsAreUsageErrors) {
  const std::string mlp = kExamples + "/mlp.onnx";
  struct Case {
    std::string args, says;
  };
  for (const Case& c : {Case{"build " + mlp + " -o /dev/null --minShapes x:1x64 --optShapes x:4x64", "missing from --maxShapes"},
                        Case{"build " + mlp + " -o /dev/null --fp16 --precision fp32", "excludes"},
                        Case{"build " + mlp + " -o /dev/null --profile x:1x64/4x64/8x64 --optShapes x:4x64", "both --profile"},
                        Case{"run --loadEngine " + mlp, "is not a kiln plan"},
                        Case{"run " + mlp + " --onnx " + mlp, "give the model once"},
                        Case{"run " + mlp + " --useCudaGraph --cuda-graphs disabled", "excludes"}}) {
    Result r = kiln(c.args);
    EXPECT_EQ(r.code, 2) << c.args << ": " << r.output;
    EXPECT_NE(r.output.find(c.says), std::string::npos) << c.args << ": " << r.output;
  }
}

}  // namespace

// --device cuda:N / N, --duration and --warmUp: checked before anything runs.
namespace {

TEST(CliTiming, DeviceAndTimeSpansAreChecked) {
  const std::string mlp = kExamples + "/mlp.onnx";
  for (const char* bad : {"--device gpu", "--device cuda:x", "--device=-1", "--duration -1", "--duration 1e9",
                          "--duration soon", "--warmUp nan", "--iterations 1.5"}) {
    Result r = kiln("run " + mlp + " " + bad);
    EXPECT_EQ(r.code, 2) << bad << ": " << r.output;
  }
  for (const std::string& command : {"bench " + mlp + " --trace x:1x64", "profile " + mlp}) {
    Result cpu = kiln(command + " --device cpu");  // GPU-only commands
    EXPECT_EQ(cpu.code, 2) << command << ": " << cpu.output;
    EXPECT_NE(cpu.output.find("'cpu' is not cuda, cuda:N or N"), std::string::npos) << cpu.output;
  }
  EXPECT_EQ(kiln("profile " + mlp + " --profile-iterations 0").code, 2);
  EXPECT_EQ(kiln("run " + mlp + " --device cpu --duration 0.5 --warmUp 10").code, 0);
  // trtexec's --device=N means cuda:N; without a GPU here, it fails as a device error naming it.
  Result n = kiln("run " + mlp + " --device=0");
  if (n.code != 0) {
    EXPECT_EQ(n.code, 5) << n.output;
    EXPECT_NE(n.output.find("--device cuda:0"), std::string::npos) << n.output;
  }
}

}  // namespace

// A symbolic input dim without a range: the error comes before any pass and offers flags to paste.
namespace {

TEST(CliMissingProfile, ErrorNamesTheInputAndOffersAProfileToPaste) {
  ModelBuilder m;
  m.input("in:0", TensorProto::FLOAT, {"N", "4"});
  m.input("mask", TensorProto::FLOAT, {"N", "4"});
  m.node("Add", {"in:0", "mask"}, {"hidden"});
  m.node("Relu", {"hidden"}, {"out"});
  m.output("out");
  ModelFile model(m, "kiln_cli_missing_profile");
  TempDir dir;
  std::string plan = (dir.path / "p.kiln").string();
  Result missing = kiln("build " + model.path.string() + " -o " + plan);
  ASSERT_EQ(missing.code, 4) << missing.output;
  EXPECT_NE(missing.output.find("input 'in:0' dim 0 ('N')"), std::string::npos) << missing.output;
  EXPECT_EQ(missing.output.find("hidden"), std::string::npos) << missing.output;  // no internal tensor
  EXPECT_EQ(missing.output.find("fold"), std::string::npos) << missing.output;    // no pass ran
  size_t from = missing.output.find("e.g. add "), to = missing.output.find(" (1/1/64");
  ASSERT_NE(from, std::string::npos) << missing.output;
  std::string flags = missing.output.substr(from + 9, to - from - 9);
  EXPECT_EQ(flags, "--profile in:0:1x4/1x4/64x4 --profile mask:1x4/1x4/64x4");
  Result pasted = kiln("build " + model.path.string() + " -o " + plan + " " + flags);
  EXPECT_EQ(pasted.code, 0) << pasted.output;
  // Both inputs share the symbol N: one input's profile ranges it for both.
  Result half = kiln("build " + model.path.string() + " -o " + plan + " --profile 'in:0:2x4/4x4/8x4'");
  EXPECT_EQ(half.code, 0) << half.output;
}

// Without a GPU, build and inspect say which nodes the GPU runtime cannot run and why.
TEST(CliJson, BuildAndInspectReportGpuSupport) {
  // Every op kind has a GPU kernel; an Einsum of more operands than its kernel takes does not run there.
  ModelBuilder m;
  m.input("x", TensorProto::FLOAT, {"2", "3"});
  std::vector<std::string> operands{"r"};
  for (int i = 0; i < 6; ++i) {
    operands.push_back("v" + std::to_string(i));
    m.initializer(operands.back(), {3}, {1, 2, 3});
  }
  m.node("Relu", {"x"}, {"r"});
  ::onnx::NodeProto& einsum = m.node("Einsum", operands, {"y"});
  einsum.set_name("sum7");
  ModelBuilder::attr(einsum, "equation", std::string("ij,j,j,j,j,j,j->i"));
  m.output("y");
  ModelFile model(m, "kiln_cli_gpu_support");
  TempDir dir;
  std::string plan = (dir.path / "sum7.kiln").string();
  Result b = kiln("build " + model.path.string() + " -o " + plan);
  ASSERT_EQ(b.code, 0) << b.output;  // a warning: the CPU device runs the plan
  EXPECT_NE(b.output.find("kiln build: warning: the GPU runtime cannot run 1 of 2 nodes"), std::string::npos) << b.output;
  EXPECT_NE(b.output.find(":\n  Einsum (1 node: sum7): 7 operands; the GPU kernel takes at most 6\n"), std::string::npos)
      << b.output;
  EXPECT_TRUE(fs::exists(plan));
  json built = kiln_json("build " + model.path.string() + " -o " + plan);
  EXPECT_EQ(built["gpu_support"], json::parse(R"({"nodes": 2, "supported": 1, "unsupported":
      [{"op": "Einsum", "reason": "7 operands; the GPU kernel takes at most 6", "nodes": ["sum7"]}], "on_host": []})"));

  Result i = kiln("inspect " + plan);
  EXPECT_EQ(i.code, 0) << i.output;
  EXPECT_NE(i.output.find("GPU support: 1 of 2 nodes; the GPU runtime cannot run:\n"
                          "  Einsum (1 node: sum7): 7 operands; the GPU kernel takes at most 6\n"), std::string::npos)
      << i.output;
  EXPECT_EQ(kiln_json("inspect " + plan)["gpu_support"], built["gpu_support"]);
  // A model: as the plan `kiln build` would make.
  EXPECT_EQ(kiln_json("inspect " + model.path.string())["gpu_support"], built["gpu_support"]);
  Result mlp = kiln("inspect " + kExamples + "/mlp.onnx");
  EXPECT_NE(mlp.output.find("GPU support: all 4 nodes of the plan `kiln build` makes at fp32 (dims without a range as 1..64)\n"),
            std::string::npos) << mlp.output;
}

// Nodes on string tensors run on the host inside the GPU engine: supported,
// and listed apart with the tensor that puts them there.
TEST(CliJson, InspectListsTheNodesThatRunOnTheHost) {
  ModelBuilder m;
  m.input("x", TensorProto::FLOAT, {"3"});
  m.node("Relu", {"x"}, {"r"});
  ::onnx::NodeProto& cast = m.node("Cast", {"r"}, {"text"});
  cast.set_name("to_text");
  ModelBuilder::attr(cast, "to", int64_t(TensorProto::STRING));
  ::onnx::NodeProto& same = m.node("Equal", {"text", "text"}, {"y"});
  same.set_name("same");
  m.output("y", TensorProto::BOOL);
  ModelFile model(m, "kiln_cli_on_host");
  Result i = kiln("inspect " + model.path.string());
  EXPECT_EQ(i.code, 0) << i.output;
  EXPECT_NE(i.output.find("GPU support: all 3 nodes of the plan `kiln build` makes at fp32\n"
                          "  on the host inside the GPU engine (its enqueue waits for them: no CUDA graph holds it):\n"
                          "  Cast (1 node: to_text): runs on the host inside the GPU engine: output 0 ('text') is a string tensor"),
            std::string::npos) << i.output;
  EXPECT_NE(i.output.find("  Equal (1 node: same): runs on the host inside the GPU engine: input 0 ('text')"), std::string::npos)
      << i.output;
  json gpu = kiln_json("inspect " + model.path.string())["gpu_support"];
  EXPECT_EQ(gpu["nodes"], 3);
  EXPECT_EQ(gpu["supported"], 3);
  EXPECT_EQ(gpu["unsupported"], json::array());
  ASSERT_EQ(gpu["on_host"].size(), 2u) << gpu;
  EXPECT_EQ(gpu["on_host"][0]["op"], "Cast");
  EXPECT_EQ(gpu["on_host"][0]["nodes"], json::parse(R"(["to_text"])"));
  EXPECT_EQ(gpu["on_host"][1]["op"], "Equal");
}

TEST(CliJson, OpsListsEveryOpKindAndWhereItRuns) {
  json doc = kiln_json("ops");
  std::map<std::string, json> ops;
  for (const json& op : doc["ops"]) ops[op["op"]] = op;
  EXPECT_GT(ops.size(), 100u);
  EXPECT_EQ(ops["Relu"]["gpu"], "kernel");
  EXPECT_EQ(ops["Relu"]["reference"], true);
  EXPECT_EQ(ops["Gemm"]["gpu"], "builder");
  EXPECT_EQ(ops["MatMul"]["gpu"], "kernel");  // the MatMuls `kiln build` leaves alone (integers, a vector operand)
  EXPECT_EQ(ops["Einsum"]["gpu"], "kernel");
  EXPECT_EQ(ops["Einsum"]["gpu_detail"].get<std::string>().rfind("generic kernel, ", 0), 0u) << ops["Einsum"];
  EXPECT_EQ(ops["Resize"]["onnx"], json::parse(R"(["Resize", "Upsample"])"));
  EXPECT_EQ(ops["FusedMatMul"]["onnx"], json::array());
  EXPECT_EQ(ops["FusedMatMul"]["family"], "linalg");
  EXPECT_EQ(ops["Softmax"]["family"], "normalization");
  EXPECT_EQ(ops["StringConcat"]["gpu"], "host");
  EXPECT_EQ(ops["RegexFullMatch"]["gpu_detail"].get<std::string>().rfind("runs on the host inside the GPU engine", 0), 0u)
      << ops["RegexFullMatch"];
  Result md = kiln("ops --markdown");
  EXPECT_EQ(md.code, 0) << md.output;
  EXPECT_NE(md.output.find("| op | family | ONNX ops | CPU reference | GPU | notes |\n"), std::string::npos) << md.output;
  EXPECT_NE(md.output.find("| Einsum | linalg | Einsum | yes | yes | generic kernel, "), std::string::npos) << md.output;
}

}  // namespace

// --verbose / --quiet: how much of kiln's log (library and command lines) reaches stderr.
namespace {

TEST(CliLog, QuietAndVerboseSetTheLogSeverity) {
  TempDir dir;
  std::string plan = (dir.path / "mlp.kiln").string(), cache = (dir.path / "cache.bin").string();
  std::string build = "build " + kExamples + "/mlp.onnx -o " + plan + " --profile x:1x64/4x64/16x64";
  Result normal = kiln(build);
  ASSERT_EQ(normal.code, 0) << normal.output;
  EXPECT_NE(normal.output.find("kiln build: fold constants: "), std::string::npos) << normal.output;  // the library's info
  EXPECT_NE(normal.output.find("kiln build: wrote "), std::string::npos) << normal.output;           // the command's
  Result quiet = kiln(build + " --quiet");
  EXPECT_EQ(quiet.code, 0) << quiet.output;
  EXPECT_EQ(quiet.output, "");
  EXPECT_EQ(kiln(build + " --quiet --verbose").code, 2);
  // The runtime cache's loads and saves are verbose lines; --shared-runtime-cache style, after the verb too.
  ASSERT_EQ(kiln("cache warm " + plan + " --arch sm_90 --cache " + cache).code, 0);
  Result verbose = kiln("cache warm " + plan + " --arch sm_90 --cache " + cache + " --verbose");
  EXPECT_EQ(verbose.code, 0) << verbose.output;
  EXPECT_NE(verbose.output.find("kiln cache warm: loaded runtime cache"), std::string::npos) << verbose.output;
  EXPECT_NE(verbose.output.find("kiln cache warm: saved runtime cache"), std::string::npos) << verbose.output;
  // A warning passes --quiet.
  std::ofstream(cache, std::ios::binary | std::ios::app) << "trailing";
  Result damaged = kiln("cache warm " + plan + " --arch sm_90 --cache " + cache + " --quiet");
  EXPECT_EQ(damaged.code, 0) << damaged.output;
  EXPECT_NE(damaged.output.find("kiln cache warm: warning: "), std::string::npos) << damaged.output;
  EXPECT_NE(damaged.output.find("kernels will recompile"), std::string::npos) << damaged.output;
}

}  // namespace

// kiln bench --streams N: a count from 0 to 256, checked while parsing; it runs only on a GPU.
namespace {

TEST(CliBench, StreamsIsACountOfAtMost256) {
  TempDir dir;
  std::string plan = (dir.path / "mlp.kiln").string();
  ASSERT_EQ(kiln("build " + kExamples + "/mlp.onnx -o " + plan + " --profile x:1x64/4x64/16x64 --quiet").code, 0);
  for (const char* bad : {"--streams 257", "--streams -1", "--streams two", "--streams"}) {
    Result r = kiln("bench " + plan + " --trace x:2x64 " + bad);
    EXPECT_EQ(r.code, 2) << bad << ": " << r.output;
    EXPECT_NE(r.output.find("--streams"), std::string::npos) << bad << ": " << r.output;
  }
  // Accepted: without a GPU it stops at the device (5), with one it runs (0).
  Result ok = kiln("bench " + plan + " --trace x:2x64 --streams 4 --iterations 20 --runtime-cache off");
  EXPECT_TRUE(ok.code == 0 || ok.code == 5) << ok.output;
  if (ok.code == 0) {
    EXPECT_NE(ok.output.find("x:2x64 with 4 streams: "), std::string::npos) << ok.output;
  }
  EXPECT_NE(kiln("bench --help").output.find("--streams"), std::string::npos);
}

}  // namespace

// Plans with several optimization profiles: --profile entries grouped by
// input, trtexec's repeated sets, inspect listing them, --profile-index.
namespace {

// x[B,4] and mask[B,S]: two inputs, two symbols.
ModelBuilder two_inputs() {
  ModelBuilder m;
  m.input("x", TensorProto::FLOAT, {"B", "4"});
  m.input("mask", TensorProto::FLOAT, {"B", "S"});
  m.node("Relu", {"x"}, {"y"});
  m.node("Relu", {"mask"}, {"z"});
  m.output("y");
  m.output("z");
  return m;
}

const std::string kTwoProfiles =
    " --profile x:1x4/2x4/8x4 --profile mask:1x16/2x16/8x32 --profile x:9x4/16x4/64x4 --profile mask:9x16/16x16/64x16";

TEST(CliProfiles, NamingAnInputAgainStartsTheNextProfile) {
  ModelFile model(two_inputs(), "kiln_cli_profiles");
  TempDir dir;
  std::string plan = (dir.path / "two.kiln").string();
  json built = kiln_json("build " + model.path.string() + " -o " + plan + kTwoProfiles);
  EXPECT_EQ(built["profiles"], json::parse(R"([{"B": {"min": 1, "opt": 2, "max": 8}, "S": {"min": 16, "opt": 16, "max": 32}},
                                               {"B": {"min": 9, "opt": 16, "max": 64}, "S": {"min": 16, "opt": 16, "max": 16}}])"));
  EXPECT_EQ(built["ranges"], json::parse(R"({"B": {"min": 1, "opt": 2, "max": 64}, "S": {"min": 16, "opt": 16, "max": 32}})"));
  Result inspect = kiln("inspect " + plan);
  EXPECT_EQ(inspect.code, 0) << inspect.output;
  EXPECT_NE(inspect.output.find("plan format 5\n"), std::string::npos) << inspect.output;
  EXPECT_NE(inspect.output.find("profiles:   2 (a context runs the shapes of the one it selects)\n"
                                "  0: B 1/2/8, S 16/16/32\n"
                                "  1: B 9/16/64, S 16/16/16\n"),
            std::string::npos)
      << inspect.output;
  json inspected = kiln_json("inspect " + plan);
  EXPECT_EQ(inspected["profiles"], built["profiles"]);
  EXPECT_EQ(inspected["plan_format"], 5);
  // One profile, as before: one entry per input.
  json one = kiln_json("build " + model.path.string() + " -o " + plan + " --profile x:1x4/2x4/8x4 --profile mask:1x16/2x16/8x16");
  EXPECT_EQ(one["profiles"].size(), 1u);
  EXPECT_NE(kiln("build --help").output.find("naming an input again starts the next profile"), std::string::npos);
}

TEST(CliProfiles, EveryProfileNeedsEverySymbolicInputDim) {
  ModelFile model(two_inputs(), "kiln_cli_profiles_missing");
  TempDir dir;
  std::string plan = (dir.path / "p.kiln").string();
  // Profile 1 ranges B through x but has nothing for mask's S.
  Result missing = kiln("build " + model.path.string() + " -o " + plan +
                        " --profile x:1x4/2x4/8x4 --profile mask:1x16/2x16/8x16 --profile x:9x4/16x4/64x4");
  EXPECT_EQ(missing.code, 4) << missing.output;
  EXPECT_NE(missing.output.find("input 'mask' dim 1 ('S') has no range in profile 1; every profile needs a range"),
            std::string::npos)
      << missing.output;
  EXPECT_NE(missing.output.find("add to profile 1's --profile entries --profile mask:9x1/16x1/64x64"), std::string::npos)
      << missing.output;
  EXPECT_FALSE(fs::exists(plan));
  // x and mask share B: in one profile they must agree on its range.
  Result conflict = kiln("build " + model.path.string() + " -o " + plan + " --profile x:1x4/2x4/8x4 --profile mask:2x16/2x16/8x16");
  EXPECT_EQ(conflict.code, 2) << conflict.output;
  EXPECT_NE(conflict.output.find("gives 'B' 2/2/8, but profile 0 already has 1/2/8"), std::string::npos) << conflict.output;
}

TEST(CliProfiles, EachSetOfTrtexecShapesIsAProfile) {
  ModelFile model(two_inputs(), "kiln_cli_profiles_trtexec");
  TempDir dir;
  std::string plan = (dir.path / "p.kiln").string();
  std::string sets =
      " --minShapes x:1x4,mask:1x16 --optShapes x:2x4,mask:2x16 --maxShapes x:8x4,mask:8x32"
      " --minShapes x:9x4,mask:9x16 --optShapes x:16x4,mask:16x16 --maxShapes x:64x4,mask:64x16";
  json trtexec = kiln_json("build " + model.path.string() + " -o " + plan + sets);
  json flags = kiln_json("build " + model.path.string() + " -o " + plan + kTwoProfiles);
  EXPECT_EQ(trtexec["profiles"], flags["profiles"]);
  struct Case {
    std::string args, says;
  };
  for (const Case& c :
       {Case{" --minShapes x:1x4,mask:1x16 --optShapes x:2x4,mask:2x16 --maxShapes x:8x4,mask:8x32 --minShapes x:9x4,mask:9x16",
             "--minShapes is given 2 times and --optShapes 1; each set of --minShapes/--optShapes/--maxShapes makes one profile"},
        Case{" --minShapes x:1x4,mask:1x16 --optShapes x:2x4,mask:2x16 --maxShapes x:8x4,mask:8x32"
             " --minShapes x:9x4,mask:9x16 --optShapes x:16x4,mask:16x16 --maxShapes mask:64x16",
             "'x' is missing from --maxShapes (profile 1)"},
        Case{" --profile x:1x4/2x4/8x4 --minShapes x:1x4 --optShapes x:2x4 --maxShapes x:8x4", "both --profile"}}) {
    Result r = kiln("build " + model.path.string() + " -o " + plan + c.args);
    EXPECT_EQ(r.code, 2) << c.args << ": " << r.output;
    EXPECT_NE(r.output.find(c.says), std::string::npos) << c.args << ": " << r.output;
  }
}

TEST(CliProfiles, ProfileIndexSelectsTheShapesARunTakes) {
  ModelFile model(two_inputs(), "kiln_cli_profiles_run");
  TempDir dir;
  std::string plan = (dir.path / "p.kiln").string();
  ASSERT_EQ(kiln("build " + model.path.string() + " -o " + plan + kTwoProfiles + " --quiet").code, 0);
  // Dims not given take the selected profile's opt values.
  Result first = kiln("run " + plan);
  EXPECT_EQ(first.code, 0) << first.output;
  EXPECT_NE(first.output.find("output y: float32[2,4]"), std::string::npos) << first.output;
  Result second = kiln("run " + plan + " --profile-index 1");
  EXPECT_EQ(second.code, 0) << second.output;
  EXPECT_NE(second.output.find("output y: float32[16,4]"), std::string::npos) << second.output;
  EXPECT_EQ(kiln_json("run " + plan + " --profile-index 1")["profile_index"], 1);
  // A shape of the other profile: refused on the CPU device too, naming the profile that takes it.
  Result other = kiln("run " + plan + " --shapes x:12x4,mask:12x16");
  EXPECT_EQ(other.code, 5) << other.output;
  EXPECT_NE(other.output.find("outside the range [1, 8] of 'B' in profile 0; profile 1 accepts this shape of 'x' ([12,4])"),
            std::string::npos)
      << other.output;
  EXPECT_EQ(kiln("run " + plan + " --shapes x:12x4,mask:12x16 --profile-index 1").code, 0);
  for (const std::string& command : {"run " + plan, "bench " + plan + " --trace x:2x4,mask:2x16"}) {
    Result bad = kiln(command + " --profile-index 2");
    EXPECT_EQ(bad.code, 2) << command << ": " << bad.output;
    EXPECT_NE(bad.output.find("--profile-index 2: " + plan + " has 2 optimization profiles (0 to 1); kiln inspect lists them"),
              std::string::npos)
        << command << ": " << bad.output;
    EXPECT_EQ(kiln(command + " --profile-index -1").code, 2) << command;
  }
  Result onnx = kiln("run " + model.path.string() + " --profile-index 1");
  EXPECT_EQ(onnx.code, 2) << onnx.output;
  EXPECT_NE(onnx.output.find("is an ONNX model, which runs with one profile (0)"), std::string::npos) << onnx.output;
  EXPECT_NE(kiln("bench --help").output.find("--profile-index"), std::string::npos);
}

// Range(0, limit, 1) of an input limit: no bound follows from shapes, so the
// build names the tensor and the flag; with the flag it writes the plan.
TEST(Cli, BuildNeedsABoundForADataDependentSize) {
  ModelBuilder m(13);
  m.input("limit", TensorProto::INT64, {});
  m.int_initializer("zero", {}, {0});
  m.int_initializer("one", {}, {1});
  m.node("Range", {"zero", "limit", "one"}, {"r"});
  m.node("Neg", {"r"}, {"y"});
  m.output("y", TensorProto::INT64);
  ModelFile model(m, "kiln_cli_range");
  TempDir dir;
  std::string plan = (dir.path / "range.kiln").string();
  Result missing = kiln("build " + model.path.string() + " -o " + plan);
  EXPECT_EQ(missing.code, 4) << missing.output;
  EXPECT_NE(missing.output.find("tensor 'r' (node "), std::string::npos) << missing.output;
  EXPECT_NE(missing.output.find("--data-dependent-bound r=N"), std::string::npos) << missing.output;
  EXPECT_FALSE(fs::exists(plan));
  EXPECT_EQ(kiln("build " + model.path.string() + " -o " + plan + " --data-dependent-bound r").code, 2);  // not NAME=N
  EXPECT_FALSE(fs::exists(plan));
  Result built = kiln("build " + model.path.string() + " -o " + plan + " --data-dependent-bound r=500");
  ASSERT_EQ(built.code, 0) << built.output;
  Result inspected = kiln("inspect " + plan);
  EXPECT_NE(inspected.output.find("_d0: min 0, opt 500, max 500"), std::string::npos) << inspected.output;
}

}  // namespace
