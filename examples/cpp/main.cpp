// Runs a kiln plan on the GPU with native CUDA graphs: loads the plan, makes
// an engine and an execution context, binds random inputs at the sizes the
// plan was optimized for, enqueues a few times on a stream of its own, and
// prints the first values of every output.
//
//   kiln build model.onnx -o model.kiln      (the CLI; no GPU needed)
//   kiln_example model.kiln
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <kiln/error.h>
#include <kiln/ir/shape_inference.h>
#include <kiln/plan.h>
#include <kiln/reference.h>
#include <kiln/runtime.h>

namespace {

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw kiln::Error(kiln::ErrorCode::kDevice, std::string(what) + ": " + cudaGetErrorString(status));
}

// Random values for every network input, at its profile's opt sizes.
std::map<std::string, kiln::ir::TensorData> random_inputs(const kiln::ir::Network& network) {
  kiln::ir::SymbolBindings opt;
  for (const auto& [symbol, range] : network.dim_ranges()) opt[symbol] = range.opt;
  std::mt19937 rng(0);
  std::uniform_real_distribution<double> real(-1.0, 1.0);
  std::uniform_int_distribution<int> small(0, 1);  // 0 or 1: valid as an index or a bool
  std::map<std::string, kiln::ir::TensorData> inputs;
  for (kiln::ir::ValueId id : network.inputs()) {
    const kiln::ir::Value& input = network.value(id);
    std::vector<int64_t> dims = *kiln::ir::evaluate_dims(input.shape, opt);  // a plan has a range for every symbol
    std::vector<double> values(size_t(kiln::ir::checked_numel(dims)));
    for (double& v : values) v = kiln::is_floating(input.dtype) ? real(rng) : small(rng);
    inputs[input.name] = kiln::reference::make_tensor(input.dtype, dims, values);
  }
  return inputs;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s model.kiln   (make a plan with: kiln build model.onnx -o model.kiln)\n", argv[0]);
    return 2;
  }
  try {
    std::string reason;
    if (!kiln::runtime::cuda_available(&reason)) {
      std::fprintf(stderr, "kiln_example: no usable GPU: %s\n", reason.c_str());
      return 1;
    }
    kiln::plan::Plan plan = kiln::plan::load(argv[1]);
    std::map<std::string, kiln::ir::TensorData> inputs = random_inputs(plan.network);

    // Native CUDA graphs: the first call at a shape runs directly, the next
    // one is captured, later ones replay the graph.
    kiln::runtime::RuntimeConfig config;
    config.cuda_graph_strategy = kiln::runtime::CudaGraphStrategy::kWholeGraphCapture;
    std::shared_ptr<kiln::runtime::Engine> engine = kiln::runtime::Engine::create(std::move(plan), config);
    // One context per thread; this program has one.
    std::unique_ptr<kiln::runtime::ExecutionContext> context = engine->create_context();

    // Graphs are never captured on the legacy default stream: use a stream of our own.
    cudaStream_t stream = nullptr;
    check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    {
      // Device memory for the inputs (uploaded) and outputs, bound to the context.
      kiln::runtime::DeviceIo io(*context, *engine, inputs);
      for (int call = 0; call < 3; ++call) context->enqueue(stream);  // neither allocates nor waits
      std::vector<kiln::ir::TensorData> outputs = io.download(stream);  // waits for the stream

      const kiln::ir::Network& network = engine->plan().network;
      for (size_t i = 0; i < outputs.size(); ++i) {
        std::vector<double> values = kiln::ir::read_doubles(outputs[i]);
        std::printf("%s %s%s:", network.value(network.outputs()[i]).name.c_str(),
                    std::string(kiln::dtype_name(outputs[i].dtype)).c_str(),
                    kiln::ir::shape_to_string(kiln::ir::shape_of(outputs[i].dims)).c_str());
        for (size_t k = 0; k < std::min<size_t>(values.size(), 5); ++k) std::printf(" %g", values[k]);
        std::printf("%s\n", values.size() > 5 ? " ..." : "");
      }
      kiln::runtime::ExecutionContext::GraphStats stats = context->graph_stats();
      std::printf("graphs: %lld calls, %lld direct, %lld captured, %lld replayed\n", (long long)stats.calls,
                  (long long)stats.direct, (long long)stats.captures, (long long)stats.replays);
    }
    check(cudaStreamDestroy(stream), "cudaStreamDestroy");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kiln_example: %s\n", e.what());
    return 1;
  }
}
