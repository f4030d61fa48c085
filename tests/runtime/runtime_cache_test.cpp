#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "../core/forked.h"
#include "../core/log_capture.h"
#include "kiln/file_io.h"
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
  // A separator inside the source or options cannot make two inputs alike.
  EXPECT_NE(kernel_cache_key("x|y", "z", 90, 1), kernel_cache_key("x", "y|z", 90, 1));
  EXPECT_NE(kernel_cache_key("xy", "z", 90, 1), kernel_cache_key("x", "yz", 90, 1));
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
  EXPECT_TRUE(cache.save_file(file).warnings.empty());
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
  SaveResult result = cache.save_file("/proc/kiln/cache.bin");
  EXPECT_FALSE(result.saved);
  EXPECT_FALSE(result.warnings.empty());
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
        _exit(cache.save_file(file).warnings.empty() ? 0 : 1);
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

TEST(RuntimeCache, TrustDecisionOnStatValues) {
  auto with = [](uid_t owner, mode_t mode) {
    struct stat info {};
    info.st_uid = owner;
    info.st_mode = mode;
    return info;
  };
  const uid_t me = 1000;
  EXPECT_EQ(cache_trust_problem(with(me, S_IFREG | 0644), me, false), "");
  EXPECT_EQ(cache_trust_problem(with(0, S_IFREG | 0644), me, false), "");  // root's
  EXPECT_NE(cache_trust_problem(with(1001, S_IFREG | 0644), me, false).find("owned by uid 1001"), std::string::npos);
  EXPECT_NE(cache_trust_problem(with(me, S_IFREG | 0664), me, false).find("mode 0664"), std::string::npos);
  EXPECT_NE(cache_trust_problem(with(me, S_IFREG | 0646), me, false), "");
  EXPECT_NE(cache_trust_problem(with(me, S_IFDIR | 0775), me, false), "");
  EXPECT_NE(cache_trust_problem(with(me, S_IFDIR | 0777), me, false), "");
  EXPECT_EQ(cache_trust_problem(with(0, S_IFDIR | 01777), me, false), "");  // /tmp: others cannot replace our files
  EXPECT_NE(cache_trust_problem(with(me, S_IFREG | 01777), me, false), "");  // the sticky bit means nothing on a file
  EXPECT_EQ(cache_trust_problem(with(1001, S_IFREG | 0666), me, true), "");  // shared on purpose
  EXPECT_EQ(cache_trust_problem(with(1001, S_IFDIR | 0777), me, true), "");
}

// A private folder per test, holding a saved cache with entries 0..2.
class CacheFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "kiln_cache_file_XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    file_ = dir_ / "cache.bin";
    RuntimeCache cache(13000);
    for (int i = 0; i < 3; ++i) cache.insert(key(i), 90, cubin(i));
    ASSERT_TRUE(cache.save_file(file_).saved);
  }
  void TearDown() override { fs::remove_all(dir_); }
  static std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  // How many entries a fresh cache gets from `path`, and the warnings.
  static std::pair<size_t, std::string> load(const fs::path& path, CacheFilePolicy policy = {}) {
    RuntimeCache cache(13000, policy);
    std::string text;
    for (auto& w : cache.load_file(path)) text += w + "\n";
    return {cache.entry_count(), text};
  }
  static SaveResult save(const fs::path& path, CacheFilePolicy policy = {}, bool replacing = false) {
    RuntimeCache cache(13000, policy);
    cache.insert(key(7), 90, cubin(7));
    return replacing ? cache.save_file_replacing(path) : cache.save_file(path);
  }
  fs::path dir_, file_;
};

TEST_F(CacheFileTest, OwnFileInOwnFolderIsUsed) {
  auto [entries, warnings] = load(file_);
  EXPECT_EQ(entries, 3u);
  EXPECT_EQ(warnings, "");
  EXPECT_EQ(cache_file_trust_problem(file_, false), "");
}

TEST_F(CacheFileTest, GroupWritableFileIsRefusedUnlessShared) {
  fs::permissions(file_, fs::perms(0664));
  std::string before = slurp(file_);
  auto [entries, warnings] = load(file_);
  EXPECT_EQ(entries, 0u);
  EXPECT_NE(warnings.find("not trusted"), std::string::npos) << warnings;
  EXPECT_NE(warnings.find("mode 0664"), std::string::npos) << warnings;
  SaveResult result = save(file_);
  EXPECT_FALSE(result.saved);
  EXPECT_EQ(slurp(file_), before);  // nothing written to it either
  CacheFilePolicy shared;
  shared.shared = true;
  EXPECT_EQ(load(file_, shared).first, 3u);
  EXPECT_TRUE(save(file_, shared).saved);
  EXPECT_EQ(load(file_, shared).first, 4u);
}

