// Data movement: one strided remap kernel covers transpose, slice, expand,
// tile, pad, concat and split; gather, scatter, trilu and resize have their
// own, and NonZero, Compress and Unique, whose sizes depend on the data,
// count them on the device.
#include <sstream>

#include "codegen.h"
#include "kiln/error.h"

namespace kiln::codegen {

namespace {

// Path 1: `vec_bytes` per thread along the last dim, which is unit-stride on
// both sides; the host checked that every offset and stride keeps vectors
// aligned, the kernel checks the base pointers.
constexpr const char* kRemapVectorCopy = R"(template <class V>
__device__ __forceinline__ void kiln_remap_vectors(char* out, const char* in, const RemapParams& prm, int esize) {
  const int rank = (int)prm.rank, per = (int)(sizeof(V) / esize);
  const long long count = prm.n / per;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += (long long)gridDim.x * blockDim.x) {
    long long rem = i, src = prm.src_offset, dst = prm.dst_offset;
#pragma unroll
    for (int d = 7; d >= 0; --d) {
      if (d >= rank) continue;
      const long long size = d == rank - 1 ? prm.dims[d] / per : prm.dims[d];
      const long long c = (rem % size) * (d == rank - 1 ? per : 1);
      rem /= size;
      src += c * prm.src_strides[d];
      dst += c * prm.dst_strides[d];
    }
    *reinterpret_cast<V*>(out + dst * esize) = *reinterpret_cast<const V*>(in + src * esize);
  }
}
)";

// Path 2: a transpose between the last dim A (unit dst stride) and the one
// before it, B (unit src stride), in 32x32 tiles: reads run along B, writes
// along A, both coalesced. 256 threads: 32 columns x 8 rows, 4 rows each.
std::string remap_tiles(const std::string& ct) {
  std::ostringstream s;
  s << "    __shared__ " << ct << " tile[32][33];\n";
  s << "    const int rank = (int)prm.rank, tx = threadIdx.x & 31, ty = threadIdx.x >> 5;\n";
  s << "    const long long A = prm.dims[rank - 1], B = prm.dims[rank - 2], tiles_a = (A + 31) / 32, tiles_b = (B + 31) / 32;\n";
  s << "    const long long a_stride = prm.src_strides[rank - 1], b_stride = prm.dst_strides[rank - 2];\n";
  s << "    const long long tiles = prm.n / (A * B) * tiles_a * tiles_b;\n";
  s << "    for (long long t = blockIdx.x; t < tiles; t += gridDim.x) {\n";
  s << "      const long long a0 = (t % tiles_a) * 32, b0 = (t / tiles_a % tiles_b) * 32;\n";
  s << "      long long rem = t / (tiles_a * tiles_b), src = prm.src_offset, dst = prm.dst_offset;\n";
  s << "#pragma unroll\n      for (int d = 5; d >= 0; --d) {\n        if (d >= rank - 2) continue;\n";
  s << "        const long long c = rem % prm.dims[d];\n        rem /= prm.dims[d];\n";
  s << "        src += c * prm.src_strides[d];\n        dst += c * prm.dst_strides[d];\n      }\n";
  s << "#pragma unroll\n      for (int r = ty; r < 32; r += 8)\n";
  s << "        if (a0 + r < A && b0 + tx < B) tile[r][tx] = in[src + (a0 + r) * a_stride + b0 + tx];\n";
  s << "      __syncthreads();\n";
  s << "#pragma unroll\n      for (int r = ty; r < 32; r += 8)\n";
  s << "        if (a0 + tx < A && b0 + r < B) out[dst + (b0 + r) * b_stride + a0 + tx] = tile[tx][r];\n";
  s << "      __syncthreads();\n    }\n";
  return s.str();
}

}  // namespace

