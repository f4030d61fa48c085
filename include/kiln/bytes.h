// Little-endian binary writing and bounds-checked reading, for kiln's own file
// formats. A reader never reads past its end: it throws kParseError instead.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>

#include "kiln/error.h"
#include "kiln/export.h"

KILN_API_BEGIN
namespace kiln {

class ByteWriter {
 public:
  template <class T>
  void put(T value) {
    static_assert(std::is_trivially_copyable_v<T>);
    out_.append(reinterpret_cast<const char*>(&value), sizeof(T));
  }
  void put_string(std::string_view s) {
    put<uint64_t>(s.size());
    out_.append(s);
  }
  void put_bytes(const void* data, size_t size) { out_.append(static_cast<const char*>(data), size); }
  void align(size_t alignment) { out_.append((alignment - out_.size() % alignment) % alignment, '\0'); }
  size_t size() const { return out_.size(); }
  std::string& bytes() { return out_; }

 private:
  std::string out_;
};

class ByteReader {
 public:
  ByteReader(std::string_view data, std::string label) : data_(data), label_(std::move(label)) {}
  template <class T>
  T get() {
    static_assert(std::is_trivially_copyable_v<T>);
    need(sizeof(T));
    T value;
    std::memcpy(&value, data_.data() + at_, sizeof(T));
    at_ += sizeof(T);
    return value;
  }
  std::string get_string(size_t max_size = 1 << 20) {
    uint64_t n = get<uint64_t>();
    if (n > max_size) fail(ErrorCode::kParseError, label_, ": a string of ", n, " bytes at offset ", at_, " is implausible");
    need(n);
    std::string s(data_.substr(at_, n));
    at_ += n;
    return s;
  }
  std::string_view get_bytes(size_t n) {
    need(n);
    std::string_view v = data_.substr(at_, n);
    at_ += n;
    return v;
  }
  // A count that must fit in the bytes left when each item needs at least `min_item_bytes`.
  uint64_t get_count(size_t min_item_bytes) {
    uint64_t n = get<uint64_t>();
    if (min_item_bytes && n > remaining() / min_item_bytes)
      fail(ErrorCode::kParseError, label_, ": count ", n, " at offset ", at_, " exceeds the data left");
    return n;
  }
  void skip_to_alignment(size_t alignment) { get_bytes((alignment - at_ % alignment) % alignment); }
  size_t offset() const { return at_; }
  size_t remaining() const { return data_.size() - at_; }
  const std::string& label() const { return label_; }

 private:
  void need(uint64_t n) const {
    if (n > data_.size() - at_)
      fail(ErrorCode::kParseError, label_, " is truncated: needs ", n, " bytes at offset ", at_, ", has ", data_.size() - at_);
  }
  std::string_view data_;
  std::string label_;
  size_t at_ = 0;
};

// XXH3-64 of `data`: a fast checksum that catches truncation and bit flips
// in kiln's files. Not a MAC: anyone who can write a file can recompute it.
uint64_t checksum64(std::string_view data);

}  // namespace kiln
KILN_API_END
