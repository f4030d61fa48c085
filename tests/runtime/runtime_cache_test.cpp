#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <random>

#include "kiln/runtime_cache.h"

namespace kiln::runtime {
namespace {

namespace fs = std::filesystem;

CacheKey key(int i) { return kernel_cache_key("kernel source " + std::to_string(i), "--opt", 90, 13000); }
std::string cubin(int i) { return std::string(100 + i % 37, char('a' + i % 26)); }

TEST(RuntimeCache, KeysSeparateEverythingThatMakesACubin) {
  CacheKey base = kernel_cache_key("src", "opts", 90, 13000);
  EXPECT_EQ(base, kernel_cache_key("src", "opts", 90, 13000));
  EXPECT_NE(base, kernel_cache_key("src2", "opts", 90, 13000));
  EXPECT_NE(base, kernel_cache_key("src", "opts2", 90, 13000));
  EXPECT_NE(base, kernel_cache_key("src", "opts", 80, 13000));
  EXPECT_NE(base, kernel_cache_key("src", "opts", 90, 13010));
}

TEST(RuntimeCache, RoundTripAndCounts) {
  RuntimeCache cache(13000);
  cache.set_origin(13000, "Some GPU");
  for (int i = 0; i < 10; ++i) cache.insert(key(i), i % 2 ? 80 : 90, cubin(i));
  RuntimeCache back(13000);
  EXPECT_TRUE(back.merge_serialized(cache.serialize(), "test").empty());
  EXPECT_EQ(back.entry_count(), 10u);
  EXPECT_EQ(back.bytes(), cache.bytes());
  EXPECT_EQ(back.entries_per_arch().at(80), 5u);
  EXPECT_EQ(back.find(key(3), 80), cubin(3));
  EXPECT_FALSE(back.find(key(3), 90).has_value());
  EXPECT_NE(back.loaded_origin().find("driver 13000, Some GPU"), std::string::npos) << back.loaded_origin();
  back.reset();
  EXPECT_EQ(back.entry_count(), 0u);
}

TEST(RuntimeCache, EveryTruncationAndBitFlipIsIgnoredWithAWarning) {
  RuntimeCache cache(13000);
  for (int i = 0; i < 3; ++i) cache.insert(key(i), 90, cubin(i));
  std::string bytes = cache.serialize();
  for (size_t n = 1; n < bytes.size(); ++n) {
    RuntimeCache c(13000);
    EXPECT_FALSE(c.merge_serialized(bytes.substr(0, n), "truncated").empty()) << n;
    EXPECT_EQ(c.entry_count(), 0u) << n;
  }
  std::mt19937 rng(7);
  for (int trial = 0; trial < 300; ++trial) {
    std::string flipped = bytes;
    flipped[rng() % flipped.size()] ^= char(1 << (rng() % 8));
    RuntimeCache c(13000);
    EXPECT_FALSE(c.merge_serialized(flipped, "flipped").empty());
    EXPECT_EQ(c.entry_count(), 0u);
  }
}

TEST(RuntimeCache, OtherCompilerVersionsAreIgnored) {
  RuntimeCache old(12080);
  old.insert(key(1), 90, cubin(1));
  RuntimeCache now(13000);
  auto warnings = now.merge_serialized(old.serialize(), "old.bin");
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("NVRTC 12080"), std::string::npos) << warnings[0];
  EXPECT_EQ(now.entry_count(), 0u);
  EXPECT_FALSE(now.merge_serialized("garbage that is not a cache", "g").empty());
}

TEST(RuntimeCache, KnowsWhetherItHoldsUnsavedEntries) {
  fs::path file = fs::temp_directory_path() / ("kiln_cache_unsaved_" + std::to_string(getpid()) + ".bin");
  RuntimeCache cache(13000);
  EXPECT_FALSE(cache.has_unsaved_entries());
  cache.insert(key(1), 90, "cubin one");
  EXPECT_TRUE(cache.has_unsaved_entries());
  EXPECT_TRUE(cache.save_file(file).empty());
  EXPECT_FALSE(cache.has_unsaved_entries());
  cache.insert(key(1), 90, "cubin one");  // already there
  EXPECT_FALSE(cache.has_unsaved_entries());
  RuntimeCache loaded(13000);
  EXPECT_TRUE(loaded.load_file(file).empty());
  EXPECT_EQ(loaded.entry_count(), 1u);
  EXPECT_FALSE(loaded.has_unsaved_entries());  // what came from the file needs no saving
  RuntimeCache other(13000);
  other.insert(key(2), 90, "cubin two");
  loaded.merge(other);
  EXPECT_TRUE(loaded.has_unsaved_entries());
  fs::remove(file);
}

TEST(RuntimeCache, UnwritableFolderIsAWarning) {
  RuntimeCache cache(13000);  // nobody, root included, can create files under /proc
  EXPECT_FALSE(cache.save_file("/proc/kiln/cache.bin").empty());
}

TEST(RuntimeCache, ConcurrentProcessesKeepTheUnionOfTheirEntries) {
  fs::path file = fs::temp_directory_path() / ("kiln_cache_concurrency_" + std::to_string(getpid()) + ".bin");
  fs::remove(file);
  for (int round = 0; round < 3; ++round) {
    std::vector<pid_t> children;
    for (int p = 0; p < 8; ++p) {
      pid_t pid = fork();
      ASSERT_GE(pid, 0);
      if (pid == 0) {  // child: load, add an overlapping slice, save; exit without running atexit handlers
        RuntimeCache cache(13000);
        cache.load_file(file);
        for (int i = p * 5; i < p * 5 + 10; ++i) cache.insert(key(i + round * 100), 90, cubin(i + round * 100));
        _exit(cache.save_file(file).empty() ? 0 : 1);
      }
      children.push_back(pid);
    }
    for (pid_t pid : children) {
      int status = 0;
      waitpid(pid, &status, 0);
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
  }
  RuntimeCache result(13000);
  EXPECT_TRUE(result.load_file(file).empty());
  EXPECT_EQ(result.entry_count(), 3u * 45u);  // each round: entries 0..44, all of them
  for (int round = 0; round < 3; ++round)
    for (int i = 0; i < 45; ++i) EXPECT_EQ(result.find(key(i + round * 100), 90), cubin(i + round * 100)) << round << " " << i;
  fs::remove(file);
}

}  // namespace
}  // namespace kiln::runtime
