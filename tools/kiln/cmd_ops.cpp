// kiln ops: every op kind of the IR, the ONNX ops that become it and where it
// runs, asked of each layer (front end, reference interpreter, GPU runtime).
// docs/ops.md holds its --markdown output; a test keeps the two equal.
#include <iomanip>
#include <iostream>

#include "cli.h"
#include "kiln/onnx.h"
#include "kiln/reference.h"
#include "kiln/runtime.h"

namespace kiln::cli {

namespace {

struct OpRow {
  std::string op, family;
  std::vector<std::string> onnx;
  bool reference = false;
  runtime::GpuLowering gpu;
};

std::vector<OpRow> op_rows() {
  std::vector<OpRow> rows;
  for (int i = 0; i < ir::op_count(); ++i) {
    auto op = ir::OpKind(i);
    rows.push_back({std::string(ir::op_name(op)), std::string(ir::family_name(ir::family_of(op))), onnx::onnx_op_types(op), reference::has_kernel(op), runtime::gpu_lowering(op)});
  }
  return rows;
}

std::string onnx_text(const OpRow& row) {
  if (row.onnx.empty()) return "(made by `kiln build`)";
  std::string text;
  for (const std::string& t : row.onnx) text += (text.empty() ? "" : ", ") + t;
  return text;
}

const char* gpu_word(runtime::GpuLowering::Kind kind) {
  switch (kind) {
    case runtime::GpuLowering::kKernel: return "yes";
    case runtime::GpuLowering::kByBuilder: return "via `kiln build`";
    case runtime::GpuLowering::kHost: return "on the host";
    case runtime::GpuLowering::kNone: return "no";
  }
  return "?";
}

const char* gpu_key(runtime::GpuLowering::Kind kind) {
  switch (kind) {
    case runtime::GpuLowering::kKernel: return "kernel";
    case runtime::GpuLowering::kByBuilder: return "builder";
    case runtime::GpuLowering::kHost: return "host";
    case runtime::GpuLowering::kNone: return "none";
  }
  return "?";
}

}  // namespace

int cmd_ops(const OpsOptions& options, Json& doc) {
  std::vector<OpRow> rows = op_rows();
  int kernels = 0, by_builder = 0, on_host = 0, none = 0;
  for (const OpRow& row : rows)
    (row.gpu.kind == runtime::GpuLowering::kKernel      ? kernels
     : row.gpu.kind == runtime::GpuLowering::kByBuilder ? by_builder
     : row.gpu.kind == runtime::GpuLowering::kHost      ? on_host
                                                        : none)++;
  std::string summary = str(rows.size(), " op kinds: ", kernels, " run on the GPU, ", by_builder, " after `kiln build` lowers them, ",
                            on_host, " on the host inside the GPU engine, ", none, " on the CPU device only.");
  if (options.markdown) {
    std::cout << summary << "\n\n| op | family | ONNX ops | CPU reference | GPU | notes |\n|---|---|---|---|---|---|\n";
    for (const OpRow& row : rows)
      std::cout << "| " << row.op << " | " << row.family << " | " << onnx_text(row) << " | " << (row.reference ? "yes" : "no") << " | "
                << gpu_word(row.gpu.kind) << " | " << row.gpu.detail << " |\n";
  } else {
    std::cout << std::left << std::setw(22) << "op" << std::setw(14) << "family" << std::setw(24) << "ONNX ops" << std::setw(5) << "CPU" << std::setw(18) << "GPU"
              << "notes\n";
    for (const OpRow& row : rows)
      std::cout << std::setw(22) << row.op << std::setw(14) << row.family << std::setw(24) << onnx_text(row) << std::setw(5) << (row.reference ? "yes" : "no")
                << std::setw(18) << gpu_word(row.gpu.kind) << row.gpu.detail << "\n";
    std::cout << summary << "\n";
  }
  Json ops = Json::array();
  for (const OpRow& row : rows)
    ops.push_back({{"op", row.op}, {"family", row.family}, {"onnx", row.onnx}, {"reference", row.reference}, {"gpu", gpu_key(row.gpu.kind)},
                   {"gpu_detail", row.gpu.detail}});
  doc["ops"] = ops;
  return kOk;
}

}  // namespace kiln::cli