std::string remap_source(const RemapSpec& spec) {
  std::string ct = c_type(spec.dtype);
  std::ostringstream s;
  s << prelude() << params_constants<RemapParams>(spec.specialize) << kRemapVectorCopy;
  s << "extern \"C\" __global__ void __launch_bounds__(" << kBlock << ") " << kEntry << "(" << ct
    << "* __restrict__ out, const " << ct << "* __restrict__ in, const " << ct << "* __restrict__ fill_value, KParams p) {\n"
    << params_binding<RemapParams>(spec.specialize);
  s << "  if (prm.path == 2) {\n" << remap_tiles(ct) << "    return;\n  }\n";
  s << "  const int esize = (int)sizeof(" << ct << ");\n";
  s << "  if (prm.path == 1 && ((unsigned long long)out | (unsigned long long)in) % prm.vec_bytes == 0) {\n";
  s << "    char* o = reinterpret_cast<char*>(out);\n    const char* i = reinterpret_cast<const char*>(in);\n";
  s << "    if (prm.vec_bytes == 16) kiln_remap_vectors<uint4>(o, i, prm, esize);\n";
  s << "    else if (prm.vec_bytes == 8) kiln_remap_vectors<uint2>(o, i, prm, esize);\n";
  s << "    else if (prm.vec_bytes == 4) kiln_remap_vectors<unsigned int>(o, i, prm, esize);\n";
  s << "    else kiln_remap_vectors<unsigned short>(o, i, prm, esize);\n";
  s << "    return;\n  }\n";
  // Path 0, and path 1 on misaligned base pointers: an element at a time.
  s << "  const long long n = prm.n;\n  const int rank = (int)prm.rank, mode = (int)prm.pad_mode;\n";
  s << "  const long long fill_bits = prm.fill_bits;\n";
  s << "  const " << ct << " fill = fill_value ? *fill_value : *reinterpret_cast<const " << ct << "*>(&fill_bits);  // little-endian\n";
  s << "  for (long long i = (long long)blockIdx.x * " << kBlock << " + threadIdx.x; i < n; i += (long long)gridDim.x * " << kBlock
    << ") {\n";
  s << "    long long rem = i, src = prm.src_offset, dst = prm.dst_offset;\n    bool inside = true;\n";
  s << "#pragma unroll\n    for (int d = " << kMaxRank - 1 << "; d >= 0; --d) {\n";
  s << "      if (d >= rank) continue;\n";
  s << "      const long long c = rem % prm.dims[d];\n      rem /= prm.dims[d];\n      dst += c * prm.dst_strides[d];\n";
  s << "      long long j = prm.src_starts[d] + c * prm.src_steps[d];\n";
  s << "      if (prm.modulus[d]) j %= prm.modulus[d];\n";
  s << "      if (mode) {\n        const long long lim = prm.src_dims[d];\n";
  s << "        if (j < 0 || j >= lim) {\n";
  s << "          if (mode == 1) inside = false;\n";
  s << "          else if (mode == 2) j = j < 0 ? 0 : lim - 1;\n";
  s << "          else if (mode == 4) j = ((j % lim) + lim) % lim;\n";
  s << "          else { const long long period = 2 * (lim - 1); j = period ? ((j % period) + period) % period : 0; if (j >= lim) j = period - j; }\n";
  s << "        }\n      }\n      src += j * prm.src_strides[d];\n    }\n";
  s << "    out[dst] = inside ? in[src] : fill;\n  }\n}\n";
  return s.str();
}

std::string gather_source(DType dtype, DType index_dtype, bool elements, const std::optional<Params>& specialize) {
  std::string ct = c_type(dtype);
  std::ostringstream s;
  s << prelude() << params_constants<GatherParams>(specialize);
  s << "extern \"C\" __global__ void __launch_bounds__(" << kBlock << ") " << kEntry << "(" << ct
    << "* __restrict__ out, const " << ct << "* __restrict__ data, const " << c_type(index_dtype)
    << "* __restrict__ indices, KParams p) {\n" << params_binding<GatherParams>(specialize);
  s << "  const long long n = prm.n, count = prm.count, inner = prm.inner, axis = prm.axis_size;\n";
  s << "  for (long long i = (long long)blockIdx.x * " << kBlock << " + threadIdx.x; i < n; i += (long long)gridDim.x * " << kBlock
    << ") {\n";
  if (!elements) {
    // out[o, j, k] = data[o, idx[j], k]
    s << "    const long long k = i % inner, j = (i / inner) % count, o = i / (inner * count);\n";
    s << "    long long t = (long long)indices[j];\n";
  } else {
    // GatherElements on a [outer, count, inner] view: out[o, j, k] = data[o, idx[o, j, k], k] with data axis size `axis`.
    s << "    const long long k = i % inner, o = i / (inner * count);\n";
    s << "    long long t = (long long)indices[i];\n";
  }
  s << "    if (t < 0) t += axis;\n    t = t < 0 ? 0 : (t >= axis ? axis - 1 : t);  // out-of-range indices are rejected on the host\n";
  s << "    out[i] = data[(o * axis + t) * inner + k];\n  }\n}\n";
  return s.str();
}

