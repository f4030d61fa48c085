#include "kiln/ir/dim.h"

#include <algorithm>
#include <iterator>
#include <sstream>

#include "kiln/bytes.h"
#include "kiln/error.h"
#include "kiln/ir/limits.h"

namespace kiln::ir {

namespace {
int64_t checked_add(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) fail(ErrorCode::kShapeError, "dimension arithmetic overflows: ", a, " + ", b);
  return r;
}
int64_t checked_mul(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r)) fail(ErrorCode::kShapeError, "dimension arithmetic overflows: ", a, " * ", b);
  return r;
}
int64_t floor_div_int(int64_t a, int64_t b) {
  if (b == 0) fail(ErrorCode::kShapeError, "dimension arithmetic divides by zero");
  if (a == INT64_MIN && b == -1) fail(ErrorCode::kShapeError, "dimension arithmetic overflows: ", a, " / ", b);
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}
// a - floor(a / b) * b without the product, which can overflow near INT64_MIN.
int64_t floor_mod_int(int64_t a, int64_t b) {
  if (b == 0) fail(ErrorCode::kShapeError, "dimension arithmetic divides by zero");
  if (b == -1) return 0;
  int64_t r = a % b;
  return r != 0 && (r < 0) != (b < 0) ? r + b : r;
}
}  // namespace

// An opaque sub-expression that polynomials treat as a variable: a symbol, or
// an operation that does not distribute (floor division, max, min, mod).
struct DimAtom {
  enum class Op { kSymbol, kFloorDiv, kMax, kMin, kMod } op;
  std::string key;  // canonical text; equal keys mean equal atoms
  Dim lhs, rhs;
  int64_t size = 1;  // 1 for a symbol, else 1 + the operands' sizes

  std::optional<int64_t> evaluate(const SymbolBindings& bindings) const {
    if (op == Op::kSymbol) {
      auto it = bindings.find(key);
      if (it == bindings.end()) return std::nullopt;
      return it->second;
    }
    auto a = lhs.evaluate(bindings), b = rhs.evaluate(bindings);
    if (!a || !b) return std::nullopt;
    switch (op) {
      case Op::kFloorDiv: return floor_div_int(*a, *b);
      case Op::kMax: return std::max(*a, *b);
      case Op::kMin: return std::min(*a, *b);
      case Op::kMod: return floor_mod_int(*a, *b);
      case Op::kSymbol: break;
    }
    return std::nullopt;
  }
};

// Sum of terms; each term is a coefficient times a sorted product of atoms
// (the empty product is the constant term). Canonical, so == is structural.
struct DimPoly {
  std::map<std::vector<std::string>, int64_t> terms;
  std::map<std::string, std::shared_ptr<const DimAtom>> atoms;
  int64_t size = 0;  // terms plus the sizes of the atoms they use (see Dim::complexity)

  static DimPoly of(const Dim& d) {
    if (d.poly_) return *d.poly_;
    DimPoly p;
    if (d.value_ != 0) p.terms[{}] = d.value_;
    return p;
  }
  static Dim of_atom(std::shared_ptr<const DimAtom> atom) {
    DimPoly p;
    p.terms[{atom->key}] = 1;
    p.atoms[atom->key] = std::move(atom);
    return p.to_dim();
  }
  // Drops zero terms and the atoms no term uses any more, and refuses
  // expressions past kMaxDimSize: nested max/min/div keys grow with their
  // operands, so a few model nodes could otherwise build gigabytes.
  Dim to_dim() && {
    for (auto it = terms.begin(); it != terms.end();) it = it->second == 0 ? terms.erase(it) : std::next(it);
    if (terms.empty()) return Dim(0);
    if (terms.size() == 1 && terms.begin()->first.empty()) return Dim(terms.begin()->second);
    std::set<std::string_view> used;
    for (auto& [names, coeff] : terms) used.insert(names.begin(), names.end());
    for (auto it = atoms.begin(); it != atoms.end();) it = used.count(it->first) ? std::next(it) : atoms.erase(it);
    size = int64_t(terms.size());
    for (auto& [key, atom] : atoms) size += atom->size;
    if (size > kMaxDimSize)
      fail(ErrorCode::kUnsupported, "a symbolic dimension grows to ", size, " terms and atoms, more than the limit of ",
           kMaxDimSize);
    return Dim(std::make_shared<const DimPoly>(std::move(*this)));
  }
  Dim to_dim() const& { return DimPoly(*this).to_dim(); }
  void absorb_atoms(const DimPoly& other) { atoms.insert(other.atoms.begin(), other.atoms.end()); }
};

