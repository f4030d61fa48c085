// TensorProto -> TensorData: raw bytes, typed fields and external data files.
#include <charconv>
#include <cstring>

#include "importer.h"
#include "kiln/error.h"

namespace kiln::onnx {

namespace fs = std::filesystem;
using ::onnx::TensorProto;

std::optional<DType> dtype_from_onnx(int32_t elem_type) {
  switch (elem_type) {
    case TensorProto::FLOAT: return DType::kFloat32;
    case TensorProto::FLOAT16: return DType::kFloat16;
    case TensorProto::BFLOAT16: return DType::kBFloat16;
    case TensorProto::DOUBLE: return DType::kFloat64;
    case TensorProto::INT64: return DType::kInt64;
    case TensorProto::INT32: return DType::kInt32;
    case TensorProto::INT8: return DType::kInt8;
    case TensorProto::UINT8: return DType::kUInt8;
    case TensorProto::INT16: return DType::kInt16;
    case TensorProto::UINT16: return DType::kUInt16;
    case TensorProto::UINT32: return DType::kUInt32;
    case TensorProto::UINT64: return DType::kUInt64;
    case TensorProto::BOOL: return DType::kBool;
    case TensorProto::FLOAT8E4M3FN: return DType::kFloat8E4M3FN;
    case TensorProto::FLOAT8E4M3FNUZ: return DType::kFloat8E4M3FNUZ;
    case TensorProto::FLOAT8E5M2: return DType::kFloat8E5M2;
    case TensorProto::FLOAT8E5M2FNUZ: return DType::kFloat8E5M2FNUZ;
    case TensorProto::UINT4: return DType::kUInt4;
    case TensorProto::INT4: return DType::kInt4;
    case TensorProto::FLOAT4E2M1: return DType::kFloat4E2M1;
    case TensorProto::UINT2: return DType::kUInt2;
    case TensorProto::INT2: return DType::kInt2;
    case TensorProto::FLOAT8E8M0: return DType::kFloat8E8M0;
    case TensorProto::STRING: return DType::kString;
    default: return std::nullopt;
  }
}

// ONNX's element types by number (TensorProto.DataType up to opset 28), so that a
// type newer than the onnx.proto kiln was built with is still named.
std::string onnx_dtype_name(int32_t elem_type) {
  static constexpr std::string_view kNames[] = {
      "UNDEFINED",  "FLOAT",        "UINT8",          "INT8",       "UINT16",         "INT16",     "INT32",      "INT64",
      "STRING",     "BOOL",         "FLOAT16",        "DOUBLE",     "UINT32",         "UINT64",    "COMPLEX64",  "COMPLEX128",
      "BFLOAT16",   "FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ", "UINT4",     "INT4",       "FLOAT4E2M1",
      "FLOAT8E8M0", "UINT2",        "INT2",           "FLOAT6E2M3", "FLOAT6E3M2"};
  if (elem_type >= 0 && size_t(elem_type) < std::size(kNames)) return std::string(kNames[elem_type]);
  return str("unknown(", elem_type, ")");
}

std::string kiln_dtype_names() {
  std::string names;
  for (DType d : kAllDTypes) names += str(names.empty() ? "" : ", ", dtype_name(d));
  return names + ", string";
}

namespace {

// Copies a repeated typed field into dense little-endian storage of `dtype`.
template <class Field>
Buffer pack_field(const Field& field, DType dtype) {
  size_t n = size_t(field.size());
  std::vector<std::byte> bytes(n * dtype_size(dtype));
  visit_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    T* out = reinterpret_cast<T*>(bytes.data());
    for (size_t i = 0; i < n; ++i) {
      if constexpr (std::is_same_v<T, Float16> || std::is_same_v<T, BFloat16>) out[i].bits = uint16_t(field.Get(int(i)));
      else if constexpr (requires { out[i].bits; }) out[i].bits = uint8_t(field.Get(int(i)));  // float8: its bits
      else if constexpr (requires { out[i].value; }) fail(ErrorCode::kInternal, "packed ", dtype_name(dtype), " read as one value a field");
      else out[i] = static_cast<T>(field.Get(int(i)));
    }
  });
  return Buffer::from_bytes(std::move(bytes));
}

