// The file layer: what it refuses to read (folders, FIFOs, huge sparse files,
// links where links are refused), and writes that never go through a planted
// name and leave no temporaries behind.
#include "kiln/file_io.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>

#include "forked.h"
#include "kiln/error.h"

namespace kiln::file_io {
namespace {

namespace fs = std::filesystem;
using kiln::testing::run_forked;
using namespace std::chrono_literals;

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void spit(const fs::path& p, const std::string& bytes) { std::ofstream(p, std::ios::binary) << bytes; }

long max_rss_kb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss;
}

class FileIo : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "kiln_file_io_XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { fs::remove_all(dir_); }
  // The error read_file gives, or "" when it gives none.
  static std::string read_error(const fs::path& p, uint64_t max_bytes = 1 << 20, std::string_view magic = {},
                                Links links = Links::kFollow, ErrorCode code = ErrorCode::kIoError) {
    try {
      read_file(p, "test file", max_bytes, magic, links);
      return "";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), code) << e.what();
      return e.what();
    }
  }
  std::vector<std::string> listing() const {
    std::vector<std::string> names;
    for (auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }
  fs::path dir_;
};

TEST_F(FileIo, ReadsARegularFile) {
  spit(dir_ / "a.bin", "hello");
  EXPECT_EQ(read_file(dir_ / "a.bin", "test file", 5), "hello");
  EXPECT_EQ(read_file(dir_ / "a.bin", "test file", 5, "he"), "hello");
  EXPECT_NE(read_error(dir_ / "a.bin", 4).find("at most 4"), std::string::npos);
  EXPECT_TRUE(has_magic(dir_ / "a.bin", "hell"));
  EXPECT_FALSE(has_magic(dir_ / "a.bin", "hello!"));
}

TEST_F(FileIo, AFolderIsAClearError) {
  EXPECT_NE(read_error(dir_).find("is a folder"), std::string::npos);
  EXPECT_FALSE(has_magic(dir_, "x"));
}

TEST_F(FileIo, AFifoIsRefusedAtOnceNotReadForever) {
  fs::path fifo = dir_ / "pipe";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  // Nobody ever writes the FIFO: a blocking open or read would hang the child.
  int code = run_forked([&] { return read_error(fifo).find("FIFO") != std::string::npos ? 0 : 1; }, 5s);
  EXPECT_EQ(code, 0) << "-1 means the read hung";
  EXPECT_EQ(run_forked([&] { return has_magic(fifo, "KILN") ? 1 : 0; }, 5s), 0);
}

TEST_F(FileIo, ADeviceIsRefused) { EXPECT_NE(read_error("/dev/zero").find("character device"), std::string::npos); }

TEST_F(FileIo, AHugeSparseFileIsRefusedBeforeReading) {
  fs::path huge = dir_ / "huge.bin";
  spit(huge, "");
  fs::resize_file(huge, uint64_t(4) << 30);  // 4 GiB of holes: costs no disk, would cost 4 GiB to read
  long rss_before = max_rss_kb();
  auto start = std::chrono::steady_clock::now();
  std::string error = read_error(huge, uint64_t(1) << 30);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
  EXPECT_LT(max_rss_kb() - rss_before, 64 * 1024) << "the file was read";
  EXPECT_NE(error.find("4294967296 bytes"), std::string::npos) << error;
}

TEST_F(FileIo, TheMagicIsCheckedFirst) {
  spit(dir_ / "plan.kiln", "KILNPLAN and more");
  std::string error = read_error(dir_ / "plan.kiln", 100, "KILNRTC1", Links::kFollow, ErrorCode::kParseError);
  EXPECT_NE(error.find("not a test file"), std::string::npos) << error;
  spit(dir_ / "short", "KIL");
  read_error(dir_ / "short", 100, "KILNRTC1", Links::kFollow, ErrorCode::kParseError);
}

TEST_F(FileIo, LinksAreRefusedWhereAsked) {
  spit(dir_ / "real", "data");
  fs::create_symlink(dir_ / "real", dir_ / "link");
  EXPECT_EQ(read_file(dir_ / "link", "test file", 100), "data");
  EXPECT_NE(read_error(dir_ / "link", 100, {}, Links::kRefuse).find("symbolic link"), std::string::npos);
}

