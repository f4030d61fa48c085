// The text family: StringConcat, StringSplit, StringNormalizer and
// RegexFullMatch on string tensors, and TfIdfVectorizer's n-gram counts.
// Strings are UTF-8 bytes; case changes and whitespace are ASCII's (a
// non-ASCII letter keeps its case, a non-ASCII space does not split).
#include <map>
#include <regex>

#include "kernels.h"

namespace kiln::reference {

using ir::OpKind;

namespace {

Tensor run_string_concat(const KernelContext& c) {
  std::vector<int64_t> dims = c.out_dims(0);
  const Tensor &a = c.in(0), &b = c.in(1);
  auto sa = broadcast_strides(a.dims, dims), sb = broadcast_strides(b.dims, dims);
  std::vector<std::string> out;
  for_each_index(dims, [&](const std::vector<int64_t>& idx) {
    int64_t oa = 0, ob = 0;
    for (size_t d = 0; d < idx.size(); ++d) {
      oa += idx[d] * sa[d];
      ob += idx[d] * sb[d];
    }
    out.push_back(a.strings[size_t(oa)] + b.strings[size_t(ob)]);
  });
  return make_string_tensor(std::move(dims), std::move(out));
}

// Python's str.isspace on ASCII: the separators str.split() splits on.
bool is_space(char ch) { return ch == ' ' || (ch >= '\t' && ch <= '\r') || (ch >= '\x1c' && ch <= '\x1f'); }

// Python's s.split(delimiter, maxsplit) (maxsplit < 0: no limit), and
// s.split(None, maxsplit) for an empty delimiter: runs of whitespace, none at the ends.
std::vector<std::string> split(const std::string& s, const std::string& delimiter, int64_t maxsplit) {
  std::vector<std::string> parts;
  if (!delimiter.empty()) {
    size_t at = 0;
    while (maxsplit < 0 || int64_t(parts.size()) < maxsplit) {
      size_t found = s.find(delimiter, at);
      if (found == std::string::npos) break;
      parts.push_back(s.substr(at, found - at));
      at = found + delimiter.size();
    }
    parts.push_back(s.substr(at));
    return parts;
  }
  size_t at = 0;
  while (true) {
    while (at < s.size() && is_space(s[at])) ++at;
    if (at == s.size()) break;
    if (maxsplit >= 0 && int64_t(parts.size()) == maxsplit) {  // the rest, its trailing whitespace kept
      parts.push_back(s.substr(at));
      break;
    }
    size_t end = at;
    while (end < s.size() && !is_space(s[end])) ++end;
    parts.push_back(s.substr(at, end - at));
    at = end;
  }
  return parts;
}

Outputs run_string_split(const KernelContext& c) {
  const Tensor& x = c.in(0);
  std::string delimiter = c.attrs().get_string("delimiter", "");
  int64_t maxsplit = c.attrs().get_int("maxsplit", -1);
  std::vector<std::vector<std::string>> parts;
  size_t widest = 0;
  for (const std::string& s : x.strings) {
    parts.push_back(split(s, delimiter, maxsplit));
    widest = std::max(widest, parts.back().size());
  }
  std::vector<int64_t> dims = x.dims, lengths;
  dims.push_back(int64_t(widest));
  ir::checked_element_count(dims, str(c.where(), ": the substrings"));
  std::vector<std::string> out;
  for (auto& p : parts) {
    lengths.push_back(int64_t(p.size()));
    p.resize(widest);
    for (auto& s : p) out.push_back(std::move(s));
  }
  return {make_string_tensor(std::move(dims), std::move(out)), from_ints(DType::kInt64, x.dims, lengths)};
}

std::string ascii_case(std::string s, bool upper) {
  for (char& ch : s)
    if (static_cast<unsigned char>(ch) < 0x80) ch = char(upper ? std::toupper(ch) : std::tolower(ch));
  return s;
}

// Stopwords are removed first (compared as they are, or ASCII-lowercased when
// not case-sensitive), then the case changes; an input left empty gives one
// empty string, as ONNX says.
Tensor run_string_normalizer(const KernelContext& c) {
  const Tensor& x = c.in(0);
  std::string action = c.attrs().get_string("case_change_action", "NONE");
  bool case_sensitive = c.attrs().get_int("is_case_sensitive", 0) != 0;
  std::vector<std::string> stopwords = c.attrs().get_strings("stopwords");
  if (!case_sensitive)
    for (auto& w : stopwords) w = ascii_case(w, false);
  std::vector<std::string> out;
  for (const std::string& s : x.strings) {
    std::string key = case_sensitive ? s : ascii_case(s, false);
    if (std::find(stopwords.begin(), stopwords.end(), key) != stopwords.end()) continue;
    out.push_back(action == "NONE" ? s : ascii_case(s, action == "UPPER"));
  }
  if (out.empty()) out.emplace_back();
  std::vector<int64_t> dims = x.dims;
  dims.back() = int64_t(out.size());
  return make_string_tensor(std::move(dims), std::move(out));
}

// ONNX specifies RE2's syntax; this runs std::regex (ECMAScript), which
// shares the common part (classes, \w \d \s \b, groups, alternation,
// repetition, anchors). RE2's own forms ((?P<name>), \pL, (?i)) do not
// compile here and are refused; ECMAScript's backreferences and lookaheads
// are accepted though RE2 refuses them. std::regex backtracks (RE2 does not),
// so a string longer than kMaxRegexInput is refused rather than risking the
// stack on a long input.
constexpr size_t kMaxRegexInput = 16384;

Tensor run_regex_full_match(const KernelContext& c) {
  const Tensor& x = c.in(0);
  std::string pattern = c.attrs().get_string("pattern", "");
  std::regex re;
  try {
    re = std::regex(pattern, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    c.error(ErrorCode::kUnsupported, "pattern '", pattern, "' does not compile as a regular expression here (", e.what(),
            "); RE2-only syntax such as (?P<name>...), \\pL or (?i) is not supported");
  }
  std::vector<int64_t> matched;
  for (size_t i = 0; i < x.strings.size(); ++i) {
    if (x.strings[i].size() > kMaxRegexInput)
      c.error(ErrorCode::kUnsupported, "element ", i, " has ", x.strings[i].size(), " bytes; RegexFullMatch takes at most ",
              kMaxRegexInput);
    try {
      matched.push_back(std::regex_match(x.strings[i], re));
    } catch (const std::regex_error& e) {
      c.error(ErrorCode::kUnsupported, "matching element ", i, " against '", pattern, "' failed: ", e.what());
    }
  }
  return from_ints(DType::kBool, x.dims, matched);
}

// An n-gram of strings or of integers, as ONNX's TfIdfVectorizer matches them.
using Gram = std::vector<std::string>;

std::vector<std::string> tokens_of(const Tensor& x) {
  if (is_string(x.dtype)) return x.strings;
  std::vector<std::string> tokens;
  for (int64_t v : to_ints(x)) tokens.push_back(std::to_string(v));
  return tokens;
}

// Counts, per row, each pool n-gram of a length in [min_gram_length,
// max_gram_length] found with its items `skip` apart for every skip from 1 to
// max_skip_count + 1; unigrams are counted once, not once per skip (ONNX's
// reference). Then TF keeps the counts, IDF gives weights[j] (or 1) where a
// count is positive, TFIDF weights[j] times the count (or the count).
Tensor run_tfidf(const KernelContext& c) {
  const Tensor& x = c.in(0);
  const ir::Attributes& a = c.attrs();
  int64_t min_gram = a.get_int("min_gram_length", 1), max_gram = a.get_int("max_gram_length", 1);
  int64_t max_skip = a.get_int("max_skip_count", 0);
  std::vector<int64_t> counts = a.get_ints("ngram_counts"), indexes = a.get_ints("ngram_indexes");
  std::vector<std::string> pool;
  if (is_string(x.dtype)) pool = a.get_strings("pool_strings");
  else
    for (int64_t v : a.get_ints("pool_int64s")) pool.push_back(std::to_string(v));
  std::map<Gram, int64_t> column;  // a pool n-gram -> its output column
  size_t gram_index = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    size_t length = i + 1, end = i + 1 < counts.size() ? size_t(counts[i + 1]) : pool.size();
    for (size_t at = size_t(counts[i]); at + length <= end; at += length, ++gram_index)
      if (int64_t(length) >= min_gram && int64_t(length) <= max_gram)
        column[Gram(pool.begin() + std::ptrdiff_t(at), pool.begin() + std::ptrdiff_t(at + length))] = indexes[gram_index];
  }
  std::vector<int64_t> dims = c.out_dims(0);
  int64_t width = dims.back(), rows = dims.size() == 2 ? dims[0] : 1, row_size = x.dims.back();
  std::vector<std::string> tokens = tokens_of(x);
  std::vector<double> freq(size_t(rows * width), 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    const std::string* row = tokens.data() + r * row_size;
    int64_t start_size = min_gram;
    for (int64_t skip = 1; skip <= max_skip + 1; ++skip) {
      for (int64_t start = 0; start < row_size; ++start) {
        Gram gram;
        for (int64_t n = 1, at = start; n <= max_gram && at < row_size; ++n, at += skip) {
          gram.push_back(row[at]);
          if (n < start_size) continue;
          auto hit = column.find(gram);
          if (hit != column.end()) freq[size_t(r * width + hit->second)] += 1;
        }
      }
      if (start_size == 1 && ++start_size > max_gram) break;
    }
  }
  std::string mode = a.get_string("mode", "TF");
  std::vector<double> weights = a.get_floats("weights");
  for (size_t i = 0; i < freq.size(); ++i) {
    size_t j = i % size_t(width);
    if (mode == "IDF") freq[i] = freq[i] > 0 ? (weights.empty() ? 1.0 : weights[j]) : 0.0;
    else if (mode == "TFIDF" && !weights.empty()) freq[i] *= weights[j];
  }
  return from_doubles(DType::kFloat32, std::move(dims), freq);
}

}  // namespace

Kernel text_kernel(OpKind op) {
  switch (op) {
    case OpKind::kStringConcat: return one_output<run_string_concat>;
    case OpKind::kStringSplit: return run_string_split;
    case OpKind::kStringNormalizer: return one_output<run_string_normalizer>;
    case OpKind::kRegexFullMatch: return one_output<run_regex_full_match>;
    case OpKind::kTfIdfVectorizer: return one_output<run_tfidf>;
    default: return nullptr;
  }
}

}  // namespace kiln::reference
