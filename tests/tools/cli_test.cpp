// Runs the kiln binary like a script would and checks exit codes and output.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>

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
