// The .kiln file format.
//
//   "KILNPLAN" | u32 format version | u32 reserved | u64 meta bytes | u64 weight bytes
//   | u64 meta checksum | u64 weights checksum | meta | zero pad to 256 | weights
//
// meta holds the network (values, nodes with their op by name, attributes
// (subgraphs among them, written whole with their weights inline), ranges), the optimization profiles, the precision and the arena plan;
// weights holds every weight's bytes at 256-byte aligned offsets (a string
// weight's bytes: per element, its length as a u64 and its UTF-8 bytes). Loading
// re-validates the network with Network::finalize(), then checks the memory
// plan, ranges, profiles and weights against it (verify, checks.cpp).
#include "kiln/plan.h"

#include "kiln/bytes.h"
#include "kiln/error.h"
#include "kiln/file_io.h"
#include "kiln/ir/limits.h"
#include "kiln/version.h"

namespace kiln::plan {

namespace {

constexpr char kMagic[8] = {'K', 'I', 'L', 'N', 'P', 'L', 'A', 'N'};
constexpr size_t kHeaderBytes = 8 + 4 + 4 + 8 * 4;

void write_tensor_header(ByteWriter& w, DType dtype, const std::vector<int64_t>& dims) {
  w.put<uint8_t>(uint8_t(dtype));
  w.put<uint64_t>(dims.size());
  for (int64_t d : dims) w.put<int64_t>(d);
}

DType read_dtype(ByteReader& r) {
  uint8_t d = r.get<uint8_t>();
  std::optional<DType> dtype = dtype_from_code(d);
  if (!dtype) fail(ErrorCode::kParseError, r.label(), ": bad dtype code ", int(d));
  return *dtype;
}

// The bytes a tensor's elements take in a plan: its data, or for a string
// tensor each string's length (u64) and bytes.
std::string element_bytes(const ir::TensorData& t) {
  if (!is_string(t.dtype)) return std::string(reinterpret_cast<const char*>(t.data.data()), t.data.size());
  ByteWriter w;
  for (const std::string& s : t.strings) w.put_string(s);
  return std::move(w.bytes());
}

// Fills t's elements from `bytes` (element_bytes' form), checking every length
// against what is left: a malformed plan is a kParseError, never a read past the end.
void read_elements(ir::TensorData& t, std::string_view bytes, const Buffer* shared, const std::string& label, const std::string& what) {
  if (!is_string(t.dtype)) {
    int64_t need = ir::checked_numel({t.numel(), int64_t(dtype_size(t.dtype))});
    if (bytes.size() != uint64_t(need))
      fail(ErrorCode::kParseError, label, ": ", what, " has ", bytes.size(), " bytes; its dims and dtype need ", need);
    t.data = shared ? *shared : Buffer::copy_of(bytes.data(), bytes.size());
    return;
  }
  ByteReader r(bytes, str(label, ": ", what));
  uint64_t n = uint64_t(t.numel());
  if (n > bytes.size() / sizeof(uint64_t))  // each string takes its length's 8 bytes at least
    fail(ErrorCode::kParseError, label, ": ", what, " needs ", n, " strings; its ", bytes.size(), " bytes hold fewer");
  t.strings.reserve(size_t(n));
  for (uint64_t i = 0; i < n; ++i) t.strings.push_back(r.get_string(bytes.size()));
  if (r.remaining() != 0)
    fail(ErrorCode::kParseError, label, ": ", what, " has ", r.remaining(), " bytes after its ", n, " strings");
}

void write_ranges(ByteWriter& w, const ir::DimRanges& ranges) {
  w.put<uint64_t>(ranges.size());
  for (auto& [symbol, r] : ranges) {
    w.put_string(symbol);
    w.put<int64_t>(r.min);
    w.put<int64_t>(r.opt);
    w.put<int64_t>(r.max);
  }
}

// A count, then per symbol its name, min, opt and max; `what` names the list in errors.
ir::DimRanges read_ranges(ByteReader& r, const std::string& what) {
  ir::DimRanges ranges;
  for (uint64_t n = r.get_count(32); n > 0; --n) {  // each: a string's length and three numbers at least
    std::string symbol = r.get_string();
    ir::DimRange range{r.get<int64_t>(), r.get<int64_t>(), r.get<int64_t>()};
    if (!ranges.emplace(symbol, range).second)
      fail(ErrorCode::kParseError, r.label(), ": ", what, " has two ranges for '", symbol, "'");
  }
  return ranges;
}

std::vector<int64_t> read_dims(ByteReader& r) {
  std::vector<int64_t> dims(r.get_count(8));
  for (auto& d : dims) d = r.get<int64_t>();
  return dims;
}

void write_subgraph(ByteWriter& w, const ir::Network& g);

void write_attr(ByteWriter& w, const ir::AttrValue& v) {
  w.put<uint8_t>(uint8_t(v.index()));
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, int64_t> || std::is_same_v<T, double>) {
          w.put<T>(x);
        } else if constexpr (std::is_same_v<T, std::string>) {
          w.put_string(x);
        } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
          w.put<uint64_t>(x.size());
          for (auto& s : x) w.put_string(s);
        } else if constexpr (std::is_same_v<T, ir::TensorData>) {
          write_tensor_header(w, x.dtype, x.dims);
          w.put_string(element_bytes(x));
        } else if constexpr (std::is_same_v<T, ir::Subgraph>) {
          write_subgraph(w, *x);
        } else {
          w.put<uint64_t>(x.size());
          for (auto e : x) w.put(e);
        }
      },
      v);
}

