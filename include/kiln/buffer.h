// An immutable, shared view of bytes. Weights stay where they were loaded (a
// protobuf string moved in, an mmap-ed external data file) instead of being
// copied, so a large model sits in memory once.
#pragma once

#include <cstddef>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/export.h"

KILN_API_BEGIN
namespace kiln {

class Buffer {
 public:
  Buffer() = default;
  static Buffer from_bytes(std::vector<std::byte> bytes);
  static Buffer from_string(std::string bytes);  // takes the string's storage, no copy
  static Buffer copy_of(const void* data, size_t size);
  // A view of memory the caller keeps alive and unchanged for as long as the
  // Buffer or any slice of it is used (no copy, no ownership).
  static Buffer borrow(const void* data, size_t size);
  // Maps [offset, offset+length) of a regular file read-only; length -1 means
  // "to the end". `what` names the file in messages.
  static Buffer map_file(const std::filesystem::path& path, size_t offset, int64_t length, std::string_view what = "data file");

  // A view of [offset, offset+size) sharing this buffer's storage.
  Buffer slice(size_t offset, size_t size) const;
  const std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  std::span<const std::byte> bytes() const { return {data_, size_}; }
  template <class T>
  const T* as() const {
    return reinterpret_cast<const T*>(data_);
  }

 private:
  Buffer(std::shared_ptr<const void> owner, const std::byte* data, size_t size)
      : owner_(std::move(owner)), data_(data), size_(size) {}
  std::shared_ptr<const void> owner_;
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace kiln
KILN_API_END
