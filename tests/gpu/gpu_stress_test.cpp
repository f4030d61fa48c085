// Randomized stress of native CUDA graphs (issue 12): many shapes, input and
// output addresses, streams, threads, modules and the caller's own captures,
// on engines that keep few shapes and few specialized kernels. Every result is
// checked: bitwise against direct execution when both ran the same kernels,
// else against the reference interpreter within the precision's tolerance.
//
// Knobs (environment):
//   KILN_STRESS_SEEDS  comma-separated seeds every driver runs (default 1,2,3)
//   KILN_STRESS_SCALE  multiplies the number of calls (default 1: about 55,000
//                      checked enqueues over the file, some 30 s on an H200)
// Each test prints its totals: "stress: <test>: N calls, B bitwise, ...".
#include <algorithm>
#include <barrier>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <optional>
#include <sstream>
#include <thread>

#include "gpu_test_util.h"
#include "kiln/error.h"
#include "kiln/module.h"

namespace kiln::testing {
namespace {

using ir::Dim;
using ir::OpKind;
using ir::ValueId;
using runtime::CudaGraphStrategy;
using runtime::ExecutionContext;
using runtime::KernelSpecialization;
using P = plan::Precision;
using KernelList = std::vector<std::pair<std::string, bool>>;  // ShapeStats::kernels

// ---------------------------------------------------------------------------
// Knobs, CUDA checks, device memory, streams.

double stress_scale() {
  const char* s = std::getenv("KILN_STRESS_SCALE");
  double scale = s ? std::atof(s) : 1.0;
  return scale > 0 ? scale : 1.0;
}

int64_t scaled(int64_t calls) { return std::max<int64_t>(1, std::llround(double(calls) * stress_scale())); }

std::vector<uint32_t> stress_seeds() {
  std::vector<uint32_t> seeds;
  if (const char* s = std::getenv("KILN_STRESS_SEEDS")) {
    std::stringstream in(s);
    for (std::string item; std::getline(in, item, ',');)
      if (!item.empty()) seeds.push_back(uint32_t(std::stoul(item)));
  }
  if (seeds.empty()) seeds = {1, 2, 3};
  return seeds;
}

// Throws instead of asserting: drivers also run on threads of their own.
void check_cuda(cudaError_t e, const char* call, int line) {
  if (e != cudaSuccess) throw std::runtime_error(str("line ", line, ": ", call, ": ", cudaGetErrorString(e)));
}
#define STRESS_CUDA(call) check_cuda((call), #call, __LINE__)


// A created stream: non-blocking, or blocking (default flags: synchronizes
// with the legacy default stream, which these tests never use).
struct Stream {
  cudaStream_t handle = nullptr;
  explicit Stream(bool blocking) {
    STRESS_CUDA(blocking ? cudaStreamCreate(&handle) : cudaStreamCreateWithFlags(&handle, cudaStreamNonBlocking));
  }
  ~Stream() {
    cudaStreamSynchronize(handle);
    cudaStreamDestroy(handle);
  }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
};

// One compiled copy of every kernel (and cuDNN algorithm choice) for all the
// engines of this file: churn re-specializes from it instead of NVRTC.
std::shared_ptr<runtime::RuntimeCache> stress_cache() {
  static auto cache = std::make_shared<runtime::RuntimeCache>(runtime::compiler_version());
  return cache;
}

// ---------------------------------------------------------------------------
// What a test did, summed over drivers and threads.

struct Tally {
  int64_t calls = 0;           // enqueues whose results were checked
  int64_t bitwise = 0;         // results compared bitwise with direct execution of the same kernels
  int64_t reference = 0;       // results compared with the reference within tolerance
  int64_t mismatches = 0;
  int64_t exceptions = 0;
  int64_t caller_replays = 0;  // launches of the test's own captured graphs
  int64_t pinned_graphs = 0;   // of the test's captured graphs, those holding specialized kernels
  int64_t module_runs = 0;
  int64_t replays = 0, captures = 0, pointer_repairs = 0, pointer_patches = 0, kernel_swaps = 0, fallbacks = 0, capture_failures = 0;
  std::vector<std::string> failures;  // the first few, with where they happened

