// kiln bench: latency of a plan over a trace of input shapes, call by call,
// as a deployment with changing shapes sees it (first call at a shape, the
// second, and the steady state once specialized kernels are in); with
// --streams, the throughput of several threads sharing the engine.
#include <chrono>
#include <iostream>
#include <latch>
#include <sstream>
#include <thread>

#include "cli.h"
#include "kiln/file_io.h"
#include "kiln/ir/shape_inference.h"
#include "kiln/plan.h"
#include "kiln/runtime.h"

namespace kiln::cli {

namespace {

using Clock = std::chrono::steady_clock;

double micros_since(Clock::time_point t0) { return std::chrono::duration<double, std::micro>(Clock::now() - t0).count(); }

struct Throughput {
  size_t calls = 0;     // timed calls of all streams together
  double wall_s = 0;    // from the first stream's first timed call to the last one's end
  double qps = 0;       // calls / wall_s
  std::vector<Latency> per_stream;
};

struct ShapeResult {
  std::string key;
  std::vector<double> calls;  // trace calls at this shape, in order (us)
  double steady_us = 0;
  Latency steady;  // the steady-state calls: steady_us is its p50
  double static_us = 0;  // an engine built for exactly this shape (--static-plan), measured interleaved
  double manual_us = 0;  // the same kernels captured by hand into a graph and replayed (--manual-capture)
  runtime::ExecutionContext::ShapeStats first_stats, steady_stats;
  Throughput throughput;  // --streams
};

std::string stats_text(const runtime::ExecutionContext::ShapeStats& st) {
  return str(st.generic, " generic, ", st.specialized, " specialized, ", st.pending, " pending; prepared in ", st.prepare_ms,
             " ms");
}

// --streams: one host thread per stream, each with its own context, stream
// and device buffers on the one engine, calling back to back at one shape
// (enqueue, then wait for its stream). All start timing together, after 10
// untimed calls each (warm-up and, with native graphs, the capture).
Throughput measure_streams(runtime::Engine& engine, int profile, const std::map<std::string, reference::Tensor>& inputs,
                           int streams, int iterations, double duration_s, const std::string& key) {
  struct Lane {
    std::unique_ptr<runtime::ExecutionContext> context;
    std::unique_ptr<runtime::DeviceIo> io;  // destroyed before its context
    cudaStream_t stream = nullptr;
    std::vector<double> times;
    Clock::time_point begin, end;
    std::string error;
  };
  std::vector<Lane> lanes(static_cast<size_t>(streams));
  for (Lane& lane : lanes) {  // allocations first, on this thread
    if (cudaError_t e = cudaStreamCreateWithFlags(&lane.stream, cudaStreamNonBlocking); e != cudaSuccess)
      fail(ErrorCode::kDevice, "--streams: creating a stream: ", cudaGetErrorString(e));
    lane.context = engine.create_context();
    lane.context->set_optimization_profile(profile, lane.stream);
    lane.io = std::make_unique<runtime::DeviceIo>(*lane.context, engine, inputs);
  }
  auto call = [](Lane& lane) {
    auto t0 = Clock::now();
    lane.context->enqueue(lane.stream);
    if (cudaError_t e = cudaStreamSynchronize(lane.stream); e != cudaSuccess) fail(ErrorCode::kDevice, cudaGetErrorString(e));
    return micros_since(t0);
  };
  std::latch warmed_up(streams);
  auto run_lane = [&](Lane& lane) {
    try {
      if (cudaError_t e = cudaSetDevice(engine.device()); e != cudaSuccess) fail(ErrorCode::kDevice, cudaGetErrorString(e));
      for (int i = 0; i < 10; ++i) call(lane);
    } catch (const std::exception& e) {
      lane.error = e.what();
    }
    warmed_up.arrive_and_wait();  // also after an error, so that no thread waits forever
    if (!lane.error.empty()) return;
    try {
      lane.begin = Clock::now();
      while (lane.times.size() < size_t(iterations) || micros_since(lane.begin) < 1e6 * duration_s) lane.times.push_back(call(lane));
      lane.end = Clock::now();
    } catch (const std::exception& e) {
      lane.error = e.what();
    }
  };
  std::vector<std::thread> threads;
  for (Lane& lane : lanes) threads.emplace_back(run_lane, std::ref(lane));
  for (std::thread& t : threads) t.join();
  for (Lane& lane : lanes) cudaStreamDestroy(lane.stream);
  Throughput out;
  Clock::time_point first = lanes[0].begin, last = lanes[0].end;
  for (size_t i = 0; i < lanes.size(); ++i) {
    if (!lanes[i].error.empty()) fail(ErrorCode::kDevice, "--streams: stream ", i, " at ", key, ": ", lanes[i].error);
    first = std::min(first, lanes[i].begin);
    last = std::max(last, lanes[i].end);
    out.calls += lanes[i].times.size();
    out.per_stream.push_back(summarize(lanes[i].times));
  }
  out.wall_s = std::chrono::duration<double>(last - first).count();
  out.qps = out.wall_s > 0 ? double(out.calls) / out.wall_s : 0;
  return out;
}

}  // namespace

int cmd_bench(const BenchOptions& options, Json& doc) {
  const char* usage = "usage: kiln bench PLAN.kiln --trace x:1x7x512 [--trace x:1x16x512 ...] [--repeat N]";
  std::string file = model_path(options.plan, usage);
  if (options.traces.empty()) fail(ErrorCode::kInvalidArgument, "no --trace given; ", usage);
  if (!is_plan_file(file)) fail(ErrorCode::kInvalidArgument, file, " is not a kiln plan (build one with kiln build)");
  int repeat = options.repeat, settle_ms = options.settle_ms;
  int iterations = std::max(1, options.iterations);
  runtime::KernelSpecialization strategy = *runtime::parse_kernel_specialization(options.runtime.kernel_specialization);
  plan::Plan p = plan::load(file);
  check_profile_index(p, options.profile_index, file);
  begin_input_phase();
  const ir::Network& net = p.network;

  // Inputs for every distinct shape set of the trace, made before anything is timed.
  std::vector<std::map<std::string, std::vector<int64_t>>> trace;
  for (const std::string& spec : options.traces) trace.push_back(parse_shapes({spec}, "--trace"));
  std::mt19937_64 rng(0);
  std::vector<std::map<std::string, std::vector<int64_t>>> distinct;
  std::vector<size_t> trace_index;  // trace entry -> distinct index
  for (auto& shapes : trace) {
    auto it = std::find(distinct.begin(), distinct.end(), shapes);
    trace_index.push_back(size_t(it - distinct.begin()));
    if (it == distinct.end()) distinct.push_back(shapes);
  }

  auto cache_file = runtime_cache_path(options.runtime);
  runtime::RuntimeConfig config = gpu_config(cache_file, options.runtime);
  auto start = Clock::now();
  auto engine = runtime::Engine::create(p, config);
  cudaStream_t stream;
  cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
  auto context = engine->create_context();
  context->set_optimization_profile(options.profile_index, stream);
  double setup_ms = micros_since(start) / 1000;
  std::vector<std::unique_ptr<runtime::DeviceIo>> io;
  std::vector<std::map<std::string, reference::Tensor>> shape_inputs;
  std::vector<ShapeResult> results(distinct.size());
  for (size_t d = 0; d < distinct.size(); ++d) {
    std::ostringstream key;
    for (auto& [name, dims] : distinct[d]) {
      key << (key.tellp() ? "," : "") << name << ":";
      for (size_t i = 0; i < dims.size(); ++i) key << (i ? "x" : "") << dims[i];
    }
    results[d].key = key.str();
    std::map<std::string, reference::Tensor> inputs;
    for (ir::ValueId id : net.inputs()) {
      const ir::Value& v = net.value(id);
      auto it = distinct[d].find(v.name);
      if (it == distinct[d].end() && !ir::shape_is_constant(v.shape))
        fail(ErrorCode::kInvalidArgument, "--trace ", results[d].key, " gives no shape for input '", v.name, "'");
      inputs[v.name] = random_tensor(v.dtype, it != distinct[d].end() ? it->second : ir::shape_constants(v.shape), rng);
    }
    io.push_back(std::make_unique<runtime::DeviceIo>(*context, *engine, inputs));
    shape_inputs.push_back(std::move(inputs));
  }
  std::cout << "engine+context " << setup_ms << " ms, kernel specialization " << runtime::kernel_specialization_name(strategy)
            << ", cuda graphs " << runtime::cuda_graph_strategy_name(config.cuda_graph_strategy) << "\n";

  double enqueue_us = 0;  // host time of the last call until enqueue returned
  auto call = [&](size_t d) {
    auto t0 = Clock::now();
    io[d]->bind();
    context->enqueue(stream);
    enqueue_us = micros_since(t0);
    cudaError_t e = cudaStreamSynchronize(stream);
    double us = micros_since(t0);
    if (e != cudaSuccess) fail(ErrorCode::kDevice, "running at ", results[d].key, ": ", cudaGetErrorString(e));
    return us;
  };
  int n = 0;
  for (int r = 0; r < repeat; ++r)
    for (size_t t = 0; t < trace.size(); ++t) {
      size_t d = trace_index[t];
      double us = call(d);
      auto stats = context->specialization_stats().front();
      if (results[d].calls.empty()) results[d].first_stats = stats;
      results[d].calls.push_back(us);
      std::cout << "call " << ++n << " " << results[d].key << ": " << us << " us, " << enqueue_us << " us until enqueue returned ("
                << stats_text(stats) << ")\n";
    }
  // Engines built for one static shape each (eager: their best kernels), with
  // the same inputs as the trace's call at that shape.
  struct StaticEngine {
    std::shared_ptr<runtime::Engine> engine;
    std::unique_ptr<runtime::ExecutionContext> context;
    std::unique_ptr<runtime::DeviceIo> io;
  };
  std::map<size_t, StaticEngine> statics;  // by distinct shape
  for (const std::string& file : options.static_plans) {
    plan::Plan sp = plan::load(file);
    ir::SymbolBindings fixed;  // symbols whose profile range is a single value
    for (auto& [symbol, range] : sp.network.dim_ranges())
      if (range.min == range.max) fixed[symbol] = range.min;
    std::map<std::string, std::vector<int64_t>> dims;
    for (ir::ValueId id : sp.network.inputs()) {
      const ir::Value& v = sp.network.value(id);
      for (const ir::Dim& dim : v.shape) {
        auto x = dim.evaluate(fixed);
        if (!x) fail(ErrorCode::kInvalidArgument, "--static-plan ", file, ": input '", v.name, "' is not static");
        dims[v.name].push_back(*x);
      }
    }
    auto it = std::find(distinct.begin(), distinct.end(), dims);
    if (it == distinct.end()) fail(ErrorCode::kInvalidArgument, "--static-plan ", file, ": its input shapes are not in the trace");
    size_t d = size_t(it - distinct.begin());
    runtime::RuntimeConfig static_config = config;
    static_config.dynamic_shapes_kernel_specialization_strategy = runtime::KernelSpecialization::kEager;
    StaticEngine st;
    st.engine = runtime::Engine::create(std::move(sp), static_config);
    st.context = st.engine->create_context();
    st.io = std::make_unique<runtime::DeviceIo>(*st.context, *st.engine, shape_inputs[d]);
    statics[d] = std::move(st);
  }
  auto static_call = [&](StaticEngine& st) {
    auto t0 = Clock::now();
    st.io->bind();
    st.context->enqueue(stream);
    cudaError_t e = cudaStreamSynchronize(stream);
    if (e != cudaSuccess) fail(ErrorCode::kDevice, "running a static plan: ", cudaGetErrorString(e));
    return micros_since(t0);
  };

  // What a user gets by capturing kiln by hand (native graphs off) once the
  // kernels are specialized: the graph replayed with the same kernels.
  std::unique_ptr<runtime::ExecutionContext> manual_context;
  if (options.manual_capture) {
    manual_context = engine->create_context();
    manual_context->set_optimization_profile(options.profile_index, stream);
    manual_context->set_cuda_graph_strategy(runtime::CudaGraphStrategy::kDisabled);
  }
  auto manual_capture_us = [&](size_t d) {
    runtime::DeviceIo manual_io(*manual_context, *engine, shape_inputs[d]);
    manual_context->enqueue(stream);  // prepared outside the capture
    cudaStreamSynchronize(stream);
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    if (cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal) != cudaSuccess)
      fail(ErrorCode::kDevice, "cannot begin a capture for --manual-capture");
    manual_context->enqueue(stream);
    if (cudaStreamEndCapture(stream, &graph) != cudaSuccess || cudaGraphInstantiate(&exec, graph, 0) != cudaSuccess)
      fail(ErrorCode::kDevice, "the manual capture at ", results[d].key, " failed");
    std::vector<double> times;
    for (int i = 0; i < 10 + iterations; ++i) {
      auto t0 = Clock::now();
      cudaGraphLaunch(exec, stream);
      cudaStreamSynchronize(stream);
      if (i >= 10) times.push_back(micros_since(t0));
    }
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    return percentile(times, 0.5);
  };

