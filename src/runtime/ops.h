// Runtime internals: how a plan node becomes launches. Each node gets an Op
// (made once per engine, immutable, shared by contexts). For the shapes of a
// context, Op::prepare appends Steps: plain data (kernel, grid, pointers by
// value id, parameters) that enqueue replays without allocating anything.
#pragma once

#include <cublasLt.h>
#include <cudnn.h>
#include <cuda_runtime_api.h>

#include <atomic>
#include <map>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <variant>
#include <vector>

#include "codegen/codegen.h"
#include "kiln/ir/network.h"
#include "kiln/plan.h"
#include "kiln/runtime.h"
#include "kiln/runtime_cache.h"

namespace kiln::runtime {

// Loaded specialized modules that nothing references any more, waiting for a
// point where unloading them is safe (outside any capture, their launches done).
struct RetiredLibraries {
  std::mutex mutex;
  std::vector<cudaLibrary_t> libraries;
  std::atomic<bool> any{false};
  std::atomic<int64_t> loaded{0};  // specialized modules loaded and not yet unloaded
};

// One shape-specialized kernel, compiled now (eager) or on a background thread
// (lazy). `kernel` is valid once `state` is kReady (published with release order).
// Whoever launches the kernel holds this entry; when the last holder lets go
// its module is retired, and unloaded at the next safe point.
struct Specialization {
  enum State : int { kPending = 0, kReady = 1, kFailed = 2 };
  std::atomic<int> state{kPending};
  cudaKernel_t kernel = nullptr;
  cudaLibrary_t library = nullptr;
  std::shared_ptr<RetiredLibraries> retired;
  ~Specialization();
};

// Compiles generated sources once each (identical sources share a module) and
// loads them; later compiles shape-specialized variants on request.
class KernelStore {
 public:
  // Source of a kernel: generic for nullopt, with the given parameters compiled
  // in otherwise. Called from several threads at once: it must not change state.
  using Generator = std::function<std::string(const std::optional<codegen::Params>&)>;

  KernelStore();
  ~KernelStore();
  int add(const std::string& name, Generator generator);  // returns a handle
  // Compiles every registered source for `arch` (cubins from `cache` when it has them) and loads them.
  void compile_all(int arch, int threads, const std::function<void(const std::string&)>& progress, RuntimeCache* cache);
  // Compiles every source for `arch` into `cache` without loading (no GPU needed).
  void compile_into_cache(int arch, int threads, const std::function<void(const std::string&)>& progress, RuntimeCache& cache);
  // The loaded generic kernel; null before compile_all (dry preparation for cache warming).
  cudaKernel_t kernel(int handle) const {
    size_t module = size_t(handles_.at(size_t(handle)));
    return module < kernels_.size() ? kernels_[module] : nullptr;
  }
  int module_count() const { return int(sources_.size()); }
  int cache_hits() const { return cache_hits_; }

  // Shape specialization: start_specializer() runs `threads` compilers on
  // `device`; specialize() returns the (shared) entry for these parameters,
  // queueing its compile when it is new. The store keeps the `max_kernels`
  // most recently requested entries (LRU); older ones live on only while a
  // prepared shape holds them.
  void start_specializer(int device, int threads, size_t max_kernels);
  std::shared_ptr<Specialization> specialize(int handle, const codegen::Params& params) const;
  // Unloads retired specialized modules. Call only outside any stream capture,
  // after the launches of the retired kernels are known to be done. Without
  // `wait`, does nothing while a capture of kiln's is open on another thread.
  void unload_retired(bool wait = false) const;
  bool has_retired() const { return retired_->any.load(std::memory_order_relaxed); }
  int64_t loaded_specialized() const { return retired_->loaded.load(); }
  // Compiles the specialized variant into `cache` only (no GPU); returns whether it was new.
  bool warm_specialized(int handle, const codegen::Params& params, int arch, RuntimeCache& cache) const;
  int specialized_cache_hits() const { return specialized_cache_hits_.load(); }

