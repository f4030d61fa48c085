// The text family's kernel: TfIdfVectorizer over integer tokens. String
// tokens have no device form (they stay on the host).
#include <sstream>

#include "codegen.h"
#include "kiln/error.h"

namespace kiln::codegen {

std::string tfidf_source(const TfIdfSpec& spec) {
  if (spec.input != DType::kInt32 && spec.input != DType::kInt64)
    fail(ErrorCode::kUnsupported, "TfIdfVectorizer of ", dtype_name(spec.input), " tokens; the kernel takes int32 and int64");
  if (spec.min_gram < 1 || spec.max_gram < spec.min_gram || spec.max_skip < 0)
    fail(ErrorCode::kInvalidArgument, "TfIdfVectorizer: n-gram lengths ", spec.min_gram, " to ", spec.max_gram, ", skips up to ",
         spec.max_skip);
  // The pool by length: the grams of length n are entries [gram_begin[n], gram_begin[n + 1]) of the
  // columns, sorted, their tokens n apiece from item_begin[n].
  std::vector<int64_t> items, columns, gram_begin(size_t(spec.max_gram + 2), 0), item_begin(size_t(spec.max_gram + 2), 0);
  for (int64_t n = 1; n <= spec.max_gram; ++n) {
    gram_begin[size_t(n)] = int64_t(columns.size());
    item_begin[size_t(n)] = int64_t(items.size());
    for (const auto& [gram, column] : spec.grams) {
      if (int64_t(gram.size()) != n) continue;
      items.insert(items.end(), gram.begin(), gram.end());
      columns.push_back(column);
    }
  }
  gram_begin.back() = int64_t(columns.size());
  item_begin.back() = int64_t(items.size());
  auto array = [](std::ostringstream& s, const char* name, const std::vector<int64_t>& v) {
    s << "__device__ const long long " << name << "[" << std::max<size_t>(v.size(), 1) << "] = {";
    for (size_t i = 0; i < v.size(); ++i) s << (i ? "," : "") << (i % 16 == 0 ? "\n  " : "") << "(long long)" << uint64_t(v[i]) << "ULL";
    s << (v.empty() ? "0};\n" : "};\n");
  };
  std::vector<int64_t> weight_bits;
  for (double w : spec.weights) weight_bits.push_back(double_bits(w));

  std::string xt = c_type(spec.input);
  std::ostringstream s;
  s << prelude() << params_constants<TfIdfParams>(spec.specialize);
  array(s, "kiln_items", items);
  array(s, "kiln_columns", columns);
  array(s, "kiln_gram_begin", gram_begin);
  array(s, "kiln_item_begin", item_begin);
  array(s, "kiln_weights", weight_bits);
  // The column of the n-gram of `in` from `start`, its tokens `skip` apart; -1 when the pool lacks it.
  s << "__device__ long long kiln_column_of(const " << xt << "* in, long long start, long long skip, long long n) {\n";
  s << R"(  long long lo = kiln_gram_begin[n], hi = kiln_gram_begin[n + 1];
  while (lo < hi) {
    const long long mid = (lo + hi) >> 1;
    const long long* gram = kiln_items + kiln_item_begin[n] + (mid - kiln_gram_begin[n]) * n;
    int order = 0;
    for (long long k = 0; k < n && order == 0; ++k) {
      const long long a = gram[k], b = (long long)in[start + k * skip];
      order = a < b ? -1 : a > b ? 1 : 0;
    }
    if (order == 0) return kiln_columns[mid];
    if (order < 0) lo = mid + 1; else hi = mid;
  }
  return -1;
}
)";
  s << "extern \"C\" __global__ void __launch_bounds__(" << kBlock << ") " << kEntry << "(float* __restrict__ out, const " << xt
    << "* __restrict__ x, KParams p) {\n"
    << params_binding<TfIdfParams>(spec.specialize);
  s << "  const long long min_gram = " << spec.min_gram << "LL, max_gram = " << spec.max_gram << "LL, skips = " << spec.max_skip + 1
    << "LL;\n";
  s << R"(  for (long long row = blockIdx.x; row < prm.rows; row += gridDim.x) {
    float* o = out + row * prm.width;
    const )" << xt << R"(* in = x + row * prm.row_size;
    for (long long j = threadIdx.x; j < prm.width; j += blockDim.x) o[j] = 0.0f;
    __syncthreads();
    // As the reference: every skip counts the n-grams of min_gram and more,
    // but unigrams only once (with the first skip).
    for (long long item = threadIdx.x; item < prm.row_size * skips; item += blockDim.x) {
      const long long skip = item / prm.row_size + 1, start = item % prm.row_size;
      for (long long n = skip == 1 || min_gram > 1 ? min_gram : 2; n <= max_gram && start + (n - 1) * skip < prm.row_size; ++n) {
        const long long column = kiln_column_of(in, start, skip, n);
        if (column >= 0) atomicAdd(o + column, 1.0f);
      }
    }
    __syncthreads();
)";
  bool weighted = !spec.weights.empty();
  if (spec.mode == TfIdfSpec::kIDF)
    s << "    for (long long j = threadIdx.x; j < prm.width; j += blockDim.x) o[j] = o[j] > 0.0f ? "
      << (weighted ? "(float)__longlong_as_double(kiln_weights[j])" : "1.0f") << " : 0.0f;\n";
  else if (spec.mode == TfIdfSpec::kTFIDF && weighted)
    s << "    for (long long j = threadIdx.x; j < prm.width; j += blockDim.x) o[j] = (float)((double)o[j] * "
         "__longlong_as_double(kiln_weights[j]));\n";
  s << "    __syncthreads();\n  }\n}\n";
  return s.str();
}

}  // namespace kiln::codegen