  void fail(const std::string& what) {
    if (failures.size() < 20) failures.push_back(what);
  }
  void add_graph_stats(const ExecutionContext::GraphStats& g) {
    replays += g.replays;
    captures += g.captures;
    pointer_repairs += g.pointer_repairs;
    pointer_patches += g.pointer_patches;
    kernel_swaps += g.kernel_swaps;
    for (auto& [reason, n] : g.fallbacks) fallbacks += n;
    capture_failures += g.capture_failures;
  }
  void add(const Tally& o) {
    calls += o.calls;
    bitwise += o.bitwise;
    reference += o.reference;
    mismatches += o.mismatches;
    exceptions += o.exceptions;
    caller_replays += o.caller_replays;
    pinned_graphs += o.pinned_graphs;
    module_runs += o.module_runs;
    replays += o.replays;
    captures += o.captures;
    pointer_repairs += o.pointer_repairs;
    pointer_patches += o.pointer_patches;
    kernel_swaps += o.kernel_swaps;
    fallbacks += o.fallbacks;
    capture_failures += o.capture_failures;
    for (auto& f : o.failures) fail(f);
  }
};

// The per-test assertions: totals printed, nothing wrong, no CUDA error left.
void finish(const Tally& t) {
  const ::testing::TestInfo* test = ::testing::UnitTest::GetInstance()->current_test_info();
  std::cout << "stress: " << test->test_suite_name() << "." << test->name() << ": " << t.calls << " calls, "
            << t.bitwise << " bitwise, " << t.reference << " against the reference, " << t.mismatches << " mismatches, "
            << t.exceptions << " exceptions; " << t.caller_replays << " caller graph replays (" << t.pinned_graphs
            << " graphs pinning kernels), " << t.module_runs
            << " module runs; graphs: " << t.captures << " captures, " << t.replays << " replays, " << t.pointer_repairs
            << " pointer repairs (" << t.pointer_patches << " by patching), " << t.kernel_swaps << " kernel swaps, " << t.fallbacks << " fallbacks, "
            << t.capture_failures << " capture failures" << std::endl;
  for (const std::string& f : t.failures) ADD_FAILURE() << f;
  EXPECT_EQ(t.mismatches, 0);
  EXPECT_EQ(t.exceptions, 0);
  EXPECT_EQ(t.fallbacks, 0);  // every stream here is capturable
  EXPECT_EQ(t.capture_failures, 0);
  EXPECT_GT(t.calls, 0);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

// ---------------------------------------------------------------------------
// Networks: float32 (and bool) inputs, float32 outputs, one dynamic "batch".

// Random signs, magnitudes in [hi / 10, hi].
ValueId weight(ir::Network& n, const std::string& name, std::vector<int64_t> dims, std::mt19937& rng, double hi) {
  return n.add_weight(name, random_tensor(DType::kFloat32, dims, rng, hi / 10, hi));
}

ValueId scalar(ir::Network& n, const std::string& name, double value) {
  return n.add_weight(name, reference::make_tensor(DType::kFloat32, {}, {value}));
}

// x[batch, in] -> Linear + GELU -> Linear + Tanh -> Linear -> y[batch, out].
ir::Network mlp_network(std::mt19937& rng, int64_t in, int64_t out, int64_t max_batch) {
  ir::Network n;
  ValueId x = n.add_input("x", DType::kFloat32, {Dim::symbol("batch"), Dim(in)});
  auto linear = [&](ValueId v, int64_t from, int64_t to, const std::string& name) {
    ValueId w = weight(n, name + "_w", {from, to}, rng, 2.5 / std::sqrt(double(from)));
    return n.add_op1(OpKind::kAdd, {n.add_op1(OpKind::kMatMul, {v, w}), weight(n, name + "_b", {to}, rng, 0.5)});
  };
  ValueId h = n.add_op1(OpKind::kGelu, {linear(x, in, 64, "l0")});
  h = n.add_op1(OpKind::kTanh, {linear(h, 64, 64, "l1")});
  n.add_output(linear(h, 64, out, "l2"));
  n.set_dim_range("batch", {1, 2, max_batch});
  n.finalize();
  return n;
}

// Single-head attention over 8 positions with a runtime key mask:
// x[batch, 8, 32], mask[batch, 1, 8] (bool, true = attend) -> LayerNorm(x + attention).
ir::Network masked_attention_network(std::mt19937& rng) {
  const int64_t seq = 8, e = 32;
  ir::Network n;
  ValueId x = n.add_input("x", DType::kFloat32, {Dim::symbol("batch"), Dim(seq), Dim(e)});
  ValueId mask = n.add_input("mask", DType::kBool, {Dim::symbol("batch"), Dim(1), Dim(seq)});
  double hi = 2.5 / std::sqrt(double(e));
  auto project = [&](ValueId v, const std::string& name) { return n.add_op1(OpKind::kMatMul, {v, weight(n, name, {e, e}, rng, hi)}); };
  ValueId q = project(x, "wq"), k = project(x, "wk"), v = project(x, "wv");
  ValueId kt = n.add_op1(OpKind::kTranspose, {k}, attrs({{"perm", std::vector<int64_t>{0, 2, 1}}}));
  ValueId scores = n.add_op1(OpKind::kMul, {n.add_op1(OpKind::kMatMul, {q, kt}), scalar(n, "scale", 1 / std::sqrt(double(e)))});
  ValueId masked = n.add_op1(OpKind::kWhere, {mask, scores, scalar(n, "masked_out", -1e4)});
  ValueId probs = n.add_op1(OpKind::kSoftmax, {masked}, attrs({{"axis", int64_t(-1)}}));
  ValueId attended = n.add_op1(OpKind::kMatMul, {probs, v});
  ValueId projected = n.add_op1(OpKind::kAdd, {project(attended, "wo"), weight(n, "bo", {e}, rng, 0.5)});
  ValueId residual = n.add_op1(OpKind::kAdd, {x, projected});
  n.add_output(n.add_op1(OpKind::kLayerNormalization, {residual, weight(n, "ln_g", {e}, rng, 1.0), weight(n, "ln_b", {e}, rng, 0.5)}));
  n.set_dim_range("batch", {1, 2, 8});
  n.finalize();
  return n;
}

// x[batch, 3, 10, 10] -> Conv + ReLU -> MaxPool -> Conv + ReLU (output) -> GlobalAveragePool (output).
ir::Network conv_network(std::mt19937& rng) {
  ir::Network n;
  ValueId x = n.add_input("x", DType::kFloat32, {Dim::symbol("batch"), Dim(3), Dim(10), Dim(10)});
  auto conv = [&](ValueId v, const std::string& name, int64_t cin, int64_t cout) {
    ValueId w = weight(n, name + "_w", {cout, cin, 3, 3}, rng, 2.5 / std::sqrt(double(cin * 9)));
    return n.add_op1(OpKind::kRelu, {n.add_op1(OpKind::kConv, {v, w, weight(n, name + "_b", {cout}, rng, 0.5)},
                                                attrs({{"pads", std::vector<int64_t>{1, 1, 1, 1}}}))});
  };
  ValueId c1 = conv(x, "c1", 3, 8);
  ValueId pooled = n.add_op1(OpKind::kMaxPool, {c1}, attrs({{"kernel_shape", std::vector<int64_t>{2, 2}},
                                                            {"strides", std::vector<int64_t>{2, 2}}}));
  ValueId c2 = conv(pooled, "c2", 8, 8);
  n.add_output(c2);
  n.add_output(n.add_op1(OpKind::kGlobalAveragePool, {c2}));
  n.set_dim_range("batch", {1, 2, 6});
  n.finalize();
  return n;
}

// A network, its plan at one precision, and the shapes of its inputs and
// outputs at each batch size.
struct StressNet {
  std::string label;
  ir::Network net;
  plan::Plan plan;
  double tolerance;  // relative to the largest reference magnitude of an output
  int64_t min_batch, max_batch;
  std::vector<std::string> input_names, output_names;
  std::vector<DType> input_dtypes;

  StressNet(std::string name, ir::Network network, P precision)
      : label(std::move(name)), net(std::move(network)), tolerance(precision == P::kFloat32 ? 1e-4 : 2e-2) {
    builder::BuildOptions options;
    options.precision = precision;
    plan = builder::build(net, options);
    const ir::DimRange& range = net.dim_ranges().at("batch");
    min_batch = range.min;
    max_batch = range.max;
    for (ValueId id : net.inputs()) {
      input_names.push_back(net.value(id).name);
      input_dtypes.push_back(net.value(id).dtype);
    }
    for (ValueId id : net.outputs()) {
      if (net.value(id).dtype != DType::kFloat32) fail(ErrorCode::kInternal, label, ": outputs must be float32");
      output_names.push_back(net.value(id).name);
    }
  }
  std::vector<int64_t> input_dims(size_t i, int64_t batch) const {
    return *ir::evaluate_dims(net.value(net.inputs()[i]).shape, {{"batch", batch}});
  }
  std::vector<int64_t> output_dims(size_t i, int64_t batch) const {
    return *ir::evaluate_dims(net.value(net.outputs()[i]).shape, {{"batch", batch}});
  }
  size_t input_bytes(size_t i, int64_t batch) const {
    return size_t(ir::checked_numel(input_dims(i, batch))) * dtype_size(input_dtypes[i]);
  }
  size_t output_count(size_t i, int64_t batch) const { return size_t(ir::checked_numel(output_dims(i, batch))); }
  runtime::InputShapes shapes(int64_t batch) const {
    runtime::InputShapes s;
    for (size_t i = 0; i < input_names.size(); ++i) s[input_names[i]] = input_dims(i, batch);
    return s;
  }
  // ShapeStats::shape for this batch: "name:AxB" per input, by name, comma-separated.
  std::string key(int64_t batch) const {
    std::string k;
    for (auto& [name, dims] : shapes(batch)) {
      k += (k.empty() ? "" : ",") + name + ":";
      for (size_t i = 0; i < dims.size(); ++i) k += (i ? "x" : "") + std::to_string(dims[i]);
    }
    return k;
  }
};

// "" when every element of `got` is within tolerance * max|want| of `want`.
std::string compare_with_reference(const std::vector<float>& got, const ir::TensorData& want, double tolerance) {
  std::vector<double> w = ir::read_doubles(want);
  if (got.size() != w.size()) return str(got.size(), " elements; the reference has ", w.size());
  double scale = 1e-3;
  for (double v : w) scale = std::max(scale, std::fabs(v));
  for (size_t i = 0; i < w.size(); ++i)
    if (!(std::fabs(double(got[i]) - w[i]) <= tolerance * scale))  // NaN fails too
      return str("element ", i, " is ", got[i], "; the reference has ", w[i], " (tolerance ", tolerance * scale, ")");
  return "";
}

// ---------------------------------------------------------------------------
// Engines.

struct EngineKind {
  const char* name;
  KernelSpecialization specialization;
  bool churn;  // shapes_per_context 2, max_specialized_kernels 4
};

const EngineKind kLazy{"lazy", KernelSpecialization::kLazy, false};
const EngineKind kEager{"eager", KernelSpecialization::kEager, false};
const EngineKind kNone{"none", KernelSpecialization::kNone, false};
const EngineKind kChurnLazy{"churn_lazy", KernelSpecialization::kLazy, true};
const EngineKind kChurnEager{"churn_eager", KernelSpecialization::kEager, true};
const EngineKind kChurnNone{"churn_none", KernelSpecialization::kNone, true};

std::shared_ptr<runtime::Engine> make_engine(const StressNet& n, const EngineKind& kind, std::mt19937& rng) {
  runtime::RuntimeConfig config;
  config.cuda_graph_strategy = CudaGraphStrategy::kWholeGraphCapture;
  config.dynamic_shapes_kernel_specialization_strategy = kind.specialization;
  config.warm_up_contexts = rng() % 2 == 0;
  config.graph_warmup_calls = 1 + int(rng() % 2);
  config.graphs_per_shape = size_t(1) << (rng() % 3);  // 1, 2 or 4 address sets per shape
  config.cache = stress_cache();
  if (kind.churn) {
    config.shapes_per_context = 2;
    config.max_specialized_kernels = 4;
  }
  return runtime::Engine::create(n.plan, config);
}

// ---------------------------------------------------------------------------
// The randomized driver: one context with native graphs, one direct context
// (graphs disabled) on the same engine, pools of input and output buffers,
// 3-5 streams, bursts of enqueues between synchronizations.

// Inputs of one call, in device memory sized for the largest batch (so the
// contents and the batch change in place, at the same addresses).
struct InputSet {
  std::vector<std::unique_ptr<DeviceMemory>> device;
  int64_t batch = 0;
  std::map<std::string, ir::TensorData> host;
  std::optional<std::vector<ir::TensorData>> expected;  // the reference's outputs
  bool has_direct = false;  // direct execution of these contents: its kernels and outputs
  std::optional<KernelList> direct_kernels;
  std::vector<std::vector<float>> direct;
};

struct OutputSet {
  std::vector<std::unique_ptr<DeviceMemory>> device;
};

struct Call {
  InputSet* in;
  OutputSet* out;
  std::optional<KernelList> kernels;  // what the enqueue ran
};

class Driver {
 public:
  const StressNet& net;
  runtime::Engine& engine;
  std::string label;
  std::mt19937 rng;
  Tally tally;
  bool switch_specialization = false;  // now and then change the graphed context's strategy
  std::vector<std::unique_ptr<Stream>> streams;
  std::vector<std::unique_ptr<InputSet>> inputs;
  std::vector<std::unique_ptr<OutputSet>> outputs;
  std::unique_ptr<OutputSet> direct_out;
  std::unique_ptr<ExecutionContext> graphed, direct;

  Driver(const StressNet& n, runtime::Engine& e, uint32_t seed, std::string name)
      : net(n), engine(e), label(std::move(name)), rng(seed) {
    int stream_count = 3 + int(rng() % 3);
    for (int i = 0; i < stream_count; ++i) streams.push_back(std::make_unique<Stream>(i == 1 || (i > 1 && rng() % 2)));
    STRESS_CUDA(cudaEventCreateWithFlags(&order_, cudaEventDisableTiming));
    for (int i = 0; i < 8; ++i) inputs.push_back(new_input_set(random_batch()));
    for (int i = 0; i < 8; ++i) outputs.push_back(new_output_set());
    direct_out = new_output_set();
    graphed = engine.create_context();
    direct = engine.create_context();
    direct->set_cuda_graph_strategy(CudaGraphStrategy::kDisabled);
  }
  ~Driver() {
    for (auto& s : streams) cudaStreamSynchronize(s->handle);
    cudaEventDestroy(order_);
  }
  Driver(const Driver&) = delete;
  Driver& operator=(const Driver&) = delete;

  int64_t random_batch() { return std::uniform_int_distribution<int64_t>(net.min_batch, net.max_batch)(rng); }
  cudaStream_t random_stream() { return streams[rng() % streams.size()]->handle; }
  cudaStream_t main_stream() const { return streams[0]->handle; }
  void sync_all() {
    for (auto& s : streams) STRESS_CUDA(cudaStreamSynchronize(s->handle));
  }
  void failure(const std::string& what) { tally.fail(str(label, ": ", what)); }
  void mismatch(const std::string& what) {
    ++tally.mismatches;
    failure(what);
  }

  std::unique_ptr<InputSet> new_input_set(int64_t batch) {
    auto s = std::make_unique<InputSet>();
    for (size_t i = 0; i < net.input_names.size(); ++i)
      s->device.push_back(std::make_unique<DeviceMemory>(net.input_bytes(i, net.max_batch)));
    rewrite(*s, batch, streams[0]->handle);
    return s;
  }
  std::unique_ptr<OutputSet> new_output_set() {
    auto s = std::make_unique<OutputSet>();
    for (size_t i = 0; i < net.output_names.size(); ++i)
      s->device.push_back(std::make_unique<DeviceMemory>(net.output_count(i, net.max_batch) * 4));
    return s;
  }

  // New contents (and maybe a new batch) at the same addresses. Only between
  // bursts: nothing queued may still read them.
  void rewrite(InputSet& s, int64_t batch, cudaStream_t stream) {
    s.batch = batch;
    s.host.clear();
    s.expected.reset();
    s.has_direct = false;
    s.direct_kernels.reset();
    s.direct.clear();
    for (size_t i = 0; i < net.input_names.size(); ++i) {
      std::vector<int64_t> dims = net.input_dims(i, batch);
      ir::TensorData t;
      if (net.input_dtypes[i] == DType::kBool) {
        std::vector<double> bits(size_t(ir::checked_numel(dims)));
        for (auto& b : bits) b = rng() % 4 != 0;
        t = reference::make_tensor(DType::kBool, dims, bits);
      } else {
        t = random_tensor(net.input_dtypes[i], dims, rng);
      }
      STRESS_CUDA(cudaMemcpyAsync(s.device[i]->ptr, t.data.data(), t.data.size(), cudaMemcpyHostToDevice, stream));
      s.host[net.input_names[i]] = std::move(t);
    }
    STRESS_CUDA(cudaStreamSynchronize(stream));
  }

  // NaN bytes in the outputs, so an output a call did not write shows.
  void poison(const OutputSet& out, int64_t batch, cudaStream_t stream) {
    for (size_t i = 0; i < out.device.size(); ++i)
      STRESS_CUDA(cudaMemsetAsync(out.device[i]->ptr, 0xff, net.output_count(i, batch) * 4, stream));
  }

  // Shapes and addresses, by name or through the resolve-once indices.
  void bind(ExecutionContext& c, const InputSet& in, const OutputSet& out, bool by_index) {
    for (size_t i = 0; i < net.input_names.size(); ++i) {
      std::vector<int64_t> dims = net.input_dims(i, in.batch);
      if (by_index) {
        int index = c.io_index(net.input_names[i]);
        c.set_input_shape(index, std::span<const int64_t>(dims));
        c.set_tensor_address(index, in.device[i]->ptr);
      } else {
        c.set_input_shape(net.input_names[i], dims);
        c.set_tensor_address(net.input_names[i], in.device[i]->ptr);
      }
    }
    for (size_t i = 0; i < net.output_names.size(); ++i) {
      if (by_index) c.set_tensor_address(c.io_index(net.output_names[i]), out.device[i]->ptr);
      else c.set_tensor_address(net.output_names[i], out.device[i]->ptr);
    }
  }

  // Waits for `stream` and copies the outputs back.
  std::vector<std::vector<float>> download(const OutputSet& out, int64_t batch, cudaStream_t stream) {
    std::vector<std::vector<float>> got(out.device.size());
    for (size_t i = 0; i < out.device.size(); ++i) {
      got[i].resize(net.output_count(i, batch));
      STRESS_CUDA(cudaMemcpyAsync(got[i].data(), out.device[i]->ptr, got[i].size() * 4, cudaMemcpyDeviceToHost, stream));
    }
    STRESS_CUDA(cudaStreamSynchronize(stream));
    return got;
  }

  std::optional<ExecutionContext::ShapeStats> shape_stats(const ExecutionContext& c, int64_t batch) const {
    std::string key = net.key(batch);
    for (auto& s : c.specialization_stats())
      if (s.shape == key) return s;
    return std::nullopt;
  }
  std::optional<KernelList> kernels(const ExecutionContext& c, int64_t batch) const {
    auto s = shape_stats(c, batch);
    if (!s || s->kernels.empty()) return std::nullopt;  // unknown: not comparable bitwise
    return s->kernels;
  }

  const std::vector<ir::TensorData>& expected(InputSet& s) {
    if (!s.expected) s.expected = reference::run(net.net, s.host);
    return *s.expected;
  }

  bool check_reference(InputSet& s, const std::vector<std::vector<float>>& got, const std::string& what) {
    const auto& want = expected(s);
    for (size_t i = 0; i < got.size(); ++i) {
      std::string why = compare_with_reference(got[i], want[i], net.tolerance);
      if (!why.empty()) {
        mismatch(str(what, " at ", net.key(s.batch), ": output '", net.output_names[i], "' ", why));
        return false;
      }
    }
    return true;
  }

  // Direct execution of `s` on the direct context, at that shape's final
  // kernels (prepare waits for the specialized ones), checked against the
  // reference once per contents.
  void ensure_direct(InputSet& s) {
    if (s.has_direct) return;
    cudaStream_t stream = main_stream();
    direct->prepare({net.shapes(s.batch)}, /*wait_for_specialized=*/true);
    auto st = shape_stats(*direct, s.batch);
    if (!st) failure(str("prepare() did not list ", net.key(s.batch)));
    else if (!st->complete || st->pending) failure(str("prepare(..., true) left ", net.key(s.batch), " incomplete"));
    poison(*direct_out, s.batch, stream);
    bind(*direct, s, *direct_out, rng() % 2 == 0);
    direct->enqueue(stream);
    s.direct = download(*direct_out, s.batch, stream);
    s.direct_kernels = kernels(*direct, s.batch);
    s.has_direct = true;
    check_reference(s, s.direct, "direct execution");
  }

  // Bitwise against direct execution when both ran the same kernels, else
  // against the reference.
  void check(const Call& call, const std::vector<std::vector<float>>& got, const std::string& what) {
    ensure_direct(*call.in);
    if (call.kernels && call.in->direct_kernels && *call.kernels == *call.in->direct_kernels) {
      ++tally.bitwise;
      for (size_t i = 0; i < got.size(); ++i)
        if (got[i].size() != call.in->direct[i].size() ||
            std::memcmp(got[i].data(), call.in->direct[i].data(), got[i].size() * 4) != 0) {
          std::string why = compare_with_reference(got[i], expected(*call.in)[i], net.tolerance);
          mismatch(str(what, " at ", net.key(call.in->batch), ": output '", net.output_names[i],
                       "' differs from direct execution of the same kernels",
                       why.empty() ? " (within the reference's tolerance)" : "; against the reference: " + why));
          return;
        }
    } else {
      ++tally.reference;
      check_reference(*call.in, got, what);
    }
  }

  // One graphed enqueue of `in` into `out` on `stream`; returns what ran.
  // Now and then the shape is prepared first with its specialized kernels
  // waited for (as the direct context's are), or just prepared.
  Call enqueue(InputSet& in, OutputSet& out, cudaStream_t stream) {
    if (rng() % 20 == 0) graphed->prepare({net.shapes(in.batch)}, /*wait_for_specialized=*/true);
    poison(out, in.batch, stream);
    bind(*graphed, in, out, rng() % 2 == 0);
    if (rng() % 10 == 0) graphed->prepare();
    if (!graphed->is_stream_capturable(stream)) failure("a bound context on a created stream is not capturable");
    graphed->enqueue(stream);
    ++tally.calls;
    return Call{&in, &out, kernels(*graphed, in.batch)};
  }

  // Several enqueues on random streams (each ordered after the one before by
  // an event: the context's activation memory is shared), one synchronization,
  // then every result checked.
  void burst() {
    int n = 1 + int(rng() % 6);
    std::vector<Call> calls;
    std::vector<bool> used(outputs.size(), false);
    cudaStream_t previous = nullptr;
    for (int i = 0; i < n; ++i) {
      // A few hot buffers (replays of the same addresses) among many (repairs).
      InputSet& in = *inputs[rng() % 2 ? rng() % 2 : rng() % inputs.size()];
      size_t o = rng() % 2 ? rng() % 2 : rng() % outputs.size();
      while (used[o]) o = (o + 1) % outputs.size();
      used[o] = true;
      cudaStream_t stream = previous && rng() % 5 < 3 ? previous : random_stream();
      if (previous && stream != previous) {
        STRESS_CUDA(cudaEventRecord(order_, previous));
        STRESS_CUDA(cudaStreamWaitEvent(stream, order_, 0));
      }
      if (switch_specialization && rng() % 300 == 0) {
        const KernelSpecialization all[] = {KernelSpecialization::kLazy, KernelSpecialization::kEager, KernelSpecialization::kNone};
        graphed->set_kernel_specialization(all[rng() % 3]);
      }
      if (direct_calls_left_ == 0 && rng() % 150 == 0) {  // a stretch without graphs, then back
        graphed->set_cuda_graph_strategy(CudaGraphStrategy::kDisabled);
        direct_calls_left_ = 1 + int(rng() % 20);
      }
      calls.push_back(enqueue(in, *outputs[o], stream));
      if (direct_calls_left_ > 0 && --direct_calls_left_ == 0)
        graphed->set_cuda_graph_strategy(CudaGraphStrategy::kWholeGraphCapture);
      previous = stream;
    }
    sync_all();
    for (const Call& call : calls) check(call, download(*call.out, call.in->batch, main_stream()), "graphed call");
  }

  // Bursts until `calls` more enqueues ran; between bursts some inputs get new
  // contents or a new batch, in place.
  void run(int64_t calls) {
    int64_t target = tally.calls + calls;
    try {
      while (tally.calls < target) {
        burst();
        if (rng() % 3 == 0) {
          InputSet& s = *inputs[rng() % inputs.size()];
          rewrite(s, rng() % 2 ? random_batch() : s.batch, random_stream());
        }
      }
    } catch (const std::exception& e) {
      ++tally.exceptions;
      failure(str("after ", tally.calls, " calls: ", e.what()));
      for (auto& s : streams) cudaStreamSynchronize(s->handle);
    }
    direct_calls_left_ = 0;
    graphed->set_cuda_graph_strategy(CudaGraphStrategy::kWholeGraphCapture);
  }

  // Two more calls per context, each after the last one finished: kernels
  // forgotten earlier are unloaded by now. Both contexts are bound to the pool
  // first: what they were bound to last (a caller graph's buffers) may be freed.
  void settle() {
    for (ExecutionContext* c : {graphed.get(), direct.get()})
      for (int i = 0; i < 2; ++i) {
        bind(*c, *inputs[0], c == direct.get() ? *direct_out : *outputs[0], i == 0);
        c->enqueue(main_stream());
        STRESS_CUDA(cudaStreamSynchronize(main_stream()));
      }
  }

  // Specialized modules stay bounded however many shapes went by: the store's
  // bound plus what prepared shapes and the caller's captures still hold.
  // Background compiles of kernels the store already forgot may still load
  // (and then retire) a few: given up to two seconds of calls to settle.
  void check_bounded_kernels() {
    int64_t loaded = 0, bound = 0;
    for (int attempt = 0; attempt < 200; ++attempt) {
      if (attempt > 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        settle();
      }
      bound = int64_t(engine.config().max_specialized_kernels);
      for (ExecutionContext* c : {graphed.get(), direct.get()}) {
        for (auto& s : c->specialization_stats()) bound += int64_t(s.kernels.size());
        bound += int64_t(c->captured_kernel_count());
      }
      loaded = engine.loaded_specialized_kernel_count();
      if (loaded <= bound) return;
    }
    failure(str(loaded, " specialized kernels stay loaded; at most ", bound, " expected (max_specialized_kernels ",
                engine.config().max_specialized_kernels, " plus what the prepared shapes and captures hold)"));
  }

 private:
  cudaEvent_t order_ = nullptr;
  int direct_calls_left_ = 0;
};

// ---------------------------------------------------------------------------
// 1-2. The randomized driver, single thread: every engine kind, every seed.

void run_driver_suite(const StressNet& n) {
  Tally total;
  const EngineKind* kinds[] = {&kLazy, &kEager, &kNone, &kChurnLazy, &kChurnEager};
  for (uint32_t seed : stress_seeds())
    for (size_t k = 0; k < std::size(kinds); ++k) {
      const EngineKind& kind = *kinds[k];
      std::string label = str(n.label, "/", kind.name, "/seed ", seed);
      SCOPED_TRACE(label);
      std::mt19937 rng(seed * 7919 + uint32_t(k));
      std::shared_ptr<runtime::Engine> engine;
      std::unique_ptr<Driver> d;
      try {
        engine = make_engine(n, kind, rng);
        d = std::make_unique<Driver>(n, *engine, uint32_t(rng()), label);
        d->switch_specialization = true;
        d->run(scaled(320));
        d->settle();
        if (kind.churn) d->check_bounded_kernels();
        d->tally.add_graph_stats(d->graphed->graph_stats());
      } catch (const std::exception& e) {
        ++total.exceptions;
        total.fail(str(label, ": ", e.what()));
      }
      if (d) total.add(d->tally);
    }
  finish(total);
  EXPECT_GT(total.bitwise, 0);
  EXPECT_GT(total.replays, 0);
  EXPECT_GT(total.pointer_repairs, 0);
}

TEST(GpuStressDriver, MlpFp32) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(101);
  run_driver_suite(StressNet("mlp_fp32", mlp_network(rng, 48, 24, 8), P::kFloat32));
}

TEST(GpuStressDriver, MlpFp16) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(102);
  run_driver_suite(StressNet("mlp_fp16", mlp_network(rng, 48, 24, 8), P::kFloat16));
}

TEST(GpuStressDriver, MaskedAttentionFp32) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(103);
  run_driver_suite(StressNet("attention_fp32", masked_attention_network(rng), P::kFloat32));
}

