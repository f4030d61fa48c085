// kiln._C: the Python extension. Plans, the builder and the reference
// interpreter by value; engines and execution contexts for the GPU path, with
// tensors crossing as raw device addresses plus explicit dims (no libtorch, no
// implicit conversions that would copy or synchronize), and the stream always
// given by the caller. The Python package (python/kiln) builds the user API on top.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/function.h>
#include <nanobind/stl/map.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/variant.h>
#include <nanobind/stl/vector.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "kiln/builder.h"
#include "kiln/error.h"
#include "kiln/ir/dim.h"
#include "kiln/logging.h"
#include "kiln/onnx.h"
#include "kiln/plan.h"
#include "kiln/reference.h"
#include "kiln/runtime.h"
#include "kiln/runtime_cache.h"
#include "kiln/version.h"
#include "module/module_policy.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace kiln::python {
namespace {

// A host array of any dtype: the Python side names the dtype, so bfloat16
// (which numpy lacks) crosses as raw 16-bit words.
using HostArray = nb::ndarray<nb::device::cpu, nb::c_contig, nb::ro>;
using HostOut = nb::ndarray<nb::device::cpu, nb::c_contig>;

DType dtype_from_name(const std::string& name) {
  auto d = parse_dtype(name);
  if (!d) fail(ErrorCode::kInvalidArgument, "unknown dtype '", name, "'");
  return *d;
}

// Symbolic shapes for Python: ints for constant dims, strings for symbolic ones.
nb::list shape_to_python(const ir::Shape& shape) {
  nb::list out;
  for (const ir::Dim& d : shape) {
    if (d.is_constant()) out.append(d.constant());
    else out.append(d.to_string());
  }
  return out;
}

nb::list io_description(const ir::Network& net, bool inputs) {
  nb::list out;
  const auto& ids = inputs ? net.inputs() : net.outputs();
  for (ir::ValueId id : ids) {
    const ir::Value& v = net.value(id);
    out.append(nb::make_tuple(v.name, std::string(dtype_name(v.dtype)), shape_to_python(v.shape)));
  }
  return out;
}

nb::dict ranges_to_python(const ir::DimRanges& ranges) {
  nb::dict out;
  for (auto& [symbol, r] : ranges) out[symbol.c_str()] = nb::make_tuple(r.min, r.opt, r.max);
  return out;
}

ir::TensorData tensor_from_host(const std::string& dtype, const std::vector<int64_t>& dims, const HostArray& array) {
  ir::TensorData t;
  t.dtype = dtype_from_name(dtype);
  t.dims = dims;
  size_t bytes = size_t(ir::checked_numel(dims)) * dtype_size(t.dtype);
  if (array.nbytes() != bytes)
    fail(ErrorCode::kInvalidArgument, "an array of ", array.nbytes(), " bytes does not hold a ", dtype, " tensor of ",
         ir::checked_numel(dims), " elements");
  t.data = Buffer::copy_of(array.data(), bytes);
  return t;
}

// Attribute values from Python: bool and int become ints, float a float, str a
// string, a list of ints (or empty) ints, a list with a float floats, a list of
// str strings, a TensorData a tensor. Anything else names the attribute.
ir::AttrValue attr_from_python(const std::string& name, nb::handle value) {
  if (nb::isinstance<nb::bool_>(value)) return int64_t(nb::cast<bool>(value));
  if (nb::isinstance<nb::int_>(value)) return nb::cast<int64_t>(value);
  if (nb::isinstance<nb::float_>(value)) return nb::cast<double>(value);
  if (nb::isinstance<nb::str>(value)) return nb::cast<std::string>(value);
  if (nb::isinstance<ir::TensorData>(value)) return nb::cast<ir::TensorData>(value);
  if (nb::isinstance<nb::list>(value) || nb::isinstance<nb::tuple>(value)) {
    bool any_float = false, all_str = nb::len(value) > 0;
    for (nb::handle item : value) {
      any_float |= nb::isinstance<nb::float_>(item);
      all_str &= nb::isinstance<nb::str>(item);
    }
    if (all_str) return nb::cast<std::vector<std::string>>(value);
    if (any_float) return nb::cast<std::vector<double>>(value);
    std::vector<int64_t> ints;
    for (nb::handle item : value) {
      if (!nb::isinstance<nb::int_>(item) && !nb::isinstance<nb::bool_>(item))
        fail(ErrorCode::kInvalidArgument, "attribute '", name, "': list items must be all int, float or str");
      ints.push_back(nb::cast<int64_t>(item));
    }
    return ints;
  }
  fail(ErrorCode::kInvalidArgument, "attribute '", name, "' has a Python ", nb::inst_name(value).c_str(),
       " value; kiln takes int, float, str, lists of those, or kiln._C.TensorData");
}

// Dims from Python: an int is a constant, a str a symbol.
ir::Shape shape_from_python(const std::vector<std::variant<int64_t, std::string>>& dims) {
  ir::Shape shape;
  for (auto& d : dims) {
    if (auto* c = std::get_if<int64_t>(&d)) shape.push_back(ir::Dim(*c));
    else shape.push_back(ir::Dim::symbol(std::get<std::string>(d)));
  }
  return shape;
}

// A network under construction (its own Python type: a finished Network is read-only there).
struct NetworkBuilder {
  ir::Network net;
};

// A tensor's elements from Python: a host array of numbers, or a list of str
// for a string tensor.
using HostElements = std::variant<HostArray, std::vector<std::string>>;

ir::TensorData tensor_from_python(const std::string& dtype, const std::vector<int64_t>& dims, const HostElements& elements) {
  if (auto* array = std::get_if<HostArray>(&elements)) return tensor_from_host(dtype, dims, *array);
  ir::TensorData t;
  t.dtype = dtype_from_name(dtype);
  t.dims = dims;
  t.strings = std::get<std::vector<std::string>>(elements);
  if (!is_string(t.dtype) || int64_t(t.strings.size()) != ir::checked_numel(dims))
    fail(ErrorCode::kInvalidArgument, "a list of ", t.strings.size(), " str does not hold a ", dtype, " tensor of ",
         ir::checked_numel(dims), " elements");
  return t;
}

// Runs a network on the reference interpreter: feeds are (name, dtype, dims,
// array or list of str); results are (name, dtype, dims, bytes or list of str).
nb::list reference_run(const ir::Network& net, const std::vector<std::tuple<std::string, std::string, std::vector<int64_t>, HostElements>>& feeds) {
  std::map<std::string, ir::TensorData> inputs;
  for (auto& [name, dtype, dims, elements] : feeds) inputs[name] = tensor_from_python(dtype, dims, elements);
  std::vector<ir::TensorData> results;
  {
    nb::gil_scoped_release release;
    results = reference::run(net, inputs);
  }
  nb::list out;
  for (size_t i = 0; i < results.size(); ++i) {
    const ir::TensorData& t = results[i];
    nb::object elements = is_string(t.dtype) ? nb::cast(t.strings)
                                             : nb::bytes(reinterpret_cast<const char*>(t.data.data()), t.data.size());
    out.append(nb::make_tuple(net.value(net.outputs()[i]).name, std::string(dtype_name(t.dtype)), t.dims, elements));
  }
  return out;
}

// Device memory for the numpy path (host arrays in, host arrays out).
class DeviceMemory {
 public:
  explicit DeviceMemory(size_t bytes) : bytes_(std::max<size_t>(bytes, 1)) {
    cudaError_t e = cudaMalloc(&ptr_, bytes_);
    if (e != cudaSuccess) {
      cudaGetLastError();
      fail(ErrorCode::kDevice, "cudaMalloc of ", bytes_, " bytes failed: ", cudaGetErrorString(e));
    }
  }
  ~DeviceMemory() { cudaFree(ptr_); }
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;
  uintptr_t ptr() const { return reinterpret_cast<uintptr_t>(ptr_); }
  size_t bytes() const { return bytes_; }
  void upload(const HostArray& array, uintptr_t stream) {
    if (array.nbytes() > bytes_) fail(ErrorCode::kInvalidArgument, "upload of ", array.nbytes(), " bytes into ", bytes_);
    check(cudaMemcpyAsync(ptr_, array.data(), array.nbytes(), cudaMemcpyHostToDevice, cudaStream_t(stream)), "upload");
  }
  // Copies into `out` and waits for the stream (the numpy path is synchronous).
  void download(HostOut out, uintptr_t stream) {
    if (out.nbytes() > bytes_) fail(ErrorCode::kInvalidArgument, "download of ", out.nbytes(), " bytes from ", bytes_);
    nb::gil_scoped_release release;
    check(cudaMemcpyAsync(out.data(), ptr_, out.nbytes(), cudaMemcpyDeviceToHost, cudaStream_t(stream)), "download");
    check(cudaStreamSynchronize(cudaStream_t(stream)), "waiting for the stream");
  }