  // Steady state: once no kernel of the shape waits for its specialized variant.
  // With a static engine for the shape, both are timed in alternating rounds
  // so that drifts of the host and the GPU hit both alike.
  constexpr int kRounds = 5;
  for (size_t d = 0; d < distinct.size(); ++d) {
    auto deadline = Clock::now() + std::chrono::milliseconds(settle_ms);
    call(d);
    while (context->specialization_stats().front().pending > 0 && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      call(d);
    }
    for (int i = 0; i < 10; ++i) call(d);
    std::vector<double> times, static_times;
    auto st = statics.find(d);
    if (st != statics.end())
      for (int i = 0; i < 10; ++i) static_call(st->second);
    auto steady_start = Clock::now();
    for (int round = 0; round < kRounds || micros_since(steady_start) < 1e6 * options.duration_s; ++round) {
      for (int i = 0; i < (iterations + kRounds - 1) / kRounds; ++i) times.push_back(call(d));
      if (st != statics.end())
        for (int i = 0; i < (iterations + kRounds - 1) / kRounds; ++i) static_times.push_back(static_call(st->second));
    }
    results[d].steady_us = percentile(times, 0.5);
    results[d].steady = summarize(times);
    if (st != statics.end()) results[d].static_us = percentile(static_times, 0.5);
    if (options.manual_capture) results[d].manual_us = manual_capture_us(d);
    results[d].steady_stats = context->specialization_stats().front();
  }
  // After the steady state, so that the specialized kernels are in the engine for every stream's context.
  if (options.streams > 0)
    for (size_t d = 0; d < distinct.size(); ++d)
      results[d].throughput = measure_streams(*engine, options.profile_index, shape_inputs[d], options.streams, iterations,
                                              options.duration_s, results[d].key);
  print_graph_stats(*context);
  save_runtime_cache(config, cache_file);
  cudaStreamDestroy(stream);

