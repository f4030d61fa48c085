// ExecutionContext::profile: per-launch GPU times, with the bytes and products
// of each node, for `kiln profile`.
#include <algorithm>
#include <condition_variable>
#include <mutex>

#include "context_state.h"
#include "graphs/native_graph.h"
#include "kiln/error.h"
#include "kiln/ir/shape_inference.h"

namespace kiln::runtime {

namespace {

int64_t numel(const ShapeEnv& shapes, ir::ValueId v) { return ir::checked_numel(shapes.dims[size_t(v)]); }

// The node's multiply-adds times two, for the ops whose time they dominate.
double node_flops(const ir::Node& node, const ShapeEnv& shapes) {
  auto dims = [&](size_t input) -> const std::vector<int64_t>& { return shapes.dims[size_t(node.inputs[input])]; };
  double out = double(numel(shapes, node.outputs[0]));
  switch (node.op) {
    case ir::OpKind::kMatMul: case ir::OpKind::kFusedMatMul: return dims(0).empty() ? 0 : 2 * out * double(dims(0).back());
    case ir::OpKind::kGemm: {
      const auto& a = dims(0);
      return a.size() != 2 ? 0 : 2 * out * double(node.attrs.get_int("transA", 0) ? a[0] : a[1]);
    }
    case ir::OpKind::kConv: case ir::OpKind::kConvChannelsLast: {
      const auto& w = dims(1);
      return w.empty() || w[0] == 0 ? 0 : 2 * out * double(numel(shapes, node.inputs[1]) / w[0]);
    }
    case ir::OpKind::kConvTranspose: {
      const auto& w = dims(1);
      return w.empty() || w[0] == 0 ? 0 : 2 * double(numel(shapes, node.inputs[0])) * double(numel(shapes, node.inputs[1]) / w[0]);
    }
    case ir::OpKind::kAttention: {
      ir::AttentionGeometry g = ir::attention_geometry(node, dims(0), dims(1), dims(2));
      return 4 * double(g.batch) * double(g.heads) * double(g.q_len) * double(g.kv_len) * double(g.head_dim);
    }
    default: return 0;
  }
}

int64_t node_bytes(const ir::Network& net, const ir::Node& node, const ShapeEnv& shapes) {
  int64_t bytes = 0;
  for (const auto* list : {&node.inputs, &node.outputs})
    for (ir::ValueId v : *list)
      if (v != ir::kNoValue) bytes += numel(shapes, v) * int64_t(dtype_size(net.value(v).dtype));
  return bytes;
}

const ir::Node& step_node(const Step& step) {
  return *std::visit([](const auto& s) { return s.node; }, step);
}

std::string step_runs(const Step& step) {
  if (auto* k = std::get_if<KernelLaunch>(&step)) return k->specialized ? "generated, specialized" : "generated";
  return std::holds_alternative<MatmulCall>(step) ? "cuBLASLt" : "cuDNN";
}

// Holds a stream at a host function until released, so the launches queued
// behind it run back to back.
struct HostGate {
  std::mutex mutex;
  std::condition_variable opened;
  bool open = false;
  static void CUDART_CB wait(void* self) {
    auto* g = static_cast<HostGate*>(self);
    std::unique_lock lock(g->mutex);
    g->opened.wait(lock, [&] { return g->open; });
  }
  void release() {
    {
      std::lock_guard lock(mutex);
      open = true;
    }
    opened.notify_all();
  }
};

}  // namespace

std::vector<ExecutionContext::StepTime> ExecutionContext::profile(cudaStream_t stream, int iterations) {
  ContextState& c = *state_;
  if (graphs::stream_is_capturing(stream))
    fail(ErrorCode::kInvalidArgument, "profile: the stream is being captured; profile outside captures");
  if (iterations < 1) fail(ErrorCode::kInvalidArgument, "profile: iterations must be at least 1; got ", iterations);
  DeviceScope on_device(c.engine->device);
  if (!c.current) c.current = &prepared_shape(c);
  const PreparedShape& shape = *c.current;
  resolve_pointers(c);
  const ir::Network& net = c.engine->plan.network;
  size_t n = shape.steps.size();
  std::vector<cudaEvent_t> events(n + 1);
  for (auto& e : events) KILN_CUDA(cudaEventCreate(&e), "creating a profiling event");
  std::vector<std::vector<float>> times(n);
  try {
    for (int it = 0; it < iterations; ++it) {
      HostGate gate;
      KILN_CUDA(cudaLaunchHostFunc(stream, HostGate::wait, &gate), "holding the stream for profiling");
      try {
        KILN_CUDA(cudaEventRecord(events[0], stream), "recording a profiling event");
        for (size_t i = 0; i < n; ++i) {
          launch_step(c, shape.steps[i], stream);
          KILN_CUDA(cudaEventRecord(events[i + 1], stream), "recording a profiling event");
        }
      } catch (...) {
        gate.release();
        cudaStreamSynchronize(stream);
        throw;
      }
      gate.release();
      KILN_CUDA(cudaStreamSynchronize(stream), "profiling the launches");
      for (size_t i = 0; i < n; ++i) {
        float ms = 0;
        KILN_CUDA(cudaEventElapsedTime(&ms, events[i], events[i + 1]), "reading a profiling event");
        times[i].push_back(ms);
      }
    }
  } catch (...) {
    for (auto& e : events) cudaEventDestroy(e);
    throw;
  }
  for (auto& e : events) cudaEventDestroy(e);
  std::vector<StepTime> out;
  for (size_t i = 0; i < n; ++i) {
    const ir::Node& node = step_node(shape.steps[i]);
    std::nth_element(times[i].begin(), times[i].begin() + ptrdiff_t(times[i].size() / 2), times[i].end());
    out.push_back({node.name, std::string(ir::op_name(node.op)), step_runs(shape.steps[i]), 1e3 * times[i][times[i].size() / 2],
                   node_bytes(net, node, shape.shapes), node_flops(node, shape.shapes)});
  }
  return out;
}

}  // namespace kiln::runtime