namespace {

// `a OP b` for a scatter reduction, in the element's storage type: integers
// exactly, half types through float, bool as logical or (add, max) and and (mul, min).
std::string reduce_function(DType dtype, ScatterReduction reduction) {
  std::string ct = c_type(dtype), body;
  bool wide = reduction == ScatterReduction::kAdd || reduction == ScatterReduction::kMax;
  auto apply = [&](const std::string& a, const std::string& b) {
    switch (reduction) {
      case ScatterReduction::kAdd: return a + " + " + b;
      case ScatterReduction::kMul: return a + " * " + b;
      case ScatterReduction::kMax: return a + " > " + b + " ? " + a + " : " + b;
      default: return a + " < " + b + " ? " + a + " : " + b;
    }
  };
  if (dtype == DType::kFloat16) body = "const float x = kiln_h2f(a), y = kiln_h2f(b); return kiln_f2h(" + apply("x", "y") + ");";
  else if (dtype == DType::kBFloat16) body = "const float x = kiln_bf2f(a), y = kiln_bf2f(b); return kiln_f2bf(" + apply("x", "y") + ");";
  else if (dtype == DType::kBool) body = std::string("return (a != 0) ") + (wide ? "||" : "&&") + " (b != 0);";
  else body = "return (" + ct + ")(" + apply("a", "b") + ");";
  return "__device__ __forceinline__ " + ct + " kiln_reduce(" + ct + " a, " + ct + " b) { " + body + " }\n";
}

// kiln_scatter_reduce(p, v): *p = kiln_reduce(*p, v) atomically, by a
// compare-and-swap loop on the 4- or 8-byte word; 1- and 2-byte elements
// through the aligned 4-byte word that holds them (its other bytes rewritten
// unchanged). Every dtype and reduction takes the same path.
std::string atomic_reduce_function(DType dtype) {
  std::string ct = c_type(dtype);
  size_t size = dtype_size(dtype);
  std::ostringstream s;
  s << "__device__ __forceinline__ void kiln_scatter_reduce(" << ct << "* p, " << ct << " v) {\n";
  if (size >= 4) {
    std::string word = size == 8 ? "unsigned long long" : "unsigned int";
    s << "  union Bits { " << word << " u; " << ct << " x; };\n  " << word << "* w = reinterpret_cast<" << word << "*>(p);\n"
      << "  Bits cur, next;\n  cur.u = *w;\n  for (;;) {\n    next.x = kiln_reduce(cur.x, v);\n"
      << "    const " << word << " seen = atomicCAS(w, cur.u, next.u);\n    if (seen == cur.u) return;\n    cur.u = seen;\n  }\n}\n";
  } else {
    std::string narrow = size == 2 ? "unsigned short" : "unsigned char";
    s << "  union Bits { " << narrow << " u; " << ct << " x; };\n"
      << "  unsigned int* w = reinterpret_cast<unsigned int*>(reinterpret_cast<unsigned long long>(p) & ~3ull);\n"
      << "  const unsigned int shift = (unsigned int)(reinterpret_cast<unsigned long long>(p) & 3ull) * 8u;\n"
      << "  const unsigned int mask = " << (size == 2 ? "0xffffu" : "0xffu") << " << shift;\n"
      << "  unsigned int cur = *w;\n  for (;;) {\n    Bits b;\n    b.u = (" << narrow << ")((cur & mask) >> shift);\n"
      << "    b.x = kiln_reduce(b.x, v);\n    const unsigned int next = (cur & ~mask) | ((unsigned int)b.u << shift);\n"
      << "    const unsigned int seen = atomicCAS(w, cur, next);\n    if (seen == cur) return;\n    cur = seen;\n  }\n}\n";
  }
  return s.str();
}

}  // namespace

