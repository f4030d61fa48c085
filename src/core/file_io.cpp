#include "kiln/file_io.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <thread>

#include "kiln/error.h"

namespace kiln::file_io {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kTemporaryInfix = ".tmp-";
constexpr size_t kTemporarySuffix = 6;  // mkstemp's XXXXXX

// A regular file is the only kind kiln reads or replaces; say what it got instead.
[[noreturn]] void fail_not_regular(const fs::path& path, std::string_view what, mode_t mode) {
  fail(ErrorCode::kIoError, path, " is ", file_kind(mode), ", not a regular file; kiln reads a ", what, " only from a regular file");
}

bool write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes.remove_prefix(size_t(n));
  }
  return true;
}

}  // namespace

std::string_view file_kind(mode_t mode) {
  if (S_ISREG(mode)) return "a regular file";
  if (S_ISDIR(mode)) return "a folder";
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISLNK(mode)) return "a symbolic link";
  return "not a regular file";
}

File File::open_regular(const fs::path& path, std::string_view what, Links links) {
  bool no_follow = links == Links::kRefuse;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | (no_follow ? O_NOFOLLOW : 0));
  if (fd < 0) {
    int err = errno;
    if (err == ELOOP && no_follow)
      fail(ErrorCode::kIoError, path, " is a symbolic link; kiln does not follow links for a ", what);
    fail(ErrorCode::kIoError, "cannot open ", what, " ", path, ": ", std::strerror(err));
  }
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    int err = errno;
    ::close(fd);
    fail(ErrorCode::kIoError, "cannot stat ", what, " ", path, ": ", std::strerror(err));
  }
  if (!S_ISREG(info.st_mode)) {
    ::close(fd);
    fail_not_regular(path, what, info.st_mode);
  }
  return File(fd, info, path);
}

File::File(File&& other) noexcept : fd_(other.fd_), info_(other.info_), path_(std::move(other.path_)) { other.fd_ = -1; }

File::~File() {
  if (fd_ >= 0) ::close(fd_);
}

int File::release() {
  int fd = fd_;
  fd_ = -1;
  return fd;
}

bool File::starts_with(std::string_view magic) const {
  if (size() < magic.size()) return false;
  std::string head(magic.size(), '\0');
  ssize_t n = ::pread(fd_, head.data(), head.size(), 0);
  return n == ssize_t(head.size()) && head == magic;
}

std::string File::read_all() const {
  std::string bytes(size(), '\0');
  size_t at = 0;
  while (at < bytes.size()) {
    ssize_t n = ::pread(fd_, bytes.data() + at, bytes.size() - at, off_t(at));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail(ErrorCode::kIoError, "cannot read ", path_, ": ", std::strerror(errno));
    if (n == 0) fail(ErrorCode::kIoError, path_, " shrank while being read (", at, " of ", bytes.size(), " bytes)");
    at += size_t(n);
  }
  return bytes;
}

std::string read_file(const fs::path& path, std::string_view what, uint64_t max_bytes, std::string_view magic, Links links) {
  File file = File::open_regular(path, what, links);
  if (file.size() > max_bytes)
    fail(ErrorCode::kIoError, path, " has ", file.size(), " bytes; a ", what, " may have at most ", max_bytes);
  if (!magic.empty() && !file.starts_with(magic))
    fail(ErrorCode::kParseError, path, " is not a ", what, " (it does not start with the expected magic bytes)");
  return file.read_all();
}

bool has_magic(const fs::path& path, std::string_view magic) {
  try {
    return File::open_regular(path, "file").starts_with(magic);
  } catch (const Error&) {
    return false;
  }
}

