#include "kiln/buffer.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "kiln/error.h"
#include "kiln/file_io.h"

namespace kiln {

Buffer Buffer::from_bytes(std::vector<std::byte> bytes) {
  auto owner = std::make_shared<std::vector<std::byte>>(std::move(bytes));
  return Buffer(owner, owner->data(), owner->size());
}

Buffer Buffer::from_string(std::string bytes) {
  auto owner = std::make_shared<std::string>(std::move(bytes));
  return Buffer(owner, reinterpret_cast<const std::byte*>(owner->data()), owner->size());
}

Buffer Buffer::copy_of(const void* data, size_t size) {
  std::vector<std::byte> bytes(size);
  if (size) std::memcpy(bytes.data(), data, size);
  return from_bytes(std::move(bytes));
}

Buffer Buffer::borrow(const void* data, size_t size) {
  return Buffer(nullptr, static_cast<const std::byte*>(data), size);
}

Buffer Buffer::slice(size_t offset, size_t size) const {
  if (offset > size_ || size > size_ - offset)
    fail(ErrorCode::kInternal, "buffer slice [", offset, ", +", size, ") is outside ", size_, " bytes");
  return Buffer(owner_, data_ + offset, size);
}

namespace {
struct Mapping {
  void* address = nullptr;
  size_t length = 0;
  ~Mapping() {
    if (address) munmap(address, length);
  }
};
}  // namespace

Buffer Buffer::map_file(const std::filesystem::path& path, size_t offset, int64_t length, std::string_view what) {
  // Non-blocking open, regular files only: a FIFO or device must not hang or be read as data.
  file_io::File file = file_io::File::open_regular(path, what);
  size_t file_size = size_t(file.size());
  if (offset > file_size || (length >= 0 && uint64_t(length) > file_size - offset))
    fail(ErrorCode::kInvalidModel, path, " has ", file_size, " bytes; the model asks for ",
         length < 0 ? std::string("the rest") : std::to_string(length), " bytes at offset ", offset);
  size_t size = length < 0 ? file_size - offset : size_t(length);
  if (size == 0) return Buffer();
  size_t page = size_t(sysconf(_SC_PAGESIZE));
  size_t aligned = offset / page * page;
  auto mapping = std::make_shared<Mapping>();
  mapping->length = size + (offset - aligned);
  void* address = mmap(nullptr, mapping->length, PROT_READ, MAP_PRIVATE, file.fd(), off_t(aligned));
  if (address == MAP_FAILED) fail(ErrorCode::kIoError, "cannot map ", path, ": ", std::strerror(errno));
  mapping->address = address;
  const std::byte* data = static_cast<const std::byte*>(address) + (offset - aligned);
  return Buffer(std::shared_ptr<const void>(mapping, address), data, size);
}

}  // namespace kiln