std::string indexed_source(const IndexedSpec& spec) {
  std::string ct = c_type(spec.dtype), it = c_type(spec.index_dtype);
  bool gather = spec.op == IndexedOp::kGatherND, reduce = spec.reduction != ScatterReduction::kNone;
  std::ostringstream s;
  s << prelude() << params_constants<IndexedParams>(spec.specialize);
  if (!gather && reduce) s << reduce_function(spec.dtype, spec.reduction) << atomic_reduce_function(spec.dtype);
  s << "extern \"C\" __global__ void __launch_bounds__(" << kBlock << ") " << kEntry << "(" << ct << "* __restrict__ out, ";
  if (gather) s << "const " << ct << "* __restrict__ data, const " << it << "* __restrict__ indices, KParams p) {\n";
  else s << "const " << it << "* __restrict__ indices, const " << ct << "* __restrict__ updates, KParams p) {\n";
  s << params_binding<IndexedParams>(spec.specialize);
  s << "  for (long long i = (long long)blockIdx.x * " << kBlock << " + threadIdx.x; i < prm.n; i += (long long)gridDim.x * " << kBlock
    << ") {\n    long long off = 0;\n" << (gather ? "" : "    bool inside = true;\n");
  if (spec.op == IndexedOp::kScatterElements) {
    s << "    long long rem = i;\n#pragma unroll\n    for (int d = " << kMaxRank - 1 << "; d >= 0; --d) {\n"
      << "      if (d >= prm.rank) continue;\n      long long c = rem % prm.dims[d];\n      rem /= prm.dims[d];\n"
      << "      if (d == prm.axis) {\n        c = (long long)indices[i];\n        if (c < 0) c += prm.axis_size;\n"
      << "        inside = c >= 0 && c < prm.axis_size;\n      }\n      off += c * prm.strides[d];\n    }\n";
  } else if (spec.op == IndexedOp::kMaxUnpool) {
    // A flat index into the unpooled size (`dims`, `axis_size` elements), placed by the output's strides.
    s << "    long long flat = (long long)indices[i];\n    inside = flat >= 0 && flat < prm.axis_size;\n"
      << "#pragma unroll\n    for (int d = " << kMaxRank - 1 << "; d >= 0; --d) {\n"
      << "      if (d >= prm.rank || !inside) continue;\n      off += (flat % prm.dims[d]) * prm.strides[d];\n      flat /= prm.dims[d];\n    }\n";
  } else {
    s << "    const long long o = i / prm.slice;\n    off = (o / prm.rows) * prm.batch_stride + i % prm.slice;\n"
      << "#pragma unroll\n    for (int d = 0; d < " << kMaxRank << "; ++d) {\n      if (d >= prm.depth) continue;\n"
      << "      const long long lim = prm.dims[d];\n      long long c = (long long)indices[o * prm.depth + d];\n"
      << "      if (c < 0) c += lim;\n";
    // Out-of-range indices (an error on the CPU reference): GatherND clamps, scatters skip the update.
    if (gather) s << "      c = c < 0 ? 0 : (c >= lim ? lim - 1 : c);\n";
    else s << "      if (c < 0 || c >= lim) inside = false;\n";
    s << "      off += c * prm.strides[d];\n    }\n";
  }
  if (gather) s << "    out[i] = data[off];\n";
  else if (reduce) s << "    if (inside) kiln_scatter_reduce(out + off, updates[i]);\n";
  else s << "    if (inside) out[off] = updates[i];\n";
  s << "  }\n}\n";
  return s.str();
}