int remove_stale_temporaries(const fs::path& target, std::chrono::seconds age) {
  fs::path folder = target.parent_path().empty() ? fs::path(".") : target.parent_path();
  std::string prefix = target.filename().string() + std::string(kTemporaryInfix);
  auto cutoff = std::chrono::system_clock::now() - age;
  int removed = 0;
  std::error_code ec;
  for (fs::directory_iterator it(folder, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (name.size() != prefix.size() + kTemporarySuffix || name.compare(0, prefix.size(), prefix) != 0) continue;
    struct stat info {};
    // lstat: a link with that name is not ours to follow; only this user's regular files go.
    if (::lstat(it->path().c_str(), &info) != 0 || !S_ISREG(info.st_mode) || info.st_uid != ::geteuid()) continue;
    if (std::chrono::system_clock::from_time_t(info.st_mtime) > cutoff) continue;  // maybe a live writer
    if (::unlink(it->path().c_str()) == 0) ++removed;
  }
  return removed;
}

void write_file_atomic(const fs::path& target, std::initializer_list<std::string_view> parts, mode_t mode) {
  struct stat existing {};
  if (::lstat(target.c_str(), &existing) == 0) {
    if (S_ISREG(existing.st_mode)) mode = existing.st_mode & 07777;
    else if (!S_ISLNK(existing.st_mode))  // a link is replaced by the file, never written through
      fail(ErrorCode::kIoError, "cannot write ", target, ": it is ", file_kind(existing.st_mode), ", not a regular file");
  }
  remove_stale_temporaries(target);
  std::string tmp = target.string() + std::string(kTemporaryInfix) + std::string(kTemporarySuffix, 'X');
  int fd = ::mkostemp(tmp.data(), O_CLOEXEC);
  if (fd < 0) fail(ErrorCode::kIoError, "cannot create a temporary file next to ", target, ": ", std::strerror(errno));
  bool ok = ::fchmod(fd, mode) == 0;
  for (std::string_view part : parts) ok = ok && write_all(fd, part);
  ok = ok && ::fsync(fd) == 0;
  int err = errno;
  ok = ::close(fd) == 0 && ok;
  if (ok && ::rename(tmp.c_str(), target.c_str()) != 0) {
    ok = false;
    err = errno;
  }
  if (!ok) {
    ::unlink(tmp.c_str());
    fail(ErrorCode::kIoError, "cannot write ", target, ": ", std::strerror(err));
  }
  // The rename is durable once the folder is synced too.
  fs::path folder = target.parent_path().empty() ? fs::path(".") : target.parent_path();
  if (int dir = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
}

FileLock::FileLock(const fs::path& path, std::chrono::milliseconds timeout) {
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    int err = errno;
    if (err == ELOOP) fail(ErrorCode::kIoError, "lock file ", path, " is a symbolic link; kiln does not follow it");
    fail(ErrorCode::kIoError, "cannot open lock file ", path, ": ", std::strerror(err));
  }
  struct stat info {};
  if (::fstat(fd_, &info) != 0 || !S_ISREG(info.st_mode)) {
    ::close(fd_);
    fail(ErrorCode::kIoError, "lock file ", path, " is ", file_kind(info.st_mode), ", not a regular file");
  }
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (::flock(fd_, LOCK_EX | LOCK_NB) == 0) break;
    int err = errno;
    if (err == EINTR) continue;
    if (err == EWOULDBLOCK && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      continue;
    }
    char text[32] = {};
    ssize_t n = ::pread(fd_, text, sizeof(text) - 1, 0);
    ::close(fd_);
    if (err != EWOULDBLOCK) fail(ErrorCode::kIoError, "cannot lock ", path, ": ", std::strerror(err));
    long pid = 0;
    bool known = n > 0 && std::from_chars(text, text + n, pid).ec == std::errc() && pid > 0;
    fail(ErrorCode::kIoError, "timed out after ", timeout.count(), " ms waiting for the lock ", path, ", held by ",
         known ? str("process ", pid, " (still writing, or hung)") : std::string("another process"));
  }
  // Name this holder for whoever waits next.
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd_, 0) == 0) (void)!::pwrite(fd_, pid.data(), pid.size(), 0);
}

FileLock::~FileLock() {
  if (fd_ >= 0) ::close(fd_);  // closing releases the lock
}

}  // namespace kiln::file_io