TEST_F(CacheFileTest, GroupWritableFolderIsRefusedUnlessShared) {
  fs::permissions(dir_, fs::perms(0775));
  auto [entries, warnings] = load(file_);
  EXPECT_EQ(entries, 0u);
  EXPECT_NE(warnings.find("folder"), std::string::npos) << warnings;
  EXPECT_FALSE(save(file_).saved);
  EXPECT_NE(cache_file_trust_problem(file_, false), "");
  CacheFilePolicy shared;
  shared.shared = true;
  EXPECT_EQ(load(file_, shared).first, 3u);
}

TEST_F(CacheFileTest, FileOwnedByAnotherUserIsRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to chown; TrustDecisionOnStatValues covers the decision";
  ASSERT_EQ(::chown(file_.c_str(), 12345, 12345), 0);
  auto [entries, warnings] = load(file_);
  EXPECT_EQ(entries, 0u);
  EXPECT_NE(warnings.find("owned by uid 12345"), std::string::npos) << warnings;
  EXPECT_FALSE(save(file_).saved);
}

TEST_F(CacheFileTest, NewFoldersArePrivateWhateverTheUmask) {
  mode_t old = ::umask(0);
  SaveResult result = save(dir_ / "a" / "b" / "cache.bin");
  ::umask(old);
  ASSERT_TRUE(result.saved) << (result.warnings.empty() ? "" : result.warnings[0]);
  EXPECT_EQ(load(dir_ / "a" / "b" / "cache.bin").first, 1u);
  EXPECT_EQ(fs::status(dir_ / "a" / "b").permissions(), fs::perms::owner_all);
}

TEST_F(CacheFileTest, ALinkAsTheCacheFileIsNotFollowed) {
  fs::path real = dir_ / "real.bin";
  fs::rename(file_, real);
  fs::create_symlink(real, file_);
  std::string before = slurp(real);
  auto [entries, warnings] = load(file_);
  EXPECT_EQ(entries, 0u);
  EXPECT_NE(warnings.find("symbolic link"), std::string::npos) << warnings;
  EXPECT_FALSE(save(file_).saved);
  EXPECT_EQ(slurp(real), before);
}

TEST_F(CacheFileTest, PlantedLinksAtTheLockAndOldTemporaryNamesAreNotFollowed) {
  fs::path victim = dir_ / "victim";
  std::ofstream(victim) << "precious";
  fs::create_symlink(victim, dir_ / ("cache.bin.tmp." + std::to_string(::getpid())));  // the old temporary name
  EXPECT_TRUE(save(file_).saved);
  EXPECT_EQ(slurp(victim), "precious");
  fs::remove(dir_ / "cache.bin.lock");
  fs::create_symlink(victim, dir_ / "cache.bin.lock");
  SaveResult result = save(file_);
  EXPECT_FALSE(result.saved);
  ASSERT_FALSE(result.warnings.empty());
  EXPECT_NE(result.warnings[0].find("symbolic link"), std::string::npos) << result.warnings[0];
  EXPECT_EQ(slurp(victim), "precious");
}

TEST_F(CacheFileTest, AFifoIsRefusedWithoutHanging) {
  fs::remove(file_);
  ASSERT_EQ(::mkfifo(file_.c_str(), 0600), 0);
  int code = kiln::testing::run_forked([&] {
    auto [entries, warnings] = load(file_);
    bool refused = entries == 0 && warnings.find("FIFO") != std::string::npos;
    return refused && !save(file_).saved ? 0 : 1;
  }, std::chrono::seconds(5));
  EXPECT_EQ(code, 0) << "-1 means it hung";
}

TEST_F(CacheFileTest, AFolderIsAWarningNotACrash) {
  auto [entries, warnings] = load(dir_);
  EXPECT_EQ(entries, 0u);
  EXPECT_NE(warnings.find("is a folder"), std::string::npos) << warnings;
  SaveResult result = save(dir_, {}, true);
  EXPECT_FALSE(result.saved);
  EXPECT_TRUE(fs::is_directory(dir_));
}