std::string resize_source(const ResizeSpec& spec) {
  DType dtype = spec.dtype;
  std::string ct = c_type(dtype);
  std::ostringstream s;
  s << prelude() << params_constants<ResizeParams>(spec.specialize);
  s << R"(__device__ double kiln_coordinate(int mode, double x, double scale, long long in, long long out, double rs, double re) {
  const double exact = (double)in * scale;  // the ONNX reference divides by in*scale, not the floored size
  switch (mode) {
    case 0: return (x + 0.5) / scale - 0.5;
    case 1: return out > 1 ? (x + 0.5) / scale - 0.5 : 0.0;
    case 2: return out == 1 ? 0.0 : x * (double)(in - 1) / (exact - 1);
    case 3: return x / scale;
    case 4: return (x + 0.5) / scale;
    case 5: { const double adj = (double)out / exact; return (double)in / 2 * (1 - adj) + (x + 0.5) / scale - 0.5; }
    default: return out > 1 ? rs * (double)(in - 1) + x * (re - rs) * (double)(in - 1) / (exact - 1) : 0.5 * (rs + re) * (double)(in - 1);
  }
}
// The interpolation kernel at distance x: linear's triangle, or the cubic of coefficient a.
__device__ double kiln_resize_weight(bool cubic, double a, double x) {
  x = fabs(x);
  if (!cubic) return fmax(0.0, 1 - x);
  return x <= 1 ? ((a + 2) * x - (a + 3)) * x * x + 1 : x < 2 ? ((a * x - 5 * a) * x + 8 * a) * x - 4 * a : 0.0;
}
)";
  s << "extern \"C\" __global__ void __launch_bounds__(" << kBlock << ") " << kEntry << "(" << ct << "* __restrict__ out, const " << ct
    << "* __restrict__ x, const " << c_type(spec.roi_dtype) << "* __restrict__ roi, const " << c_type(spec.scales_dtype)
    << "* __restrict__ scales, KParams p) {\n" << params_binding<ResizeParams>(spec.specialize);
  // Per dim, its scale and roi: the parameters', or the tensors' entries.
  s << "  double scale_of[8], roi_start[8], roi_end[8];\n";
  s << "  for (int d = 0; d < (int)prm.rank; ++d) {\n";
  s << "    const long long si = prm.scale_index[d], ri = prm.roi_index[d];\n";
  s << "    scale_of[d] = scales && si >= 0 ? (double)" << load_expr(spec.scales_dtype, "scales", "si")
    << " : __longlong_as_double(prm.scale_bits[d]);\n";
  s << "    roi_start[d] = roi && ri >= 0 ? (double)" << load_expr(spec.roi_dtype, "roi", "ri")
    << " : __longlong_as_double(prm.roi_start_bits[d]);\n";
  s << "    roi_end[d] = roi && ri >= 0 ? (double)" << load_expr(spec.roi_dtype, "roi", "prm.roi_half + ri")
    << " : __longlong_as_double(prm.roi_end_bits[d]);\n  }\n";
  // Per dim, a window of taps from `first`: nearest takes one, linear two and
  // cubic four, or with antialias, when downscaling, the kernel stretched by
  // 1 / scale over proportionally more (weights made on the fly, so the count
  // has no limit), normalized as the ONNX reference does.
  s << R"(  const long long n = prm.n;
  const int rank = (int)prm.rank, mode = (int)prm.mode, coord = (int)prm.coordinate_mode, nearest = (int)prm.nearest_mode;
  const bool exclude = prm.exclude_outside != 0, antialias = prm.antialias != 0, cubic = mode == 2;
  const double a = __longlong_as_double(prm.cubic_a_bits), extrapolation = __longlong_as_double(prm.extrapolation_bits);
  for (long long i = (long long)blockIdx.x * 256 + threadIdx.x; i < n; i += (long long)gridDim.x * 256) {
    long long first[8], taps[8];
    double ratio[8], stretch[8], divisor[8];
    bool outside = false;
    long long rem = i;
    for (int d = rank - 1; d >= 0; --d) {
      const long long in = prm.in_dims[d], od = prm.out_dims[d], c = rem % od;
      rem /= od;
      const double scale = scale_of[d];
      const double xo = kiln_coordinate(coord, (double)c, scale, in, od, roi_start[d], roi_end[d]);
      if (coord == 6 && (xo < 0 || xo > (double)(in - 1))) outside = true;
      if (mode == 0) {
        double v;
        if (nearest == 1) v = round(xo);
        else if (nearest == 2) v = floor(xo);
        else if (nearest == 3) v = ceil(xo);
        else v = (xo - floor(xo) == 0.5) ? floor(xo) : round(xo);
        const long long j = (long long)v;
        first[d] = j < 0 ? 0 : (j >= in ? in - 1 : j);
        taps[d] = 1;
        divisor[d] = 1;
        continue;
      }
      stretch[d] = antialias ? fmin(scale, 1.0) : 1.0;
      double base = floor(xo), t = xo - base;
      if (t == 0) t = 1, base -= 1;  // at an integer coordinate, the window left of it
      const long long start = (long long)floor((cubic ? -2.0 : -1.0) / stretch[d]) + 1;
      first[d] = (long long)base + start;
      taps[d] = 2 - 2 * start;
      ratio[d] = t - (double)start;  // tap k sits k - ratio from the coordinate, in stretched units
      double all = 0, inside = 0;
      for (long long k = 0; k < taps[d]; ++k) {
        const double w = kiln_resize_weight(cubic, a, stretch[d] * ((double)k - ratio[d]));
        all += w;
        const long long j = first[d] + k;
        if (!exclude || (j >= 0 && j < in)) inside += w;
      }
      divisor[d] = exclude ? inside : antialias ? all : 1.0;
      if (divisor[d] == 0) divisor[d] = 1;
    }
    double acc = 0;
    if (outside) {
      acc = extrapolation;
    } else {
      long long k[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (;;) {
        double weight = 1;
        long long off = 0;
        for (int d = 0; d < rank; ++d) {
          const long long in = prm.in_dims[d], j = first[d] + k[d];
          if (mode != 0) {
            const bool in_range = j >= 0 && j < in;
            weight *= exclude && !in_range ? 0.0 : kiln_resize_weight(cubic, a, stretch[d] * ((double)k[d] - ratio[d])) / divisor[d];
          }
          off = off * in + (j < 0 ? 0 : (j >= in ? in - 1 : j));
        }
        acc += weight * (double))" << load_expr(dtype, "x", "off") << R"(;
        int d = rank - 1;
        while (d >= 0 && ++k[d] == taps[d]) k[d--] = 0;
        if (d < 0) break;
      }
    }
    )" << store_stmt(dtype, "out", "i", "acc") << R"(
  }
}
)";
  return s.str();
}

