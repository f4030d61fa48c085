// The numbers of the random ops (RandomUniform, RandomNormal, their Like
// forms, Bernoulli, Multinomial), one text for both sides: the reference
// interpreter includes it as C++ (kiln/ir/random.h) and the GPU kernels get it
// verbatim (codegen::random_math_source), so a seed gives the same numbers on
// the CPU and on the GPU, bit for bit. Plain C types.
//
// Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2,
// 3", SC 2011), keyed by the node's 64-bit key, counts (element, draw): each
// element of an output owns the stream of its index, so any thread computes
// any element without the others. The transforms use only what IEEE 754
// rounds exactly on both sides (+, -, *, /, sqrt, fma, frexp, ldexp, floor)
// and their own log and exp, not the math libraries' (whose last bits differ
// between glibc and CUDA); every product that feeds a sum is an explicit fma,
// since NVRTC contracts a * b + c into one and the host compiler does not.
#ifndef KILN_RANDOM_MATH_H
#define KILN_RANDOM_MATH_H

// NVRTC has these functions built in; the host needs C's declarations.
#ifndef __CUDACC_RTC__
#include <math.h>
#endif

#ifndef KILN_RANDOM_FN
#define KILN_RANDOM_FN inline
#endif

struct KilnPhilox {
  unsigned int v[4];
};

// Philox-4x32-10 of counter c and key (k0, k1): Random123's philox4x32 with 10 rounds.
KILN_RANDOM_FN KilnPhilox kiln_philox4x32_10(KilnPhilox c, unsigned int k0, unsigned int k1) {
  for (int round = 0; round < 10; ++round) {
    unsigned long long p0 = 0xD2511F53ull * c.v[0], p1 = 0xCD9E8D57ull * c.v[2];
    KilnPhilox n;
    n.v[0] = (unsigned int)(p1 >> 32) ^ c.v[1] ^ k0;
    n.v[1] = (unsigned int)p1;
    n.v[2] = (unsigned int)(p0 >> 32) ^ c.v[3] ^ k1;
    n.v[3] = (unsigned int)p0;
    c = n;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return c;
}

// The four words of draw `draw` of element `element`.
KILN_RANDOM_FN KilnPhilox kiln_random_words(unsigned long long key, unsigned long long element, unsigned int draw) {
  KilnPhilox c;
  c.v[0] = (unsigned int)element;
  c.v[1] = (unsigned int)(element >> 32);
  c.v[2] = draw;
  c.v[3] = 0;
  return kiln_philox4x32_10(c, (unsigned int)key, (unsigned int)(key >> 32));
}

// 53 random bits of words a and b as a double in [0, 1), exactly.
KILN_RANDOM_FN double kiln_unit(unsigned int a, unsigned int b) {
  return (double)((((unsigned long long)(a >> 5)) << 26) | (b >> 6)) * (1.0 / 9007199254740992.0);
}

// log(x) for x > 0 finite: x = m 2^e with m in [sqrt(1/2), sqrt(2)), and
// log(m) = 2 atanh(s), s = (m - 1) / (m + 1), |s| < 0.172, by its series.
KILN_RANDOM_FN double kiln_random_log(double x) {
  int e = 0;
  double m = frexp(x, &e);
  if (m < 0.70710678118654752) {
    m = m * 2.0;
    e = e - 1;
  }
  const double f = m - 1.0;  // exact: m is within a factor 2 of 1
  const double s = f / (2.0 + f), z = s * s;
  double p = 1.0 / 27.0;  // p = 1 + z/3 + z^2/5 + ... + z^13/27, and log(m) = 2 s p
  for (int k = 12; k >= 0; --k) p = fma(p, z, 1.0 / (double)(2 * k + 1));
  return fma((double)e, 0.69314718055994531, 2.0 * s * p);
}

// exp(x) for x <= 0 (NaN and x below -745 give 0): x = k ln 2 + r, |r| <= ln 2 / 2,
// e^r by its Taylor series in Horner form.
KILN_RANDOM_FN double kiln_random_exp(double x) {
  if (!(x >= -745.0)) return 0.0;
  const double k = floor(fma(x, 1.4426950408889634, 0.5));
  const double r = fma(-k, 1.9082149292705877e-10, fma(-k, 0.69314718036912382, x));  // ln 2 split in two
  double p = 1.0;
  for (int n = 18; n >= 1; --n) p = fma(r / (double)n, p, 1.0);
  return ldexp(p, (int)k);
}

// A uniform number in [0, 1) for draw `draw` of element `element` (words 0 and 1).
KILN_RANDOM_FN double kiln_random_unit(unsigned long long key, unsigned long long element, unsigned int draw) {
  KilnPhilox w = kiln_random_words(key, element, draw);
  return kiln_unit(w.v[0], w.v[1]);
}

// A standard normal number for element `element` by Marsaglia's polar method:
// a point of draw d uniform in the square [-1, 1)^2, kept inside the unit
// circle (d = 0, 1, ...; after KILN_NORMAL_DRAWS misses, which happen with
// probability 0.215^32, 0).
#define KILN_NORMAL_DRAWS 32
KILN_RANDOM_FN double kiln_random_normal(unsigned long long key, unsigned long long element) {
  for (unsigned int d = 0; d < KILN_NORMAL_DRAWS; ++d) {
    KilnPhilox w = kiln_random_words(key, element, d);
    const double x = fma(2.0, kiln_unit(w.v[0], w.v[1]), -1.0), y = fma(2.0, kiln_unit(w.v[2], w.v[3]), -1.0);
    const double s = fma(x, x, y * y);
    if (s > 0.0 && s < 1.0) return x * sqrt(-2.0 * kiln_random_log(s) / s);
  }
  return 0.0;
}

// A uniform number in [low, high) for element `element` of a tensor whose
// dtype `round` rounds to: draw d's fma(high - low, u, low), rounded, the
// first below high (a rounding up to high is drawn again; after
// KILN_UNIFORM_DRAWS such draws, which low < high makes unlikely past belief, low).
#define KILN_UNIFORM_DRAWS 16
template <class Round>
KILN_RANDOM_FN double kiln_random_uniform(unsigned long long key, unsigned long long element, double low, double high, Round round) {
  for (unsigned int d = 0; d < KILN_UNIFORM_DRAWS; ++d) {
    const double v = round(fma(high - low, kiln_random_unit(key, element, d), low));
    if (v < high) return v;
  }
  return round(low);
}

// A class of `classes` drawn with probabilities softmax(logits) for element
// `element`; load(j) is logit j as a double. The first class whose running
// sum of exp(logit - max) passes u times their total (the last class where
// rounding leaves it short; class 0 of an empty row).
template <class Load>
KILN_RANDOM_FN long long kiln_random_class(unsigned long long key, unsigned long long element, long long classes, Load load) {
  if (classes <= 0) return 0;
  double top = load(0);
  for (long long j = 1; j < classes; ++j)
    if (load(j) > top) top = load(j);
  double total = 0.0;
  for (long long j = 0; j < classes; ++j) total += kiln_random_exp(load(j) - top);
  const double target = kiln_random_unit(key, element, 0) * total;
  double sum = 0.0;
  for (long long j = 0; j < classes; ++j) {
    sum += kiln_random_exp(load(j) - top);
    if (target < sum) return j;
  }
  return classes - 1;
}

#endif