TEST_F(CacheFileTest, AHugeSparseFileIsRefusedWithoutReadingIt) {
  fs::resize_file(file_, uint64_t(4) << 30);
  auto start = std::chrono::steady_clock::now();
  auto [entries, warnings] = load(file_);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
  EXPECT_EQ(entries, 0u);
  EXPECT_NE(warnings.find("at most"), std::string::npos) << warnings;
}

TEST_F(CacheFileTest, AFileThatIsNotACacheIsNeverOverwritten) {
  fs::path plan = dir_ / "model.kiln";
  std::string bytes = std::string("KILNPLAN") + std::string(100, '\x01');
  std::ofstream(plan, std::ios::binary) << bytes;
  for (bool replacing : {true, false}) {
    SaveResult result = save(plan, {}, replacing);
    EXPECT_FALSE(result.saved);
    ASSERT_FALSE(result.warnings.empty());
    EXPECT_NE(result.warnings[0].find("not a kiln runtime cache"), std::string::npos) << result.warnings[0];
    EXPECT_EQ(slurp(plan), bytes);
  }
  EXPECT_FALSE(fs::exists(dir_ / "model.kiln.lock"));  // refused before locking
}

TEST_F(CacheFileTest, AnOlderFormatIsIgnoredAndRewritten) {
  std::string bytes = slurp(file_);
  bytes[8] = 2;  // the format field right after the magic: what kiln wrote before XXH3
  std::ofstream(file_, std::ios::binary) << bytes;
  auto [entries, warnings] = load(file_);
  EXPECT_EQ(entries, 0u);
  EXPECT_NE(warnings.find("format 2"), std::string::npos) << warnings;
  SaveResult result = save(file_);
  EXPECT_TRUE(result.saved);
  EXPECT_EQ(load(file_).first, 1u);
}

// What load_file and save_file return is also what the log gets, as
// warnings; a good load and save are verbose lines.
TEST_F(CacheFileTest, ProblemsGoToTheLogAsWarnings) {
  testing::LogCapture log(Severity::kVerbose);
  std::string bytes = slurp(file_);
  bytes[bytes.size() / 2] ^= 0x40;
  std::ofstream(file_, std::ios::binary) << bytes;
  RuntimeCache cache(13000);
  std::vector<std::string> warnings = cache.load_file(file_);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_EQ(log.count(Severity::kWarning, warnings[0]), 1u) << log.text();
  EXPECT_NE(warnings[0].find("kernels will recompile"), std::string::npos) << warnings[0];

  SaveResult refused = cache.save_file("/proc/kiln/cache.bin");
  ASSERT_EQ(refused.warnings.size(), 1u);
  EXPECT_EQ(log.count(Severity::kWarning, refused.warnings[0]), 1u) << log.text();
  EXPECT_EQ(log.count(Severity::kWarning), 2u) << log.text();

  cache.insert(key(5), 90, cubin(5));
  SaveResult saved = cache.save_file(file_);  // replaces the corrupt file, whose entries it cannot merge
  EXPECT_TRUE(saved.saved);
  ASSERT_EQ(saved.warnings.size(), 1u);
  EXPECT_EQ(log.count(Severity::kWarning, saved.warnings[0]), 2u) << log.text();  // the same words as the load's
  EXPECT_EQ(log.count(Severity::kVerbose, "saved runtime cache"), 1u) << log.text();
  EXPECT_TRUE(RuntimeCache(13000).load_file(file_).empty());
  EXPECT_EQ(log.count(Severity::kVerbose, "loaded runtime cache"), 1u) << log.text();
  EXPECT_EQ(log.count(Severity::kWarning), 3u) << log.text();
}

TEST_F(CacheFileTest, ASaveWaitsForTheLockThenGivesUpWithAWarning) {
  file_io::FileLock held(dir_ / "cache.bin.lock", std::chrono::seconds(1));
  CacheFilePolicy quick;
  quick.lock_timeout = std::chrono::milliseconds(150);
  auto start = std::chrono::steady_clock::now();
  SaveResult result = save(file_, quick);
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(150));
  EXPECT_FALSE(result.saved);
  ASSERT_FALSE(result.warnings.empty());
  EXPECT_NE(result.warnings[0].find("timed out"), std::string::npos) << result.warnings[0];
}

TEST_F(CacheFileTest, LoadingCreatesNoFile) {
  fs::remove(dir_ / "cache.bin.lock");
  load(file_);
  read_cache_file(file_);
  EXPECT_FALSE(fs::exists(dir_ / "cache.bin.lock"));
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()), 1);
}

}  // namespace
}  // namespace kiln::runtime