std::string nonzero_source(DType dtype) {
  // Zero is tested on the bits: every bit but a float's sign clear.
  std::string bits, mask;
  switch (dtype_size(dtype)) {
    case 8: bits = "unsigned long long"; mask = is_floating(dtype) ? "0x7fffffffffffffffULL" : "~0ULL"; break;
    case 4: bits = "unsigned int"; mask = is_floating(dtype) ? "0x7fffffffu" : "~0u"; break;
    case 2: bits = "unsigned short"; mask = is_floating(dtype) ? "0x7fff" : "0xffff"; break;
    default: bits = "unsigned char"; mask = "0xff"; break;
  }
  std::ostringstream s;
  s << prelude() << "extern \"C\" __global__ void __launch_bounds__(" << kBlock << ") " << kEntry
    << "(long long* __restrict__ out, long long* __restrict__ count, const " << bits << "* __restrict__ x, KParams p) {\n"
    << params_binding<NonZeroParams>(std::nullopt);
  s << "  __shared__ long long scan[" << kBlock << "];\n";
  s << "  const long long n = prm.n;\n  const int t = threadIdx.x;\n";
  s << "  long long mine = 0;\n";
  s << "  for (long long i = t; i < n; i += " << kBlock << ") mine += (x[i] & " << mask << ") != 0;\n";
  s << "  scan[t] = mine;\n  __syncthreads();\n";
  s << "  for (int h = " << kBlock / 2 << "; h > 0; h >>= 1) {\n    if (t < h) scan[t] += scan[t + h];\n    __syncthreads();\n  }\n";
  s << "  const long long total = scan[0];\n  __syncthreads();\n";
  s << "  if (t == 0) *count = total;\n";
  s << "  if (total > prm.cap) return;  // the host reports it; nothing is written past the bound\n";
  s << "  long long base = 0;\n";
  s << "  for (long long first = 0; first < n; first += " << kBlock << ") {\n";
  s << "    const long long i = first + t;\n";
  s << "    const int hit = i < n && (x[i] & " << mask << ") != 0;\n";
  s << "    scan[t] = hit;\n    __syncthreads();\n";
  s << "    for (int off = 1; off < " << kBlock << "; off <<= 1) {\n";
  s << "      const long long left = t >= off ? scan[t - off] : 0;\n      __syncthreads();\n";
  s << "      scan[t] += left;\n      __syncthreads();\n    }\n";
  s << "    if (hit) {\n      const long long j = base + scan[t] - 1;\n      long long rest = i;\n";
  s << "      for (int r = (int)prm.rank - 1; r >= 0; --r) {\n";
  s << "        out[r * total + j] = rest % prm.dims[r];\n        rest /= prm.dims[r];\n      }\n    }\n";
  s << "    base += scan[" << kBlock - 1 << "];\n    __syncthreads();\n  }\n}\n";
  return s.str();
}

std::string compress_scan_source() {
  std::ostringstream s;
  s << prelude() << block_scan_source()
    << kernel_entry("long long* __restrict__ positions, long long* __restrict__ count, const unsigned char* __restrict__ condition")
    << params_binding<CompressParams>(std::nullopt);
  s << "  __shared__ long long scan[" << kBlock << "];\n  __shared__ unsigned long long past;\n" << R"(  const int t = threadIdx.x;
  if (t == 0) past = ~0ULL;
  __syncthreads();
  long long mine = 0;
  for (long long i = t; i < prm.scan; i += )" << kBlock << R"() {
    if (!condition[i]) continue;
    if (i < prm.len) ++mine;
    else atomicMin(&past, (unsigned long long)i);
  }
  kiln_block_scan(mine, scan);
  const long long total = scan[)" << kBlock - 1 << R"(];
  __syncthreads();
  // A true entry past the input is numpy's error: the host reports the first.
  if (t == 0) *count = past != ~0ULL ? -1 - (long long)past : total;
  if (past != ~0ULL || total > prm.cap) return;  // the host reports it; nothing is written past the bound
  const long long end = prm.scan < prm.len ? prm.scan : prm.len;
  long long base = 0;
  for (long long first = 0; first < end; first += )" << kBlock << R"() {
    const long long i = first + t;
    const int hit = i < end && condition[i] != 0;
    const long long at = base + kiln_block_scan(hit, scan) - 1;
    if (hit) positions[at] = i;
    base += scan[)" << kBlock - 1 << R"(];
    __syncthreads();
  }
}
)";
  return s.str();
}

std::string compress_gather_source(DType dtype) {
  std::string bt = bits_type(dtype);
  std::ostringstream s;
  s << prelude()
    << kernel_entry(str(bt, "* __restrict__ out, const ", bt,
                 "* __restrict__ x, const long long* __restrict__ positions, const long long* __restrict__ count"))
    << params_binding<CompressParams>(std::nullopt);
  s << R"(  const long long m = *count;
  if (m < 0 || m > prm.cap) return;  // an error the host reports
)" << grid_stride_loop()
    << R"(    const long long i = e % prm.inner, j = (e / prm.inner) % prm.cap, o = e / (prm.inner * prm.cap);
    if (j < m) out[(o * m + j) * prm.inner + i] = x[(o * prm.len + positions[j]) * prm.inner + i];
  }
}
)";
  return s.str();
}