// Read access to a Dim's polynomial for serialization (null for constants).
struct DimPolyAccess {
  static const DimPoly* of(const Dim& d) { return d.poly_.get(); }
};

Dim Dim::symbol(const std::string& name) {
  auto atom = std::make_shared<DimAtom>();
  atom->op = DimAtom::Op::kSymbol;
  atom->key = name;
  return DimPoly::of_atom(std::move(atom));
}

int64_t Dim::complexity() const { return poly_ ? poly_->size : 1; }

int64_t Dim::constant() const {
  if (poly_) fail(ErrorCode::kShapeError, "dimension ", to_string(), " is symbolic where a constant is needed");
  return value_;
}

std::string Dim::to_string() const {
  if (!poly_) return std::to_string(value_);
  std::string out;
  // Highest-degree terms first reads naturally: "2*N*S + N + 3".
  std::vector<std::pair<std::vector<std::string>, int64_t>> terms(poly_->terms.begin(), poly_->terms.end());
  std::stable_sort(terms.begin(), terms.end(), [](auto& a, auto& b) { return a.first.size() > b.first.size(); });
  for (auto& [atoms, coeff] : terms) {
    // The magnitude as unsigned: -INT64_MIN does not fit an int64_t.
    uint64_t c = coeff < 0 ? 0 - uint64_t(coeff) : uint64_t(coeff);
    if (!out.empty()) out += coeff < 0 ? " - " : " + ";
    else if (coeff < 0) out += "-";
    std::string product;
    for (auto& a : atoms) product += (product.empty() ? "" : "*") + a;
    if (atoms.empty()) out += std::to_string(c);
    else if (c == 1) out += product;
    else out += std::to_string(c) + "*" + product;
  }
  return out;
}

std::optional<int64_t> Dim::evaluate(const SymbolBindings& bindings) const {
  if (!poly_) return value_;
  int64_t total = 0;
  for (auto& [atoms, coeff] : poly_->terms) {
    int64_t term = coeff;
    for (auto& key : atoms) {
      auto v = poly_->atoms.at(key)->evaluate(bindings);
      if (!v) return std::nullopt;
      term = checked_mul(term, *v);
    }
    total = checked_add(total, term);
  }
  return total;
}

void Dim::collect_symbols(std::set<std::string>& out) const {
  if (!poly_) return;
  for (auto& [key, atom] : poly_->atoms) {
    if (atom->op == DimAtom::Op::kSymbol) out.insert(key);
    else {
      atom->lhs.collect_symbols(out);
      atom->rhs.collect_symbols(out);
    }
  }
}

bool Dim::operator==(const Dim& other) const {
  if (!poly_ || !other.poly_) return !poly_ && !other.poly_ && value_ == other.value_;
  return poly_->terms == other.poly_->terms;
}

Dim operator+(const Dim& a, const Dim& b) {
  if (!a.poly_ && !b.poly_) return Dim(checked_add(a.value_, b.value_));
  DimPoly p = DimPoly::of(a), q = DimPoly::of(b);
  for (auto& [atoms, coeff] : q.terms) p.terms[atoms] = checked_add(p.terms[atoms], coeff);
  p.absorb_atoms(q);
  return std::move(p).to_dim();
}

Dim operator-(const Dim& a, const Dim& b) { return a + Dim(-1) * b; }

