#include "kiln/npy.h"

#include <algorithm>
#include <bit>
#include <cctype>
#include <cstring>

#include "kiln/error.h"
#include "kiln/file_io.h"

namespace kiln::io {

namespace {

static_assert(std::endian::native == std::endian::little, "kiln's tensors are little-endian");

// numpy itself refuses headers over 10000 bytes by default; 64 KiB is generous.
constexpr size_t kMaxHeaderBytes = 64 << 10;
constexpr size_t kMaxRank = 64;  // numpy's own limit

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
    case DType::kInt16: return "<i2";
    case DType::kUInt16: return "<u2";
    case DType::kUInt32: return "<u4";
    case DType::kUInt64: return "<u8";
    case DType::kString: break;  // '<U<n>': its width depends on the data (string_npy_data)
    // numpy has none of the narrow types: a byte per element, as kiln holds
    // them (a narrow float's bits, a 4- or 2-bit integer's value), read back
    // as uint8 or int8 (ml_dtypes' .view() gives numpy users the type).
    default: return descr_of(npy_read_back_dtype(d));
  }
  return "";
}

}  // namespace

DType npy_read_back_dtype(DType dtype) {
  if (!is_narrow(dtype)) return dtype;
  return dtype == DType::kInt4 || dtype == DType::kInt2 ? DType::kInt8 : DType::kUInt8;
}

namespace {

struct Descr {
  DType dtype;
  bool big_endian = false;
};

// "<f4", ">i8", "|b1", "|?", "<V2" (kiln's bfloat16): a byte order, then a
// type code. '|' (no order) only for one-byte types and raw bfloat16, '='
// (native) reads as little-endian, '>' is swapped on reading.
std::optional<Descr> decode_descr(std::string_view descr) {
  if (descr.size() < 2 || std::string_view("<>|=").find(descr[0]) == std::string_view::npos) return std::nullopt;
  char order = descr[0];
  std::string_view code = descr.substr(1);
  static constexpr std::pair<std::string_view, DType> kCodes[] = {
      {"f2", DType::kFloat16}, {"f4", DType::kFloat32}, {"f8", DType::kFloat64}, {"i1", DType::kInt8},
      {"i2", DType::kInt16},   {"i4", DType::kInt32},   {"i8", DType::kInt64},   {"u1", DType::kUInt8},
      {"u2", DType::kUInt16},  {"u4", DType::kUInt32},  {"u8", DType::kUInt64},  {"b1", DType::kBool},
      {"?", DType::kBool},     {"V2", DType::kBFloat16}};
  for (auto& [text, dtype] : kCodes) {
    if (code != text) continue;
    if (dtype_size(dtype) == 1) return Descr{dtype};
    if (dtype == DType::kBFloat16) return order == '>' ? std::nullopt : std::optional(Descr{dtype});
    if (order == '|') return std::nullopt;
    return Descr{dtype, order == '>'};
  }
  return std::nullopt;
}

struct Header {
  std::string descr;
  bool fortran_order = false;
  std::vector<int64_t> shape;
};

// The header is a Python dict literal, as numpy writes it:
//   {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
// with exactly those three keys in any order, strings in either quote,
// integers of decimal digits only, and tuples as Python spells them:
// (), (5,), (2, 3) or (2, 3,).
class HeaderParser {
 public:
  HeaderParser(std::string_view text, const std::string& label) : text_(text), label_(label) {}

  Header parse() {
    Header h;
    bool seen[3] = {false, false, false};
    static constexpr std::string_view kKeys[] = {"descr", "fortran_order", "shape"};
    space();
    expect('{');
    for (space(); !eat('}');) {
      size_t key_at = at_;
      std::string key = quoted();
      size_t k = std::find(std::begin(kKeys), std::end(kKeys), key) - std::begin(kKeys);
      if (k == std::size(kKeys)) error(key_at, "unknown key '" + key + "'");
      if (seen[k]) error(key_at, "key '" + key + "' appears twice");
      seen[k] = true;
      space();
      expect(':');
      space();
      if (k == 0) h.descr = quoted();
      else if (k == 1) h.fortran_order = boolean();
      else h.shape = tuple();
      space();
      if (eat(',')) {
        space();
        continue;
      }
      expect('}');
      break;
    }
    space();
    if (at_ != text_.size()) error(at_, "unexpected text after the dict");
    for (size_t k = 0; k < std::size(kKeys); ++k)
      if (!seen[k]) error(at_, str("key '", kKeys[k], "' is missing"));
    return h;
  }