ir::Subgraph read_subgraph(ByteReader& r, int depth);

ir::TensorData read_tensor(ByteReader& r, const char* what) {
  ir::TensorData t;
  t.dtype = read_dtype(r);
  t.dims = read_dims(r);
  uint64_t n = r.get_count(1);
  read_elements(t, r.get_bytes(n), nullptr, r.label(), what);
  return t;
}

// `depth`: how many subgraphs hold the node whose attribute this is.
ir::AttrValue read_attr(ByteReader& r, int depth) {
  uint8_t type = r.get<uint8_t>();
  if (type > uint8_t(ir::AttrType::kGraph)) fail(ErrorCode::kParseError, r.label(), ": bad attribute type ", int(type));
  switch (ir::AttrType(type)) {
    case ir::AttrType::kInt: return r.get<int64_t>();
    case ir::AttrType::kFloat: return r.get<double>();
    case ir::AttrType::kString: return r.get_string();
    case ir::AttrType::kInts: {
      std::vector<int64_t> v(r.get_count(8));
      for (auto& e : v) e = r.get<int64_t>();
      return v;
    }
    case ir::AttrType::kFloats: {
      std::vector<double> v(r.get_count(8));
      for (auto& e : v) e = r.get<double>();
      return v;
    }
    case ir::AttrType::kStrings: {
      std::vector<std::string> v(r.get_count(8));
      for (auto& e : v) e = r.get_string();
      return v;
    }
    case ir::AttrType::kTensor: return read_tensor(r, "a tensor attribute");
    case ir::AttrType::kGraph: return read_subgraph(r, depth + 1);
  }
  fail(ErrorCode::kParseError, r.label(), ": bad attribute type");
}

void write_node(ByteWriter& w, const ir::Node& n) {
  w.put_string(n.name);
  w.put_string(ir::op_name(n.op));
  w.put<uint64_t>(n.inputs.size());
  for (auto v : n.inputs) w.put<int32_t>(v);
  w.put<uint64_t>(n.outputs.size());
  for (auto v : n.outputs) w.put<int32_t>(v);
  w.put<uint64_t>(n.attrs.all().size());
  for (auto& [name, value] : n.attrs.all()) {
    w.put_string(name);
    write_attr(w, value);
  }
}

void read_ids(ByteReader& r, std::vector<ir::ValueId>& ids, uint64_t values) {
  ids.resize(r.get_count(4));
  for (auto& v : ids) {
    v = r.get<int32_t>();
    if (v < ir::kNoValue || v >= int32_t(values)) fail(ErrorCode::kParseError, r.label(), ": bad value id ", v);
  }
}