Dim operator*(const Dim& a, const Dim& b) {
  if (!a.poly_ && !b.poly_) return Dim(checked_mul(a.value_, b.value_));
  DimPoly p = DimPoly::of(a), q = DimPoly::of(b), r;
  // Expanding a product of sums: refuse before the work, not after.
  if (int64_t(p.terms.size()) * int64_t(q.terms.size()) > kMaxDimSize)
    fail(ErrorCode::kUnsupported, "multiplying symbolic dimensions of ", p.terms.size(), " and ", q.terms.size(),
         " terms passes the limit of ", kMaxDimSize, " terms");
  for (auto& [x, cx] : p.terms)
    for (auto& [y, cy] : q.terms) {
      std::vector<std::string> atoms = x;
      atoms.insert(atoms.end(), y.begin(), y.end());
      std::sort(atoms.begin(), atoms.end());
      r.terms[atoms] = checked_add(r.terms[atoms], checked_mul(cx, cy));
    }
  r.absorb_atoms(p);
  r.absorb_atoms(q);
  return std::move(r).to_dim();
}

namespace {
Dim make_atom(DimAtom::Op op, const char* name, const Dim& a, const Dim& b) {
  auto atom = std::make_shared<DimAtom>();
  atom->op = op;
  atom->key = std::string(name) + "(" + a.to_string() + ", " + b.to_string() + ")";
  atom->lhs = a;
  atom->rhs = b;
  atom->size = 1 + a.complexity() + b.complexity();
  if (atom->size > kMaxDimSize)
    fail(ErrorCode::kUnsupported, "a symbolic dimension grows to ", atom->size, " terms and atoms, more than the limit of ",
         kMaxDimSize);
  return DimPoly::of_atom(std::move(atom));
}
}  // namespace

Dim floor_div(const Dim& a, const Dim& b) {
  if (a.is_constant() && b.is_constant()) return Dim(floor_div_int(a.value_, b.value_));
  if (b == Dim(1)) return a;
  if (b.is_constant() && b.value_ > 0) {  // exact when every coefficient divides
    DimPoly p = DimPoly::of(a);
    bool exact = std::all_of(p.terms.begin(), p.terms.end(), [&](auto& t) { return t.second % b.value_ == 0; });
    if (exact) {
      for (auto& t : p.terms) t.second /= b.value_;
      return std::move(p).to_dim();
    }
  }
  if (a == b) return Dim(1);
  if (!b.is_constant() && b.poly_->terms.size() == 1) {  // exact division by a monomial: N*S*512 / (N*512)
    const auto& [divisor_atoms, divisor_coeff] = *b.poly_->terms.begin();
    DimPoly p = DimPoly::of(a), q;
    bool exact = divisor_coeff > 0;
    for (auto& [atoms, coeff] : p.terms) {
      if (!exact) break;
      std::vector<std::string> rest;
      exact = coeff % divisor_coeff == 0 && std::includes(atoms.begin(), atoms.end(), divisor_atoms.begin(), divisor_atoms.end());
      std::set_difference(atoms.begin(), atoms.end(), divisor_atoms.begin(), divisor_atoms.end(), std::back_inserter(rest));
      if (exact) q.terms[rest] = coeff / divisor_coeff;
    }
    if (exact) {
      q.absorb_atoms(p);
      return std::move(q).to_dim();
    }
  }
  return make_atom(DimAtom::Op::kFloorDiv, "floor_div", a, b);
}

Dim ceil_div(const Dim& a, const Dim& b) { return floor_div(a + b - Dim(1), b); }

Dim dim_max(const Dim& a, const Dim& b) {
  if (a.is_constant() && b.is_constant()) return Dim(std::max(a.value_, b.value_));
  if (a == b) return a;
  return make_atom(DimAtom::Op::kMax, "max", a, b);
}

Dim dim_min(const Dim& a, const Dim& b) {
  if (a.is_constant() && b.is_constant()) return Dim(std::min(a.value_, b.value_));
  if (a == b) return a;
  return make_atom(DimAtom::Op::kMin, "min", a, b);
}

Dim floor_mod(const Dim& a, const Dim& b) {
  if (a.is_constant() && b.is_constant()) return Dim(floor_mod_int(a.value_, b.value_));
  return make_atom(DimAtom::Op::kMod, "mod", a, b);
}

