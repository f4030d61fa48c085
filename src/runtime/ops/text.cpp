// The text family on the GPU: TfIdfVectorizer over integer tokens, a
// generated kernel with the node's n-gram pool compiled in
// (codegen/text.cpp). String tensors live in host memory (a kString
// TensorData holds std::strings, which have no device form): make_op runs
// every node on them, the string ops included, as a host step of the GPU
// engine (ops/families.cpp).
#include <algorithm>

#include "kiln/error.h"
#include "ops.h"

namespace kiln::runtime {

using ir::OpKind;

namespace {

// The pool n-grams of the lengths the node counts, each with its output column:
// the reference's table (a gram the pool holds twice takes its last entry's column).
codegen::TfIdfSpec tfidf_spec(DType input, const ir::Attributes& a) {
  codegen::TfIdfSpec spec;
  spec.input = input;
  spec.min_gram = a.get_int("min_gram_length", 1), spec.max_gram = a.get_int("max_gram_length", 1);
  spec.max_skip = a.get_int("max_skip_count", 0);
  std::string mode = a.get_string("mode", "TF");
  spec.mode = mode == "IDF" ? codegen::TfIdfSpec::kIDF : mode == "TFIDF" ? codegen::TfIdfSpec::kTFIDF : codegen::TfIdfSpec::kTF;
  spec.weights = a.get_floats("weights");
  std::vector<int64_t> counts = a.get_ints("ngram_counts"), indexes = a.get_ints("ngram_indexes"), pool = a.get_ints("pool_int64s");
  size_t gram_index = 0;
  for (size_t i = 0; i < counts.size(); ++i) {  // shape inference checked the starts, the lengths and the indexes
    size_t length = i + 1, end = i + 1 < counts.size() ? size_t(counts[i + 1]) : pool.size();
    for (size_t at = size_t(counts[i]); at + length <= end; at += length, ++gram_index)
      if (int64_t(length) >= spec.min_gram && int64_t(length) <= spec.max_gram)
        spec.grams[std::vector<int64_t>(pool.begin() + std::ptrdiff_t(at), pool.begin() + std::ptrdiff_t(at + length))] = indexes[gram_index];
  }
  return spec;
}

}  // namespace

std::unique_ptr<Op> make_text(const plan::Plan& plan, const ir::Node& node, KernelStore& store, std::string& why, int /*arch*/) {
  if (node.op != OpKind::kTfIdfVectorizer) {
    why = describe_text(node.op).detail;
    return nullptr;
  }
  DType input = plan.network.value(node.inputs[0]).dtype;
  if ((input != DType::kInt32 && input != DType::kInt64) || output_dtype(plan, node) != DType::kFloat32) return nullptr;
  const ir::Node* n = &node;
  int kernel = store.add(node.name, specializing_generator(tfidf_spec(input, node.attrs), codegen::tfidf_source));
  return std::make_unique<SimpleOp>(node, store, kernel, [n](const ShapeEnv& s, KernelLaunch& k) {
    const auto &x = s.of(n->inputs[0]), &out = s.of(n->outputs[0]);
    int64_t rows = x.size() == 2 ? x[0] : 1;
    k.params = codegen::pack(codegen::TfIdfParams{rows, x.back(), out.back()});
    k.grid = unsigned(std::min<int64_t>(rows, 65535));  // a block a row (the kernel strides over more)
    k.args = {{n->outputs[0], 0}, {n->inputs[0], 0}};
  });
}

GpuLowering describe_text(OpKind op) {
  using K = GpuLowering::Kind;
  switch (op) {
    case OpKind::kStringConcat:
    case OpKind::kStringSplit:
    case OpKind::kStringNormalizer:
    case OpKind::kRegexFullMatch:
      return {K::kHost, "runs on the host inside the GPU engine: string tensors live in host memory (the reference kernel runs between the launches)"};
    case OpKind::kTfIdfVectorizer:
      return {K::kKernel, "a block per row: the n-grams of its tokens looked up in the pool compiled into the kernel (a binary "
                          "search per length), counted by float atomics, then weighed; int32 and int64 tokens (string ones run "
                          "on the host inside the GPU engine)"};
    default: return {};
  }
}

}  // namespace kiln::runtime
