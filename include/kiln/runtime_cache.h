// The runtime cache: compiled kernels (cubins) keyed by what produced them, so
// a process does not compile what an earlier one (or `kiln cache warm`) did.
// Thread-safe; saved files merge entries from concurrent processes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::runtime {

// 128-bit digest of everything that determines a cubin.
struct CacheKey {
  uint64_t hi = 0, lo = 0;
  auto operator<=>(const CacheKey&) const = default;
};
CacheKey kernel_cache_key(std::string_view source, std::string_view options, int arch, int nvrtc_version);

class RuntimeCache {
 public:
  // Identity of the compiler this process uses; entries from another are ignored.
  explicit RuntimeCache(int nvrtc_version);

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

  // Loads under a shared file lock; a missing file is no warning.
  std::vector<std::string> load_file(const std::filesystem::path& path);
  // Saves under an exclusive lock: re-reads what other processes wrote,
  // merges, writes a temporary file, fsyncs and renames it into place.
  // An unwritable folder is a warning, not an error.
  std::vector<std::string> save_file(const std::filesystem::path& path);
  // Like save_file but without merging what the file holds (used to clear it).
  std::vector<std::string> save_file_replacing(const std::filesystem::path& path);

 private:
  std::vector<std::string> save(const std::filesystem::path& path, bool merge_existing);
  int nvrtc_version_;
  int driver_version_ = 0;
  std::string device_name_ = "none";
  std::string loaded_origin_;
  mutable std::mutex mutex_;
  std::map<std::pair<CacheKey, int>, std::string> entries_;
  bool unsaved_ = false;
};

}  // namespace kiln::runtime
