// What it costs to run a plan's native graph when the caller's input and
// output addresses change on every call (one graph kept per shape, so each
// call repairs it), against replays at unchanged addresses:
//   replay              the same addresses every call
//   repair_by_capture   a new capture + cudaGraphExecUpdate per call
//   repair_by_patch     only the node arguments holding the addresses rewritten
//
//   kiln_graph_repair PLAN.kiln [--iterations N] [--sets N]
//
// Prints one JSON line: per mode the median host time of enqueue and of a
// whole call (enqueue + synchronize), in microseconds, at the profile's opt shapes.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <set>
#include <string>
#include <vector>

#include "kiln/error.h"
#include "kiln/ir/shape_inference.h"
#include "kiln/plan.h"
#include "kiln/runtime.h"

namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) kiln::fail(kiln::ErrorCode::kDevice, what, ": ", cudaGetErrorString(e));
}

struct Mode {
  const char* name;
  bool rotate, patch;
};

// One address set: every input and output in memory of its own.
struct AddressSet {
  std::vector<void*> pointers;  // by io index
  ~AddressSet() {
    for (void* p : pointers) cudaFree(p);
  }
};

std::string measure(const kiln::plan::Plan& plan, const Mode& mode, int iterations, int sets) {
  kiln::runtime::RuntimeConfig config;
  config.cuda_graph_strategy = kiln::runtime::CudaGraphStrategy::kWholeGraphCapture;
  config.dynamic_shapes_kernel_specialization_strategy = kiln::runtime::KernelSpecialization::kEager;
  config.graphs_per_shape = 1;
  config.patch_graph_arguments = mode.patch;
  auto engine = kiln::runtime::Engine::create(plan, config);
  auto context = engine->create_context();
  const kiln::ir::Network& net = plan.network;
  for (kiln::ir::ValueId id : net.inputs()) {
    const kiln::ir::Value& v = net.value(id);
    std::vector<int64_t> dims;  // constants, or the profile's opt value of a symbol
    for (const kiln::ir::Dim& d : v.shape) {
      std::set<std::string> symbols;
      d.collect_symbols(symbols);
      kiln::ir::SymbolBindings opt;
      for (const std::string& s : symbols)
        if (auto r = net.dim_ranges().find(s); r != net.dim_ranges().end()) opt[s] = r->second.opt;
      auto value = d.evaluate(opt);
      if (!value) kiln::fail(kiln::ErrorCode::kInvalidArgument, "input '", v.name, "': a dim without a profile range");
      dims.push_back(*value);
    }
    context->set_input_shape(context->io_index(v.name), dims);
  }
  std::vector<AddressSet> address_sets(size_t(mode.rotate ? sets : 1));
  for (AddressSet& s : address_sets)
    for (int i = 0; i < context->io_count(); ++i) {
      const std::vector<int64_t>& dims = context->tensor_shape(i);
      kiln::ir::ValueId id = i < int(net.inputs().size()) ? net.inputs()[size_t(i)] : net.outputs()[size_t(i) - net.inputs().size()];
      size_t bytes = std::max<size_t>(size_t(kiln::ir::checked_numel(dims)) * kiln::dtype_size(net.value(id).dtype), 1);
      void* p = nullptr;
      check(cudaMalloc(&p, bytes), "cudaMalloc");
      check(cudaMemset(p, 0, bytes), "cudaMemset");  // zeros: valid for any input, indices included
      s.pointers.push_back(p);
    }
  cudaStream_t stream;
  check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
  size_t next = 0;
  auto bind_next = [&] {
    const AddressSet& s = address_sets[next++ % address_sets.size()];
    for (int i = 0; i < context->io_count(); ++i) context->set_tensor_address(i, s.pointers[size_t(i)]);
  };
  for (int i = 0; i < 3 * sets; ++i) {  // captured, repaired once (learning), then steady
    bind_next();
    context->enqueue(stream);
  }
  check(cudaStreamSynchronize(stream), "warm-up");
  std::vector<double> enqueue_us, call_us;
  for (int i = 0; i < iterations; ++i) {
    bind_next();
    auto t0 = Clock::now();
    context->enqueue(stream);
    auto t1 = Clock::now();
    check(cudaStreamSynchronize(stream), "call");
    auto t2 = Clock::now();
    enqueue_us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    call_us.push_back(std::chrono::duration<double, std::micro>(t2 - t0).count());
  }
  cudaStreamDestroy(stream);
  auto g = context->graph_stats();
  return kiln::str("\"", mode.name, "\": {\"enqueue_us\": ", median(enqueue_us), ", \"call_us\": ", median(call_us),
                   ", \"repairs\": ", g.pointer_repairs, ", \"patches\": ", g.pointer_patches, ", \"updates\": ", g.updates, "}");
}

}  // namespace

int main(int argc, char** argv) try {
  if (argc < 2) {
    std::cerr << "usage: kiln_graph_repair PLAN.kiln [--iterations N] [--sets N]\n";
    return 2;
  }
  int iterations = 200, sets = 4;
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--iterations") iterations = std::max(1, std::atoi(argv[i + 1]));
    else if (flag == "--sets") sets = std::max(2, std::atoi(argv[i + 1]));
    else kiln::fail(kiln::ErrorCode::kInvalidArgument, "unknown option ", flag);
  }
  kiln::plan::Plan plan = kiln::plan::load(argv[1]);
  std::string out = "{\"plan\": \"" + std::string(argv[1]) + "\"";
  for (const Mode& mode : {Mode{"replay", false, true}, Mode{"repair_by_capture", true, false}, Mode{"repair_by_patch", true, true}})
    out += ", " + measure(plan, mode, iterations, sets);
  std::cout << out << "}\n";
  return 0;
} catch (const std::exception& e) {
  std::cerr << "kiln_graph_repair: " << e.what() << "\n";
  return 1;
}
