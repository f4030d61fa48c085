#include "kiln/npy.h"

#include <regex>

#include "kiln/error.h"
#include "kiln/file_io.h"

namespace kiln::io {

namespace {

const char* descr_of(DType d) {
  switch (d) {
    case DType::kFloat32: return "<f4";
    case DType::kFloat16: return "<f2";
    case DType::kFloat64: return "<f8";
    case DType::kInt64: return "<i8";
    case DType::kInt32: return "<i4";
    case DType::kInt8: return "|i1";
    case DType::kUInt8: return "|u1";
    case DType::kBool: return "|b1";
    case DType::kBFloat16: return "<V2";  // numpy has no bfloat16; raw 2-byte values
  }
  return "";
}

std::optional<DType> dtype_of(const std::string& descr) {
  for (DType d : kAllDTypes)
    if (descr == descr_of(d)) return d;
  if (descr == "<b1" || descr == "|?") return DType::kBool;
  if (descr == "<i1") return DType::kInt8;
  if (descr == "<u1") return DType::kUInt8;
  return std::nullopt;
}

}  // namespace

ir::TensorData parse_npy(const std::string& bytes, const std::string& label) {
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0)
    fail(ErrorCode::kParseError, label, " is not a .npy file (bad magic)");
  int major = uint8_t(bytes[6]);
  size_t header_len, offset;
  if (major == 1) {
    header_len = uint8_t(bytes[8]) | (size_t(uint8_t(bytes[9])) << 8);
    offset = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) fail(ErrorCode::kParseError, label, " is truncated");
    header_len = 0;
    for (int i = 0; i < 4; ++i) header_len |= size_t(uint8_t(bytes[8 + i])) << (8 * i);
    offset = 12;
  } else {
    fail(ErrorCode::kParseError, label, " has unsupported .npy version ", major);
  }
  if (offset + header_len > bytes.size()) fail(ErrorCode::kParseError, label, " is truncated (header)");
  std::string header = bytes.substr(offset, header_len);
  std::smatch m;
  if (!std::regex_search(header, m, std::regex(R"('descr'\s*:\s*'([^']+)')")))
    fail(ErrorCode::kParseError, label, " header has no descr");
  std::string descr = m[1];
  if (std::regex_search(header, m, std::regex(R"('fortran_order'\s*:\s*True)")))
    fail(ErrorCode::kUnsupported, label, " is Fortran-ordered; save it in C order");
  if (!std::regex_search(header, m, std::regex(R"('shape'\s*:\s*\(([^)]*)\))")))
    fail(ErrorCode::kParseError, label, " header has no shape");
  auto dtype = dtype_of(descr);
  if (!dtype) fail(ErrorCode::kUnsupported, label, " has dtype '", descr, "', which kiln does not support");
  ir::TensorData t;
  t.dtype = *dtype;
  std::string dims = m[1];
  std::regex number(R"(\d+)");
  for (auto it = std::sregex_iterator(dims.begin(), dims.end(), number); it != std::sregex_iterator(); ++it) {
    try {
      t.dims.push_back(std::stoll(it->str()));
    } catch (const std::exception&) {
      fail(ErrorCode::kParseError, label, " has a dim that does not fit in 64 bits");
    }
  }
  size_t data_at = offset + header_len;
  uint64_t need = uint64_t(t.numel()) * dtype_size(t.dtype);
  if (bytes.size() - data_at != need)
    fail(ErrorCode::kParseError, label, " has ", bytes.size() - data_at, " data bytes; shape and dtype need ", need);
  t.data = Buffer::copy_of(bytes.data() + data_at, need);
  return t;
}

ir::TensorData read_npy(const std::filesystem::path& path) {
  // An input tensor past 16 GiB is a mistake (or a sparse file): refused before reading.
  std::string bytes = file_io::read_file(path, ".npy file", uint64_t(1) << 34, "\x93NUMPY");
  return parse_npy(bytes, path.string());
}

void write_npy(const std::filesystem::path& path, const ir::TensorData& t) {
  std::string shape = "(";
  for (int64_t d : t.dims) shape += std::to_string(d) + ",";
  if (t.dims.size() > 1) shape.pop_back();
  shape += ")";
  std::string header = str("{'descr': '", descr_of(t.dtype), "', 'fortran_order': False, 'shape': ", shape, ", }");
  size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::string prefix("\x93NUMPY\x01\x00", 8);
  prefix += char(header.size() & 0xff);
  prefix += char(header.size() >> 8);
  file_io::write_file_atomic(path, {prefix, header, {reinterpret_cast<const char*>(t.data.data()), t.data.size()}});
}

}  // namespace kiln::io