TEST(GpuStressDriver, ConvNetFp32) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(104);
  run_driver_suite(StressNet("conv_fp32", conv_network(rng), P::kFloat32));
}

TEST(GpuStressDriver, ConvNetFp16) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(105);
  run_driver_suite(StressNet("conv_fp16", conv_network(rng), P::kFloat16));
}

// ---------------------------------------------------------------------------
// 3. The caller's own captures.

// A graph the test captured around 1-3 enqueues, with the buffers it reads and writes.
struct CallerGraph {
  struct Entry {
    std::unique_ptr<InputSet> in;
    std::unique_ptr<OutputSet> out;
    std::optional<KernelList> kernels;  // what was recorded
  };
  std::string mode;
  std::vector<Entry> entries;
  bool pins = false;  // recorded a specialized kernel: the context must keep it loaded
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  ~CallerGraph() {
    if (exec) cudaGraphExecDestroy(exec);
    if (graph) cudaGraphDestroy(graph);
  }
};

const char* mode_name(cudaStreamCaptureMode mode) {
  switch (mode) {
    case cudaStreamCaptureModeGlobal: return "global";
    case cudaStreamCaptureModeThreadLocal: return "thread-local";
    case cudaStreamCaptureModeRelaxed: return "relaxed";
  }
  return "?";
}

