// The generator family on the GPU: values the host knows (shape arithmetic,
// for nodes of any family) written by the constants kernel, ConstantOfShape
// as a fill, Range, OneHot, EyeLike, the signal windows, MelWeightMatrix and
// the random ops as kernels of their own. Range's length, OneHot's depth, a
// window's size and the mel matrix's dims come from the output's shape: known
// before the run, or read back by enqueue when they depend on data (see
// context.cpp).
#include <algorithm>
#include <cstring>

#include "kiln/error.h"
#include "kiln/ir/random.h"
#include "kiln/ir/shape_inference.h"
#include "kiln/ir/signal.h"
#include "kiln/runtime.h"
#include "ops.h"

namespace kiln::runtime {

using ir::OpKind;

namespace {

// Writes values known on the host (shape arithmetic) into device memory: the
// values travel as kernel parameters, so no host buffer must outlive a launch.
class HostValueOp : public Op {
 public:
  HostValueOp(const plan::Plan& plan, const ir::Node& node, const KernelStore& store, int kernel)
      : plan_(plan), node_(node), store_(store), kernel_(kernel) {}
  void prepare(PrepareContext& ctx) const override {
    for (ir::ValueId v : node_.outputs) {
      if (v == ir::kNoValue) continue;
      const ir::Value& val = plan_.network.value(v);
      auto values = known_now(val, ctx.shapes);
      if (!values) fail(ErrorCode::kInternal, "node '", node_.name, "': output '", val.name, "' is not known for these shapes");
      size_t elem = dtype_size(val.dtype);
      for (size_t at = 0; at < values->size(); at += codegen::kConstantsPerLaunch) {
        KernelLaunch k{store_.kernel(kernel_), 1, 64, {{v, int64_t(at * elem)}}, {}, &node_};
        k.specializable = false;
        size_t count = std::min<size_t>(codegen::kConstantsPerLaunch, values->size() - at);
        codegen::ConstantsParams q{};
        q.n = int64_t(count);
        q.elem = int64_t(elem);
        for (size_t i = 0; i < count; ++i) {
          int64_t x = (*values)[at + i];
          visit_dtype(val.dtype, [&](auto tag) {  // the value's bits in the tensor's dtype
            using T = decltype(tag);
            if constexpr (std::is_integral_v<T>) {
              T t = static_cast<T>(x);
              int64_t bits = 0;
              std::memcpy(&bits, &t, sizeof(T));
              q.values[i] = bits;
            } else {
              fail(ErrorCode::kInternal, "node '", node_.name, "': shape values of dtype ", dtype_name(val.dtype));
            }
          });
        }
        k.params = codegen::pack(q);
        ctx.steps.push_back(std::move(k));
      }
    }
  }

