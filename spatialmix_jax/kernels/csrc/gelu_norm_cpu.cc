// Native CPU kernels for jax.ffi: a per-channel shift (the preceding conv's bias), exact GELU and
// training-mode BatchNorm, y = BN(gelu(a + shift)), forward and backward, in the fewest passes
// over memory.
//
// Layout: a, y, da, dy of shape (..., C), float32, row-major: M = size / C rows of C channels;
// shift, scale, bias, mean, var of shape (C). Statistics are over the M rows, as flax's BatchNorm
// computes them (mean of g and of g², variance E[g²] - E[g]² clipped at 0), summed per block
// of rows in float32 and across blocks in double, in a fixed order (results do not depend on
// thread timing).
//
//   forward:  pass 1 reads a and writes g = gelu(a + shift) and dg = gelu'(a + shift) (both
//             kept for the backward pass) while summing g and g²; pass 2 reads g and writes y.
//   backward: pass 1 reads dy and g for the sums of dy and dy·x̂ (x̂ = normalised g); pass 2
//             reads dy, g and dg and writes da = dg · scale · inv · (dy - mean(dy) - x̂ ·
//             mean(dy·x̂)), summing da for the gradient of shift; the gradients of scale and
//             bias come from pass 1's sums.
// XLA's own fusions of the same maths take about twice as many passes on this machine, and the
// conv bias added by XLA would take one more pass each way.
//
// gelu(a) = a·Φ(a), Φ(a) = (1 + erf(a/√2)) / 2, gelu'(a) = Φ(a) + a·φ(a). erfc(|x|) is the
// classic rational approximation of Abramowitz & Stegun (7.1.26, absolute error < 1.5e-7)
// times exp(-x²), and Φ is formed from it without cancellation in either tail.

#include <cmath>
#include <cstdint>
#include <vector>

#include "cpu_common.h"

