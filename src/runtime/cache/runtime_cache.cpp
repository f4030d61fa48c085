// File layout: "KILNRTC1" | u32 format | u32 NVRTC version | string kiln version
// | u32 driver version | string device name (the writer's; 0 and "none" without a GPU) | u64 entries | entries (u64 key hi, u64 key lo, u32 arch, u64 size,
// XXH3-128 checksum as u64 hi, u64 lo, bytes) | XXH3-128 of everything before it (u64 hi, u64 lo).
#include "kiln/runtime_cache.h"

#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <charconv>
#include <cstring>

#include "kiln/bytes.h"
#include "kiln/error.h"
#include "kiln/file_io.h"
#include "kiln/logging.h"
#include "kiln/version.h"

namespace kiln::runtime {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kMagic("KILNRTC1", 8);
// 3: XXH3-128 keys and checksums (2 had 64-bit FNV-style ones).
constexpr uint32_t kFormat = 3;
constexpr size_t kDigestBytes = 16;

CacheKey digest(std::string_view bytes) {
  XXH128_hash_t h = XXH3_128bits(bytes.data(), bytes.size());
  return {h.high64, h.low64};
}

void put_digest(ByteWriter& w, const CacheKey& d) {
  w.put<uint64_t>(d.hi);
  w.put<uint64_t>(d.lo);
}

CacheKey get_digest(ByteReader& r) {
  uint64_t hi = r.get<uint64_t>();
  return {hi, r.get<uint64_t>()};
}

fs::path lock_path(const fs::path& path) {
  fs::path p = path;
  p += ".lock";
  return p;
}

fs::path folder_of(const fs::path& path) { return path.parent_path().empty() ? fs::path(".") : path.parent_path(); }

void check_trusted(const fs::path& path, const struct stat& info, bool shared) {
  std::string problem = cache_trust_problem(info, ::geteuid(), shared);
  if (!problem.empty())
    fail(ErrorCode::kIoError, "runtime cache ", S_ISDIR(info.st_mode) ? "folder " : "", path, " is not trusted: ", problem,
         " (anyone who can write it could replace the kernels kiln runs; pass --shared-runtime-cache if the cache is shared on purpose)");
}

void check_trusted_folder(const fs::path& path, bool shared) {
  fs::path folder = folder_of(path);
  struct stat info {};
  if (::stat(folder.c_str(), &info) != 0)
    fail(ErrorCode::kIoError, "cannot use runtime cache folder ", folder, ": ", std::strerror(errno));
  if (!S_ISDIR(info.st_mode)) fail(ErrorCode::kIoError, "runtime cache folder ", folder, " is ", file_io::file_kind(info.st_mode));
  check_trusted(folder, info, shared);
}

// The cache file, opened without following a link, after checking that it
// and its folder are trusted.
file_io::File open_trusted(const fs::path& path, bool shared) {
  check_trusted_folder(path, shared);
  file_io::File file = file_io::File::open_regular(path, "runtime cache", file_io::Links::kRefuse);
  check_trusted(path, file.info(), shared);
  return file;
}

// Its bytes, refused before reading when a cache could not be that large (a sparse file, a mistake).
std::string read_capped(const file_io::File& file, const fs::path& path) {
  if (file.size() > kMaxCacheFileBytes)
    fail(ErrorCode::kIoError, path, " has ", file.size(), " bytes; a runtime cache may have at most ", kMaxCacheFileBytes);
  return file.read_all();
}

// Only a runtime cache (or an empty file) is ever overwritten.
void check_is_cache(const file_io::File& file, const fs::path& path) {
  if (file.size() > 0 && !file.starts_with(kMagic))
    fail(ErrorCode::kIoError, path, " is not a kiln runtime cache; it is not overwritten");
}

// Creates the missing folders of `folder` for this user only (0700), so a
// new cache folder is trusted whatever the umask.
void create_private_folders(const fs::path& folder) {
  fs::path at;
  for (const fs::path& part : folder) {
    at /= part;
    if (::mkdir(at.c_str(), 0700) != 0 && errno != EEXIST)
      fail(ErrorCode::kIoError, "cannot create runtime cache folder ", at, ": ", std::strerror(errno));
  }
}

std::string mode_text(mode_t mode) {
  char text[8] = {'0'};
  auto end = std::to_chars(text + 1, text + sizeof(text), unsigned(mode & 07777), 8).ptr;
  return std::string(text, end);
}

void log_warnings(const std::vector<std::string>& warnings) {
  for (const std::string& w : warnings) kiln::log(Severity::kWarning, w);
}

}  // namespace

std::string cache_trust_problem(const struct stat& info, uid_t user, bool shared) {
  if (shared) return "";
  if (info.st_uid != user && info.st_uid != 0) return str("it is owned by uid ", info.st_uid, ", not by you (uid ", user, ")");
  bool sticky_folder = S_ISDIR(info.st_mode) && (info.st_mode & S_ISVTX);
  if ((info.st_mode & (S_IWGRP | S_IWOTH)) && !sticky_folder)
    return str("group or others can write it (mode ", mode_text(info.st_mode), ")");
  return "";
}

std::string cache_file_trust_problem(const fs::path& path, bool shared) {
  try {
    open_trusted(path, shared);
    return "";
  } catch (const Error& e) {
    return e.what();
  }
}

std::string read_cache_file(const fs::path& path) {
  return file_io::read_file(path, "runtime cache", kMaxCacheFileBytes, kMagic, file_io::Links::kRefuse);
}