 private:
  static void check(cudaError_t e, const char* what) {
    if (e != cudaSuccess) {
      cudaGetLastError();
      fail(ErrorCode::kDevice, what, " failed: ", cudaGetErrorString(e));
    }
  }
  void* ptr_ = nullptr;
  size_t bytes_;
};

// A non-blocking CUDA stream for callers without one of their own (the numpy
// path); kiln never uses the legacy default stream, which cannot be captured.
class Stream {
 public:
  explicit Stream(int device) {
    if (device >= 0 && cudaSetDevice(device) != cudaSuccess) check(cudaGetLastError(), "selecting the device");
    check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "creating a stream");
  }
  ~Stream() { cudaStreamDestroy(stream_); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  uintptr_t handle() const { return reinterpret_cast<uintptr_t>(stream_); }
  void synchronize() {
    nb::gil_scoped_release release;
    check(cudaStreamSynchronize(stream_), "waiting for the stream");
  }

 private:
  static void check(cudaError_t e, const char* what) {
    if (e != cudaSuccess) {
      cudaGetLastError();
      fail(ErrorCode::kDevice, what, " failed: ", cudaGetErrorString(e));
    }
  }
  cudaStream_t stream_ = nullptr;
};

// The host memory of a string tensor bound to a context: a std::string per
// element (never empty, so an empty tensor has an address too).
class HostStrings {
 public:
  explicit HostStrings(std::vector<std::string> values) : values_(std::move(values)) {
    if (values_.empty()) values_.resize(1);
  }
  explicit HostStrings(size_t count) : values_(std::max<size_t>(count, 1)) {}
  uintptr_t ptr() { return reinterpret_cast<uintptr_t>(values_.data()); }
  // The first `count` elements (an output's, as enqueue wrote them).
  std::vector<std::string> values(size_t count) const {
    if (count > values_.size()) fail(ErrorCode::kInvalidArgument, count, " strings asked of ", values_.size());
    return {values_.begin(), values_.begin() + count};
  }