namespace {
std::optional<int64_t> atom_lower_bound(const DimAtom& atom) {
  switch (atom.op) {
    case DimAtom::Op::kSymbol: return 0;
    case DimAtom::Op::kMax: {
      auto a = dim_lower_bound(atom.lhs), b = dim_lower_bound(atom.rhs);
      if (a && b) return std::max(*a, *b);
      return a ? a : b;
    }
    case DimAtom::Op::kMin: {
      auto a = dim_lower_bound(atom.lhs), b = dim_lower_bound(atom.rhs);
      if (a && b) return std::min(*a, *b);
      return std::nullopt;
    }
    case DimAtom::Op::kFloorDiv: {
      auto a = dim_lower_bound(atom.lhs);
      if (!a || !atom.rhs.is_constant() || atom.rhs.constant() <= 0) return std::nullopt;
      return floor_div_int(*a, atom.rhs.constant());  // floor division is monotone in a for b > 0
    }
    case DimAtom::Op::kMod:
      if (atom.rhs.is_constant() && atom.rhs.constant() > 0) return 0;
      return std::nullopt;
  }
  return std::nullopt;
}
}  // namespace

std::optional<int64_t> dim_lower_bound(const Dim& d) {
  if (!d.poly_) return d.value_;
  int64_t total = 0;
  for (const auto& [atoms, coeff] : d.poly_->terms) {
    if (atoms.empty()) {
      if (__builtin_add_overflow(total, coeff, &total)) return std::nullopt;
      continue;
    }
    if (coeff < 0) return std::nullopt;
    // A product of atoms that are each at least a bound >= 0 is at least the bounds' product.
    int64_t term = coeff;
    for (const std::string& key : atoms) {
      auto bound = atom_lower_bound(*d.poly_->atoms.at(key));
      if (!bound || *bound < 0) return std::nullopt;
      if (__builtin_mul_overflow(term, *bound, &term)) return std::nullopt;
    }
    if (__builtin_add_overflow(total, term, &total)) return std::nullopt;
  }
  return total;
}

std::string shape_to_string(const Shape& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? "," : "") + shape[i].to_string();
  return out + "]";
}

bool shape_is_constant(const Shape& shape) {
  return std::all_of(shape.begin(), shape.end(), [](const Dim& d) { return d.is_constant(); });
}

std::vector<int64_t> shape_constants(const Shape& shape) {
  std::vector<int64_t> out;
  out.reserve(shape.size());
  for (auto& d : shape) out.push_back(d.constant());
  return out;
}

Shape shape_of(const std::vector<int64_t>& dims) { return Shape(dims.begin(), dims.end()); }

std::optional<std::vector<int64_t>> evaluate_dims(const std::vector<Dim>& dims, const SymbolBindings& bindings) {
  std::vector<int64_t> out;
  for (const Dim& d : dims) {
    auto x = d.evaluate(bindings);
    if (!x) return std::nullopt;
    out.push_back(*x);
  }
  return out;
}

Dim shape_numel(const Shape& shape) {
  Dim n(1);
  for (auto& d : shape) n = n * d;
  return n;
}

std::vector<int64_t> strides_of(const std::vector<int64_t>& dims) {
  std::vector<int64_t> s(dims.size(), 1);
  for (size_t i = dims.size(); i-- > 1;) s[i - 1] = s[i] * dims[i];
  return s;
}

int64_t checked_element_count(const std::vector<int64_t>& dims, std::string_view what) {
  // Zero dims count as 1 here: an empty tensor's strides and offsets are still
  // products of its other dims, so those must fit too.
  int64_t n = 1;
  bool overflow = false, empty = false;
  for (int64_t d : dims) {
    if (d < 0) fail(ErrorCode::kShapeError, what, " has negative dimension ", d, " in ", shape_to_string(shape_of(dims)));
    empty = empty || d == 0;
    overflow = overflow || __builtin_mul_overflow(n, std::max<int64_t>(d, 1), &n);
  }
  if (overflow || n >= kMaxTensorElements)
    fail(ErrorCode::kShapeError, what, " of shape ", shape_to_string(shape_of(dims)), " has ",
         overflow ? std::string("2^63 or more") : std::to_string(n), " elements, more than the limit of 2^62");
  return empty ? 0 : n;
}