std::string unique_source(UniqueKernel kernel, DType dtype) {
  std::string ct = c_type(dtype);
  std::ostringstream s;
  s << prelude() << block_scan_source();
  // numpy's order of values: NaN after every number and equal to NaN, -0 equal to 0.
  s << "__device__ __forceinline__ int kiln_order(const " << ct << "* x, const long long p, const long long q) {\n";
  if (is_floating(dtype))
    s << "  const double a = (double)" << load_expr(dtype, "x", "p") << ", b = (double)" << load_expr(dtype, "x", "q") << R"(;
  const bool na = a != a, nb = b != b;
  if (na || nb) return (int)na - (int)nb;
)";
  else
    s << "  const " << ct << " a = x[p], b = x[q];\n";
  s << "  return a < b ? -1 : (b < a ? 1 : 0);\n}\n";
  s << "__device__ int kiln_compare(const " << ct << R"(* x, const long long p, const long long q, const UniqueParams& prm) {
  for (long long o = 0; o < prm.outer; ++o)
    for (long long i = 0; i < prm.inner; ++i) {
      const int r = kiln_order(x, (o * prm.len + p) * prm.inner + i, (o * prm.len + q) * prm.inner + i);
      if (r) return r;
    }
  return 0;
}
// The sort's order of slots: slices by value, then by position (so a group's
// first slot is its first occurrence); the padding slots (>= len) last.
__device__ bool kiln_before(const )" << ct << R"(* x, const long long p, const long long q, const UniqueParams& prm) {
  if (p >= prm.len || q >= prm.len) return p < q;
  const int r = kiln_compare(x, p, q, prm);
  return r < 0 || (r == 0 && p < q);
}
)";
  const char* layout = R"(  long long* perm = work;
  long long* start = perm + prm.pow2;
  long long* group_of = start + prm.len + 1;
  long long* place = group_of + prm.len;
  long long* at_place = place + prm.len;
)";
  switch (kernel) {
    case UniqueKernel::kSort:
      s << kernel_entry(str("long long* __restrict__ work, const ", ct, "* __restrict__ x")) << params_binding<UniqueParams>(std::nullopt)
        << "  long long* perm = work;\n"
        << grid_stride_loop() << R"(    if (prm.k == 0) { perm[e] = e; continue; }
    const long long l = e ^ prm.j;
    if (l <= e) continue;
    const long long a = perm[e], b = perm[l];
    if ((e & prm.k) == 0 ? kiln_before(x, b, a, prm) : kiln_before(x, a, b, prm)) { perm[e] = b; perm[l] = a; }
  }
}
)";
      break;
    case UniqueKernel::kGroups:
      s << kernel_entry(str("long long* __restrict__ work, long long* __restrict__ count, const ", ct, "* __restrict__ x"))
        << params_binding<UniqueParams>(std::nullopt) << layout << "  __shared__ long long scan[" << kBlock << "];\n"
        << R"(  const int t = threadIdx.x;
  long long base = 0;
  for (long long first = 0; first < prm.len; first += )" << kBlock << R"() {
    const long long r = first + t;
    const int head = r < prm.len && (r == 0 || kiln_compare(x, perm[r - 1], perm[r], prm) != 0);
    const long long g = base + kiln_block_scan(head, scan) - 1;
    if (r < prm.len) {
      if (head) start[g] = r;
      group_of[perm[r]] = g;
    }
    base += scan[)" << kBlock - 1 << R"(];
    __syncthreads();
  }
  const long long groups = base;
  if (t == 0) { start[groups] = prm.len; *count = groups; }
  if (prm.sorted) {
    for (long long g = t; g < groups; g += )" << kBlock << R"() place[g] = at_place[g] = g;
    return;
  }
  // Unsorted: groups in the order of their first occurrences.
  __syncthreads();
  base = 0;
  for (long long first = 0; first < prm.len; first += )" << kBlock << R"() {
    const long long i = first + t;
    const long long g = i < prm.len ? group_of[i] : 0;
    const int head = i < prm.len && perm[start[g]] == i;
    const long long q = base + kiln_block_scan(head, scan) - 1;
    if (head) { place[g] = q; at_place[q] = g; }
    base += scan[)" << kBlock - 1 << R"(];
    __syncthreads();
  }
}
)";
      break;
    case UniqueKernel::kOutputs:
      s << kernel_entry(str(ct, "* __restrict__ y, long long* __restrict__ indices, long long* __restrict__ inverse, long long* __restrict__ "
                     "counts, const ", ct, "* __restrict__ x, long long* __restrict__ work, const long long* __restrict__ count"))
        << params_binding<UniqueParams>(std::nullopt) << layout << R"(  const long long groups = *count;
  if (groups > prm.cap) return;  // the host reports it; nothing is written past the bound
  const long long elements = prm.outer * groups * prm.inner;
)" << grid_stride_loop() << R"(    if (y && e < elements) {
      const long long i = e % prm.inner, q = (e / prm.inner) % groups, o = e / (prm.inner * groups);
      y[e] = x[(o * prm.len + perm[start[at_place[q]]]) * prm.inner + i];
    }
    if (e < groups) {
      const long long g = at_place[e];
      if (indices) indices[e] = perm[start[g]];
      if (counts) counts[e] = start[g + 1] - start[g];
    }
    if (inverse && e < prm.len) inverse[e] = place[group_of[e]];
  }
}
)";
      break;
  }
  return s.str();
}

