// The runtime cache: compiled kernels (cubins) keyed by what produced them, so
// a process does not compile what an earlier one (or `kiln cache warm`) did.
// Thread-safe; saved files merge entries from concurrent processes.
//
// Trust: a cubin from the cache runs on the GPU, so a cache file is trusted
// like a program. Unless the policy says the cache is shared, a cache file or
// folder that another user owns (root excepted) or that group or others can
// write is neither loaded nor written (a warning says why; kernels compile
// afresh). The file is never followed through a symbolic link and must be a
// regular file. See docs/security.md.
#pragma once

#include <sys/stat.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/export.h"

KILN_API_BEGIN
namespace kiln::runtime {

// XXH3-128 of everything that determines a cubin.
struct CacheKey {
  uint64_t hi = 0, lo = 0;
  auto operator<=>(const CacheKey&) const = default;
};
CacheKey kernel_cache_key(std::string_view source, std::string_view options, int arch, int nvrtc_version);

struct CacheFilePolicy {
  // Trust a cache file and folder that other users own or can write (a cache
  // a team shares on purpose). Off: such a file is refused.
  bool shared = false;
  // How long a save waits for another process's save to finish.
  std::chrono::milliseconds lock_timeout{10000};
};

// Why a cache file or folder with these stat values may not be trusted by
// `user` ("" when it may): owned by another user than `user` or root, or
// writable by group or others (a folder with the sticky bit excepted, as
// others cannot replace files in it).
std::string cache_trust_problem(const struct stat& info, uid_t user, bool shared);
// The same for a cache file and its folder: "" when load_file would trust them.
std::string cache_file_trust_problem(const std::filesystem::path& path, bool shared);

// Cache files larger than this are refused before a byte is read.
inline constexpr uint64_t kMaxCacheFileBytes = uint64_t(1) << 30;
// A cache file's bytes for inspection: a regular file (not followed through a
// link), at most kMaxCacheFileBytes, starting with the cache magic; anything
// else throws kIoError or kParseError. No trust check: nothing is run.
std::string read_cache_file(const std::filesystem::path& path);

struct SaveResult {
  bool saved = false;  // the file now holds this cache's entries
  std::vector<std::string> warnings;
};

class RuntimeCache {
 public:
  // Identity of the compiler this process uses; entries from another are ignored.
  explicit RuntimeCache(int nvrtc_version, CacheFilePolicy policy = {});

  // Recorded in saved files (which machine wrote them); "none" when compiled without a GPU.
  void set_origin(int driver_version, const std::string& device_name);
  // The origin recorded in the last file loaded, e.g. "driver 13000, NVIDIA H100 80GB HBM3".
  std::string loaded_origin() const;

  std::optional<std::string> find(const CacheKey& key, int arch) const;
  void insert(const CacheKey& key, int arch, std::string cubin);
  void merge(const RuntimeCache& other);
  void reset();
  size_t entry_count() const;
  // Entries inserted or merged in since the cache was last saved (loading does not count).
  bool has_unsaved_entries() const;
  size_t bytes() const;  // cubin bytes held
  std::map<int, size_t> entries_per_arch() const;

  std::string serialize() const;
  // Adds the entries of `bytes`. Corrupt, truncated or incompatible data adds
  // nothing and returns a warning instead (never throws for bad data).
  std::vector<std::string> merge_serialized(std::string_view bytes, const std::string& label);

  // Adds the entries of a trusted cache file. A missing file is no warning;
  // an untrusted, unreadable or bad one is a warning and adds nothing. No
  // lock: saves replace the file by a rename, so a reader sees a whole file.
  // The warnings returned here and by the saves below also go to the log
  // (kiln/logging.h).
  std::vector<std::string> load_file(const std::filesystem::path& path);
  // Saves under an exclusive lock (`path` + ".lock"): re-reads what other
  // processes wrote, merges, and replaces the file atomically. Problems
  // (untrusted or unwritable file or folder, a lock held too long, an
  // existing file that is not a runtime cache, which is never overwritten)
  // are warnings with `saved` false, not errors.
  SaveResult save_file(const std::filesystem::path& path);
  // Like save_file but without merging what the file holds (used to clear it).
  SaveResult save_file_replacing(const std::filesystem::path& path);

 private:
  SaveResult save(const std::filesystem::path& path, bool merge_existing);
  int nvrtc_version_;
  CacheFilePolicy policy_;
  int driver_version_ = 0;
  std::string device_name_ = "none";
  std::string loaded_origin_;
  mutable std::mutex mutex_;
  std::map<std::pair<CacheKey, int>, std::string> entries_;
  bool unsaved_ = false;
};

}  // namespace kiln::runtime
KILN_API_END
