// The text family: ops on string tensors (StringConcat, StringSplit,
// StringNormalizer, RegexFullMatch) and TfIdfVectorizer, which counts n-grams
// of strings or integers.
#include "family.h"

namespace kiln::ir {

namespace {

void require_strings(const Ctx& c, size_t i) {
  if (!is_string(c.dtype(i)))
    c.error(ErrorCode::kTypeError, c.input_name(i), " has dtype ", dtype_name(c.dtype(i)), "; expected string");
}

void infer_string_concat(Ctx& c) {
  require_strings(c, 0);
  require_strings(c, 1);
  c.set(0, DType::kString, c.broadcast(c.shape(0), c.shape(1)));
}

// Output 0 appends a dim for the substrings, as many as the most any element
// splits into: data, so a fresh symbol unless the elements are known.
void infer_string_split(Ctx& c) {
  require_strings(c, 0);
  Shape parts = c.shape(0);
  parts.push_back(c.fresh());
  c.set(0, DType::kString, parts);
  c.set(1, DType::kInt64, c.shape(0));
}

// [C] or [1, C]; the stopwords removed leave a data-dependent count (at least
// one: an all-stopword input gives one empty string).
void infer_string_normalizer(Ctx& c) {
  require_strings(c, 0);
  const Shape& x = c.shape(0);
  if (x.size() == 2 && x[0] != Dim(1))
    c.error(ErrorCode::kShapeError, "input 0 has shape ", shape_to_string(x), "; expected [C] or [1, C]");
  c.require_rank(0, 1, 2);
  std::string action = c.attrs().get_string("case_change_action", "NONE");
  if (action != "NONE" && action != "LOWER" && action != "UPPER")
    c.error(ErrorCode::kInvalidModel, "case_change_action '", action, "' is not NONE, LOWER or UPPER");
  Shape out = x;
  out.back() = c.attrs().get_strings("stopwords").empty() ? dim_max(x.back(), Dim(1)) : c.fresh();
  c.set(0, DType::kString, out);
}

void infer_regex_full_match(Ctx& c) {
  require_strings(c, 0);
  if (!c.attrs().has("pattern")) c.error(ErrorCode::kInvalidModel, "attribute 'pattern' is required");
  c.set(0, DType::kBool, c.shape(0));
}

// [C] -> [V] or [N, C] -> [N, V], V the largest of ngram_indexes plus one.
void infer_tfidf(Ctx& c) {
  DType d = c.dtype(0);
  if (d != DType::kString && d != DType::kInt32 && d != DType::kInt64)
    c.error(ErrorCode::kTypeError, "input 0 has dtype ", dtype_name(d), "; expected string, int32 or int64");
  c.require_rank(0, 1, 2);
  std::string mode = c.attrs().get_string("mode", "");
  if (mode != "TF" && mode != "IDF" && mode != "TFIDF") c.error(ErrorCode::kInvalidModel, "mode '", mode, "' is not TF, IDF or TFIDF");
  int64_t min_gram = c.attrs().get_int("min_gram_length", 0), max_gram = c.attrs().get_int("max_gram_length", 0);
  if (min_gram < 1 || max_gram < min_gram)
    c.error(ErrorCode::kInvalidModel, "min_gram_length ", min_gram, " and max_gram_length ", max_gram, " are not 1 <= min <= max");
  if (c.attrs().get_int("max_skip_count", 0) < 0) c.error(ErrorCode::kInvalidModel, "max_skip_count is negative");
  std::vector<int64_t> counts = c.attrs().get_ints("ngram_counts"), indexes = c.attrs().get_ints("ngram_indexes");
  size_t pool = d == DType::kString ? c.attrs().get_strings("pool_strings").size() : c.attrs().get_ints("pool_int64s").size();
  if (int64_t(counts.size()) < max_gram)
    c.error(ErrorCode::kInvalidModel, "ngram_counts has ", counts.size(), " starts; max_gram_length ", max_gram, " needs one per length");
  for (size_t i = 0; i < counts.size(); ++i)
    if (counts[i] < 0 || uint64_t(counts[i]) > pool || (i > 0 && counts[i] < counts[i - 1]))
      c.error(ErrorCode::kInvalidModel, "ngram_counts ", counts[i], " at ", i, " is not an increasing start in the pool of ", pool);
  // Pool entries of length-n grams: the n-grams, whose count is the span over n.
  size_t grams = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    size_t end = i + 1 < counts.size() ? size_t(counts[i + 1]) : pool;
    if ((end - size_t(counts[i])) % (i + 1) != 0)
      c.error(ErrorCode::kInvalidModel, "the pool's ", i + 1, "-grams (", end - size_t(counts[i]), " entries) are not whole");
    grams += (end - size_t(counts[i])) / (i + 1);
  }
  if (indexes.size() != grams) c.error(ErrorCode::kInvalidModel, "ngram_indexes has ", indexes.size(), " entries for ", grams, " n-grams");
  int64_t width = 0;
  for (int64_t i : indexes) {
    if (i < 0 || i >= kMaxTensorElements) c.error(ErrorCode::kInvalidModel, "ngram_indexes holds ", i);
    width = std::max(width, i + 1);
  }
  // ONNX's reference (and ONNX Runtime) weigh output column j by weights[j].
  std::vector<double> weights = c.attrs().get_floats("weights");
  if (!weights.empty() && int64_t(weights.size()) < width)
    c.error(ErrorCode::kInvalidModel, "weights has ", weights.size(), " entries for ", width, " output columns");
  Shape out = c.shape(0);
  out.back() = Dim(width);
  c.set(0, DType::kFloat32, out);
}

}  // namespace

OpSchema text_schema(OpKind op) {
  using T = AttrType;
  switch (op) {
    case OpKind::kStringConcat: return {2, 2, 1, 1, {}};
    case OpKind::kStringSplit: return {1, 1, 1, 2, {{"delimiter", T::kString}, {"maxsplit", T::kInt}}};
    case OpKind::kStringNormalizer:
      return {1, 1, 1, 1,
              {{"case_change_action", T::kString}, {"is_case_sensitive", T::kInt}, {"locale", T::kString}, {"stopwords", T::kStrings}}};
    case OpKind::kRegexFullMatch: return {1, 1, 1, 1, {{"pattern", T::kString}}};
    case OpKind::kTfIdfVectorizer:
      return {1, 1, 1, 1,
              {{"max_gram_length", T::kInt}, {"max_skip_count", T::kInt}, {"min_gram_length", T::kInt}, {"mode", T::kString},
               {"ngram_counts", T::kInts}, {"ngram_indexes", T::kInts}, {"pool_int64s", T::kInts}, {"pool_strings", T::kStrings},
               {"weights", T::kFloats}}};
    default: return {0, 0, 0, 0, {}, false};
  }
}

void infer_text(Ctx& c) {
  switch (c.node().op) {
    case OpKind::kStringConcat: infer_string_concat(c); break;
    case OpKind::kStringSplit: infer_string_split(c); break;
    case OpKind::kStringNormalizer: infer_string_normalizer(c); break;
    case OpKind::kRegexFullMatch: infer_regex_full_match(c); break;
    case OpKind::kTfIdfVectorizer: infer_tfidf(c); break;
    default: no_inference(c);
  }
}

}  // namespace kiln::ir