 private:
  struct Job;
  std::vector<std::string> compile(int arch, int threads, const std::function<void(const std::string&)>& progress,
                                   RuntimeCache* cache);
  void compile_specialized(Job& job) const;
  void worker(int device) const;

  std::vector<std::string> names_, sources_;
  std::vector<Generator> generators_;
  std::vector<int> handles_;  // handle -> module index
  std::vector<cudaLibrary_t> libraries_;
  std::vector<cudaKernel_t> kernels_;
  int cache_hits_ = 0;
  mutable std::atomic<int> specialized_cache_hits_{0};
  int arch_ = 0;
  RuntimeCache* cache_ = nullptr;

  // Specialization state, shared by every context of the engine.
  struct Specializer;
  std::unique_ptr<Specializer> specializer_;
  std::shared_ptr<RetiredLibraries> retired_ = std::make_shared<RetiredLibraries>();
};

// Concrete dims of every value for one set of input shapes (empty for unknown).
struct ShapeEnv {
  std::vector<std::vector<int64_t>> dims;
  ir::SymbolBindings bindings;
  // Engines with data-dependent sizes: per value, whether its dims wait for a
  // size enqueue has not read back yet (its dims are then empty); and the
  // small integer tensors enqueue read back, by value.
  std::vector<bool> pending;
  std::map<ir::ValueId, std::vector<int64_t>> read;
  const std::vector<int64_t>& of(ir::ValueId v) const { return dims.at(size_t(v)); }
};

// A PtrRef to the context's readback scratch instead of a value: device
// memory where kernels leave the counts enqueue reads back, and their work
// areas (counted_on_device). A PtrRef to kNoValue passes a null pointer (an
// optional tensor left out).
inline constexpr ir::ValueId kReadbackScratch = -2;

// A device pointer named by value id (resolved at enqueue) plus a byte offset.
struct PtrRef {
  ir::ValueId value = ir::kNoValue;
  int64_t offset = 0;
};

struct KernelLaunch {
  cudaKernel_t kernel;
  unsigned grid = 1, block = codegen::kBlock;
  std::vector<PtrRef> args;  // outputs first, then inputs
  codegen::Params params;
  const ir::Node* node;      // for error messages
  int handle = -1;           // the KernelStore handle, for specialization
  std::shared_ptr<Specialization> special{};  // the specialized variant, ready or on its way (lazy)
  bool specialized = false;                 // `kernel` is special's kernel
  bool specializable = true;                // false where the parameters are data, not shape
};

// One cuBLASLt matmul; descriptors are owned here and built in prepare.
struct MatmulCall {
  std::shared_ptr<void> descriptors;  // opaque holder (see ops/linalg.cpp)
  PtrRef a, b, c, d, bias;
  double alpha = 1, beta = 0;
  bool f64 = false;
  const ir::Node* node;
};

// One cuDNN convolution (+ bias); descriptors built in prepare.
struct CudnnCall {
  std::shared_ptr<void> descriptors;
  PtrRef x, w, y, bias;
  bool f64 = false;
  const ir::Node* node;
};

using Step = std::variant<KernelLaunch, MatmulCall, CudnnCall>;

struct PrepareContext {
  const ShapeEnv& shapes;
  std::vector<Step>& steps;
  cublasLtHandle_t lt;
  cudnnHandle_t cudnn;
  size_t workspace_bytes;
  int sm_count;
  // No device (cache warming): library calls are left out; kernel launches,
  // whose parameters depend on shapes alone, are prepared as usual.
  bool dry = false;
  // Where library choices (cuDNN algorithms) are remembered across processes,
  // for the device's architecture; null: ask the library's heuristics each time.
  RuntimeCache* cache = nullptr;
  int arch = 0;
};

class Op {
 public:
  virtual ~Op() = default;
  virtual void prepare(PrepareContext& ctx) const = 0;
};

// A node that reads or writes a string tensor: string tensors live in host
// memory, so enqueue runs the node's reference kernel on the host between
// the launches (run_host_step) and the node prepares no launches of its own.
class HostStepOp : public Op {
 public:
  void prepare(PrepareContext&) const override {}
};
// Why make_op runs `node` as a host step ("runs on the host inside the GPU
// engine: input 0 ('x') is a string tensor, ..."); empty when it does not.
std::string host_step_note(const plan::Plan& plan, const ir::Node& node);

// Makes the op for `node`, registering its kernels; nullptr with `why` set
// when the GPU runtime does not handle this node yet. Makes no CUDA call (the
// op makers below neither; library descriptors come in Op::prepare), so
// gpu_support asks it on machines without a GPU. `arch`: the device's compute
// capability (80 for sm_80), which kernels it can run; 0 when there is no
// device (support questions), choosing kernels that run on any. The plan's
// precision is the makers' to read (plan.precision).
std::unique_ptr<Op> make_op(const plan::Plan& plan, const ir::Node& node, KernelStore& store, std::string& why, int arch);

// ---- op families: one lowering per family, in runtime/ops/<family>.cpp ----------------
// make_op and gpu_lowering dispatch through a table indexed by ir::family_of
// (ops/families.cpp). `make` has make_op's contract for the family's ops,
// reached only for ops its `describe` says run as kernels; a nullptr with
// `why` empty means the dtype. `describe` answers gpu_lowering for each op of
// the family (an empty detail for an op it lacks, which the registry test catches).
using MakeOpFn = std::unique_ptr<Op> (*)(const plan::Plan& plan, const ir::Node& node, KernelStore& store, std::string& why,
                                         int arch);
using DescribeFn = GpuLowering (*)(ir::OpKind op);
struct FamilyLowering {
  ir::OpFamily family;
  MakeOpFn make;
  DescribeFn describe;
};
std::unique_ptr<Op> make_elementwise(const plan::Plan& plan, const ir::Node& node, KernelStore& store, std::string& why, int arch);
GpuLowering describe_elementwise(ir::OpKind op);
std::unique_ptr<Op> make_linalg(const plan::Plan& plan, const ir::Node& node, KernelStore& store, std::string& why, int arch);
GpuLowering describe_linalg(ir::OpKind op);
std::unique_ptr<Op> make_conv(const plan::Plan& plan, const ir::Node& node, KernelStore& store, std::string& why, int arch);
GpuLowering describe_conv(ir::OpKind op);
std::unique_ptr<Op> make_pool(const plan::Plan& plan, const ir::Node& node, KernelStore& store, std::string& why, int arch);
GpuLowering describe_pool(ir::OpKind op);
std::unique_ptr<Op> make_normalization(const plan::Plan& plan, const ir::Node& node, KernelStore& store, std::string& why, int arch);
GpuLowering describe_normalization(ir::OpKind op);
std::unique_ptr<Op> make_reduce(const plan::Plan& plan, const ir::Node& node, KernelStore& store, std::string& why, int arch);
GpuLowering describe_reduce(ir::OpKind op);
std::unique_ptr<Op> make_movement(const plan::Plan& plan, const ir::Node& node, KernelStore& store, std::string& why, int arch);
GpuLowering describe_movement(ir::OpKind op);
std::unique_ptr<Op> make_generator(const plan::Plan& plan, const ir::Node& node, KernelStore& store, std::string& why, int arch);
GpuLowering describe_generator(ir::OpKind op);
std::unique_ptr<Op> make_vision(const plan::Plan& plan, const ir::Node& node, KernelStore& store, std::string& why, int arch);
GpuLowering describe_vision(ir::OpKind op);
std::unique_ptr<Op> make_recurrent(const plan::Plan& plan, const ir::Node& node, KernelStore& store, std::string& why, int arch);
GpuLowering describe_recurrent(ir::OpKind op);
std::unique_ptr<Op> make_control_flow(const plan::Plan& plan, const ir::Node& node, KernelStore& store, std::string& why, int arch);
GpuLowering describe_control_flow(ir::OpKind op);
std::unique_ptr<Op> make_text(const plan::Plan& plan, const ir::Node& node, KernelStore& store, std::string& why, int arch);
GpuLowering describe_text(ir::OpKind op);
std::unique_ptr<Op> make_ml(const plan::Plan& plan, const ir::Node& node, KernelStore& store, std::string& why, int arch);
GpuLowering describe_ml(ir::OpKind op);

// Runs one prepared matmul (the descriptors are cuBLASLt's, kept in the call).
void launch_matmul(const MatmulCall& call, void* a, void* b, void* c, void* d, void* bias, cublasLtHandle_t lt,
                   void* workspace, size_t workspace_bytes, cudaStream_t stream);

void launch_cudnn(const CudnnCall& call, void* x, void* w, void* y, void* bias, cudnnHandle_t handle, void* workspace,
                  cudaStream_t stream);

// ---- makers one family lends another ----------------------------------------------------
// conv: the cuDNN op for a Conv it can run (nullptr: use the direct kernel); the
// cuDNN op for a MaxPoolChannelsLast (nullptr if cuDNN cannot pool it); the
// window kernel that runs direct convolutions and MaxPool/AveragePool.
std::unique_ptr<Op> make_cudnn_conv_op(const plan::Plan& plan, const ir::Node& node, std::string& why);
std::unique_ptr<Op> make_cudnn_max_pool_op(const plan::Plan& plan, const ir::Node& node);
std::unique_ptr<Op> make_window_op(const plan::Plan& plan, const ir::Node& node, KernelStore& store);
// linalg: D[rows, cols] (float32) = A[rows, depth] @ B[cols, depth]^T, A and B
// of `dtype` (float, float16 or bfloat16), through cuBLASLt with float
// accumulation; fails naming the node where cuBLASLt has no algorithm.
MatmulCall make_float_product(const PrepareContext& ctx, const ir::Node& node, DType dtype, PtrRef a, PtrRef b, PtrRef d,
                              int64_t rows, int64_t cols, int64_t depth);
// reduce: the reduction kernel of any dtype, which also runs GlobalAveragePool and GlobalMaxPool.
std::unique_ptr<Op> make_reduction_op(const plan::Plan& plan, const ir::Node& node, KernelStore& store);
// generator: writes outputs the host knows for the current shapes (shape arithmetic), for a node of any family.
std::unique_ptr<Op> make_host_value_op(const plan::Plan& plan, const ir::Node& node, KernelStore& store);

// movement: strided copies of whole input views into (parts of) outputs; a
// 0-sized source with PadMode::kConstant fills (ConstantOfShape). The fill is
// `fill_bits`, or the element the kernel reads from `fill_value` (Pad's
// constant_value when it is tensor data).
struct RemapPiece {
  ir::ValueId src, dst;
  std::vector<int64_t> dims, src_strides, dst_strides, starts, steps, src_dims, modulus;
  int64_t src_offset = 0, dst_offset = 0;
  codegen::PadMode mode = codegen::PadMode::kNone;
  int64_t fill_bits = 0;
  ir::ValueId fill_value = ir::kNoValue;
};
using RemapPlan = std::function<std::vector<RemapPiece>(const ShapeEnv&)>;
std::unique_ptr<Op> make_remap_op(const ir::Node& node, KernelStore& store, DType dtype, RemapPlan plan);

// A generator for specs with an optional `specialize` member. The store calls
// generators from several compile threads at once, so each call works on its
// own copy of the spec.
template <class Spec, class Source>
KernelStore::Generator specializing_generator(Spec spec, Source source) {
  return [spec = std::move(spec), source](const std::optional<codegen::Params>& params) {
    Spec copy = spec;
    copy.specialize = params;
    return source(copy);
  };
}

// An op that launches one registered kernel with parameters a function computes
// (a codegen parameter struct, packed); no launch where the fill leaves the
// struct's first field, the count of work items, at 0.
class SimpleOp : public Op {
 public:
  using Fill = std::function<void(const ShapeEnv&, KernelLaunch&)>;
  SimpleOp(const ir::Node& node, const KernelStore& store, int kernel, Fill fill)
      : node_(node), store_(store), kernel_(kernel), fill_(std::move(fill)) {}
  void prepare(PrepareContext& ctx) const override;

