// Reading and writing files that kiln did not create itself in this call
// (models, plans, caches, .npy inputs, outputs). Readers open without blocking
// and accept only regular files, check sizes before reading a byte and can
// refuse symbolic links; writers never write through a predictable name:
// they write a mkstemp temporary in the target's folder and rename it over
// the target. Every failure is a kiln::Error (kIoError, or kParseError for a
// wrong magic) naming the file and what it is.
#pragma once

#include <sys/stat.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <string>
#include <string_view>

#include "kiln/export.h"

KILN_API_BEGIN
namespace kiln::file_io {

// "a folder", "a FIFO (named pipe)", "a character device", ... for messages.
std::string_view file_kind(mode_t mode);

// Whether the last component of a path may be a symbolic link.
enum class Links { kFollow, kRefuse };

// An open, regular file: its descriptor and what fstat said when it was opened.
class File {
 public:
  // Opens O_RDONLY | O_CLOEXEC | O_NONBLOCK (so a FIFO or device cannot hang
  // the open), plus O_NOFOLLOW for Links::kRefuse; then requires a regular
  // file. `what` names the file in messages ("model", "runtime cache").
  static File open_regular(const std::filesystem::path& path, std::string_view what, Links links = Links::kFollow);
  File(File&& other) noexcept;
  File& operator=(File&&) = delete;
  ~File();

  int fd() const { return fd_; }
  uint64_t size() const { return uint64_t(info_.st_size); }
  const struct stat& info() const { return info_; }
  // Hands the descriptor over to the caller (the File no longer closes it).
  int release();
  // Whether the file starts with `magic` (false for a shorter file).
  bool starts_with(std::string_view magic) const;
  // The whole file (size() bytes, as fstat said when it was opened).
  std::string read_all() const;

 private:
  File(int fd, const struct stat& info, std::filesystem::path path) : fd_(fd), info_(info), path_(std::move(path)) {}
  int fd_ = -1;
  struct stat info_ {};
  std::filesystem::path path_;
};

// The whole file, opened as File::open_regular does. A file larger than
// `max_bytes` is refused before a byte is read (a sparse file costs nothing
// to make); when `magic` is not empty, the file must start with it
// (kParseError otherwise), checked before the rest is read.
std::string read_file(const std::filesystem::path& path, std::string_view what, uint64_t max_bytes,
                      std::string_view magic = {}, Links links = Links::kFollow);
// Whether `path` is a regular file starting with `magic`; never throws.
bool has_magic(const std::filesystem::path& path, std::string_view magic);

// Temporaries older than this, left by a writer that was killed, are removed
// by the next write to the same target.
inline constexpr std::chrono::minutes kStaleTemporaryAge{15};

// Writes the concatenation of `parts` to `target`: a temporary "NAME.tmp-XXXXXX"
// made by mkstemp (O_EXCL, never a followed link) in the target's folder,
// fsync'd, then renamed over the target, so readers see the old or the new
// file whole. The temporary is removed on any failure. An existing regular
// target keeps its permissions; a new one gets `mode`. A target that is a
// folder or another non-regular file is refused.
void write_file_atomic(const std::filesystem::path& target, std::initializer_list<std::string_view> parts,
                       mode_t mode = 0644);
// Removes this user's regular files named like write_file_atomic's
// temporaries for `target`, last modified more than `age` ago. Returns how
// many were removed; errors are ignored (the next write tries again).
int remove_stale_temporaries(const std::filesystem::path& target, std::chrono::seconds age = kStaleTemporaryAge);

// An exclusive flock on a lock file, held for the object's life. The lock
// file is opened with O_NOFOLLOW and must be a regular file (created 0644 if
// missing). A lock held elsewhere is polled until `timeout`, then a kIoError
// names the lock file and the process holding it (each holder writes its pid
// into the file).
class FileLock {
 public:
  FileLock(const std::filesystem::path& path, std::chrono::milliseconds timeout);
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  ~FileLock();

 private:
  int fd_ = -1;
};

}  // namespace kiln::file_io
KILN_API_END