CacheKey kernel_cache_key(std::string_view source, std::string_view options, int arch, int nvrtc_version) {
  // Lengths first, so no two (source, options) pairs make the same material.
  return digest(str(source.size(), ':', source, options.size(), ':', options, '|', arch, '|', nvrtc_version));
}

RuntimeCache::RuntimeCache(int nvrtc_version, CacheFilePolicy policy) : nvrtc_version_(nvrtc_version), policy_(policy) {}

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
  w.put_bytes(kMagic.data(), kMagic.size());
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
    put_digest(w, digest(cubin));
    w.put_bytes(cubin.data(), cubin.size());
  }
  put_digest(w, digest(w.bytes()));
  return std::move(w.bytes());
}

std::vector<std::string> RuntimeCache::merge_serialized(std::string_view bytes, const std::string& label) {
  if (bytes.empty()) return {};
  try {
    if (bytes.size() < kMagic.size() + 4 || bytes.substr(0, kMagic.size()) != kMagic)
      return {str(label, " is not a kiln runtime cache; ignored")};
    // The format first: an older kiln's file has other checksums.
    uint32_t format;
    std::memcpy(&format, bytes.data() + kMagic.size(), 4);
    if (format != kFormat)
      return {str(label, " has runtime cache format ", format, "; this kiln (", kVersion, ") uses format ", kFormat,
                  "; ignored, kernels will recompile and the next save rewrites it")};
    if (bytes.size() < kMagic.size() + 4 + kDigestBytes)
      return {str(label, " is truncated; ignored, kernels will recompile")};
    std::string_view body = bytes.substr(0, bytes.size() - kDigestBytes);
    ByteReader tail(bytes.substr(body.size()), label);
    if (get_digest(tail) != digest(body))
      return {str(label, " is corrupt or truncated (checksum mismatch); ignored, kernels will recompile")};
    ByteReader r(body, label);
    r.get_bytes(kMagic.size() + 4);
    uint32_t nvrtc = r.get<uint32_t>();
    std::string writer = r.get_string(256);
    uint32_t driver = r.get<uint32_t>();
    std::string device = r.get_string(256);
    if (int(nvrtc) != nvrtc_version_)
      return {str(label, " holds kernels from NVRTC ", nvrtc, " (kiln ", writer, "); this kiln uses NVRTC ", nvrtc_version_,
                  "; ignored, kernels will recompile")};
    std::map<std::pair<CacheKey, int>, std::string> read;
    for (uint64_t n = r.get_count(44); n > 0; --n) {
      CacheKey k = get_digest(r);
      int arch = int(r.get<uint32_t>());
      uint64_t size = r.get<uint64_t>();
      CacheKey sum = get_digest(r);
      std::string cubin(r.get_bytes(size));
      if (digest(cubin) != sum) return {str(label, " has a corrupt entry; ignored, kernels will recompile")};
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

std::vector<std::string> RuntimeCache::load_file(const fs::path& path) {
  struct stat info {};
  if (::lstat(path.c_str(), &info) != 0 && errno == ENOENT) return {};
  std::vector<std::string> warnings;
  try {
    warnings = merge_serialized(read_capped(open_trusted(path, policy_.shared), path), path.string());
  } catch (const Error& e) {
    warnings = {str(e.what(), "; the runtime cache is not used")};
  }
  log_warnings(warnings);
  if (warnings.empty() && log_enabled(Severity::kVerbose)) {
    std::string origin = loaded_origin();
    kiln::log(Severity::kVerbose, str("loaded runtime cache ", path, origin.empty() ? "" : " (written by " + origin + ")", "; ",
                                      entry_count(), " kernels held"));
  }
  return warnings;
}

SaveResult RuntimeCache::save_file(const fs::path& path) { return save(path, true); }
SaveResult RuntimeCache::save_file_replacing(const fs::path& path) { return save(path, false); }

SaveResult RuntimeCache::save(const fs::path& path, bool merge_existing) {
  SaveResult result;
  try {
    create_private_folders(folder_of(path));
    check_trusted_folder(path, policy_.shared);
    // A link, folder or FIFO, an untrusted file, or a model or plan given as
    // the cache path by mistake is refused before a lock file is made next to it.
    struct stat info {};
    if (::lstat(path.c_str(), &info) == 0) {
      if (!S_ISREG(info.st_mode))
        fail(ErrorCode::kIoError, path, " is ", file_io::file_kind(info.st_mode), ", not a regular file; kiln does not use it as a runtime cache");
      check_is_cache(open_trusted(path, policy_.shared), path);
    }
    file_io::FileLock lock(lock_path(path), policy_.lock_timeout);
    if (::lstat(path.c_str(), &info) == 0) {  // again: another process may have saved meanwhile
      file_io::File existing = open_trusted(path, policy_.shared);
      check_is_cache(existing, path);
      if (merge_existing)  // entries other processes saved since we loaded
        for (auto& w : merge_serialized(read_capped(existing, path), path.string())) result.warnings.push_back(w);
    }
    std::string bytes = serialize();
    file_io::write_file_atomic(path, {bytes});
  } catch (const Error& e) {
    result.warnings.push_back(str(e.what(), "; runtime cache not saved"));
    log_warnings(result.warnings);
    return result;
  }
  {
    std::lock_guard guard(mutex_);
    unsaved_ = false;
    result.saved = true;
  }
  log_warnings(result.warnings);  // from merging what the file held
  if (log_enabled(Severity::kVerbose)) kiln::log(Severity::kVerbose, str("saved runtime cache ", path, ", ", entry_count(), " kernels"));
  return result;
}

}  // namespace kiln::runtime