// A byte count in decimal digits only: "0x10", "-1", "1e3", "12abc" and " 5" are errors, not 0 or a prefix.
int64_t external_number(const std::string& text, const std::string& key, const std::string& name) {
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || text[0] == '-' || ec != std::errc() || end != text.data() + text.size())
    fail(ErrorCode::kInvalidModel, "tensor '", name, "': external data ", key, " '", text,
         "' is not a non-negative decimal number of bytes");
  return value;
}

Buffer external_data(const TensorProto& proto, const fs::path& base_dir, const std::string& name) {
  std::string location;
  int64_t offset = 0, length = -1;
  for (auto& entry : proto.external_data()) {
    if (entry.key() == "location") location = entry.value();
    else if (entry.key() == "offset") offset = external_number(entry.value(), entry.key(), name);
    else if (entry.key() == "length") length = external_number(entry.value(), entry.key(), name);
  }
  if (location.empty()) fail(ErrorCode::kInvalidModel, "tensor '", name, "' has external data without a location");
  if (base_dir.empty())
    fail(ErrorCode::kInvalidModel, "tensor '", name, "' uses external data, which needs a model loaded from a file");
  fs::path relative(location);
  if (relative.is_absolute())
    fail(ErrorCode::kInvalidModel, "tensor '", name, "': external data path '", location, "' is absolute; it must be relative to the model's folder");
  fs::path root = fs::weakly_canonical(base_dir);
  fs::path full = fs::weakly_canonical(root / relative);
  auto [root_end, full_it] = std::mismatch(root.begin(), root.end(), full.begin(), full.end());
  if (root_end != root.end())
    fail(ErrorCode::kInvalidModel, "tensor '", name, "': external data path '", location, "' points outside the model's folder ", root);
  if (!fs::exists(full))
    fail(ErrorCode::kIoError, "tensor '", name, "': external data file ", full, " does not exist");
  return Buffer::map_file(full, size_t(offset), length, str("external data file of tensor '", name, "'"));
}

// The 4- and 2-bit types as ONNX stores them, two or four to a byte, low
// bits first, unpacked to kiln's one byte per element (sign-extended for int4 and int2).
Buffer unpack_narrow(const uint8_t* packed, size_t n, DType dtype) {
  int bits = packed_bits(dtype);
  int per_byte = 8 / bits;
  std::vector<std::byte> bytes(n);
  for (size_t i = 0; i < n; ++i) {
    uint8_t field = uint8_t(packed[i / size_t(per_byte)] >> (int(i % size_t(per_byte)) * bits));
    if (dtype == DType::kFloat4E2M1) bytes[i] = std::byte(field & 0xf);
    else bytes[i] = std::byte(narrow_integer_wrap(dtype, field));
  }
  return Buffer::from_bytes(std::move(bytes));
}

// A tensor of a sub-byte type: packed bytes in raw data, external data or
// int32_data (one packed byte a value), unpacked.
Buffer read_packed(TensorProto& proto, const fs::path& base_dir, const std::string& name, DType dtype, int64_t numel) {
  uint64_t need = (uint64_t(numel) * uint64_t(packed_bits(dtype)) + 7) / 8;
  auto check = [&](uint64_t have, const char* what) {
    if (have != need)
      fail(ErrorCode::kInvalidModel, "tensor '", name, "' has ", have, " ", what, "; ", numel, " elements of ", dtype_name(dtype),
           " packed need ", need);
  };
  if (proto.data_location() == TensorProto::EXTERNAL) {
    Buffer packed = external_data(proto, base_dir, name);
    check(packed.size(), "bytes of external data");
    return unpack_narrow(packed.as<uint8_t>(), size_t(numel), dtype);
  }
  if (proto.has_raw_data()) {
    check(proto.raw_data().size(), "bytes of raw data");
    return unpack_narrow(reinterpret_cast<const uint8_t*>(proto.raw_data().data()), size_t(numel), dtype);
  }
  check(uint64_t(proto.int32_data_size()), "int32_data values (packed bytes)");
  std::vector<uint8_t> packed(proto.int32_data().begin(), proto.int32_data().end());
  return unpack_narrow(packed.data(), size_t(numel), dtype);
}

}  // namespace

