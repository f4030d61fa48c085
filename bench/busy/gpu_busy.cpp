// How busy the GPU is while kiln replays a plan's native CUDA graph: every
// kernel of each call is traced with CUPTI, and the summed kernel time is set
// against the call's wall time (host: enqueue to the end of a synchronize;
// measured untraced too, since tracing lengthens calls) and against its span
// on the GPU (first kernel start to last kernel end).
//
//   kiln_gpu_busy PLAN.kiln [--iterations N] [--warmup N]
//
// Prints one JSON line of medians. Static input shapes only; inputs random.
#include <cupti.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "kiln/error.h"
#include "kiln/ir/shape_inference.h"
#include "kiln/plan.h"
#include "kiln/reference.h"
#include "kiln/runtime.h"

namespace {

struct KernelSpan {
  uint64_t start, end;
};

std::mutex records_mutex;
std::vector<KernelSpan> records;

void check(CUptiResult r, const char* what) {
  if (r == CUPTI_SUCCESS) return;
  const char* text = nullptr;
  cuptiGetResultString(r, &text);
  kiln::fail(kiln::ErrorCode::kDevice, what, " failed: ", text ? text : "unknown CUPTI error");
}

void CUPTIAPI buffer_requested(uint8_t** buffer, size_t* size, size_t* max_records) {
  *size = size_t(16) << 20;
  *buffer = static_cast<uint8_t*>(std::aligned_alloc(8, *size));
  *max_records = 0;
}

void CUPTIAPI buffer_completed(CUcontext, uint32_t, uint8_t* buffer, size_t, size_t valid) {
  CUpti_Activity* record = nullptr;
  std::lock_guard lock(records_mutex);
  while (cuptiActivityGetNextRecord(buffer, valid, &record) == CUPTI_SUCCESS)
    if (record->kind == CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) {
      auto* k = reinterpret_cast<CUpti_ActivityKernel10*>(record);
      records.push_back({k->start, k->end});
    }
  std::free(buffer);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

int run(int argc, char** argv) {
  if (argc < 2) kiln::fail(kiln::ErrorCode::kInvalidArgument, "usage: kiln_gpu_busy PLAN.kiln [--iterations N] [--warmup N]");
  int iterations = 200, warmup = 50;
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--iterations") iterations = std::max(1, std::atoi(argv[i + 1]));
    else if (flag == "--warmup") warmup = std::max(1, std::atoi(argv[i + 1]));
    else kiln::fail(kiln::ErrorCode::kInvalidArgument, "unknown option ", flag);
  }
  kiln::plan::Plan plan = kiln::plan::load(argv[1]);
  std::map<std::string, kiln::ir::TensorData> inputs;
  std::mt19937_64 rng(0);
  std::uniform_real_distribution<double> uniform(-1, 1);
  for (kiln::ir::ValueId id : plan.network.inputs()) {
    const kiln::ir::Value& v = plan.network.value(id);
    if (!kiln::ir::shape_is_constant(v.shape) || !kiln::is_floating(v.dtype))
      kiln::fail(kiln::ErrorCode::kInvalidArgument, "input '", v.name, "': kiln_gpu_busy needs static shapes and float inputs");
    std::vector<int64_t> dims = kiln::ir::shape_constants(v.shape);
    std::vector<double> values(size_t(kiln::ir::checked_numel(dims)));
    for (auto& x : values) x = uniform(rng);
    inputs[v.name] = kiln::reference::make_tensor(v.dtype, dims, values);
  }
  kiln::runtime::RuntimeConfig config;
  config.dynamic_shapes_kernel_specialization_strategy = kiln::runtime::KernelSpecialization::kEager;
  config.cuda_graph_strategy = kiln::runtime::CudaGraphStrategy::kWholeGraphCapture;
  auto engine = kiln::runtime::Engine::create(plan, config);
  auto context = engine->create_context();
  kiln::runtime::DeviceIo io(*context, *engine, inputs);
  cudaStream_t stream;
  cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
  for (int i = 0; i < warmup; ++i) context->enqueue(stream);
  cudaStreamSynchronize(stream);
  // Wall time without tracing first: CUPTI's own cost lengthens the traced calls.
  std::vector<double> untraced;
  for (int i = 0; i < iterations; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    context->enqueue(stream);
    cudaStreamSynchronize(stream);
    untraced.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
  }

  check(cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed), "cuptiActivityRegisterCallbacks");
  check(cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL), "cuptiActivityEnable");
  for (int i = 0; i < 5; ++i) context->enqueue(stream);  // graphs re-instantiated for tracing settle here
  cudaStreamSynchronize(stream);
  std::vector<std::pair<uint64_t, uint64_t>> windows;
  for (int i = 0; i < iterations; ++i) {
    uint64_t t0 = 0, t1 = 0;
    check(cuptiGetTimestamp(&t0), "cuptiGetTimestamp");
    context->enqueue(stream);
    cudaStreamSynchronize(stream);
    check(cuptiGetTimestamp(&t1), "cuptiGetTimestamp");
    windows.push_back({t0, t1});
  }
  check(cuptiActivityFlushAll(1), "cuptiActivityFlushAll");
  check(cuptiActivityDisable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL), "cuptiActivityDisable");

  std::vector<double> wall, sum, span, busy_wall, busy_span, count;
  std::lock_guard lock(records_mutex);
  for (auto [t0, t1] : windows) {
    uint64_t first = UINT64_MAX, last = 0, total = 0;
    int n = 0;
    for (const KernelSpan& k : records)
      if (k.start >= t0 && k.end <= t1) {
        first = std::min(first, k.start);
        last = std::max(last, k.end);
        total += k.end - k.start;
        ++n;
      }
    if (n == 0) continue;
    wall.push_back(double(t1 - t0) / 1e3);
    sum.push_back(double(total) / 1e3);
    span.push_back(double(last - first) / 1e3);
    busy_wall.push_back(sum.back() / wall.back());
    busy_span.push_back(sum.back() / span.back());
    count.push_back(n);
  }
  if (wall.empty()) kiln::fail(kiln::ErrorCode::kDevice, "CUPTI recorded no kernels inside the timed calls");
  std::cout << "{\"calls\": " << wall.size() << ", \"kernels_per_call\": " << median(count) << ", \"wall_us\": " << median(wall)
            << ", \"kernel_sum_us\": " << median(sum) << ", \"span_us\": " << median(span) << ", \"busy_of_wall\": " << median(busy_wall)
            << ", \"busy_of_span\": " << median(busy_span) << ", \"untraced_wall_us\": " << median(untraced)
            << ", \"busy_of_untraced_wall\": " << median(sum) / median(untraced) << "}" << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const kiln::Error& e) {
    std::cerr << "kiln_gpu_busy: " << e.what() << "\n";
    return 1;
  }
}