 private:
  const plan::Plan& plan_;
  const ir::Node& node_;
  const KernelStore& store_;
  int kernel_;
};

}  // namespace

std::unique_ptr<Op> make_host_value_op(const plan::Plan& plan, const ir::Node& node, KernelStore& store) {
  return std::make_unique<HostValueOp>(plan, node, store, store.add("constants", [](const auto&) { return codegen::constants_source(); }));
}

std::unique_ptr<Op> make_generator(const plan::Plan& plan, const ir::Node& node, KernelStore& store, std::string& why,
                                   int /*arch*/) {
  DType dtype = output_dtype(plan, node);
  const ir::Node* n = &node;
  switch (node.op) {
    case OpKind::kConstantOfShape: {
      const ir::TensorData* v = node.attrs.get_tensor("value");
      int64_t bits = 0;
      if (v) std::memcpy(&bits, v->data.data(), std::min<size_t>(8, v->data.size()));
      return make_remap_op(node, store, dtype, [n, bits](const ShapeEnv& s) {
        RemapPiece r;  // every element lies outside a 0-sized source: all fill
        r.src = n->outputs[0];
        r.dst = n->outputs[0];
        r.dims = {ir::checked_numel(s.of(n->outputs[0]))};
        r.src_strides = r.dst_strides = {1};
        r.src_dims = {0};
        r.mode = codegen::PadMode::kConstant;
        r.fill_bits = bits;
        return std::vector<RemapPiece>{r};
      });
    }

    case OpKind::kRange: {
      if (dtype == DType::kBool) break;
      int kernel = store.add(node.name, [dtype](const auto& params) { return codegen::range_source(dtype, params); });
      return std::make_unique<SimpleOp>(node, store, kernel, [n](const ShapeEnv& s, KernelLaunch& k) {
        k.params = codegen::pack(codegen::RangeParams{s.of(n->outputs[0]).at(0)});
        k.args = {{n->outputs[0], 0}, {n->inputs[0], 0}, {n->inputs[2], 0}};  // start and delta; the length is the output's
      });
    }

    case OpKind::kOneHot: {
      DType index = plan.network.value(node.inputs[0]).dtype;
      if (index == DType::kBool) {
        why = "bool indices";
        return nullptr;
      }
      int kernel = store.add(node.name, [dtype, index](const auto& params) { return codegen::onehot_source(dtype, index, params); });
      return std::make_unique<SimpleOp>(node, store, kernel, [n](const ShapeEnv& s, KernelLaunch& k) {
        const auto& out = s.of(n->outputs[0]);
        int64_t axis = norm_axis(n->attrs.get_int("axis", -1), out.size());
        codegen::OneHotParams q{};
        q.n = ir::checked_numel(out);
        q.depth = out[size_t(axis)];
        q.inner = ir::checked_numel({out.begin() + axis + 1, out.end()});
        k.params = codegen::pack(q);
        k.args = {{n->outputs[0], 0}, {n->inputs[0], 0}, {n->inputs[2], 0}};
      });
    }

    case OpKind::kHannWindow: case OpKind::kHammingWindow: case OpKind::kBlackmanWindow: {
      int kernel = store.add(node.name, [dtype](const auto& params) { return codegen::signal_window_source(dtype, params); });
      ir::CosineWindow w = ir::cosine_window(node.op);
      bool periodic = node.attrs.get_int("periodic", 1) != 0;
      return std::make_unique<SimpleOp>(node, store, kernel, [n, w, periodic](const ShapeEnv& s, KernelLaunch& k) {
        codegen::SignalWindowParams q{};
        q.n = s.of(n->outputs[0]).at(0);
        q.denom = periodic ? q.n : q.n - 1;
        q.a0_bits = codegen::double_bits(w.a0);
        q.a1_bits = codegen::double_bits(w.a1);
        q.a2_bits = codegen::double_bits(w.a2);
        k.params = codegen::pack(q);
        k.args = {{n->outputs[0], 0}};
      });
    }
    case OpKind::kEyeLike: {
      int kernel = store.add(node.name, [dtype](const auto& params) { return codegen::eye_like_source(dtype, params); });
      return std::make_unique<SimpleOp>(node, store, kernel, [n](const ShapeEnv& s, KernelLaunch& k) {
        const auto& out = s.of(n->outputs[0]);
        k.params = codegen::pack(codegen::EyeLikeParams{ir::checked_numel(out), out[1], n->attrs.get_int("k", 0)});
        k.args = {{n->outputs[0], 0}};
      });
    }

    case OpKind::kMelWeightMatrix: {
      DType size = plan.network.value(node.inputs[1]).dtype, hertz = plan.network.value(node.inputs[3]).dtype;
      int kernel = store.add(node.name, [dtype, size, hertz](const auto& params) {
        return codegen::mel_weight_matrix_source(dtype, size, hertz, params);
      });
      return std::make_unique<SimpleOp>(node, store, kernel, [n](const ShapeEnv& s, KernelLaunch& k) {
        const auto& out = s.of(n->outputs[0]);
        codegen::MelParams q{};
        q.n = ir::checked_numel(out);
        q.mel_bins = out.at(1);
        k.params = codegen::pack(q);
        k.args = {{n->outputs[0], 0}, {n->inputs[1], 0}, {n->inputs[2], 0}, {n->inputs[3], 0}, {n->inputs[4], 0}};
      });
    }

    case OpKind::kRandomUniform: case OpKind::kRandomNormal: case OpKind::kRandomUniformLike: case OpKind::kRandomNormalLike:
    case OpKind::kBernoulli: case OpKind::kMultinomial: {
      using codegen::RandomKind;
      RandomKind kind = node.op == OpKind::kBernoulli                                             ? RandomKind::kBernoulli
                        : node.op == OpKind::kMultinomial                                         ? RandomKind::kMultinomial
                        : node.op == OpKind::kRandomNormal || node.op == OpKind::kRandomNormalLike ? RandomKind::kNormal
                                                                                                   : RandomKind::kUniform;
      bool reads_input = kind == RandomKind::kBernoulli || kind == RandomKind::kMultinomial;
      codegen::RandomSpec spec{kind, dtype, reads_input ? plan.network.value(node.inputs[0]).dtype : DType::kFloat32, std::nullopt};
      int kernel = store.add(node.name, specializing_generator(spec, codegen::random_source));
      codegen::RandomParams base{};
      base.key = int64_t(ir::random_key(node));
      ir::RandomDistribution d = ir::random_distribution(node);
      base.a_bits = codegen::double_bits(d.a);
      base.b_bits = codegen::double_bits(d.b);
      return std::make_unique<SimpleOp>(node, store, kernel, [n, base, reads_input](const ShapeEnv& s, KernelLaunch& k) {
        codegen::RandomParams q = base;
        const auto& out = s.of(n->outputs[0]);
        q.n = ir::checked_numel(out);
        if (n->op == OpKind::kMultinomial) {
          q.classes = s.of(n->inputs[0]).at(1);
          q.samples = out.at(1);
        }
        k.params = codegen::pack(q);
        k.args = {{n->outputs[0], 0}};
        if (reads_input) k.args.push_back({n->inputs[0], 0});
      });
    }

    default:  // Shape and Size run only where the host knows their values (make_host_value_op)
      why = "no GPU kernel";
      return nullptr;
  }
  return nullptr;  // the dtype
}

GpuLowering describe_generator(OpKind op) {
  using K = GpuLowering::Kind;
  switch (op) {
    case OpKind::kShape: case OpKind::kSize:
      return {K::kKernel, "its values follow from the shapes: written by a constants kernel"};
    case OpKind::kConstantOfShape: return {K::kKernel, "fill kernel; any type"};
    case OpKind::kRange:
      return {K::kKernel, "fill kernel; any type but bool; a length that depends on data is read back by enqueue (which waits for it)"};
    case OpKind::kOneHot: return {K::kKernel, "fill kernel; any type, indices any but bool; a depth that depends on data is read back by enqueue"};
    case OpKind::kHannWindow: case OpKind::kHammingWindow: case OpKind::kBlackmanWindow:
      return {K::kKernel, "fill kernel, in double; any numeric type; a size that is data is read back by enqueue"};
    case OpKind::kMelWeightMatrix:
      return {K::kKernel, "a thread per weight, the triangles' edges in double; any numeric type; sizes that are data are read back by "
                          "enqueue; edges outside the spectrum's bins cut the triangles (an error on the CPU)"};
    case OpKind::kEyeLike: return {K::kKernel, "fill kernel; any type"};
    case OpKind::kRandomUniform: case OpKind::kRandomNormal: case OpKind::kRandomUniformLike: case OpKind::kRandomNormalLike:
      return {K::kKernel, "a thread per element, Philox-4x32-10 keyed by the seed: the reference's numbers bit for bit; floating types"};
    case OpKind::kBernoulli:
      return {K::kKernel, "a thread per element, Philox-4x32-10 keyed by the seed: the reference's numbers bit for bit; floating "
                          "probabilities, any output type"};
    case OpKind::kMultinomial:
      return {K::kKernel, "a thread per sample over its row of logits, Philox-4x32-10 keyed by the seed: the reference's classes; "
                          "floating logits"};
    default: return {};
  }
}

}  // namespace kiln::runtime