ir::TensorData tensor_from_proto(TensorProto& proto, const fs::path& base_dir) {
  const std::string name = proto.name().empty() ? std::string("(unnamed)") : proto.name();
  auto dtype = dtype_from_onnx(proto.data_type());
  if (!dtype)
    fail(ErrorCode::kUnsupported, "tensor '", name, "' has dtype ", onnx_dtype_name(proto.data_type()),
         ", a type kiln does not have (it has ", kiln_dtype_names(), ")");
  ir::TensorData t;
  t.dtype = *dtype;
  for (int64_t d : proto.dims()) {
    if (d < 0) fail(ErrorCode::kInvalidModel, "tensor '", name, "' has negative dim ", d);
    t.dims.push_back(d);
  }
  int64_t numel;
  try {
    numel = t.numel();
  } catch (const Error&) {
    fail(ErrorCode::kInvalidModel, "tensor '", name, "' has dims whose product overflows");
  }
  // Checked before any allocation so that absurd dims cannot ask for absurd memory.
  auto expect = [&](uint64_t have, const char* what) {
    if (have != uint64_t(numel))
      fail(ErrorCode::kInvalidModel, "tensor '", name, "' has ", have, " ", what, " but its dims ",
           shape_to_string(ir::shape_of(t.dims)), " need ", numel);
  };
  if (is_string(t.dtype)) {  // ONNX keeps strings in string_data only: never raw or external
    if (proto.data_location() == TensorProto::EXTERNAL || proto.has_raw_data())
      fail(ErrorCode::kInvalidModel, "string tensor '", name, "' has ",
           proto.has_raw_data() ? "raw_data" : "external data", "; ONNX stores strings in string_data");
    expect(uint64_t(proto.string_data_size()), "string_data values");
    t.strings.reserve(size_t(numel));
    for (std::string& s : *proto.mutable_string_data()) t.strings.push_back(std::move(s));
    return t;
  }
  size_t elem = dtype_size(t.dtype);
  if (packed_bits(t.dtype) < 8) {
    t.data = read_packed(proto, base_dir, name, t.dtype, numel);
  } else if (proto.data_location() == TensorProto::EXTERNAL) {
    t.data = external_data(proto, base_dir, name);
    if (t.data.size() % elem != 0 || t.data.size() / elem != uint64_t(numel))
      fail(ErrorCode::kInvalidModel, "tensor '", name, "' external data has ", t.data.size(), " bytes; dims need ",
           uint64_t(numel) * elem);
  } else if (proto.has_raw_data()) {
    if (proto.raw_data().size() % elem != 0 || proto.raw_data().size() / elem != uint64_t(numel))
      fail(ErrorCode::kInvalidModel, "tensor '", name, "' has ", proto.raw_data().size(), " bytes of raw data but its dims ",
           shape_to_string(ir::shape_of(t.dims)), " of ", dtype_name(t.dtype), " need ", uint64_t(numel) * elem);
    std::string bytes;
    bytes.swap(*proto.mutable_raw_data());  // take the storage, no copy
    t.data = Buffer::from_string(std::move(bytes));
  } else {
    switch (t.dtype) {
      case DType::kFloat32: expect(proto.float_data_size(), "float_data values"); t.data = pack_field(proto.float_data(), t.dtype); break;
      case DType::kFloat64: expect(proto.double_data_size(), "double_data values"); t.data = pack_field(proto.double_data(), t.dtype); break;
      case DType::kInt64: expect(proto.int64_data_size(), "int64_data values"); t.data = pack_field(proto.int64_data(), t.dtype); break;
      case DType::kUInt32:
      case DType::kUInt64: expect(proto.uint64_data_size(), "uint64_data values"); t.data = pack_field(proto.uint64_data(), t.dtype); break;
      default: expect(proto.int32_data_size(), "int32_data values"); t.data = pack_field(proto.int32_data(), t.dtype); break;
    }
  }
  if (t.dtype == DType::kBool) {  // normalize to 0/1 so bool reads are well defined
    const uint8_t* p = t.data.as<uint8_t>();
    bool clean = true;
    for (size_t i = 0; i < t.data.size() && clean; ++i) clean = p[i] <= 1;
    if (!clean) {
      std::vector<std::byte> bytes(t.data.size());
      for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = std::byte(p[i] != 0);
      t.data = Buffer::from_bytes(std::move(bytes));
    }
  }
  return t;
}

}  // namespace kiln::onnx
