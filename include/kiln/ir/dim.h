// A tensor dimension: a constant or a symbolic expression over named symbols
// ("batch", "seq") with + - * and integer division, so shape inference runs
// once on a symbolic network and evaluates cheaply for any concrete binding.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "kiln/export.h"

KILN_API_BEGIN
namespace kiln {
class ByteWriter;
class ByteReader;
}  // namespace kiln

namespace kiln::ir {

struct DimPoly;
using SymbolBindings = std::map<std::string, int64_t, std::less<>>;

class Dim {
 public:
  Dim() = default;
  Dim(int64_t value) : value_(value) {}  // NOLINT: constants convert implicitly
  static Dim symbol(const std::string& name);

  bool is_constant() const { return !poly_; }
  // The size of its expression: 1 for a constant, else terms plus atoms,
  // nested expressions counted in full (kept under kMaxDimSize).
  int64_t complexity() const;
  int64_t constant() const;  // throws kShapeError when symbolic
  std::string to_string() const;
  // The value for a binding of every symbol; nullopt when a symbol is unbound.
  std::optional<int64_t> evaluate(const SymbolBindings& bindings) const;
  void collect_symbols(std::set<std::string>& out) const;
  bool operator==(const Dim& other) const;
  bool operator!=(const Dim& other) const { return !(*this == other); }

  friend Dim operator+(const Dim& a, const Dim& b);
  friend Dim operator-(const Dim& a, const Dim& b);
  friend Dim operator*(const Dim& a, const Dim& b);
  friend Dim floor_div(const Dim& a, const Dim& b);
  friend Dim ceil_div(const Dim& a, const Dim& b);
  friend Dim dim_max(const Dim& a, const Dim& b);
  friend Dim dim_min(const Dim& a, const Dim& b);
  friend Dim floor_mod(const Dim& a, const Dim& b);
  // A value the dim is at least for every binding of its symbols, which are
  // sizes and so never negative; nullopt when no bound follows (a term with a
  // negative coefficient). Lets shape inference decide comparisons such as
  // "a size equals -1" that exporters write around Expand and Reshape.
  friend std::optional<int64_t> dim_lower_bound(const Dim& d);
  friend struct DimPolyAccess;

 private:
  friend struct DimPoly;
  explicit Dim(std::shared_ptr<const DimPoly> poly) : poly_(std::move(poly)) {}
  int64_t value_ = 0;
  std::shared_ptr<const DimPoly> poly_;  // null for constants
};

using Shape = std::vector<Dim>;

std::string shape_to_string(const Shape& shape);  // "[N,3,224,224]"
bool shape_is_constant(const Shape& shape);
std::vector<int64_t> shape_constants(const Shape& shape);  // throws when symbolic
Shape shape_of(const std::vector<int64_t>& dims);
// Every dim's value for a binding; nullopt when a symbol is unbound.
std::optional<std::vector<int64_t>> evaluate_dims(const std::vector<Dim>& dims, const SymbolBindings& bindings);
// Product of dims; throws kShapeError on overflow.
Dim shape_numel(const Shape& shape);
int64_t checked_numel(const std::vector<int64_t>& dims);
// Row-major strides (in elements) of a dense tensor with these dims.
std::vector<int64_t> strides_of(const std::vector<int64_t>& dims);
// v reordered as Transpose with `perm` reorders dims: out[i] = v[perm[i]].
template <class T>
std::vector<T> permuted(const std::vector<T>& v, const std::vector<int64_t>& perm) {
  std::vector<T> out;
  for (int64_t p : perm) out.push_back(v[size_t(p)]);
  return out;
}

}  // namespace kiln::ir

namespace kiln::ir {
// Binary form of a Dim for plan files; reading rebuilds it through the public
// arithmetic, so a corrupt file can only make a wrong-but-valid Dim or throw.
void write_dim(ByteWriter& out, const Dim& dim);
Dim read_dim(ByteReader& in);
}  // namespace kiln::ir
KILN_API_END