 private:
  const ir::Node& node_;
  const KernelStore& store_;
  int kernel_;
  Fill fill_;
};

// Runs its parts' launches in order (a scatter: the copy of the data, then the updates).
class SequenceOp : public Op {
 public:
  explicit SequenceOp(std::vector<std::unique_ptr<Op>> parts) : parts_(std::move(parts)) {}
  void prepare(PrepareContext& ctx) const override {
    for (const auto& part : parts_) part->prepare(ctx);
  }

 private:
  std::vector<std::unique_ptr<Op>> parts_;
};

// Elementwise ops that have an integer (and bool) form on the GPU; the others need floating types.
bool integer_capable(ir::OpKind op);

// Helpers shared by op implementations (ops/common.cpp).
unsigned grid_for(int64_t n, int sm_count);
// The least power of two >= n (1 for n <= 1): the slots of a bitonic sort.
int64_t next_pow2(int64_t n);
using ir::strides_of;
// The dtype of the node's first output (float32 where it has none).
DType output_dtype(const plan::Plan& plan, const ir::Node& node);
inline int64_t norm_axis(int64_t axis, size_t rank) { return axis < 0 ? axis + int64_t(rank) : axis; }
// Known integer contents (shape arithmetic) evaluated for the current shapes, or nullopt.
std::optional<std::vector<int64_t>> known_now(const ir::Value& v, const ShapeEnv& shapes);
// A value's integers where the host has them: a weight's, known contents at
// these shapes, or what enqueue read back; nullopt for other tensor data.
std::optional<std::vector<int64_t>> host_ints(const plan::Plan& plan, ir::ValueId v, const ShapeEnv& shapes);
// host_ints, or a failure naming `what` on tensor data the host does not have.
std::vector<int64_t> ints_of(const plan::Plan& plan, ir::ValueId v, const ShapeEnv& shapes, const char* what);
// The bound `kiln build` gave `v`'s data-dependent dim (the largest such dim's
// range max); fails naming the tensor when the plan has none.
int64_t data_dependent_bound(const plan::Plan& plan, ir::ValueId v);
// Nodes whose kernels count their output size on the device (enqueue reads
// the count back after their launches): NonZero, Compress and Unique
// (movement), NonMaxSuppression (vision). Each has a slot of the context's
// readback scratch, in node order: its count (8 bytes, int64), then the work
// area its kernels use, sized at the plan's largest shapes.
bool counted_on_device(ir::OpKind op);
struct ScratchSlot {
  int64_t offset = 0;      // the count; the work area starts 8 bytes on
  int64_t work_bytes = 0;
};
ScratchSlot readback_scratch_slot(const plan::Plan& plan, const ir::Node& node);
int64_t readback_scratch_bytes(const plan::Plan& plan);  // every slot; 0 without such nodes
// Each family's work area for one of its counted nodes, in bytes at these dims.
int64_t movement_count_work_bytes(const plan::Plan& plan, const ir::Node& node, const ir::SymbolBindings& largest);
int64_t vision_count_work_bytes(const plan::Plan& plan, const ir::Node& node, const ir::SymbolBindings& largest);
// The dims of `v` at `bindings`; fails naming the tensor when some size has no value there.
std::vector<int64_t> dims_at(const plan::Plan& plan, ir::ValueId v, const ir::SymbolBindings& bindings);
// The most slices dim `d` of output `v` holds: its size where that is known
// from the shapes, else the bound `kiln build` planned for.
int64_t output_capacity(const plan::Plan& plan, const ShapeEnv& shapes, ir::ValueId v, size_t d);
// Fails naming the node and its input `input` unless that input has dims
// `want` at these shapes: symbolic dims that inference could not compare are
// checked here, before a kernel indexes by them.
void require_input_dims(const ir::Node& node, const ShapeEnv& shapes, size_t input, const std::vector<int64_t>& want);

}  // namespace kiln::runtime