 private:
  std::vector<std::string> values_;
};

// An execution context that keeps its engine alive.
struct Context {
  std::shared_ptr<runtime::Engine> engine;
  std::unique_ptr<runtime::ExecutionContext> context;
};

nb::dict graph_stats_to_python(const runtime::ExecutionContext::GraphStats& s) {
  nb::dict d;
  d["calls"] = s.calls;
  d["direct"] = s.direct;
  d["into_caller_capture"] = s.into_caller_capture;
  d["captures"] = s.captures;
  d["instantiations"] = s.instantiations;
  d["updates"] = s.updates;
  d["replays"] = s.replays;
  d["pointer_repairs"] = s.pointer_repairs;
  d["pointer_patches"] = s.pointer_patches;
  d["kernel_swaps"] = s.kernel_swaps;
  d["fallbacks"] = s.fallbacks;
  d["graphs"] = s.graphs;
  d["on_context_stream"] = s.on_context_stream;
  return d;
}

runtime::CudaGraphStrategy graph_strategy(const std::string& name) {
  auto g = runtime::parse_cuda_graph_strategy(name);
  if (!g) fail(ErrorCode::kInvalidArgument, "cuda_graph_strategy must be disabled or whole_graph_capture; got '", name, "'");
  return *g;
}

runtime::RuntimeConfig make_config(const std::string& graphs, const std::string& specialization,
                                   std::shared_ptr<runtime::RuntimeCache> cache, int device) {
  runtime::RuntimeConfig config;
  auto s = runtime::parse_kernel_specialization(specialization);
  if (!s)
    fail(ErrorCode::kInvalidArgument, "dynamic_shapes_kernel_specialization_strategy must be lazy, eager or none; got '",
         specialization, "'");
  config.cuda_graph_strategy = graph_strategy(graphs);
  config.dynamic_shapes_kernel_specialization_strategy = *s;
  config.cache = std::move(cache);
  config.device = device;
  return config;
}

}  // namespace
}  // namespace kiln::python