int64_t checked_byte_size(const std::vector<int64_t>& dims, DType dtype, std::string_view what) {
  int64_t n = checked_element_count(dims, what);
  if (is_string(dtype)) return 0;  // its elements live on the host, in TensorData::strings; none in device memory
  int64_t bytes = 0;
  if (__builtin_mul_overflow(n, int64_t(dtype_size(dtype)), &bytes) || bytes > kMaxTensorBytes)
    fail(ErrorCode::kShapeError, what, " of shape ", shape_to_string(shape_of(dims)), " (", dtype_name(dtype), ") needs ",
         n, " elements of ", dtype_size(dtype), " bytes, more than the limit of ", kMaxTensorBytes, " bytes");
  return bytes;
}

int64_t checked_numel(const std::vector<int64_t>& dims) {
  int64_t n = 1;
  for (int64_t d : dims) {
    if (d < 0) fail(ErrorCode::kShapeError, "negative dimension ", d);
    n = checked_mul(n, d);
  }
  return n;
}

}  // namespace kiln::ir

namespace kiln::ir {

namespace {
constexpr int kMaxDimDepth = 32;

void write_dim_at(ByteWriter& out, const Dim& dim, int depth);

void write_atom(ByteWriter& out, const DimAtom& atom, int depth) {
  out.put<uint8_t>(uint8_t(atom.op));
  if (atom.op == DimAtom::Op::kSymbol) {
    out.put_string(atom.key);
    return;
  }
  write_dim_at(out, atom.lhs, depth + 1);
  write_dim_at(out, atom.rhs, depth + 1);
}

Dim read_dim_at(ByteReader& in, int depth) {
  if (depth > kMaxDimDepth) fail(ErrorCode::kParseError, in.label(), ": dimension expression nested too deeply");
  uint8_t tag = in.get<uint8_t>();
  if (tag == 0) return Dim(in.get<int64_t>());
  if (tag != 1) fail(ErrorCode::kParseError, in.label(), ": bad dimension tag ", int(tag));
  Dim total(0);
  uint64_t terms = in.get_count(16);
  for (uint64_t t = 0; t < terms; ++t) {
    Dim term(in.get<int64_t>());
    uint64_t atoms = in.get_count(1);
    for (uint64_t a = 0; a < atoms; ++a) {
      auto op = DimAtom::Op(in.get<uint8_t>());
      Dim value;
      switch (op) {
        case DimAtom::Op::kSymbol: value = Dim::symbol(in.get_string(4096)); break;
        case DimAtom::Op::kFloorDiv: case DimAtom::Op::kMax: case DimAtom::Op::kMin: case DimAtom::Op::kMod: {
          Dim lhs = read_dim_at(in, depth + 1), rhs = read_dim_at(in, depth + 1);
          value = op == DimAtom::Op::kFloorDiv ? floor_div(lhs, rhs)
                  : op == DimAtom::Op::kMax    ? dim_max(lhs, rhs)
                  : op == DimAtom::Op::kMin    ? dim_min(lhs, rhs)
                                               : floor_mod(lhs, rhs);
          // Written atoms stay atoms; one that simplifies to a sum would let
          // a product of them multiply out exponentially in the bytes read.
          const DimPoly* p = DimPolyAccess::of(value);
          if (!p || p->terms.size() != 1 || p->terms.begin()->second != 1 || p->terms.begin()->first.size() != 1)
            fail(ErrorCode::kParseError, in.label(), ": dimension expression ", value.to_string(), " is not in canonical form");
          break;
        }
        default: fail(ErrorCode::kParseError, in.label(), ": bad dimension atom ", int(op));
      }
      term = term * value;
    }
    total = total + term;
  }
  return total;
}

void write_dim_at(ByteWriter& out, const Dim& dim, int depth) {
  if (dim.is_constant()) {
    out.put<uint8_t>(0);
    out.put<int64_t>(dim.constant());
    return;
  }
  out.put<uint8_t>(1);
  const DimPoly& p = *DimPolyAccess::of(dim);
  out.put<uint64_t>(p.terms.size());
  for (auto& [atoms, coeff] : p.terms) {
    out.put<int64_t>(coeff);
    out.put<uint64_t>(atoms.size());
    for (auto& key : atoms) write_atom(out, *p.atoms.at(key), depth);
  }
}
}  // namespace

void write_dim(ByteWriter& out, const Dim& dim) { write_dim_at(out, dim, 0); }
Dim read_dim(ByteReader& in) { return read_dim_at(in, 0); }

}  // namespace kiln::ir