std::string reverse_sequence_source(DType dtype, const std::optional<Params>& specialize) {
  std::string ct = c_type(dtype);
  std::ostringstream s;
  s << prelude() << params_constants<ReverseSequenceParams>(specialize);
  s << "extern \"C\" __global__ void __launch_bounds__(" << kBlock << ") " << kEntry << "(" << ct << "* __restrict__ out, const " << ct
    << "* __restrict__ x, const long long* __restrict__ lengths, KParams p) {\n" << params_binding<ReverseSequenceParams>(specialize);
  s << "  const long long n = prm.n, batch = prm.batch, time = prm.time, inner = prm.inner;\n";
  s << "  for (long long i = (long long)blockIdx.x * " << kBlock << " + threadIdx.x; i < n; i += (long long)gridDim.x * " << kBlock
    << ") {\n";
  s << "    const long long j = i % inner, outer = i / inner;\n";
  s << "    const long long b = prm.batch_major ? outer / time : outer % batch, t = prm.batch_major ? outer % time : outer / batch;\n";
  s << "    long long len = lengths[b];\n    len = len < 0 ? 0 : (len > time ? time : len);\n";
  s << "    const long long src = t < len ? len - 1 - t : t;\n";
  s << "    out[i] = x[((prm.batch_major ? b * time + src : src * batch + b)) * inner + j];\n  }\n}\n";
  return s.str();
}

std::string tensor_scatter_source(DType dtype, bool has_indices, const std::optional<Params>& specialize) {
  std::string ct = c_type(dtype);
  std::ostringstream s;
  s << prelude() << params_constants<TensorScatterParams>(specialize);
  s << "extern \"C\" __global__ void __launch_bounds__(" << kBlock << ") " << kEntry << "(" << ct << "* __restrict__ out, const " << ct
    << "* __restrict__ update" << (has_indices ? ", const long long* __restrict__ write_indices" : "") << ", KParams p) {\n"
    << params_binding<TensorScatterParams>(specialize);
  s << "  const long long n = prm.n, seq = prm.seq, max_seq = prm.max_seq, inner = prm.inner;\n";
  s << "  for (long long i = (long long)blockIdx.x * " << kBlock << " + threadIdx.x; i < n; i += (long long)gridDim.x * " << kBlock
    << ") {\n";
  s << "    const long long j = i % inner, step = (i / inner) % seq, outer = i / (inner * seq);\n";
  s << "    long long at = " << (has_indices ? "write_indices[outer / prm.per_batch] + step" : "step") << ";\n";
  s << "    if (prm.circular) at = ((at % max_seq) + max_seq) % max_seq;\n";
  s << "    else if (at < 0 || at >= max_seq) continue;\n";
  s << "    out[(outer * max_seq + at) * inner + j] = update[i];\n  }\n}\n";
  return s.str();
}

std::string trilu_source(DType dtype, const std::optional<Params>& specialize) {
  std::string ct = c_type(dtype);
  std::ostringstream s;
  s << prelude() << params_constants<TriluParams>(specialize);
  s << "extern \"C\" __global__ void __launch_bounds__(" << kBlock << ") " << kEntry << "(" << ct << "* __restrict__ out, const " << ct
    << "* __restrict__ x, const long long* __restrict__ k_value, KParams p) {\n" << params_binding<TriluParams>(specialize);
  s << "  const long long n = prm.n, rows = prm.rows, cols = prm.cols, k = k_value ? *k_value : prm.k;\n";
  s << "  const bool upper = prm.upper != 0;\n";
  s << "  for (long long i = (long long)blockIdx.x * " << kBlock << " + threadIdx.x; i < n; i += (long long)gridDim.x * " << kBlock
    << ") {\n";
  s << "    const long long c = i % cols, r = (i / cols) % rows;\n";
  s << "    const bool keep = upper ? (c - r >= k) : (c - r <= k);\n";
  s << "    out[i] = keep ? x[i] : (" << ct << ")0;\n  }\n}\n";
  return s.str();
}

}  // namespace kiln::codegen