// Ends a capture the test began if something threw before it did.
void abandon_capture(cudaStream_t stream) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(stream, &status) == cudaSuccess && status != cudaStreamCaptureStatusNone) {
    cudaGraph_t graph = nullptr;
    cudaStreamEndCapture(stream, &graph);
    if (graph) cudaGraphDestroy(graph);
  }
  cudaGetLastError();
}

// Prepares 1-2 shapes, then captures 1-3 enqueues at them (outputs poisoned
// inside the graph, so every replay must write them again).
std::unique_ptr<CallerGraph> capture_caller_graph(Driver& d, cudaStreamCaptureMode mode) {
  auto g = std::make_unique<CallerGraph>();
  g->mode = mode_name(mode);
  int64_t a = d.random_batch(), b = d.rng() % 2 ? a : d.random_batch();
  int n = 1 + int(d.rng() % 3);
  std::vector<runtime::InputShapes> prepared{d.net.shapes(a)};
  for (int i = 0; i < n; ++i) {
    int64_t batch = i > 0 && d.rng() % 2 ? b : a;
    if (batch != a && prepared.size() == 1) prepared.push_back(d.net.shapes(b));
    g->entries.push_back({d.new_input_set(batch), d.new_output_set(), std::nullopt});
  }
  d.graphed->prepare(prepared, /*wait_for_specialized=*/d.rng() % 2 == 0);
  d.sync_all();
  cudaStream_t stream = d.random_stream();
  STRESS_CUDA(cudaStreamBeginCapture(stream, mode));
  try {
    for (auto& e : g->entries) {
      d.poison(*e.out, e.in->batch, stream);
      d.bind(*d.graphed, *e.in, *e.out, d.rng() % 2 == 0);
      d.graphed->enqueue(stream);
      ++d.tally.calls;
      e.kernels = d.kernels(*d.graphed, e.in->batch);
    }
  } catch (const std::exception& ex) {
    abandon_capture(stream);
    ++d.tally.exceptions;
    d.failure(str(g->mode, " capture at prepared shapes: ", ex.what()));
    return nullptr;
  }
  if (cudaError_t e = cudaStreamEndCapture(stream, &g->graph); e != cudaSuccess) {
    cudaGetLastError();
    d.failure(str(g->mode, " capture around enqueues at prepared shapes ended with ", cudaGetErrorString(e)));
    return nullptr;
  }
  if (cudaError_t e = cudaGraphInstantiate(&g->exec, g->graph, 0); e != cudaSuccess) {
    cudaGetLastError();
    d.failure(str("instantiating the ", g->mode, " caller graph: ", cudaGetErrorString(e)));
    return nullptr;
  }
  for (auto& e : g->entries)
    if (e.kernels)
      for (auto& [node, specialized] : *e.kernels) g->pins = g->pins || specialized;
  if (g->pins) {
    ++d.tally.pinned_graphs;
    if (d.graphed->captured_kernel_count() == 0)
      d.failure(str("a ", g->mode, " capture recorded specialized kernels but captured_kernel_count() is 0"));
  }
  return g;
}