 private:
  [[noreturn]] void error(size_t at, const std::string& what) const {
    fail(ErrorCode::kParseError, label_, " has a bad .npy header: ", what, " (at byte ", at, " of ", text_.size(), ")");
  }
  bool eat(char c) {
    if (at_ < text_.size() && text_[at_] == c) {
      ++at_;
      return true;
    }
    return false;
  }
  void expect(char c) {
    if (eat(c)) return;
    if (at_ == text_.size()) error(at_, str("expected '", c, "', found the end"));
    uint8_t found = uint8_t(text_[at_]);
    error(at_, std::isprint(found) ? str("expected '", c, "', found '", char(found), "'") : str("expected '", c, "', found byte ", int(found)));
  }
  void space() {
    while (at_ < text_.size() && (text_[at_] == ' ' || text_[at_] == '\t' || text_[at_] == '\n' || text_[at_] == '\r')) ++at_;
  }
  bool word(std::string_view w) {
    if (text_.substr(at_, w.size()) != w) return false;
    size_t end = at_ + w.size();
    if (end < text_.size() && (std::isalnum(uint8_t(text_[end])) || text_[end] == '_')) return false;
    at_ = end;
    return true;
  }
  std::string quoted() {
    char q = at_ < text_.size() ? text_[at_] : '\0';
    if (q != '\'' && q != '"') error(at_, "expected a quoted string");
    size_t end = text_.find(q, at_ + 1);
    if (end == std::string_view::npos) error(at_, "a string is not closed");
    std::string_view s = text_.substr(at_ + 1, end - at_ - 1);
    if (s.size() > 64 || s.find_first_of("\\\n") != std::string_view::npos) error(at_, "a string is too long or has escapes");
    at_ = end + 1;
    return std::string(s);
  }
  bool boolean() {
    if (word("True")) return true;
    if (word("False")) return false;
    error(at_, "'fortran_order' must be True or False");
  }
  int64_t integer() {
    size_t start = at_;
    int64_t value = 0;
    while (at_ < text_.size() && text_[at_] >= '0' && text_[at_] <= '9') {
      if (__builtin_mul_overflow(value, 10, &value) || __builtin_add_overflow(value, text_[at_] - '0', &value))
        error(start, "a dim does not fit in 64 bits");
      ++at_;
    }
    if (at_ == start) error(at_, "expected a dim: decimal digits only (no sign)");
    if (at_ - start > 1 && text_[start] == '0') error(start, "a dim has a leading zero");
    return value;
  }
  std::vector<int64_t> tuple() {
    std::vector<int64_t> dims;
    expect('(');
    space();
    if (eat(')')) return dims;
    for (;;) {
      if (dims.size() == kMaxRank) error(at_, str("the shape has more than ", kMaxRank, " dims"));
      dims.push_back(integer());
      space();
      if (eat(')')) {
        if (dims.size() == 1) error(at_ - 1, "a one-dim shape needs a trailing comma: (n,)");
        return dims;
      }
      expect(',');
      space();
      if (eat(')')) return dims;
    }
  }

  std::string_view text_;
  const std::string& label_;
  size_t at_ = 0;
};

// numpy's column-major layout to kiln's row-major one.
std::vector<std::byte> from_fortran_order(const std::vector<std::byte>& in, const std::vector<int64_t>& dims, size_t elem) {
  int64_t numel = ir::checked_numel(dims);
  if (dims.size() < 2 || numel == 0) return in;
  size_t rank = dims.size();
  std::vector<int64_t> stride(rank, 1), index(rank, 0);  // strides of the column-major input, in elements
  for (size_t k = 1; k < rank; ++k) stride[k] = stride[k - 1] * dims[k - 1];
  std::vector<std::byte> out(in.size());
  int64_t from = 0;
  for (int64_t i = 0; i < numel; ++i) {  // row-major order; `from` follows in column-major
    std::memcpy(out.data() + size_t(i) * elem, in.data() + size_t(from) * elem, elem);
    for (size_t k = rank; k-- > 0;) {
      from += stride[k];
      if (++index[k] < dims[k]) break;
      from -= stride[k] * dims[k];
      index[k] = 0;
    }
  }
  return out;
}

// numpy's fixed-width strings: 'U<n>' (n UTF-32 code units per element, the
// byte order given) and 'S<n>' (n bytes); the unused tail of each is NULs.
// Object arrays ('O') hold pickled Python objects, which kiln does not read.
struct StringDescr {
  bool utf32 = true, big_endian = false;
  uint64_t width = 0;  // code units (U) or bytes (S) per element
};

std::optional<StringDescr> decode_string_descr(std::string_view descr) {
  if (descr.size() < 3 || std::string_view("<>|=").find(descr[0]) == std::string_view::npos || (descr[1] != 'U' && descr[1] != 'S'))
    return std::nullopt;
  StringDescr s{descr[1] == 'U', descr[0] == '>', 0};
  for (char ch : descr.substr(2)) {
    if (!std::isdigit(static_cast<unsigned char>(ch)) || s.width > (uint64_t(1) << 32)) return std::nullopt;
    s.width = s.width * 10 + uint64_t(ch - '0');
  }
  // Elements of no bytes would let a header claim any count with no data (numpy writes 'U1' for '').
  if (s.width == 0) return std::nullopt;
  return s;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xc0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += char(0xe0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3f));
    out += char(0x80 | (cp & 0x3f));
  } else {
    out += char(0xf0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3f));
    out += char(0x80 | ((cp >> 6) & 0x3f));
    out += char(0x80 | (cp & 0x3f));
  }
}