namespace {

using spatialmix::kLanes;
using spatialmix::Load;
using spatialmix::ParallelFor;
using spatialmix::Store;
using spatialmix::V16;

typedef int32_t V16i __attribute__((vector_size(64)));

constexpr int64_t kRowsPerBlock = 64;

inline V16 Splat(float v) { return V16{} + v; }

// exp(z) for z <= 0, relative error ~1e-7; 0 below -87.3 (where float32 underflows anyway).
inline V16 ExpNonPositive(V16 z) {
  z = z < -87.3f ? Splat(-87.3f) : z;
  const V16 shifted = z * 1.44269504088896341f + 12582912.0f;  // 1.5·2^23: rounds to integer
  const V16 k = shifted - 12582912.0f;
  // Cody-Waite: ln 2 split into a part exact in float32 and the rest.
  const V16 r = (z - k * 0.693145751953125f) - k * 1.42860682030941723212e-6f;
  V16 p = Splat(1.0f / 40320);
  p = p * r + 1.0f / 5040;
  p = p * r + 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const V16i power = (__builtin_convertvector(k, V16i) + 127) << 23;
  return p * reinterpret_cast<const V16&>(power);
}

// g = gelu(a) and dg = gelu'(a), elementwise.
inline void Gelu(V16 a, V16* g, V16* dg) {
  const V16 x = a * 0.70710678118654752f;  // a / √2
  const V16 ax = x < 0.0f ? -x : x;
  const V16 e = ExpNonPositive(-x * x);  // exp(-a²/2)
  const V16 t = 1.0f / (1.0f + 0.3275911f * ax);
  V16 poly = Splat(1.061405429f);
  poly = poly * t - 1.453152027f;
  poly = poly * t + 1.421413741f;
  poly = poly * t - 0.284496736f;
  poly = poly * t + 0.254829592f;
  const V16 half_erfc = 0.5f * poly * t * e;  // erfc(|x|) / 2
  const V16 phi = x < 0.0f ? half_erfc : 1.0f - half_erfc;  // Φ(a)
  *g = a * phi;
  *dg = phi + a * e * 0.39894228040143268f;  // Φ(a) + a·exp(-a²/2)/√(2π)
}

struct Rows {
  int64_t m, c;
  int64_t blocks() const { return (m + kRowsPerBlock - 1) / kRowsPerBlock; }
  int64_t begin(int64_t block) const { return block * kRowsPerBlock; }
  int64_t end(int64_t block) const { return std::min(m, (block + 1) * kRowsPerBlock); }
};

// Adds the per-block partial sums (blocks x 2C floats: [first C | second C]) in block order.
void CombineSums(const Rows& r, const std::vector<float>& partial, std::vector<double>* first,
                 std::vector<double>* second) {
  first->assign(r.c, 0.0);
  second->assign(r.c, 0.0);
  for (int64_t b = 0; b < r.blocks(); ++b) {
    const float* p = partial.data() + b * 2 * r.c;
    for (int64_t ch = 0; ch < r.c; ++ch) {
      (*first)[ch] += p[ch];
      (*second)[ch] += p[r.c + ch];
    }
  }
}

// The same for one sum per channel (blocks x C floats), written out as float32.
void CombineSum(const Rows& r, const std::vector<float>& partial, float* out) {
  std::vector<double> sum(r.c, 0.0);
  for (int64_t b = 0; b < r.blocks(); ++b) {
    const float* p = partial.data() + b * r.c;
    for (int64_t ch = 0; ch < r.c; ++ch) sum[ch] += p[ch];
  }
  for (int64_t ch = 0; ch < r.c; ++ch) out[ch] = static_cast<float>(sum[ch]);
}

void Forward(ffi::ThreadPool& pool, const Rows& r, const float* a, const float* shift,
             const float* scale, const float* bias, float epsilon, float* y, float* g, float* dg,
             float* mean, float* var) {
  std::vector<float> partial(r.blocks() * 2 * r.c, 0.0f);
  ParallelFor(pool, r.blocks(), [&](int64_t b) {
    float* sum = partial.data() + b * 2 * r.c;
    float* sum_sq = sum + r.c;
    for (int64_t row = r.begin(b); row < r.end(b); ++row) {
      const int64_t o = row * r.c;
      int64_t ch = 0;
      for (; ch + kLanes <= r.c; ch += kLanes) {
        V16 gv, dgv;
        Gelu(Load(a + o + ch) + Load(shift + ch), &gv, &dgv);
        Store(g + o + ch, gv);
        Store(dg + o + ch, dgv);
        Store(sum + ch, Load(sum + ch) + gv);
        Store(sum_sq + ch, Load(sum_sq + ch) + gv * gv);
      }
      for (; ch < r.c; ++ch) {  // channels that do not fill a vector
        V16 gv, dgv;
        Gelu(Splat(a[o + ch] + shift[ch]), &gv, &dgv);
        g[o + ch] = gv[0];
        dg[o + ch] = dgv[0];
        sum[ch] += gv[0];
        sum_sq[ch] += gv[0] * gv[0];
      }
    }
  });
  std::vector<double> sum, sum_sq;
  CombineSums(r, partial, &sum, &sum_sq);
  std::vector<float> offset(r.c), mul(r.c);
  for (int64_t ch = 0; ch < r.c; ++ch) {
    const double mu = sum[ch] / r.m;
    mean[ch] = static_cast<float>(mu);
    var[ch] = static_cast<float>(std::max(0.0, sum_sq[ch] / r.m - mu * mu));
    mul[ch] = scale[ch] / std::sqrt(var[ch] + epsilon);
    offset[ch] = bias[ch] - mean[ch] * mul[ch];
  }
  ParallelFor(pool, r.blocks(), [&](int64_t b) {
    for (int64_t row = r.begin(b); row < r.end(b); ++row) {
      const int64_t o = row * r.c;
      int64_t ch = 0;
      for (; ch + kLanes <= r.c; ch += kLanes) {
        Store(y + o + ch, Load(g + o + ch) * Load(mul.data() + ch) + Load(offset.data() + ch));
      }
      for (; ch < r.c; ++ch) y[o + ch] = g[o + ch] * mul[ch] + offset[ch];
    }
  });
}

void Backward(ffi::ThreadPool& pool, const Rows& r, const float* dy, const float* g,
              const float* dg, const float* mean, const float* var, const float* scale,
              float epsilon, float* da, float* dscale, float* dbias, float* dshift) {
  std::vector<float> inv(r.c);
  for (int64_t ch = 0; ch < r.c; ++ch) inv[ch] = 1.0f / std::sqrt(var[ch] + epsilon);
  std::vector<float> partial(r.blocks() * 2 * r.c, 0.0f);
  ParallelFor(pool, r.blocks(), [&](int64_t b) {
    float* sum_dy = partial.data() + b * 2 * r.c;
    float* sum_dy_centred = sum_dy + r.c;
    for (int64_t row = r.begin(b); row < r.end(b); ++row) {
      const int64_t o = row * r.c;
      int64_t ch = 0;
      for (; ch + kLanes <= r.c; ch += kLanes) {
        const V16 d = Load(dy + o + ch);
        Store(sum_dy + ch, Load(sum_dy + ch) + d);
        Store(sum_dy_centred + ch,
              Load(sum_dy_centred + ch) + d * (Load(g + o + ch) - Load(mean + ch)));
      }
      for (; ch < r.c; ++ch) {
        sum_dy[ch] += dy[o + ch];
        sum_dy_centred[ch] += dy[o + ch] * (g[o + ch] - mean[ch]);
      }
    }
  });
  std::vector<double> sum_dy, sum_dy_centred;
  CombineSums(r, partial, &sum_dy, &sum_dy_centred);
  // da = dg·k·(dy - dbias/M - x̂·dscale/M) = dg·(k·dy + u·g + w), per channel constants.
  std::vector<float> k(r.c), u(r.c), w(r.c);
  for (int64_t ch = 0; ch < r.c; ++ch) {
    dbias[ch] = static_cast<float>(sum_dy[ch]);
    dscale[ch] = static_cast<float>(sum_dy_centred[ch] * inv[ch]);
    k[ch] = scale[ch] * inv[ch];
    // x̂·dscale/M = (g - mean)·inv²·Σdy(g-mean)/M
    const double slope = sum_dy_centred[ch] * inv[ch] * inv[ch] / r.m;
    u[ch] = static_cast<float>(-k[ch] * slope);
    w[ch] = static_cast<float>(-k[ch] * (sum_dy[ch] / r.m - slope * mean[ch]));
  }
  std::vector<float> partial_da(r.blocks() * r.c, 0.0f);
  ParallelFor(pool, r.blocks(), [&](int64_t b) {
    float* sum_da = partial_da.data() + b * r.c;
    for (int64_t row = r.begin(b); row < r.end(b); ++row) {
      const int64_t o = row * r.c;
      int64_t ch = 0;
      for (; ch + kLanes <= r.c; ch += kLanes) {
        const V16 inner = Load(k.data() + ch) * Load(dy + o + ch) +
                          Load(u.data() + ch) * Load(g + o + ch) + Load(w.data() + ch);
        const V16 d = Load(dg + o + ch) * inner;
        Store(da + o + ch, d);
        Store(sum_da + ch, Load(sum_da + ch) + d);
      }
      for (; ch < r.c; ++ch) {
        da[o + ch] = dg[o + ch] * (k[ch] * dy[o + ch] + u[ch] * g[o + ch] + w[ch]);
        sum_da[ch] += da[o + ch];
      }
    }
  });
  CombineSum(r, partial_da, dshift);
}

ffi::Error CheckRows(ffi::AnyBuffer::Dimensions dims, int64_t channels, Rows* r) {
  if (dims.size() < 2 || dims.back() != channels || channels < 1) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      "gelu_norm: the last axis must hold the channels");
  }
  int64_t m = 1;
  for (size_t i = 0; i + 1 < dims.size(); ++i) m *= dims[i];
  *r = Rows{m, channels};
  return ffi::Error::Success();
}