// Launches the caller's graph (some inputs rewritten in place first, at the
// same batch: the graph's shapes are fixed) and checks what it wrote.
void replay_caller_graph(Driver& d, CallerGraph& g) {
  d.sync_all();
  for (auto& e : g.entries)
    if (d.rng() % 2) d.rewrite(*e.in, e.in->batch, d.main_stream());
  cudaStream_t stream = d.random_stream();
  STRESS_CUDA(cudaGraphLaunch(g.exec, stream));
  STRESS_CUDA(cudaStreamSynchronize(stream));
  ++d.tally.caller_replays;
  for (auto& e : g.entries)
    d.check(Call{e.in.get(), e.out.get(), e.kernels}, d.download(*e.out, e.in->batch, stream), str(g.mode, " caller graph replay"));
  if (g.pins && d.graphed->captured_kernel_count() == 0)
    d.failure(str("the ", g.mode, " caller graph's kernels are no longer pinned"));
}

// Inside the caller's capture, an enqueue at a shape not prepared throws
// kInvalidArgument without touching the stream: the capture ends cleanly and
// instantiates, the enqueues around it replay right, no CUDA error is left,
// and the refused shape runs afterwards outside the capture.
void unprepared_shape_in_caller_capture(Driver& d, cudaStreamCaptureMode mode) {
  std::string what = str(mode_name(mode), " capture with an unprepared shape");
  ExecutionContext* target = d.graphed.get();
  std::unique_ptr<ExecutionContext> fresh;
  int64_t p = d.random_batch();
  auto unprepared = [&](const ExecutionContext& c) -> std::optional<int64_t> {
    std::vector<int64_t> candidates;
    auto stats = c.specialization_stats();
    for (int64_t b = d.net.min_batch; b <= d.net.max_batch; ++b)
      if (std::none_of(stats.begin(), stats.end(), [&](const auto& s) { return s.shape == d.net.key(b); })) candidates.push_back(b);
    if (candidates.empty()) return std::nullopt;
    return candidates[d.rng() % candidates.size()];
  };
  target->prepare({d.net.shapes(p)});
  std::optional<int64_t> u = unprepared(*target);
  if (!u) {  // this context keeps every shape of the range: a new one on the same engine
    fresh = d.engine.create_context();
    target = fresh.get();
    target->prepare({d.net.shapes(p)});
    u = unprepared(*target);
  }
  if (!u) {
    d.failure(str(what, ": no unprepared shape left"));
    return;
  }
  auto in_p = d.new_input_set(p), in_u = d.new_input_set(*u);
  auto out_before = d.new_output_set(), out_after = d.new_output_set(), out_u = d.new_output_set();
  bool before = d.rng() % 2 == 0, after = !before || d.rng() % 2 == 0;
  std::optional<KernelList> kernels_p;
  d.sync_all();
  cudaStream_t stream = d.random_stream();
  cudaGraph_t graph = nullptr;
  STRESS_CUDA(cudaStreamBeginCapture(stream, mode));
  try {
    if (before) {
      d.poison(*out_before, p, stream);
      d.bind(*target, *in_p, *out_before, d.rng() % 2 == 0);
      target->enqueue(stream);
      ++d.tally.calls;
    }
    d.bind(*target, *in_u, *out_u, d.rng() % 2 == 0);
    try {
      target->enqueue(stream);
      d.failure(str(what, ": enqueue did not throw"));
    } catch (const Error& e) {
      if (e.code() != ErrorCode::kInvalidArgument)
        d.failure(str(what, ": enqueue threw ", error_code_name(e.code()), " instead of invalid_argument: ", e.what()));
    }
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    STRESS_CUDA(cudaStreamIsCapturing(stream, &status));
    if (status != cudaStreamCaptureStatusActive) d.failure(str(what, ": the refused enqueue invalidated the capture"));
    if (after) {
      d.poison(*out_after, p, stream);
      d.bind(*target, *in_p, *out_after, d.rng() % 2 == 0);
      target->enqueue(stream);
      ++d.tally.calls;
    }
    kernels_p = d.kernels(*target, p);
  } catch (const std::exception& ex) {
    abandon_capture(stream);
    ++d.tally.exceptions;
    d.failure(str(what, ": ", ex.what()));
    return;
  }
  cudaError_t end = cudaStreamEndCapture(stream, &graph);
  if (end != cudaSuccess || !graph) {
    cudaGetLastError();
    d.failure(str(what, ": cudaStreamEndCapture returned ", cudaGetErrorString(end)));
    return;
  }
  cudaGraphExec_t exec = nullptr;
  cudaError_t instantiated = cudaGraphInstantiate(&exec, graph, 0);
  if (instantiated != cudaSuccess) {
    cudaGetLastError();
    d.failure(str(what, ": cudaGraphInstantiate returned ", cudaGetErrorString(instantiated)));
  } else {
    STRESS_CUDA(cudaGraphLaunch(exec, stream));
    STRESS_CUDA(cudaStreamSynchronize(stream));
    ++d.tally.caller_replays;
    if (before) d.check(Call{in_p.get(), out_before.get(), kernels_p}, d.download(*out_before, p, stream), what);
    if (after) d.check(Call{in_p.get(), out_after.get(), kernels_p}, d.download(*out_after, p, stream), what);
    cudaGraphExecDestroy(exec);
  }
  cudaGraphDestroy(graph);
  if (cudaError_t e = cudaGetLastError(); e != cudaSuccess) d.failure(str(what, ": CUDA error left: ", cudaGetErrorString(e)));
  // The refused shape, now outside any capture.
  d.poison(*out_u, *u, stream);
  d.bind(*target, *in_u, *out_u, d.rng() % 2 == 0);
  target->enqueue(stream);
  ++d.tally.calls;
  std::optional<KernelList> kernels_u = d.kernels(*target, *u);
  d.check(Call{in_u.get(), out_u.get(), kernels_u}, d.download(*out_u, *u, stream), str(what, ", the refused shape afterwards"));
  d.sync_all();
}