ir::Node read_node(ByteReader& r, uint64_t values, int depth) {
  ir::Node node;
  node.name = r.get_string();
  std::string op = r.get_string();
  std::optional<ir::OpKind> kind = ir::op_from_name(op);
  if (!kind)
    fail(ErrorCode::kParseError, r.label(), ": node '", node.name, "' has op '", op, "', which this kiln (", kVersion,
         ") does not know; rebuild the plan with this kiln's `kiln build`");
  node.op = *kind;
  read_ids(r, node.inputs, values);
  read_ids(r, node.outputs, values);
  for (uint64_t a = r.get_count(9); a > 0; --a) {
    std::string name = r.get_string();
    node.attrs.set(name, read_attr(r, depth));
  }
  return node;
}

// A subgraph: its name, values (inputs with their types, weights with their
// bytes inline, the others by name), nodes, inputs and outputs.
void write_subgraph(ByteWriter& w, const ir::Network& g) {
  w.put_string(g.name());
  w.put<uint64_t>(g.values().size());
  for (const ir::Value& v : g.values()) {
    w.put_string(v.name);
    uint8_t kind = v.is_input ? 1 : v.weight ? 2 : 0;
    w.put<uint8_t>(kind);
    if (kind == 1) {
      w.put<uint8_t>(uint8_t(v.dtype));
      w.put<uint64_t>(v.shape.size());
      for (auto& d : v.shape) ir::write_dim(w, d);
    } else if (kind == 2) {
      write_tensor_header(w, v.weight->dtype, v.weight->dims);
      w.put_string(element_bytes(*v.weight));
    }
  }
  w.put<uint64_t>(g.nodes().size());
  for (const ir::Node& n : g.nodes()) write_node(w, n);
  w.put<uint64_t>(g.inputs().size());
  for (auto v : g.inputs()) w.put<int32_t>(v);
  w.put<uint64_t>(g.outputs().size());
  for (auto v : g.outputs()) w.put<int32_t>(v);
}

ir::Subgraph read_subgraph(ByteReader& r, int depth) {
  if (depth > ir::kMaxSubgraphDepth)
    fail(ErrorCode::kParseError, r.label(), ": subgraphs nest more than ", ir::kMaxSubgraphDepth, " levels deep");
  auto g = std::make_shared<ir::Network>();
  g->set_name(r.get_string());
  uint64_t values = r.get_count(10);  // each: a string's length and a kind at least
  for (uint64_t i = 0; i < values; ++i) {
    std::string name = r.get_string();
    uint8_t kind = r.get<uint8_t>();
    if (kind == 1) {
      DType dtype = read_dtype(r);
      ir::Shape shape(r.get_count(9));
      for (auto& d : shape) d = ir::read_dim(r);
      g->add_input(name, dtype, shape);
    } else if (kind == 2) {
      g->add_weight(name, read_tensor(r, "a subgraph weight"));
    } else if (kind == 0) {
      g->add_value(name);
    } else {
      fail(ErrorCode::kParseError, r.label(), ": bad value kind ", int(kind), " in a subgraph");
    }
  }
  for (uint64_t n = r.get_count(16); n > 0; --n) g->add_node(read_node(r, values, depth));
  std::vector<ir::ValueId> ids;
  read_ids(r, ids, values);
  if (ids != g->inputs()) fail(ErrorCode::kParseError, r.label(), ": a subgraph's input list does not match its input values");
  read_ids(r, ids, values);
  for (auto v : ids) {
    if (v < 0) fail(ErrorCode::kParseError, r.label(), ": bad subgraph output id");
    g->add_output(v);
  }
  g->finalize();
  return g;
}

}  // namespace

std::string_view precision_name(Precision p) {
  switch (p) {
    case Precision::kFloat32: return "fp32";
    case Precision::kFloat16: return "fp16";
    case Precision::kBFloat16: return "bf16";
  }
  return "?";
}

std::optional<Precision> parse_precision(std::string_view name) {
  if (name == "fp32" || name == "float32") return Precision::kFloat32;
  if (name == "fp16" || name == "float16") return Precision::kFloat16;
  if (name == "bf16" || name == "bfloat16") return Precision::kBFloat16;
  return std::nullopt;
}

