// File layout: "KILNRTC1" | u32 format | u32 NVRTC version | string kiln version
// | u32 driver version | string device name (the writer's; 0 and "none" without a GPU) | u64 entries | entries (u64 key hi, u64 key lo, u32 arch, u64 size, u64
// checksum, bytes) | u64 checksum of everything before it.
#include "kiln/runtime_cache.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "kiln/bytes.h"
#include "kiln/error.h"
#include "kiln/version.h"

namespace kiln::runtime {

namespace {

constexpr char kMagic[8] = {'K', 'I', 'L', 'N', 'R', 'T', 'C', '1'};
constexpr uint32_t kFormat = 2;

// Holds an flock on `path` (created if needed) for the object's life.
class FileLock {
 public:
  FileLock(const std::filesystem::path& path, bool exclusive) {
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);  // read-only folder: shared locks still work
    if (fd_ >= 0 && ::flock(fd_, exclusive ? LOCK_EX : LOCK_SH) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~FileLock() {
    if (fd_ >= 0) ::close(fd_);  // closing releases the lock
  }
  bool held() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

std::filesystem::path lock_path(const std::filesystem::path& path) {
  std::filesystem::path p = path;
  p += ".lock";
  return p;
}

}  // namespace

CacheKey kernel_cache_key(std::string_view source, std::string_view options, int arch, int nvrtc_version) {
  std::string material = str(source.size(), ':', source, '|', options, '|', arch, '|', nvrtc_version);
  CacheKey k;
  k.hi = checksum64(material);
  std::string salted = "kiln-cache-key/" + material;  // a second, independent-enough digest
  k.lo = checksum64(salted) * 0x9e3779b97f4a7c15ull + material.size();
  return k;
}

RuntimeCache::RuntimeCache(int nvrtc_version) : nvrtc_version_(nvrtc_version) {}

void RuntimeCache::set_origin(int driver_version, const std::string& device_name) {
  std::lock_guard lock(mutex_);
  driver_version_ = driver_version;
  device_name_ = device_name;
}

std::string RuntimeCache::loaded_origin() const {
  std::lock_guard lock(mutex_);
  return loaded_origin_;
}

std::optional<std::string> RuntimeCache::find(const CacheKey& key, int arch) const {
  std::lock_guard lock(mutex_);
  auto it = entries_.find({key, arch});
  if (it == entries_.end()) return std::nullopt;
  return it->second;
}

void RuntimeCache::insert(const CacheKey& key, int arch, std::string cubin) {
  std::lock_guard lock(mutex_);
  auto [it, fresh] = entries_.try_emplace({key, arch});
  if (fresh || it->second != cubin) {
    it->second = std::move(cubin);
    unsaved_ = true;
  }
}

void RuntimeCache::merge(const RuntimeCache& other) {
  if (&other == this) return;
  std::scoped_lock lock(mutex_, other.mutex_);
  for (auto& [k, v] : other.entries_)
    if (entries_.emplace(k, v).second) unsaved_ = true;
}

bool RuntimeCache::has_unsaved_entries() const {
  std::lock_guard lock(mutex_);
  return unsaved_;
}

void RuntimeCache::reset() {
  std::lock_guard lock(mutex_);
  entries_.clear();
}

size_t RuntimeCache::entry_count() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

size_t RuntimeCache::bytes() const {
  std::lock_guard lock(mutex_);
  size_t n = 0;
  for (auto& [k, v] : entries_) n += v.size();
  return n;
}

std::map<int, size_t> RuntimeCache::entries_per_arch() const {
  std::lock_guard lock(mutex_);
  std::map<int, size_t> out;
  for (auto& [k, v] : entries_) out[k.second]++;
  return out;
}

std::string RuntimeCache::serialize() const {
  std::lock_guard lock(mutex_);
  ByteWriter w;
  w.put_bytes(kMagic, 8);
  w.put<uint32_t>(kFormat);
  w.put<uint32_t>(uint32_t(nvrtc_version_));
  w.put_string(kVersion);
  w.put<uint32_t>(uint32_t(driver_version_));
  w.put_string(device_name_);
  w.put<uint64_t>(entries_.size());
  for (auto& [k, cubin] : entries_) {
    w.put<uint64_t>(k.first.hi);
    w.put<uint64_t>(k.first.lo);
    w.put<uint32_t>(uint32_t(k.second));
    w.put<uint64_t>(cubin.size());
    w.put<uint64_t>(checksum64(cubin));
    w.put_bytes(cubin.data(), cubin.size());
  }
  w.put<uint64_t>(checksum64(w.bytes()));
  return std::move(w.bytes());
}

std::vector<std::string> RuntimeCache::merge_serialized(std::string_view bytes, const std::string& label) {
  if (bytes.empty()) return {};
  try {
    if (bytes.size() < 8 + 8 || bytes.substr(0, 8) != std::string_view(kMagic, 8))
      return {str(label, " is not a kiln runtime cache; ignored")};
    uint64_t stored;
    std::memcpy(&stored, bytes.data() + bytes.size() - 8, 8);
    if (checksum64(bytes.substr(0, bytes.size() - 8)) != stored)
      return {str(label, " is corrupt or truncated (checksum mismatch); ignored, kernels will recompile")};
    ByteReader r(bytes.substr(0, bytes.size() - 8), label);
    r.get_bytes(8);
    if (r.get<uint32_t>() != kFormat) return {str(label, " has another cache format; ignored")};
    uint32_t nvrtc = r.get<uint32_t>();
    std::string writer = r.get_string(256);
    uint32_t driver = r.get<uint32_t>();
    std::string device = r.get_string(256);
    if (int(nvrtc) != nvrtc_version_)
      return {str(label, " holds kernels from NVRTC ", nvrtc, " (kiln ", writer, "); this kiln uses NVRTC ", nvrtc_version_,
                  "; ignored, kernels will recompile")};
    std::map<std::pair<CacheKey, int>, std::string> read;
    for (uint64_t n = r.get_count(36); n > 0; --n) {
      CacheKey k{r.get<uint64_t>(), r.get<uint64_t>()};
      int arch = int(r.get<uint32_t>());
      uint64_t size = r.get<uint64_t>(), sum = r.get<uint64_t>();
      std::string cubin(r.get_bytes(size));
      if (checksum64(cubin) != sum) return {str(label, " has a corrupt entry; ignored, kernels will recompile")};
      read[{k, arch}] = std::move(cubin);
    }
    if (r.remaining() != 0) return {str(label, " has trailing bytes; ignored")};
    std::lock_guard lock(mutex_);
    loaded_origin_ = str("kiln ", writer, ", NVRTC ", nvrtc, ", driver ", driver, ", ", device);
    for (auto& [k, v] : read) entries_.emplace(k, std::move(v));
    return {};
  } catch (const Error& e) {
    return {str(label, " is corrupt (", e.what(), "); ignored, kernels will recompile")};
  }
}

namespace {

std::optional<std::string> read_whole(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace

std::vector<std::string> RuntimeCache::load_file(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return {};
  FileLock lock(lock_path(path), false);
  auto bytes = read_whole(path);
  if (!bytes) return {str("cannot read runtime cache ", path, "; starting empty")};
  return merge_serialized(*bytes, path.string());
}

std::vector<std::string> RuntimeCache::save_file(const std::filesystem::path& path) { return save(path, true); }
std::vector<std::string> RuntimeCache::save_file_replacing(const std::filesystem::path& path) { return save(path, false); }

std::vector<std::string> RuntimeCache::save(const std::filesystem::path& path, bool merge_existing) {
  std::error_code ec;
  if (!path.parent_path().empty()) std::filesystem::create_directories(path.parent_path(), ec);
  FileLock lock(lock_path(path), true);
  if (!lock.held()) return {str("cannot lock ", lock_path(path), " (read-only folder?); runtime cache not saved")};
  std::vector<std::string> warnings;
  if (merge_existing)
    if (auto existing = read_whole(path)) {  // entries other processes saved since we loaded
      auto w = merge_serialized(*existing, path.string());
      warnings.insert(warnings.end(), w.begin(), w.end());
    }
  std::string bytes = serialize();
  std::filesystem::path tmp = path;
  tmp += str(".tmp.", ::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    warnings.push_back(str("cannot write ", tmp, ": ", std::strerror(errno), "; runtime cache not saved"));
    return warnings;
  }
  size_t at = 0;
  bool ok = true;
  while (ok && at < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + at, bytes.size() - at);
    ok = n > 0;
    if (ok) at += size_t(n);
  }
  ok = ok && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::filesystem::remove(tmp, ec);
    warnings.push_back(str("cannot write ", path, "; runtime cache not saved"));
    return warnings;
  }
  std::lock_guard guard(mutex_);
  unsaved_ = false;
  return warnings;
}

}  // namespace kiln::runtime