void run_caller_capture_suite(const StressNet& n, Tally& total) {
  const EngineKind* kinds[] = {&kChurnLazy, &kChurnEager, &kChurnNone};
  const cudaStreamCaptureMode modes[] = {cudaStreamCaptureModeGlobal, cudaStreamCaptureModeThreadLocal,
                                         cudaStreamCaptureModeRelaxed};
  for (uint32_t seed : stress_seeds())
    for (size_t k = 0; k < std::size(kinds); ++k) {
      const EngineKind& kind = *kinds[k];
      std::string label = str(n.label, "/", kind.name, "/seed ", seed);
      SCOPED_TRACE(label);
      std::mt19937 rng(seed * 6007 + uint32_t(k));
      std::shared_ptr<runtime::Engine> engine;
      std::unique_ptr<Driver> driver;
      try {
        engine = make_engine(n, kind, rng);
        driver = std::make_unique<Driver>(n, *engine, uint32_t(rng()), label);
        Driver& d = *driver;
        d.run(scaled(60));
        // More sets of shapes than the context keeps: refused.
        try {
          d.graphed->prepare({n.shapes(n.min_batch), n.shapes(n.min_batch + 1), n.shapes(n.min_batch + 2)});
          d.failure("prepare() of 3 shape sets with shapes_per_context 2 did not throw");
        } catch (const Error& e) {
          if (e.code() != ErrorCode::kInvalidArgument) d.failure(str("prepare() of too many sets threw ", error_code_name(e.code())));
        }
        std::vector<std::unique_ptr<CallerGraph>> graphs;
        for (int round = 0; round < 2; ++round)
          for (cudaStreamCaptureMode mode : modes) {
            if (auto g = capture_caller_graph(d, mode)) {
              replay_caller_graph(d, *g);
              graphs.push_back(std::move(g));
            }
            d.run(scaled(20));
          }
        // The context churns through other shapes (evicting the captured ones,
        // and their specialized kernels from the store); the caller's graphs
        // replay right all along.
        for (int64_t round = 0, rounds = scaled(8); round < rounds; ++round) {
          d.run(scaled(40));
          for (auto& g : graphs) replay_caller_graph(d, *g);
        }
        for (cudaStreamCaptureMode mode : modes) {
          unprepared_shape_in_caller_capture(d, mode);
          d.run(scaled(15));
        }
        // No caller graph will run again: the pinned kernels may go.
        graphs.clear();
        d.sync_all();
        d.graphed->release_captured_kernels(d.main_stream());
        d.run(scaled(60));
        if (size_t pinned = d.graphed->captured_kernel_count(); pinned != 0)
          d.failure(str(pinned, " kernels still pinned after release_captured_kernels()"));
        d.settle();
        d.check_bounded_kernels();
        d.tally.add_graph_stats(d.graphed->graph_stats());
      } catch (const std::exception& e) {
        ++total.exceptions;
        total.fail(str(label, ": ", e.what()));
      }
      if (driver) total.add(driver->tally);
    }
}