// The code points of UTF-8 text; nullopt where it is not valid UTF-8.
std::optional<std::vector<uint32_t>> utf8_code_points(std::string_view s) {
  std::vector<uint32_t> cps;
  for (size_t i = 0; i < s.size();) {
    auto b = static_cast<unsigned char>(s[i]);
    int extra = b < 0x80 ? 0 : (b >> 5) == 6 ? 1 : (b >> 4) == 14 ? 2 : (b >> 3) == 30 ? 3 : -1;
    if (extra < 0 || i + size_t(extra) >= s.size() + (extra == 0 ? 1 : 0)) return std::nullopt;
    uint32_t cp = extra == 0 ? b : b & (0x3f >> extra);
    for (int k = 1; k <= extra; ++k) {
      auto c = static_cast<unsigned char>(s[i + size_t(k)]);
      if ((c >> 6) != 2) return std::nullopt;
      cp = (cp << 6) | (c & 0x3f);
    }
    static constexpr uint32_t kLeast[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kLeast[extra] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return std::nullopt;
    cps.push_back(cp);
    i += size_t(extra) + 1;
  }
  return cps;
}

ir::TensorData parse_string_npy(const std::string& bytes, size_t data_at, const StringDescr& s, const Header& h,
                                const std::string& label) {
  ir::TensorData t;
  t.dtype = DType::kString;
  t.dims = h.shape;
  uint64_t n, elem = s.utf32 ? s.width * 4 : s.width, need;
  try {
    n = uint64_t(ir::checked_numel(t.dims));
  } catch (const Error&) {
    fail(ErrorCode::kParseError, label, " has shape ", ir::shape_to_string(ir::shape_of(t.dims)), ", more than 2^63 elements");
  }
  if (__builtin_mul_overflow(n, elem, &need) || bytes.size() - data_at != need)
    fail(ErrorCode::kParseError, label, " has ", bytes.size() - data_at, " data bytes; shape ",
         ir::shape_to_string(ir::shape_of(t.dims)), " of '", h.descr, "' needs ", need);
  t.strings.resize(size_t(n));
  for (uint64_t i = 0; i < n; ++i) {
    const char* at = bytes.data() + data_at + i * elem;
    std::string& out = t.strings[size_t(i)];
    if (!s.utf32) {
      out.assign(at, strnlen(at, size_t(elem)));
      continue;
    }
    for (uint64_t k = 0; k < s.width; ++k) {
      uint8_t b[4];
      std::memcpy(b, at + 4 * k, 4);
      uint32_t cp = s.big_endian ? uint32_t(b[0]) << 24 | uint32_t(b[1]) << 16 | uint32_t(b[2]) << 8 | b[3]
                                 : uint32_t(b[3]) << 24 | uint32_t(b[2]) << 16 | uint32_t(b[1]) << 8 | b[0];
      if (cp == 0) break;
      if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        fail(ErrorCode::kParseError, label, ": element ", i, " holds ", cp, ", which is not a Unicode code point");
      append_utf8(out, cp);
    }
  }
  if (h.fortran_order) {  // reorder the elements to row-major
    std::vector<int64_t> idx(t.dims.size(), 0);
    std::vector<std::string> row_major(t.strings.size());
    std::vector<int64_t> stride(t.dims.size(), 1);
    for (size_t k = 1; k < t.dims.size(); ++k) stride[k] = stride[k - 1] * t.dims[k - 1];
    for (uint64_t i = 0; i < n; ++i) {
      int64_t from = 0;
      for (size_t k = 0; k < idx.size(); ++k) from += idx[k] * stride[k];
      row_major[size_t(i)] = std::move(t.strings[size_t(from)]);
      for (size_t k = idx.size(); k-- > 0;) {
        if (++idx[k] < t.dims[k]) break;
        idx[k] = 0;
      }
    }
    t.strings = std::move(row_major);
  }
  return t;
}

// A string tensor as numpy's '<U<n>', n the most code points of an element (at least 1, as numpy writes '' arrays).
std::string string_npy_data(const ir::TensorData& t, std::string& descr) {
  std::vector<std::vector<uint32_t>> elements;
  size_t width = 1;
  for (size_t i = 0; i < t.strings.size(); ++i) {
    auto cps = utf8_code_points(t.strings[i]);
    if (!cps) fail(ErrorCode::kInvalidArgument, "string element ", i, " is not valid UTF-8; a .npy 'U' array holds Unicode text");
    width = std::max(width, cps->size());
    elements.push_back(std::move(*cps));
  }
  descr = str("<U", width);
  std::string data(elements.size() * width * 4, '\0');
  for (size_t i = 0; i < elements.size(); ++i)
    for (size_t k = 0; k < elements[i].size(); ++k) std::memcpy(data.data() + (i * width + k) * 4, &elements[i][k], 4);
  return data;
}

}  // namespace