std::string serialize(const Plan& plan) {
  const ir::Network& net = plan.network;
  if (!net.finalized()) fail(ErrorCode::kInvalidArgument, "only a finalized network can be serialized");
  ByteWriter meta, weights;
  meta.put_string(plan.kiln_version);
  meta.put_string(plan.source);
  meta.put_string(net.name());
  meta.put<uint8_t>(uint8_t(plan.precision));
  meta.put<int64_t>(plan.arena_bytes);
  write_ranges(meta, net.dim_ranges());
  meta.put<uint64_t>(plan.profiles.size());
  for (const ir::DimRanges& profile : plan.profiles) write_ranges(meta, profile);
  meta.put<uint64_t>(net.values().size());
  for (size_t i = 0; i < net.values().size(); ++i) {
    const ir::Value& v = net.values()[i];
    meta.put_string(v.name);
    uint8_t kind = v.is_input ? 1 : v.weight ? 2 : 0;
    meta.put<uint8_t>(kind);
    meta.put<int64_t>(i < plan.arena_offset.size() ? plan.arena_offset[i] : -1);
    if (kind == 1) {
      meta.put<uint8_t>(uint8_t(v.dtype));
      meta.put<uint64_t>(v.shape.size());
      for (auto& d : v.shape) ir::write_dim(meta, d);
    } else if (kind == 2) {
      write_tensor_header(meta, v.weight->dtype, v.weight->dims);
      weights.align(kWeightAlignment);
      std::string bytes = element_bytes(*v.weight);
      meta.put<uint64_t>(weights.size());
      meta.put<uint64_t>(bytes.size());
      weights.put_bytes(bytes.data(), bytes.size());
    }
  }
  meta.put<uint64_t>(net.nodes().size());
  for (const ir::Node& n : net.nodes()) write_node(meta, n);
  meta.put<uint64_t>(net.inputs().size());
  for (auto v : net.inputs()) meta.put<int32_t>(v);
  meta.put<uint64_t>(net.outputs().size());
  for (auto v : net.outputs()) meta.put<int32_t>(v);

  return frame(meta.bytes(), weights.bytes());
}

std::string frame(std::string_view meta, std::string_view weights) {
  ByteWriter file;
  file.put_bytes(kMagic, 8);
  file.put<uint32_t>(kFormatVersion);
  file.put<uint32_t>(0);
  file.put<uint64_t>(meta.size());
  file.put<uint64_t>(weights.size());
  file.put<uint64_t>(checksum64(meta));
  file.put<uint64_t>(checksum64(weights));
  file.put_bytes(meta.data(), meta.size());
  file.align(kWeightAlignment);
  file.put_bytes(weights.data(), weights.size());
  return std::move(file.bytes());
}