TEST(GpuStressCallerCapture, ReplaysAfterChurnAndRefusesUnpreparedShapes) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(201);
  Tally total;
  run_caller_capture_suite(StressNet("mlp_fp32", mlp_network(rng, 32, 32, 8), P::kFloat32), total);
  run_caller_capture_suite(StressNet("attention_fp16", masked_attention_network(rng), P::kFloat16), total);
  run_caller_capture_suite(StressNet("conv_fp32", conv_network(rng), P::kFloat32), total);
  finish(total);
  EXPECT_GT(total.caller_replays, 0);
  EXPECT_GT(total.pinned_graphs, 0);
  EXPECT_GT(total.bitwise, 0);
}

// ---------------------------------------------------------------------------
// 4. A module captured whole (engine -> host code -> engine) over churn
// engines, seeing more input-shape keys than the engines keep.

// Host code: row i of the output is row (i + 1) % batch of the input.
module::HostSegment rotate_rows(const std::string& in, const std::string& out) {
  module::HostSegment h;
  h.name = "rotate";
  h.inputs = {in};
  h.outputs = {out};
  h.output_shapes = [](const std::vector<module::DeviceTensor>& x) {
    return std::vector<std::pair<DType, std::vector<int64_t>>>{{x[0].dtype, x[0].dims}};
  };
  h.enqueue = [](cudaStream_t stream, const std::vector<module::DeviceTensor>& x, const std::vector<module::DeviceTensor>& y) {
    size_t row = size_t(x[0].dims[1]) * dtype_size(x[0].dtype), rows = size_t(x[0].dims[0]);
    auto* src = static_cast<const std::byte*>(x[0].data);
    auto* dst = static_cast<std::byte*>(y[0].data);
    if (rows > 1) cudaMemcpyAsync(dst, src + row, (rows - 1) * row, cudaMemcpyDeviceToDevice, stream);
    cudaMemcpyAsync(dst + (rows - 1) * row, src, row, cudaMemcpyDeviceToDevice, stream);
  };
  return h;
}