NB_MODULE(_C, m) {
  using namespace kiln;
  using namespace kiln::python;
  m.doc() = "kiln's native core (use the kiln package instead of this module)";
  m.attr("__version__") = kVersion;

  // kiln::Error becomes kiln.Error (a RuntimeError) carrying the error code's name.
  static nb::object error_type = nb::steal(PyErr_NewException("kiln._C.Error", PyExc_RuntimeError, nullptr));
  m.attr("Error") = error_type;
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const Error& e) {
      nb::object exc = error_type(nb::str(e.what()));
      exc.attr("code") = nb::str(std::string(error_code_name(e.code())).c_str());
      PyErr_SetObject(error_type.ptr(), exc.ptr());
    }
  });

  // kiln's dtype numbers (what Cast's "to" attribute holds), by name.
  nb::dict dtype_codes;
  for (DType d : kAllDTypes) dtype_codes[std::string(dtype_name(d)).c_str()] = int(d);
  m.attr("DTYPE_CODES") = dtype_codes;

  nb::class_<ir::TensorData>(m, "TensorData")
      .def("__init__",
           [](ir::TensorData* self, const std::string& dtype, const std::vector<int64_t>& dims, const HostArray& array) {
             new (self) ir::TensorData(tensor_from_host(dtype, dims, array));
           },
           "dtype"_a, "dims"_a, "array"_a.noconvert())
      .def_prop_ro("dtype", [](const ir::TensorData& t) { return std::string(dtype_name(t.dtype)); })
      .def_prop_ro("dims", [](const ir::TensorData& t) { return t.dims; });

  nb::class_<ir::Network>(m, "Network")
      .def_prop_ro("inputs", [](const ir::Network& n) { return io_description(n, true); })
      .def_prop_ro("outputs", [](const ir::Network& n) { return io_description(n, false); })
      .def_prop_ro("ranges", [](const ir::Network& n) { return ranges_to_python(n.dim_ranges()); })
      .def_prop_ro("op_counts",
                   [](const ir::Network& n) {
                     std::map<std::string, int> counts;
                     for (const ir::Node& node : n.nodes()) ++counts[std::string(ir::op_name(node.op))];
                     return counts;
                   })
      .def("dump", &ir::dump_network);

  // Programmatic building (the PyTorch front end translates ATen graphs with
  // it): values are ids; finalize() checks, infers shapes and returns the
  // finished Network, and the builder may go on.
  nb::class_<NetworkBuilder>(m, "NetworkBuilder")
      .def("__init__", [](NetworkBuilder* self, const std::string& name) {
        new (self) NetworkBuilder();
        self->net.set_name(name);
      }, "name"_a)
      .def("add_input",
           [](NetworkBuilder& b, const std::string& name, const std::string& dtype,
              const std::vector<std::variant<int64_t, std::string>>& dims) {
             return b.net.add_input(name, dtype_from_name(dtype), shape_from_python(dims));
           },
           "name"_a, "dtype"_a, "dims"_a)
      .def("add_weight", [](NetworkBuilder& b, const std::string& name, ir::TensorData t) { return b.net.add_weight(name, std::move(t)); },
           "name"_a, "tensor"_a)
      .def("add_op",
           [](NetworkBuilder& b, const std::string& op, const std::vector<ir::ValueId>& inputs, const nb::dict& attrs,
              int num_outputs, const std::string& name) {
             auto kind = ir::op_from_name(op);
             if (!kind || ir::is_builder_op(*kind)) fail(ErrorCode::kInvalidArgument, "kiln has no op '", op, "'");
             for (ir::ValueId id : inputs)
               if (id != ir::kNoValue && (id < 0 || size_t(id) >= b.net.values().size()))
                 fail(ErrorCode::kInvalidArgument, op, ": input value id ", id, " does not exist");
             ir::Attributes a;
             for (auto [key, value] : attrs) {
               std::string k = nb::cast<std::string>(key);
               a.set(k, attr_from_python(k, value));
             }
             return b.net.add_op(*kind, inputs, std::move(a), num_outputs, name);
           },
           "op"_a, "inputs"_a, "attrs"_a = nb::dict(), "num_outputs"_a = 1, "name"_a = "")
      .def("add_output",
           [](NetworkBuilder& b, ir::ValueId id) {
             if (id < 0 || size_t(id) >= b.net.values().size()) fail(ErrorCode::kInvalidArgument, "output value id ", id, " does not exist");
             b.net.add_output(id);
           },
           "value"_a)
      .def("set_dim_range",
           [](NetworkBuilder& b, const std::string& symbol, int64_t min, int64_t opt, int64_t max) {
             if (!(1 <= min && min <= opt && opt <= max))
               fail(ErrorCode::kInvalidArgument, "range of '", symbol, "' must satisfy 1 <= min <= opt <= max; got ", min, ", ",
                    opt, ", ", max);
             b.net.set_dim_range(symbol, {min, opt, max});
           },
           "symbol"_a, "min"_a, "opt"_a, "max"_a)
      .def("value_name", [](const NetworkBuilder& b, ir::ValueId id) { return b.net.value(id).name; })
      .def("finalize", [](const NetworkBuilder& b) {
        ir::Network done = b.net;
        done.finalize();
        return done;
      });
  m.def("load_onnx", [](const std::string& path) { return onnx::load_model(path); }, "path"_a);

  nb::class_<plan::Plan>(m, "Plan")
      .def_static("load", [](const std::string& path) { return plan::load(path); }, "path"_a)
      .def_static("deserialize",
                  [](nb::bytes data) { return plan::deserialize(Buffer::copy_of(data.c_str(), data.size()), "plan bytes"); })
      .def("save", [](const plan::Plan& p, const std::string& path) { plan::save(p, path); }, "path"_a)
      .def("serialize", [](const plan::Plan& p) {
        std::string s = plan::serialize(p);
        return nb::bytes(s.data(), s.size());
      })
      .def_prop_ro("precision", [](const plan::Plan& p) { return std::string(plan::precision_name(p.precision)); })
      .def_prop_ro("network", [](const plan::Plan& p) -> const ir::Network& { return p.network; }, nb::rv_policy::reference_internal)
      .def_prop_ro("source", [](const plan::Plan& p) { return p.source; })
      .def_prop_ro("arena_bytes", [](const plan::Plan& p) { return p.arena_bytes; })
      .def_prop_ro("profiles",
                   [](const plan::Plan& p) {
                     nb::list out;
                     for (const ir::DimRanges& profile : p.profiles) out.append(ranges_to_python(profile));
                     return out;
                   })
      .def_prop_ro("format_version", [](const plan::Plan& p) { return p.format_version; })
      .def("check_input_shape",
           [](const plan::Plan& p, int profile, const std::string& input, const std::vector<int64_t>& dims) {
             plan::check_input_shape(p, profile, input, dims);
           },
           "profile"_a, "input"_a, "dims"_a);

  m.def(
      "build",
      // profiles: per optimization profile, input name -> (min, opt, max) dims.
      [](const ir::Network& net,
         const std::vector<std::map<std::string, std::tuple<std::vector<int64_t>, std::vector<int64_t>, std::vector<int64_t>>>>&
             profiles,
         const std::string& precision, const std::string& source, std::function<void(const std::string&)> progress,
         const std::map<std::string, int64_t>& data_dependent_bounds) {
        builder::BuildOptions options;
        options.data_dependent_bounds.insert(data_dependent_bounds.begin(), data_dependent_bounds.end());
        auto p = plan::parse_precision(precision);
        if (!p) fail(ErrorCode::kInvalidArgument, "precision must be fp32, fp16 or bf16; got '", precision, "'");
        options.precision = *p;
        options.profiles.resize(profiles.size());  // an empty one too: the network's own ranges
        for (size_t k = 0; k < profiles.size(); ++k)
          for (auto& [input, shapes] : profiles[k])
            builder::add_input_profile(net, input, std::get<0>(shapes), std::get<1>(shapes), std::get<2>(shapes), options, k);
        options.progress = std::move(progress);
        nb::gil_scoped_release release;
        return builder::build(net, options, source);
      },
      "network"_a, "profiles"_a, "precision"_a, "source"_a, "progress"_a.none(), "data_dependent_bounds"_a);

  m.def("reference_run", &reference_run, "network"_a, "feeds"_a);

  // The module layer's behavior matrix as a decision (no CUDA): for a
  // cudagraphs mode and facts about each engine, (outer_capture, native graphs
  // per engine, warnings, error).
  m.def(
      "plan_module",
      [](const std::string& mode, const std::vector<std::tuple<std::string, bool, bool, bool, bool>>& engines) {
        auto m = module::parse_cudagraphs_mode(mode);
        if (!m) fail(ErrorCode::kInvalidArgument, "cudagraphs mode must be standard, subgraph or whole_graph; got '", mode, "'");
        std::vector<module::EngineFacts> facts;
        for (auto& [name, native, lazy, dynamic, capturable] : engines) facts.push_back({name, native, lazy, dynamic, capturable});
        module::ModulePlan p = module::plan_module(*m, facts);
        return std::make_tuple(p.outer_capture, p.engine_native, p.warnings, p.error);
      },
      "mode"_a, "engines"_a);

  // kiln's log goes to stderr; the level is the least severe kind printed.
  m.def(
      "set_log_level",
      [](const std::string& level) {
        auto severity = parse_severity(level);
        if (!severity) fail(ErrorCode::kInvalidArgument, "log level must be error, warning, info or verbose; got '", level, "'");
        set_log_severity(*severity);
      },
      "level"_a);
  m.def("log_level", [] { return std::string(severity_name(log_severity())); });

  m.def("cuda_available", [] {
    std::string reason;
    bool ok = runtime::cuda_available(&reason);
    return std::make_pair(ok, reason);
  });

  nb::class_<runtime::RuntimeCache>(m, "RuntimeCache")
      .def("__init__",
           [](runtime::RuntimeCache* self, bool shared) {
             runtime::CacheFilePolicy policy;
             policy.shared = shared;
             new (self) runtime::RuntimeCache(runtime::compiler_version(), policy);
           },
           "shared"_a = false)
      .def("load_file", [](runtime::RuntimeCache& c, const std::string& path) { return c.load_file(path); })
      // (saved, warnings): whether the file now holds this cache's entries, and why not.
      .def("save_file",
           [](runtime::RuntimeCache& c, const std::string& path) {
             runtime::SaveResult r;
             {
               nb::gil_scoped_release release;
               r = c.save_file(path);
             }
             return std::make_pair(r.saved, r.warnings);
           })
      .def_prop_ro("entry_count", &runtime::RuntimeCache::entry_count)
      .def_prop_ro("has_unsaved_entries", &runtime::RuntimeCache::has_unsaved_entries);

  nb::class_<DeviceMemory>(m, "DeviceMemory")
      .def(nb::init<size_t>(), "bytes"_a)
      .def_prop_ro("ptr", &DeviceMemory::ptr)
      .def_prop_ro("bytes", &DeviceMemory::bytes)
      .def("upload", &DeviceMemory::upload, "array"_a.noconvert(), "stream"_a)
      .def("download", &DeviceMemory::download, "out"_a.noconvert(), "stream"_a);

  nb::class_<HostStrings>(m, "HostStrings")
      .def(nb::init<std::vector<std::string>>(), "values"_a)
      .def(nb::init<size_t>(), "count"_a)
      .def_prop_ro("ptr", &HostStrings::ptr)
      .def("values", &HostStrings::values, "count"_a);

  nb::class_<Stream>(m, "Stream")
      .def(nb::init<int>(), "device"_a)
      .def_prop_ro("handle", &Stream::handle)
      .def("synchronize", &Stream::synchronize);

  nb::class_<runtime::Engine>(m, "Engine")
      .def_static(
          "create",
          [](const plan::Plan& p, const std::string& graphs, const std::string& specialization,
             std::shared_ptr<runtime::RuntimeCache> cache, int device) {
            runtime::RuntimeConfig config = make_config(graphs, specialization, std::move(cache), device);
            nb::gil_scoped_release release;
            return runtime::Engine::create(p, config);
          },
          "plan"_a, "cuda_graph_strategy"_a, "kernel_specialization"_a, "cache"_a.none(), "device"_a)
      .def_prop_ro("has_dynamic_inputs", &runtime::Engine::has_dynamic_inputs)
      .def_prop_ro("profile_count", &runtime::Engine::profile_count)
      .def_prop_ro("kernel_count", &runtime::Engine::kernel_count)
      .def_prop_ro("cached_kernel_count", &runtime::Engine::cached_kernel_count)
      .def("create_context", [](std::shared_ptr<runtime::Engine> e) {
        nb::gil_scoped_release release;
        return Context{e, e->create_context()};
      });

  nb::class_<Context>(m, "Context")
      .def("io_index", [](const Context& c, const std::string& name) { return c.context->io_index(name); })
      .def_prop_ro("io_count", [](const Context& c) { return c.context->io_count(); })
      // Sets every input's dims (in input order) and returns every output's dims: for an output
      // whose size depends on data, the largest it may take (what to allocate).
      .def("set_input_shapes",
           [](Context& c, const std::vector<std::vector<int64_t>>& dims) {
             for (size_t i = 0; i < dims.size(); ++i) c.context->set_input_shape(int(i), dims[i]);
             const ir::Network& net = c.engine->plan().network;
             std::vector<std::vector<int64_t>> out;
             for (size_t k = 0; k < net.outputs().size(); ++k) {
               int io = int(dims.size() + k);
               out.push_back(net.size_depends_on_data(net.outputs()[k]) ? c.context->max_tensor_shape(net.value(net.outputs()[k]).name)
                                                                    : c.context->tensor_shape(io));
             }
             return out;
           })
      // Per output, in order: whether its size depends on data (output_shapes has it after enqueue).
      .def_prop_ro("data_dependent_outputs",
                   [](const Context& c) {
                     const ir::Network& net = c.engine->plan().network;
                     std::vector<bool> out;
                     for (ir::ValueId id : net.outputs()) out.push_back(net.size_depends_on_data(id));
                     return out;
                   })
      // Every output's dims at the last enqueue, data-dependent sizes included.
      .def("output_shapes",
           [](const Context& c) {
             const ir::Network& net = c.engine->plan().network;
             std::vector<std::vector<int64_t>> out;
             for (ir::ValueId id : net.outputs()) out.push_back(c.context->tensor_shape(net.value(id).name));
             return out;
           })
      // Binds every input and output address (in io order) and queues the network on `stream`.
      .def("enqueue",
           [](Context& c, const std::vector<uintptr_t>& addresses, uintptr_t stream) {
             if (int(addresses.size()) != c.context->io_count())
               fail(ErrorCode::kInvalidArgument, "enqueue got ", addresses.size(), " addresses for ", c.context->io_count(),
                    " inputs and outputs");
             for (size_t i = 0; i < addresses.size(); ++i)
               c.context->set_tensor_address(int(i), reinterpret_cast<void*>(addresses[i]));
             c.context->enqueue(cudaStream_t(stream));
           },
           "addresses"_a, "stream"_a)
      .def("is_stream_capturable", [](const Context& c, uintptr_t stream) { return c.context->is_stream_capturable(cudaStream_t(stream)); })
      .def("set_optimization_profile",
           [](Context& c, int profile, uintptr_t stream) {
             nb::gil_scoped_release release;  // may warm the context up
             c.context->set_optimization_profile(profile, cudaStream_t(stream));
           },
           "profile"_a, "stream"_a)
      .def_prop_ro("optimization_profile", [](const Context& c) { return c.context->optimization_profile(); })
      .def("set_cuda_graph_strategy",
           [](Context& c, const std::string& name) { c.context->set_cuda_graph_strategy(graph_strategy(name)); })
      .def("graph_stats", [](const Context& c) { return graph_stats_to_python(c.context->graph_stats()); })
      .def("specialization_stats", [](const Context& c) {
        nb::list out;
        for (auto& s : c.context->specialization_stats()) {
          nb::dict d;
          d["shape"] = s.shape;
          d["generic"] = s.generic;
          d["specialized"] = s.specialized;
          d["pending"] = s.pending;
          d["prepare_ms"] = s.prepare_ms;
          out.append(d);
        }
        return out;
      });
}
