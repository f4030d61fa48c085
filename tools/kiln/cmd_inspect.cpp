// kiln inspect: what a model declares and what kiln makes of it.
#include <algorithm>
#include <iostream>
#include <map>
#include <set>

#include "cli.h"
#include "kiln/builder.h"
#include "kiln/file_io.h"
#include "kiln/onnx.h"
#include "kiln/plan.h"

namespace kiln::cli {

bool is_plan_file(const std::string& path) { return file_io::has_magic(path, "KILNPLAN"); }

namespace {

Json values_json(const ir::Network& net, const std::vector<ir::ValueId>& ids) {
  Json out = Json::array();
  for (ir::ValueId id : ids)
    out.push_back({{"name", net.value(id).name}, {"dtype", dtype_name(net.value(id).dtype)}, {"shape", shape_json(net.value(id).shape)}});
  return out;
}

// A declared ONNX shape as inspect prints it ("[N,3,224,224]", "?" for an
// unknown rank) -> [ "N", 3, 224, 224 ] or null.
Json declared_shape_json(const std::string& text) {
  if (text.size() < 2 || text.front() != '[' || text.back() != ']') return nullptr;
  Json dims = Json::array();
  std::string inner = text.substr(1, text.size() - 2);
  for (size_t at = 0; !inner.empty() && at <= inner.size();) {
    size_t comma = std::min(inner.find(',', at), inner.size());
    std::string dim = inner.substr(at, comma - at);
    if (!dim.empty() && dim.size() < 19 && dim.find_first_not_of("0123456789") == std::string::npos) dims.push_back(std::stoll(dim));
    else dims.push_back(dim);
    at = comma + 1;
  }
  return dims;
}

// `of` says which plan the numbers are about (empty: the one inspected).
void print_gpu_support(const GpuSupportReport& gpu, const std::string& of = "") {
  if (gpu.unsupported.empty()) {
    std::cout << "GPU support: all " << gpu.nodes << " nodes" << of << "\n";
  } else {
    std::cout << "GPU support: " << gpu.supported << " of " << gpu.nodes << " nodes" << of << "; the GPU runtime cannot run:\n";
    for (const std::string& line : gpu_support_lines(gpu.unsupported)) std::cout << "  " << line << "\n";
  }
  if (gpu.on_host.empty()) return;
  std::cout << "  on the host inside the GPU engine (its enqueue waits for them: no CUDA graph holds it):\n";
  for (const std::string& line : gpu_support_lines(gpu.on_host)) std::cout << "  " << line << "\n";
}

// The GPU runtime decides on lowered plans: an ONNX model is lowered as `kiln
// build` would, at fp32, in memory. Symbolic input dims without a range get
// 1..64 (ranges size the memory plan; they do not decide what runs where).
Json model_gpu_support(const ir::Network& net, const std::string& path) {
  builder::BuildOptions lowering;
  ir::DimRanges& ranges = lowering.profiles.emplace_back();
  for (ir::ValueId id : net.inputs())
    for (const ir::Dim& d : net.value(id).shape) {
      std::set<std::string> symbols;
      d.collect_symbols(symbols);
      for (const std::string& s : symbols)
        if (!net.dim_ranges().count(s)) ranges[s] = ir::DimRange{1, 1, 64};
    }
  std::string of = str(" of the plan `kiln build` makes at fp32", ranges.empty() ? "" : " (dims without a range as 1..64)");
  try {
    GpuSupportReport gpu = gpu_support_report(builder::build(net, lowering, path));
    print_gpu_support(gpu, of);
    return gpu_support_json(gpu);
  } catch (const Error& e) {
    std::cout << "GPU support: unknown: the model does not build: " << e.what() << "\n";
    return {{"error", {{"kind", error_code_name(e.code())}, {"message", e.what()}}}};
  }
}

// In an fp16/bf16 plan, the nodes that still write float32: where the builder
// kept an op in float32 (the casts at the network's edges aside).
std::vector<const ir::Node*> float32_nodes(const plan::Plan& p) {
  std::vector<const ir::Node*> out;
  if (p.precision == plan::Precision::kFloat32) return out;
  for (const ir::Node& node : p.network.nodes())
    if (node.op != ir::OpKind::kCast &&
        std::any_of(node.outputs.begin(), node.outputs.end(),
                    [&](ir::ValueId v) { return v != ir::kNoValue && p.network.value(v).dtype == DType::kFloat32; }))
      out.push_back(&node);
  return out;
}

int inspect_plan(const std::string& path, bool dump, Json& doc) {
  plan::Plan p = plan::load(path);
  const ir::Network& net = p.network;
  std::cout << "plan:       " << path << "\n";
  std::cout << "source:     " << (p.source.empty() ? "(unknown)" : p.source) << "\n";
  std::cout << "built by:   kiln " << p.kiln_version << ", plan format " << p.format_version << "\n";
  std::cout << "precision:  " << plan::precision_name(p.precision) << "\n";
  std::cout << "inputs:\n";
  for (ir::ValueId id : net.inputs())
    std::cout << "  " << net.value(id).name << ": " << dtype_name(net.value(id).dtype) << ir::shape_to_string(net.value(id).shape) << "\n";
  std::cout << "outputs:\n";
  for (ir::ValueId id : net.outputs())
    std::cout << "  " << net.value(id).name << ": " << dtype_name(net.value(id).dtype) << ir::shape_to_string(net.value(id).shape) << "\n";
  std::cout << "ranges:" << (p.profiles.size() > 1 ? "     (the union of the profiles)" : "") << "\n";
  for (auto& [s, r] : net.dim_ranges()) std::cout << "  " << s << ": min " << r.min << ", opt " << r.opt << ", max " << r.max << "\n";
  std::cout << "profiles:   " << p.profiles.size() << " (a context runs the shapes of the one it selects)\n";
  for (size_t k = 0; k < p.profiles.size(); ++k) {
    std::string ranges;  // "batch 1/4/8, seq 16/64/128"
    for (auto& [s, r] : p.profiles[k]) ranges += str(ranges.empty() ? "" : ", ", s, " ", r.min, "/", r.opt, "/", r.max);
    std::cout << "  " << k << ": " << (ranges.empty() ? "(no symbolic dims)" : ranges) << "\n";
  }
  std::map<std::string, int> kernels;
  int fused_ops = 0, fused_groups = 0;
  for (auto& node : net.nodes()) {
    kernels[std::string(ir::op_name(node.op))]++;
    if (node.op == ir::OpKind::kFusedElementwise) {
      ++fused_groups;
      fused_ops += int(node.attrs.get_strings("ops").size());
    }
  }
  std::cout << "kernels:    " << net.nodes().size() << "\n";
  for (auto& [op, n] : kernels) std::cout << "  " << op << " " << n << "\n";
  std::cout << "fused groups: " << fused_groups << " elementwise kernels holding " << fused_ops << " ops\n";
  std::vector<const ir::Node*> wide = float32_nodes(p);
  if (p.precision != plan::Precision::kFloat32) {
    std::cout << "float32:    ";
    if (wide.empty()) std::cout << "no node (every float op computes in " << plan::precision_name(p.precision) << ")\n";
    else std::cout << wide.size() << " node" << (wide.size() == 1 ? "" : "s") << " kept in float32 by the builder:\n";
    for (const ir::Node* node : wide) std::cout << "  " << node->name << " (" << ir::op_name(node->op) << ")\n";
  }
  std::cout << "arena:      " << p.arena_bytes << " bytes (largest shapes)\n";
  std::cout << "weights:    " << net.parameter_count() << " elements, " << net.parameter_bytes() << " bytes\n";
  GpuSupportReport gpu = gpu_support_report(p);
  print_gpu_support(gpu);
  if (dump) std::cout << "\n" << ir::dump_network(net);
  doc["kind"] = "plan";
  doc["path"] = path;
  doc["source"] = p.source;
  doc["kiln_version"] = p.kiln_version;
  doc["plan_format"] = p.format_version;
  doc["precision"] = plan::precision_name(p.precision);
  doc["inputs"] = values_json(net, net.inputs());
  doc["outputs"] = values_json(net, net.outputs());
  doc["ranges"] = ranges_json(net.dim_ranges());
  doc["profiles"] = Json::array();
  for (const ir::DimRanges& profile : p.profiles) doc["profiles"].push_back(ranges_json(profile));
  doc["kernels"] = net.nodes().size();
  doc["kernel_histogram"] = kernels;
  doc["fused_groups"] = fused_groups;
  doc["fused_ops"] = fused_ops;
  if (p.precision != plan::Precision::kFloat32) {
    doc["float32_nodes"] = Json::array();
    for (const ir::Node* node : wide) doc["float32_nodes"].push_back({{"node", node->name}, {"op", ir::op_name(node->op)}});
  }
  doc["arena_bytes"] = p.arena_bytes;
  doc["weight_elements"] = net.parameter_count();
  doc["weight_bytes"] = net.parameter_bytes();
  doc["gpu_support"] = gpu_support_json(gpu);
  return kOk;
}

}  // namespace

int cmd_inspect(const InspectOptions& options, Json& doc) {
  std::string path = model_path(options.model, "usage: kiln inspect MODEL.onnx|PLAN.kiln [--dump]");
  if (is_plan_file(path)) return inspect_plan(path, options.dump, doc);
  onnx::ModelSummary s = onnx::summarize_model(path);
  std::cout << "model:      " << path << "\n";
  std::cout << "graph:      " << (s.graph_name.empty() ? "(unnamed)" : s.graph_name) << "\n";
  std::cout << "producer:   " << (s.producer.empty() ? "(unknown)" : s.producer) << "\n";
  std::cout << "ir version: " << s.ir_version << ", opset " << s.opset << " (kiln supports "
            << onnx::min_supported_opset() << "-" << onnx::max_supported_opset() << ")\n";
  std::cout << "inputs:\n";
  for (auto& io : s.inputs) std::cout << "  " << io.name << ": " << io.dtype << io.shape << "\n";
  std::cout << "outputs:\n";
  for (auto& io : s.outputs) std::cout << "  " << io.name << ": " << io.dtype << io.shape << "\n";
  std::cout << "ops:\n";
  for (auto& [op, count] : s.op_histogram) std::cout << "  " << op << " " << count << "\n";
  std::cout << "unsupported ops: ";
  if (s.unsupported_ops.empty()) std::cout << "none\n";
  for (size_t i = 0; i < s.unsupported_ops.size(); ++i)
    std::cout << s.unsupported_ops[i] << (i + 1 < s.unsupported_ops.size() ? ", " : "\n");
  doc["kind"] = "model";
  doc["path"] = path;
  doc["graph"] = s.graph_name;
  doc["producer"] = s.producer;
  doc["ir_version"] = s.ir_version;
  doc["opset"] = s.opset;
  doc["supported_opsets"] = {onnx::min_supported_opset(), onnx::max_supported_opset()};
  for (const char* key : {"inputs", "outputs"}) {
    doc[key] = Json::array();
    for (auto& io : key == std::string("inputs") ? s.inputs : s.outputs)
      doc[key].push_back({{"name", io.name}, {"dtype", io.dtype}, {"shape", declared_shape_json(io.shape)}});
  }
  doc["ops"] = s.op_histogram;
  doc["unsupported_ops"] = s.unsupported_ops;

  ir::Network net;
  try {
    net = onnx::load_model(path);
  } catch (const Error& e) {
    std::cout << "status:     cannot load: " << e.what() << "\n";
    std::cerr << "kiln inspect: " << error_code_name(e.code()) << ": " << e.what() << "\n";
    doc["status"] = "cannot load";
    doc["error"] = {{"kind", error_code_name(e.code())}, {"message", e.what()}};
    return exit_code_for(e);
  }
  std::cout << "parameters: " << net.parameter_count() << " (" << net.parameter_bytes() << " bytes)\n";
  std::cout << "nodes:      " << net.nodes().size() << " after import\n";
  std::cout << "inferred outputs:\n";
  for (ir::ValueId id : net.outputs()) {
    const ir::Value& v = net.value(id);
    std::cout << "  " << v.name << ": " << dtype_name(v.dtype) << ir::shape_to_string(v.shape) << "\n";
  }
  if (!net.data_dependent_symbols().empty())
    std::cout << "note:       " << net.data_dependent_symbols().size() << " dims depend on input data\n";
  Json gpu = model_gpu_support(net, path);
  std::cout << "status:     ok\n";
  doc["parameters"] = net.parameter_count();
  doc["parameter_bytes"] = net.parameter_bytes();
  doc["nodes"] = net.nodes().size();
  doc["inferred_outputs"] = values_json(net, net.outputs());
  doc["data_dependent_dims"] = net.data_dependent_symbols().size();
  doc["gpu_support"] = gpu;
  doc["status"] = "ok";
  if (options.dump) std::cout << "\n" << ir::dump_network(net);
  return kOk;
}

}  // namespace kiln::cli
