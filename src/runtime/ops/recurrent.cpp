// The recurrent family on the GPU: RNN, GRU and LSTM. The input projections
// X W^T of every time step are one cuBLASLt product per direction into the
// node's float32 scratch (the output `kiln build` adds); a generated kernel
// sets the states, then each time step is one launch (two for a GRU with
// linear_before_reset 0) of a generated kernel that adds H R^T and fuses the
// gates (codegen/recurrent.cpp). The launches follow from the shapes alone, so
// an engine stays capturable in a CUDA graph, and nothing is allocated.
#include <algorithm>

#include "kiln/error.h"
#include "kiln/ir/recurrent.h"
#include "ops.h"

namespace kiln::runtime {

using ir::OpKind;

namespace {

enum Slot : size_t { kX = 0, kW, kR, kB, kSequenceLens, kInitialH, kInitialC, kP };

ir::ValueId input_or_none(const ir::Node& node, size_t i) { return i < node.inputs.size() ? node.inputs[i] : ir::kNoValue; }
ir::ValueId output_or_none(const ir::Node& node, size_t i) { return i < node.outputs.size() ? node.outputs[i] : ir::kNoValue; }

class RecurrentOp : public Op {
 public:
  RecurrentOp(const ir::Node& node, const KernelStore& store, ir::RecurrentSetup setup, DType dtype, int init, int step, int reset)
      : node_(node), store_(store), setup_(std::move(setup)), dtype_(dtype), init_(init), step_(step), reset_(reset) {
    // The kernels' arguments (codegen::recurrent_source): the outputs present, the scratch, R, the inputs present.
    for (size_t i = 0; i < ir::recurrent_outputs(node.op); ++i)
      if (output_or_none(node, i) != ir::kNoValue) args_.push_back({node.outputs[i], 0});
    args_.push_back({scratch(), 0});
    args_.push_back({node.inputs[kR], 0});
    for (size_t i : {kB, kSequenceLens, kInitialH, kInitialC, kP})
      if (input_or_none(node, i) != ir::kNoValue && (i < kInitialC || node.op == OpKind::kLSTM)) args_.push_back({node.inputs[i], 0});
  }

  void prepare(PrepareContext& ctx) const override {
    const auto &x = ctx.shapes.of(node_.inputs[kX]), &r = ctx.shapes.of(node_.inputs[kR]);
    const int64_t seq = setup_.batch_first ? x[1] : x[0], batch = setup_.batch_first ? x[0] : x[1], input = x[2], hidden = r[2];
    const int64_t dirs = setup_.directions, rows = setup_.gates * hidden;
    if (dirs * batch * hidden == 0) return;  // no state: every output is empty
    ir::RecurrentScratch<int64_t> layout = ir::recurrent_scratch<int64_t>(node_.op, setup_, seq, batch, hidden);
    if (seq > 0 && input > 0 && !ctx.dry)  // no device (cache warming): library calls are left out
      for (int64_t d = 0; d < dirs; ++d) {
        PtrRef w{node_.inputs[kW], d * rows * input * int64_t(dtype_size(dtype_))};
        PtrRef projections{scratch(), d * seq * batch * rows * int64_t(sizeof(float))};
        ctx.steps.push_back(make_float_product(ctx, node_, dtype_, {node_.inputs[kX], 0}, w, projections, seq * batch, rows, input));
      }
    codegen::RecurrentParams q{};
    q.seq = seq;
    q.batch = batch;
    q.hidden = hidden;
    q.projected = input > 0;
    q.h_offset = layout.h;
    q.c_offset = layout.c;
    q.rh_offset = layout.rh;
    q.n = dirs * batch * hidden;
    ctx.steps.push_back(launch(init_, q, grid_for(q.n, ctx.sm_count), true));
    // A warp per direction, hidden unit and group of batch rows, kBlock / 32 warps a block.
    q.n = dirs * hidden * ((batch + codegen::kRecurrentRows - 1) / codegen::kRecurrentRows);
    unsigned blocks = unsigned((q.n + codegen::kBlock / 32 - 1) / (codegen::kBlock / 32));
    for (int64_t s = 0; s < seq; ++s) {
      q.step = s;
      if (reset_ >= 0) ctx.steps.push_back(launch(reset_, q, blocks, false));
      ctx.steps.push_back(launch(step_, q, blocks, false));
    }
  }