ir::TensorData parse_npy(const std::string& bytes, const std::string& label) {
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0)
    fail(ErrorCode::kParseError, label, " is not a .npy file (bad magic)");
  int major = uint8_t(bytes[6]), minor = uint8_t(bytes[7]);
  if ((major < 1 || major > 3) || minor != 0)
    fail(ErrorCode::kUnsupported, label, " has .npy format version ", major, ".", minor, "; kiln reads 1.0, 2.0 and 3.0");
  size_t header_len = 0, offset = major == 1 ? 10 : 12;
  if (bytes.size() < offset) fail(ErrorCode::kParseError, label, " is truncated (in the .npy preamble)");
  for (size_t i = 8; i < offset; ++i) header_len |= size_t(uint8_t(bytes[i])) << (8 * (i - 8));
  if (header_len > kMaxHeaderBytes)
    fail(ErrorCode::kParseError, label, " has a .npy header of ", header_len, " bytes; kiln reads at most ", kMaxHeaderBytes);
  if (header_len > bytes.size() - offset)
    fail(ErrorCode::kParseError, label, " is truncated: its .npy header needs ", header_len, " bytes, the file has ",
         bytes.size() - offset, " after the preamble");
  Header h = HeaderParser(std::string_view(bytes).substr(offset, header_len), label).parse();
  if (auto strings = decode_string_descr(h.descr)) return parse_string_npy(bytes, offset + header_len, *strings, h, label);
  if (h.descr.find('O') != std::string::npos)
    fail(ErrorCode::kUnsupported, label, " is an object array ('", h.descr,
         "'): pickled Python objects, which kiln does not read; save strings as a fixed-width array (numpy dtype str, 'U')");
  auto descr = decode_descr(h.descr);
  if (!descr) fail(ErrorCode::kUnsupported, label, " has dtype '", h.descr, "', which kiln does not support");
  ir::TensorData t;
  t.dtype = descr->dtype;
  t.dims = h.shape;
  size_t elem = dtype_size(t.dtype), data_at = offset + header_len;
  uint64_t need;
  try {
    need = uint64_t(ir::checked_numel(t.dims));
  } catch (const Error&) {
    fail(ErrorCode::kParseError, label, " has shape ", ir::shape_to_string(ir::shape_of(t.dims)), ", more than 2^63 elements");
  }
  if (__builtin_mul_overflow(need, uint64_t(elem), &need) || bytes.size() - data_at != need)
    fail(ErrorCode::kParseError, label, " has ", bytes.size() - data_at, " data bytes; shape ",
         ir::shape_to_string(ir::shape_of(t.dims)), " of ", dtype_name(t.dtype), " needs ", need);
  const std::byte* at = reinterpret_cast<const std::byte*>(bytes.data()) + data_at;
  std::vector<std::byte> data(at, at + need);
  if (descr->big_endian)
    for (size_t i = 0; i < need; i += elem) std::reverse(data.begin() + i, data.begin() + i + elem);
  if (t.dtype == DType::kBool)  // numpy writes 0 and 1; any other byte means true
    for (std::byte& b : data) b = std::byte(b != std::byte(0));
  t.data = Buffer::from_bytes(h.fortran_order ? from_fortran_order(data, t.dims, elem) : std::move(data));
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
  std::string descr = is_string(t.dtype) ? "" : descr_of(t.dtype), strings;
  if (is_string(t.dtype)) strings = string_npy_data(t, descr);
  std::string header = str("{'descr': '", descr, "', 'fortran_order': False, 'shape': ", shape, ", }");
  size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::string prefix("\x93NUMPY\x01\x00", 8);
  prefix += char(header.size() & 0xff);
  prefix += char(header.size() >> 8);
  std::string_view data = is_string(t.dtype) ? std::string_view(strings)
                                              : std::string_view(reinterpret_cast<const char*>(t.data.data()), t.data.size());
  file_io::write_file_atomic(path, {prefix, header, data});
}

}  // namespace kiln::io