void run_module_stress(const StressNet& first, const StressNet& second, const EngineKind& kind, uint32_t seed, Tally& total) {
  std::string label = str("module/", kind.name, "/seed ", seed);
  SCOPED_TRACE(label);
  std::mt19937 rng(seed * 4099 + (kind.specialization == KernelSpecialization::kEager ? 1 : 2));
  Tally t;
  auto e1 = make_engine(first, kind, rng);
  auto e2 = make_engine(second, kind, rng);
  module::Module m({"x"}, {"y"}, module::CudagraphsMode::kWholeGraph);
  std::vector<std::string> warnings;
  m.on_warning([&](const std::string& w) { warnings.push_back(w); });
  m.add_engine("first", e1, {{first.output_names[0], "h"}});
  m.add_host(rotate_rows("h", "r"));
  m.add_engine("second", e2, {{second.input_names[0], "r"}, {second.output_names[0], "y"}});
  std::vector<std::unique_ptr<Stream>> streams;
  for (int i = 0; i < 3; ++i) streams.push_back(std::make_unique<Stream>(i == 1));
  // 6-10 distinct batches, in random order: more keys than the engines keep
  // (2), sometimes more than the module keeps (8).
  std::vector<int64_t> batches;
  for (int64_t b = first.min_batch; b <= first.max_batch; ++b) batches.push_back(b);
  std::shuffle(batches.begin(), batches.end(), rng);
  batches.resize(std::min<size_t>(batches.size(), 6 + rng() % 5));
  struct Input {
    std::unique_ptr<DeviceMemory> device;
    int64_t batch = 0;
    ir::TensorData host;
    std::vector<double> expected;
  };
  std::vector<Input> pool(5);
  auto rewrite = [&](Input& in, int64_t batch, cudaStream_t stream) {
    in.batch = batch;
    in.host = random_tensor(DType::kFloat32, first.input_dims(0, batch), rng);
    STRESS_CUDA(cudaMemcpyAsync(in.device->ptr, in.host.data.data(), in.host.data.size(), cudaMemcpyHostToDevice, stream));
    STRESS_CUDA(cudaStreamSynchronize(stream));
    in.expected.clear();
  };
  for (Input& in : pool) {
    in.device = std::make_unique<DeviceMemory>(first.input_bytes(0, first.max_batch));
    rewrite(in, batches[rng() % batches.size()], streams[0]->handle);
  }
  double tolerance = std::max(first.tolerance, second.tolerance);
  int64_t runs = scaled(250);
  try {
    for (int64_t run = 0; run < runs; ++run) {
      Input& in = pool[rng() % pool.size()];
      cudaStream_t stream = streams[rng() % streams.size()]->handle;
      if (rng() % 2) rewrite(in, batches[rng() % batches.size()], stream);  // in place
      if (in.expected.empty()) {
        auto h = ir::read_doubles(reference::run(first.net, {{first.input_names[0], in.host}})[0]);
        std::vector<double> r(h.size());
        size_t row = h.size() / size_t(in.batch);
        for (size_t i = 0; i < size_t(in.batch); ++i)
          std::copy_n(h.begin() + long((i + 1) % size_t(in.batch) * row), row, r.begin() + long(i * row));
        auto r_tensor = reference::make_tensor(DType::kFloat32, second.input_dims(0, in.batch), r);
        in.expected = ir::read_doubles(reference::run(second.net, {{second.input_names[0], r_tensor}})[0]);
      }
      ++t.module_runs;
      auto y = m.run({{"x", module::DeviceTensor{in.device->ptr, DType::kFloat32, in.host.dims}}}, stream);
      t.calls += 2;
      if (y.size() != 1 || y[0].dims != second.output_dims(0, in.batch)) {
        ++t.mismatches;
        t.fail(str(label, " run ", run, ": the module's output has the wrong count or dims"));
        continue;
      }
      std::vector<float> got(in.expected.size());
      STRESS_CUDA(cudaMemcpyAsync(got.data(), y[0].data, got.size() * 4, cudaMemcpyDeviceToHost, stream));
      STRESS_CUDA(cudaStreamSynchronize(stream));  // the output is valid until the next run
      ++t.reference;
      std::string why = compare_with_reference(got, reference::make_tensor(DType::kFloat32, y[0].dims, in.expected), tolerance);
      if (!why.empty()) {
        ++t.mismatches;
        t.fail(str(label, " run ", run, " (batch ", in.batch, "): ", why));
      }
    }
  } catch (const std::exception& e) {
    ++t.exceptions;
    t.fail(str(label, " run ", t.module_runs, ": ", e.what()));
  }
  for (auto& s : streams) cudaStreamSynchronize(s->handle);
  const module::Module::Stats& st = m.stats();
  if (t.exceptions == 0) {
    if (st.runs != t.module_runs) t.fail(str(label, ": the module counted ", st.runs, " runs, not ", t.module_runs));
    if (st.outer_captures == 0 || st.outer_replays == 0)
      t.fail(str(label, ": ", st.outer_captures, " module captures and ", st.outer_replays, " replays"));
  }
  for (const std::string& w : warnings) std::cout << "stress: " << label << ": module warning: " << w << std::endl;
  for (const char* segment : {"first", "second"}) t.add_graph_stats(m.context(segment).graph_stats());
  total.add(t);
}

TEST(GpuStressModule, WholeGraphOverChurnEnginesWithAHostSegment) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(301);
  StressNet first("module_first_fp32", mlp_network(rng, 32, 32, 12), P::kFloat32);
  StressNet second("module_second_fp16", mlp_network(rng, 32, 32, 12), P::kFloat16);
  Tally total;
  for (uint32_t seed : stress_seeds())
    for (const EngineKind* kind : {&kChurnEager, &kChurnNone}) run_module_stress(first, second, *kind, seed, total);
  finish(total);
  EXPECT_GT(total.module_runs, 0);
}

// ---------------------------------------------------------------------------
// 5. Eight threads, each with its own contexts and streams on one engine.

void run_threads(const StressNet& n, const EngineKind& kind, uint32_t seed, Tally& total) {
  constexpr int kThreads = 8;
  std::string label = str(n.label, "/", kind.name, "/seed ", seed, "/threads");
  std::mt19937 rng(seed * 3001 + (kind.churn ? 1 : 2));
  std::shared_ptr<runtime::Engine> engine;
  try {
    engine = make_engine(n, kind, rng);
  } catch (const std::exception& e) {
    ++total.exceptions;
    total.fail(str(label, ": ", e.what()));
    return;
  }
  // Everything that allocates, frees or touches the legacy stream happens
  // before the first barrier or after the second: never while another thread
  // may be capturing.
  std::barrier<> ready(kThreads), done(kThreads);
  std::vector<Tally> tallies(kThreads);
  std::vector<std::thread> threads;
  uint32_t base = uint32_t(rng());
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      Tally& mine = tallies[size_t(t)];
      std::unique_ptr<Driver> d;
      try {
        d = std::make_unique<Driver>(n, *engine, base + uint32_t(t), str(label, " ", t));
      } catch (const std::exception& e) {
        ++mine.exceptions;
        mine.fail(str(label, " thread ", t, ": ", e.what()));
      }
      ready.arrive_and_wait();
      if (d) d->run(scaled(120));
      done.arrive_and_wait();
      if (d) {
        d->tally.add_graph_stats(d->graphed->graph_stats());
        mine.add(d->tally);
      }
    });
  for (auto& th : threads) th.join();
  for (const Tally& t : tallies) total.add(t);
}

TEST(GpuStressThreads, EightContextsOnOneEngine) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(401);
  StressNet mlp("mlp_fp32", mlp_network(rng, 48, 24, 8), P::kFloat32);
  StressNet conv("conv_fp16", conv_network(rng), P::kFloat16);
  Tally total;
  for (uint32_t seed : stress_seeds())
    for (const StressNet* n : {&mlp, &conv})
      for (const EngineKind* kind : {&kChurnLazy, &kEager}) run_threads(*n, *kind, seed, total);
  finish(total);
  EXPECT_GT(total.bitwise, 0);
  EXPECT_GT(total.replays, 0);
}

}  // namespace
}  // namespace kiln::testing