ffi::Error FwdImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> a, ffi::Buffer<ffi::F32> scale,
                   ffi::Buffer<ffi::F32> bias, ffi::Buffer<ffi::F32> shift,
                   ffi::ResultBuffer<ffi::F32> y,
                   ffi::ResultBuffer<ffi::F32> g, ffi::ResultBuffer<ffi::F32> dg,
                   ffi::ResultBuffer<ffi::F32> mean, ffi::ResultBuffer<ffi::F32> var,
                   float epsilon) {
  Rows r;
  if (auto e = CheckRows(a.dimensions(), scale.element_count(), &r); e.failure()) return e;
  if (shift.element_count() != r.c) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "gelu_norm: one shift per channel");
  }
  Forward(pool, r, a.typed_data(), shift.typed_data(), scale.typed_data(), bias.typed_data(),
          epsilon, y->typed_data(), g->typed_data(), dg->typed_data(), mean->typed_data(),
          var->typed_data());
  return ffi::Error::Success();
}

ffi::Error BwdImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> dy, ffi::Buffer<ffi::F32> g,
                   ffi::Buffer<ffi::F32> dg, ffi::Buffer<ffi::F32> mean,
                   ffi::Buffer<ffi::F32> var, ffi::Buffer<ffi::F32> scale,
                   ffi::ResultBuffer<ffi::F32> da, ffi::ResultBuffer<ffi::F32> dscale,
                   ffi::ResultBuffer<ffi::F32> dbias, ffi::ResultBuffer<ffi::F32> dshift,
                   float epsilon) {
  Rows r;
  if (auto e = CheckRows(dy.dimensions(), scale.element_count(), &r); e.failure()) return e;
  Backward(pool, r, dy.typed_data(), g.typed_data(), dg.typed_data(), mean.typed_data(),
           var.typed_data(), scale.typed_data(), epsilon, da->typed_data(),
           dscale->typed_data(), dbias->typed_data(), dshift->typed_data());
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(SpatialmixGeluNormFwd, FwdImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("epsilon"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(SpatialmixGeluNormBwd, BwdImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("epsilon"));