Plan deserialize(const Buffer& bytes, const std::string& label) {
  std::string_view all(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  ByteReader header(all, label);
  if (bytes.size() < kHeaderBytes || std::string_view(header.get_bytes(8)) != std::string_view(kMagic, 8))
    fail(ErrorCode::kParseError, label, " is not a kiln plan (bad magic)");
  uint32_t version = header.get<uint32_t>();
  if (version < kOldestReadableFormatVersion || version > kFormatVersion)
    fail(ErrorCode::kUnsupported, label, " has plan format version ", version, "; this kiln (", kVersion, ") reads versions ",
         kOldestReadableFormatVersion, " to ", kFormatVersion, ". Rebuild it with `kiln build`.");
  if (header.get<uint32_t>() != 0) fail(ErrorCode::kParseError, label, " is corrupt: reserved header field is not zero");
  uint64_t meta_size = header.get<uint64_t>(), weights_size = header.get<uint64_t>();
  uint64_t meta_sum = header.get<uint64_t>(), weights_sum = header.get<uint64_t>();
  uint64_t weights_at = (kHeaderBytes + meta_size + kWeightAlignment - 1) / kWeightAlignment * kWeightAlignment;
  if (meta_size > bytes.size() || weights_at > bytes.size() || weights_size != bytes.size() - weights_at)
    fail(ErrorCode::kParseError, label, " is truncated or has trailing bytes (", bytes.size(), " bytes; the header says ",
         weights_at + weights_size, ")");
  std::string_view meta_bytes = all.substr(kHeaderBytes, meta_size);
  std::string_view weight_bytes = all.substr(weights_at, weights_size);
  for (size_t i = kHeaderBytes + meta_size; i < weights_at; ++i)
    if (all[i] != 0) fail(ErrorCode::kParseError, label, " is corrupt: padding at offset ", i, " is not zero");
  if (checksum64(meta_bytes) != meta_sum) fail(ErrorCode::kParseError, label, " is corrupt: metadata checksum mismatch");
  if (checksum64(weight_bytes) != weights_sum) fail(ErrorCode::kParseError, label, " is corrupt: weights checksum mismatch");

  ByteReader r(meta_bytes, label);
  Plan plan;
  plan.kiln_version = r.get_string();
  plan.source = r.get_string();
  plan.network.set_name(r.get_string());
  uint8_t precision = r.get<uint8_t>();
  if (precision > uint8_t(Precision::kBFloat16)) fail(ErrorCode::kParseError, label, ": bad precision code");
  plan.precision = Precision(precision);
  plan.arena_bytes = r.get<int64_t>();
  plan.format_version = version;
  try {
    ir::DimRanges ranges = read_ranges(r, "the plan");
    for (auto& [symbol, range] : ranges) plan.network.set_dim_range(symbol, range);
    if (version >= 4) {
      uint64_t profiles = r.get_count(8);  // each: a count at least
      if (profiles > kMaxProfiles)
        fail(ErrorCode::kParseError, label, ": ", profiles, " optimization profiles; a plan has at most ", kMaxProfiles);
      while (plan.profiles.size() < profiles) plan.profiles.push_back(read_ranges(r, str("profile ", plan.profiles.size())));
    } else {
      plan.profiles.push_back(ranges);  // version 3 plans have one profile: their ranges
    }
    uint64_t values = r.get_count(17);
    for (uint64_t i = 0; i < values; ++i) {
      std::string name = r.get_string();
      uint8_t kind = r.get<uint8_t>();
      plan.arena_offset.push_back(r.get<int64_t>());
      if (kind == 1) {
        DType dtype = read_dtype(r);
        ir::Shape shape(r.get_count(9));
        for (auto& d : shape) d = ir::read_dim(r);
        plan.network.add_input(name, dtype, shape);
      } else if (kind == 2) {
        ir::TensorData t;
        t.dtype = read_dtype(r);
        t.dims = read_dims(r);
        uint64_t offset = r.get<uint64_t>(), size = r.get<uint64_t>();
        if (offset > weights_size || size > weights_size - offset || offset % kWeightAlignment != 0)
          fail(ErrorCode::kParseError, label, ": weight '", name, "' at offset ", offset, " with ", size,
               " bytes is not an aligned part of the weights section of ", weights_size, " bytes");
        Buffer slice = bytes.slice(weights_at + offset, size);
        read_elements(t, {reinterpret_cast<const char*>(slice.data()), slice.size()}, &slice, label, str("weight '", name, "'"));
        plan.network.add_weight(name, std::move(t));
      } else if (kind == 0) {
        plan.network.add_value(name);
      } else {
        fail(ErrorCode::kParseError, label, ": bad value kind ", int(kind));
      }
    }
    for (uint64_t n = r.get_count(16); n > 0; --n) plan.network.add_node(read_node(r, values, 0));
    std::vector<ir::ValueId> ids;
    read_ids(r, ids, values);
    if (ids != plan.network.inputs()) fail(ErrorCode::kParseError, label, ": input list does not match the input values");
    read_ids(r, ids, values);
    for (auto v : ids) {
      if (v < 0) fail(ErrorCode::kParseError, label, ": bad output id");
      plan.network.add_output(v);
    }
    if (r.remaining() != 0) fail(ErrorCode::kParseError, label, ": ", r.remaining(), " unexpected bytes after the metadata");
    plan.network.finalize();
  } catch (const Error& e) {
    if (e.code() == ErrorCode::kParseError) throw;
    fail(ErrorCode::kParseError, label, " is invalid: ", e.what());
  }
  verify(plan, label);
  return plan;
}

void save(const Plan& plan, const std::filesystem::path& path) {
  std::string bytes = serialize(plan);
  file_io::write_file_atomic(path, {bytes});  // readers never see a half-written plan
}

Plan load(const std::filesystem::path& path) {
  Buffer bytes = Buffer::map_file(path, 0, -1, "plan");  // a regular file only: never a folder or FIFO
  if (bytes.size() == 0) fail(ErrorCode::kParseError, path.string(), " is empty");
  return deserialize(bytes, path.string());
}

}  // namespace kiln::plan