  std::cout << "shape, first / second / steady (median of " << iterations << ") call in us, kernels at steady state\n";
  for (auto& r : results)
    std::cout << r.key << "  " << r.calls[0] << " / " << (r.calls.size() > 1 ? str(r.calls[1]) : "-") << " / " << r.steady_us
              << (r.static_us > 0 ? str(" (static engine ", r.static_us, ", ratio ", r.steady_us / r.static_us, ")") : "")
              << (r.manual_us > 0 ? str(" (manual capture ", r.manual_us, ")") : "")
              << "  (" << stats_text(r.steady_stats) << ")\n";
  for (auto& r : results) std::cout << r.key << " steady state over " << r.steady.runs << " calls (us): " << latency_text(r.steady) << "\n";
  if (options.streams > 0)
    for (auto& r : results) {
      const Throughput& t = r.throughput;
      std::cout << r.key << " with " << options.streams << " streams: " << t.qps << " qps (" << t.calls << " calls in " << t.wall_s
                << " s)\n";
      for (size_t i = 0; i < t.per_stream.size(); ++i)
        std::cout << "  stream " << i << " over " << t.per_stream[i].runs << " calls (us): " << latency_text(t.per_stream[i]) << "\n";
    }
  auto g = context->graph_stats();
  doc["plan"] = file;
  doc["profile_index"] = options.profile_index;
  doc["strategy"] = runtime::kernel_specialization_name(strategy);
  doc["cuda_graphs"] = runtime::cuda_graph_strategy_name(config.cuda_graph_strategy);
  doc["captures"] = g.captures;
  doc["replays"] = g.replays;
  doc["updates"] = g.updates;
  doc["setup_ms"] = setup_ms;
  if (options.streams > 0) doc["streams"] = options.streams;
  doc["shapes"] = Json::array();
  for (const ShapeResult& r : results) {
    doc["shapes"].push_back({{"shape", r.key},
                             {"calls_us", r.calls},
                             {"steady_us", r.steady_us},
                             {"static_us", r.static_us},
                             {"manual_us", r.manual_us},
                             {"first_generic", r.first_stats.generic},
                             {"first_pending", r.first_stats.pending},
                             {"prepare_ms", r.first_stats.prepare_ms},
                             {"steady_generic", r.steady_stats.generic},
                             {"steady_specialized", r.steady_stats.specialized},
                             {"steady_pending", r.steady_stats.pending},
                             {"steady", latency_json(r.steady)}});
    if (options.streams > 0) {
      Json per_stream = Json::array();
      for (const Latency& l : r.throughput.per_stream) per_stream.push_back(latency_json(l));
      doc["shapes"].back()["throughput"] = {{"qps", r.throughput.qps},
                                            {"calls", r.throughput.calls},
                                            {"wall_s", r.throughput.wall_s},
                                            {"per_stream", per_stream}};
    }
  }
  if (!options.json_file.empty()) {
    Json copy = doc;  // what --json prints
    copy["exit_code"] = kOk;
    if (auto notes = make_finite(copy); !notes.empty()) copy["notes"] = notes;
    file_io::write_file_atomic(options.json_file, {copy.dump(2, ' ', false, Json::error_handler_t::replace) + "\n"});
  }
  return kOk;
}

}  // namespace kiln::cli