 private:
  ir::ValueId scratch() const { return node_.outputs[ir::recurrent_outputs(node_.op)]; }

  // Step kernels take the step as a parameter: specializing them would compile one kernel per step.
  KernelLaunch launch(int kernel, const codegen::RecurrentParams& q, unsigned grid, bool specializable) const {
    KernelLaunch k{store_.kernel(kernel), grid, codegen::kBlock, args_, codegen::pack(q), &node_, kernel};
    k.specializable = specializable;
    return k;
  }

  const ir::Node& node_;
  const KernelStore& store_;
  ir::RecurrentSetup setup_;
  DType dtype_;
  int init_, step_, reset_;
  std::vector<PtrRef> args_;
};

}  // namespace

std::unique_ptr<Op> make_recurrent(const plan::Plan& plan, const ir::Node& node, KernelStore& store, std::string& why, int /*arch*/) {
  DType dtype = plan.network.value(node.inputs[kX]).dtype;
  if (dtype != DType::kFloat32 && dtype != DType::kFloat16 && dtype != DType::kBFloat16) return nullptr;
  if (output_or_none(node, ir::recurrent_outputs(node.op)) == ir::kNoValue) {
    why = str(ir::op_name(node.op), " without the scratch `kiln build` gives it; build the plan again with this kiln");
    return nullptr;
  }
  auto has_input = [&](size_t i) { return input_or_none(node, i) != ir::kNoValue; };
  auto has_output = [&](size_t i) { return output_or_none(node, i) != ir::kNoValue; };
  bool lstm = node.op == OpKind::kLSTM;
  codegen::RecurrentSpec spec;
  spec.op = node.op;
  spec.dtype = dtype;
  spec.setup = ir::recurrent_setup(node);
  spec.has_y = has_output(0);
  spec.has_y_h = has_output(1);
  spec.has_y_c = lstm && has_output(2);
  spec.has_bias = has_input(kB);
  spec.has_lens = has_input(kSequenceLens);
  spec.has_initial_h = has_input(kInitialH);
  spec.has_initial_c = lstm && has_input(kInitialC);
  spec.has_peephole = lstm && has_input(kP);
  auto add = [&](codegen::RecurrentKernel kernel, const char* suffix) {
    codegen::RecurrentSpec s = spec;
    s.kernel = kernel;
    return store.add(node.name + suffix, specializing_generator(s, codegen::recurrent_source));
  };
  int init = add(codegen::RecurrentKernel::kInit, "_init");
  int step = add(codegen::RecurrentKernel::kStep, "_step");
  bool two_phases = node.op == OpKind::kGRU && !spec.setup.linear_before_reset;
  int reset = two_phases ? add(codegen::RecurrentKernel::kGruReset, "_reset") : -1;
  return std::make_unique<RecurrentOp>(node, store, spec.setup, dtype, init, step, reset);
}

GpuLowering describe_recurrent(OpKind op) {
  using K = GpuLowering::Kind;
  std::string common = "the input projections by cuBLASLt, then a generated kernel per time step, gates fused, state in float32";
  std::string tail = "; fp32, fp16 or bf16; sequence_lens outside [0, seq] are clamped (an error on the CPU)";
  switch (op) {
    case OpKind::kRNN:
    case OpKind::kLSTM: return {K::kKernel, common + tail};
    case OpKind::kGRU: return {K::kKernel, common + " (two with linear_before_reset 0)" + tail};
    default: return {};
  }
}

}  // namespace kiln::runtime