TEST_F(FileIo, AtomicWriteReplacesTheTargetAndLeavesNothingElse) {
  write_file_atomic(dir_ / "out.bin", {"abc", "", "def"});
  EXPECT_EQ(slurp(dir_ / "out.bin"), "abcdef");
  write_file_atomic(dir_ / "out.bin", {"second"});
  EXPECT_EQ(slurp(dir_ / "out.bin"), "second");
  EXPECT_EQ(listing(), std::vector<std::string>{"out.bin"});
  struct stat info {};
  ASSERT_EQ(::stat((dir_ / "out.bin").c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0644u);
  fs::permissions(dir_ / "out.bin", fs::perms(0600));
  write_file_atomic(dir_ / "out.bin", {"third"});  // an existing file keeps its permissions
  ASSERT_EQ(::stat((dir_ / "out.bin").c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600u);
}

TEST_F(FileIo, AtomicWriteNeverWritesThroughAPlantedLink) {
  fs::path victim = dir_ / "victim";
  spit(victim, "precious");
  // The names older writers used, and the target itself, planted as links to the victim.
  for (std::string name : {std::string("plan.kiln.tmp"), "cache.bin.tmp." + std::to_string(::getpid())})
    fs::create_symlink(victim, dir_ / name);
  fs::create_symlink(victim, dir_ / "plan.kiln");
  write_file_atomic(dir_ / "plan.kiln", {"new plan"});
  write_file_atomic(dir_ / "cache.bin", {"new cache"});
  EXPECT_EQ(slurp(victim), "precious");
  EXPECT_FALSE(fs::is_symlink(dir_ / "plan.kiln"));  // the link itself was replaced
  EXPECT_EQ(slurp(dir_ / "plan.kiln"), "new plan");
  EXPECT_EQ(slurp(dir_ / "cache.bin"), "new cache");
}

TEST_F(FileIo, AtomicWriteRefusesAFolderOrFifoTarget) {
  fs::create_directory(dir_ / "sub");
  ASSERT_EQ(::mkfifo((dir_ / "pipe").c_str(), 0600), 0);
  for (const char* name : {"sub", "pipe"}) {
    try {
      write_file_atomic(dir_ / name, {"x"});
      ADD_FAILURE() << name;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kIoError);
      EXPECT_NE(std::string(e.what()).find("not a regular file"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(listing(), (std::vector<std::string>{"pipe", "sub"}));
}

TEST_F(FileIo, AFailedWriteRemovesItsTemporary) {
  // A file size limit makes the write fail halfway (EFBIG), after the temporary exists.
  int code = run_forked([&] {
    std::signal(SIGXFSZ, SIG_IGN);
    rlimit limit{100, 100};
    setrlimit(RLIMIT_FSIZE, &limit);
    try {
      write_file_atomic(dir_ / "big.bin", {std::string(1000, 'x')});
      return 1;
    } catch (const Error& e) {
      return e.code() == ErrorCode::kIoError ? 0 : 2;
    }
  });
  EXPECT_EQ(code, 0);
  EXPECT_TRUE(listing().empty());
}

TEST_F(FileIo, StaleTemporariesOfKilledWritersAreCleaned) {
  auto age = [&](const std::string& name, std::chrono::minutes by) {
    fs::last_write_time(dir_ / name, fs::file_time_type::clock::now() - by);
  };
  spit(dir_ / "out.bin.tmp-a1B2c3", std::string(1000, 'x'));  // a killed writer's
  age("out.bin.tmp-a1B2c3", 60min);
  spit(dir_ / "out.bin.tmp-zzzzzz", "live");  // a writer at work right now
  spit(dir_ / "out.bin.tmp-keep", "other pattern");
  age("out.bin.tmp-keep", 60min);
  spit(dir_ / "other.bin.tmp-a1B2c3", "another target's");
  age("other.bin.tmp-a1B2c3", 60min);
  spit(dir_ / "elsewhere", "target of a link");
  fs::create_symlink(dir_ / "elsewhere", dir_ / "out.bin.tmp-LINK00");
  write_file_atomic(dir_ / "out.bin", {"data"});
  EXPECT_EQ(listing(), (std::vector<std::string>{"elsewhere", "other.bin.tmp-a1B2c3", "out.bin", "out.bin.tmp-LINK00",
                                                 "out.bin.tmp-keep", "out.bin.tmp-zzzzzz"}));
  EXPECT_EQ(slurp(dir_ / "elsewhere"), "target of a link");
}

TEST_F(FileIo, LockRefusesALinkOrAFolder) {
  fs::path victim = dir_ / "victim";
  spit(victim, "precious");
  fs::create_symlink(victim, dir_ / "cache.bin.lock");
  fs::create_symlink(dir_ / "missing", dir_ / "dangling.lock");
  fs::create_directory(dir_ / "folder.lock");
  for (const char* name : {"cache.bin.lock", "dangling.lock", "folder.lock"}) {
    try {
      FileLock lock(dir_ / name, 100ms);
      ADD_FAILURE() << name;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kIoError) << e.what();
    }
  }
  EXPECT_EQ(slurp(victim), "precious");
  EXPECT_FALSE(fs::exists(dir_ / "missing"));
}

TEST_F(FileIo, ALockHeldElsewhereTimesOutNamingTheHolder) {
  fs::path lock_file = dir_ / "x.lock";
  FileLock held(lock_file, 1s);
  auto start = std::chrono::steady_clock::now();
  try {
    FileLock second(lock_file, 200ms);  // another open file description: flock conflicts even in one process
    FAIL() << "the second lock was granted";
  } catch (const Error& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("timed out after 200 ms"), std::string::npos) << what;
    EXPECT_NE(what.find(lock_file.string()), std::string::npos) << what;
    EXPECT_NE(what.find("process " + std::to_string(::getpid())), std::string::npos) << what;
  }
  auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_GE(waited, 200ms);
  EXPECT_LT(waited, 5s);
}

TEST_F(FileIo, ALockIsGrantedOnceReleased) {
  fs::path lock_file = dir_ / "x.lock";
  { FileLock first(lock_file, 1s); }
  FileLock second(lock_file, 100ms);
  SUCCEED();
}

}  // namespace
}  // namespace kiln::file_io
