// Native CPU depthwise convolution for jax.ffi: forward, input gradient, kernel gradient.
//
// Layouts: x (N, H, W, CI), w (KH, KW, C), y / g (N, HO, WO, C), all float32, row-major,
// with C = CI * D (depth multiplier D). Writing xe for x with every channel repeated D
// times (xe[..., o] = x[..., o / D]):
// y[n, i, j, o] = sum_{p, q} xe[n, i*s + p - pad_h, j*s + q - pad_w, o] * w[p, q, o], with
// out-of-range x reading as zero ('SAME' padding is given by pad_h / pad_w; the high pad
// is implied by the shapes).
//
// Each image is first copied into per-thread scratch with its zero border and channel
// repeat (a D-times larger array never exists in memory, and the hot loops need no bounds
// checks). Those loops work on 16-channel vectors and keep a tile of accumulators in
// registers (8 output columns for the convolutions, up to 24 taps for the kernel
// gradient), so one vector load of the shared operand feeds many multiply-adds. GCC/Clang
// vector extensions keep this portable: without AVX-512 a 16-float vector just becomes
// several narrower registers. Work is split over images on XLA's intra-op thread pool.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "cpu_common.h"

namespace {

using spatialmix::kLanes;
using spatialmix::Load;
using spatialmix::ParallelFor;
using spatialmix::Store;
using spatialmix::V16;

// Output columns per register tile of the convolutions.
constexpr int kTile = 8;

// Per-thread scratch reused across calls (pool threads are long-lived); two slots so a
// padded image and a row buffer can coexist.
float* Scratch(int slot, size_t size) {
  thread_local std::vector<float> buffers[2];
  if (buffers[slot].size() < size) buffers[slot].resize(size);
  return buffers[slot].data();
}

// Copies an (h, w, ci) image into an (hp, wp, ci * dm) buffer at offset (top, left), zero
// elsewhere, repeating each channel dm times. Source rows/columns that fall outside the
// buffer are dropped (they are never read by any output).
void PadImage(const float* src, int64_t h, int64_t w, int64_t ci, int64_t dm, int64_t hp,
              int64_t wp, int64_t top, int64_t left, float* out) {
  const int64_t c = ci * dm;
  std::fill(out, out + hp * wp * c, 0.0f);
  for (int64_t r = std::max<int64_t>(0, -top); r < h && r + top < hp; ++r) {
    for (int64_t col = std::max<int64_t>(0, -left); col < w && col + left < wp; ++col) {
      const float* s = src + (r * w + col) * ci;
      float* o = out + ((r + top) * wp + col + left) * c;
      if (dm == 1) {
        std::memcpy(o, s, ci * sizeof(float));
      } else {
        for (int64_t k = 0; k < ci; ++k) {
          for (int64_t m = 0; m < dm; ++m) o[k * dm + m] = s[k];
        }
      }
    }
  }
}

// y[i, j0 + jj] (jj < J) for one 16-channel block, where
// y[i, j] = sum_{p, q} xp[i*s + p, j*s + q] * w[p, q] on a padded image of width wp.
template <int J>
inline void ConvTile(const float* xp, int64_t wp, int64_t c, const float* w, int64_t kh,
                     int64_t kw, int64_t s, int64_t i, int64_t j0, int64_t c0, float* y_row) {
  V16 acc[J] = {};
  for (int64_t p = 0; p < kh; ++p) {
    const float* xr = xp + ((i * s + p) * wp + j0 * s) * c + c0;
    const float* wr = w + p * kw * c + c0;
    for (int64_t q = 0; q < kw; ++q) {
      const V16 wv = Load(wr + q * c);
      const float* xq = xr + q * c;
      for (int jj = 0; jj < J; ++jj) acc[jj] += Load(xq + jj * s * c) * wv;
    }
  }
  for (int jj = 0; jj < J; ++jj) Store(y_row + (j0 + jj) * c + c0, acc[jj]);
}

// The whole (ho, wo, c) output of one padded image. Channel blocks are the outer loop so
// that the kh input rows a block of outputs reads (kh * wp * 64 bytes) stay in L1 from
// one output row to the next.
void ConvImage(const float* xp, int64_t wp, int64_t c, const float* w, int64_t kh,
               int64_t kw, int64_t s, int64_t ho, int64_t wo, float* y) {
  int64_t c0 = 0;
  for (; c0 + kLanes <= c; c0 += kLanes) {
    for (int64_t i = 0; i < ho; ++i) {
      float* y_row = y + i * wo * c;
      int64_t j = 0;
      for (; j + kTile <= wo; j += kTile) {
        ConvTile<kTile>(xp, wp, c, w, kh, kw, s, i, j, c0, y_row);
      }
      for (; j < wo; ++j) ConvTile<1>(xp, wp, c, w, kh, kw, s, i, j, c0, y_row);
    }
  }
  for (; c0 < c; ++c0) {  // channels that do not fill a vector
    for (int64_t i = 0; i < ho; ++i) {
      for (int64_t j = 0; j < wo; ++j) {
        float acc = 0.0f;
        for (int64_t p = 0; p < kh; ++p) {
          for (int64_t q = 0; q < kw; ++q) {
            acc += xp[((i * s + p) * wp + j * s + q) * c + c0] * w[(p * kw + q) * c + c0];
          }
        }
        y[(i * wo + j) * c + c0] = acc;
      }
    }
  }
}

struct Dims {
  int64_t n, h, w, c, kh, kw, ho, wo, s, pad_h, pad_w, ci, dm;
  // Padded input extent: every tap of every output lands inside it.
  int64_t hp() const { return std::max(pad_h + h, (ho - 1) * s + kh); }
  int64_t wp() const { return std::max(pad_w + w, (wo - 1) * s + kw); }
};

// Image n of x, zero-padded and channel-repeated into scratch slot 0.
const float* PaddedImage(const Dims& d, const float* x, int64_t n) {
  float* out = Scratch(0, d.hp() * d.wp() * d.c);
  PadImage(x + n * d.h * d.w * d.ci, d.h, d.w, d.ci, d.dm, d.hp(), d.wp(), d.pad_h,
           d.pad_w, out);
  return out;
}

void Forward(ffi::ThreadPool& pool, const Dims& d, const float* x, const float* w,
             float* y) {
  ParallelFor(pool, d.n, [&](int64_t n) {
    ConvImage(PaddedImage(d, x, n), d.wp(), d.c, w, d.kh, d.kw, d.s, d.ho, d.wo,
              y + n * d.ho * d.wo * d.c);
  });
}

// For the input gradient at position r with stride s > 1: taps t in [lo, hi), stepping by
// s, with r + pad - t a multiple of s and 0 <= (r + pad - t) / s < out.
inline void GatherTaps(int64_t r, int64_t s, int64_t pad, int64_t k, int64_t out,
                       int64_t* lo, int64_t* hi) {
  const int64_t base = r + pad;
  int64_t first = std::max<int64_t>(0, base - (out - 1) * s);
  if (first <= base) first += (base - first) % s;
  *lo = first;
  *hi = std::min<int64_t>(k, base + 1);
}

// Strided input-gradient row as a gather over the taps that reach it (a quarter of the
// taps for stride 2), V 16-channel vectors at a time for independent accumulator chains.
template <int V>
inline void StridedBackwardPixel(const Dims& d, const float* g_n, const float* w,
                                 int64_t r, int64_t col, int64_t p_lo, int64_t p_hi,
                                 int64_t q_lo, int64_t q_hi, int64_t c0, float* dx_row) {
  V16 acc[V] = {};
  for (int64_t p = p_lo; p < p_hi; p += d.s) {
    const float* gr = g_n + ((r + d.pad_h - p) / d.s) * d.wo * d.c + c0;
    for (int64_t q = q_lo; q < q_hi; q += d.s) {
      const float* gv = gr + ((col + d.pad_w - q) / d.s) * d.c;
      const float* wv = w + (p * d.kw + q) * d.c + c0;
      for (int v = 0; v < V; ++v) acc[v] += Load(gv + v * kLanes) * Load(wv + v * kLanes);
    }
  }
  for (int v = 0; v < V; ++v) Store(dx_row + col * d.c + c0 + v * kLanes, acc[v]);
}

void StridedBackwardRow(const Dims& d, const float* g_n, const float* w, int64_t r,
                        float* dx_row) {
  int64_t p_lo, p_hi;
  GatherTaps(r, d.s, d.pad_h, d.kh, d.ho, &p_lo, &p_hi);
  for (int64_t col = 0; col < d.w; ++col) {
    int64_t q_lo, q_hi;
    GatherTaps(col, d.s, d.pad_w, d.kw, d.wo, &q_lo, &q_hi);
    int64_t c0 = 0;
    for (; c0 + 4 * kLanes <= d.c; c0 += 4 * kLanes) {
      StridedBackwardPixel<4>(d, g_n, w, r, col, p_lo, p_hi, q_lo, q_hi, c0, dx_row);
    }
    for (; c0 + kLanes <= d.c; c0 += kLanes) {
      StridedBackwardPixel<1>(d, g_n, w, r, col, p_lo, p_hi, q_lo, q_hi, c0, dx_row);
    }
    for (; c0 < d.c; ++c0) {
      float acc = 0.0f;
      for (int64_t p = p_lo; p < p_hi; p += d.s) {
        for (int64_t q = q_lo; q < q_hi; q += d.s) {
          acc += g_n[(((r + d.pad_h - p) / d.s) * d.wo + (col + d.pad_w - q) / d.s) * d.c +
                     c0] *
                 w[(p * d.kw + q) * d.c + c0];
        }
      }
      dx_row[col * d.c + c0] = acc;
    }
  }
}

// dx[r, col] = sum of g[i, j] * w[p, q] over i*s + p - pad_h == r (same for columns). With
// stride 1 that is a plain correlation of g, padded by k - 1 - pad at the top/left, with
// the flipped kernel, so it reuses the forward's tiles.
void BackwardInput(ffi::ThreadPool& pool, const Dims& d, const float* g, const float* w,
                   float* dx) {
  std::vector<float> flipped(d.kh * d.kw * d.c);
  for (int64_t p = 0; p < d.kh; ++p) {
    for (int64_t q = 0; q < d.kw; ++q) {
      std::memcpy(&flipped[(p * d.kw + q) * d.c],
                  w + ((d.kh - 1 - p) * d.kw + d.kw - 1 - q) * d.c, d.c * sizeof(float));
    }
  }
  const int64_t gh = d.h + d.kh - 1, gw = d.w + d.kw - 1;
  ParallelFor(pool, d.n, [&](int64_t n) {
    const float* g_n = g + n * d.ho * d.wo * d.c;
    // With D > 1 this is the gradient of the channel-repeated image; its D copies are
    // summed below.
    float* dx_n = d.dm == 1 ? dx + n * d.h * d.w * d.c : Scratch(1, d.h * d.w * d.c);
    if (d.s == 1) {
      float* gp = Scratch(0, gh * gw * d.c);
      PadImage(g_n, d.ho, d.wo, d.c, 1, gh, gw, d.kh - 1 - d.pad_h, d.kw - 1 - d.pad_w, gp);
      ConvImage(gp, gw, d.c, flipped.data(), d.kh, d.kw, 1, d.h, d.w, dx_n);
    } else {
      for (int64_t r = 0; r < d.h; ++r) StridedBackwardRow(d, g_n, w, r, dx_n + r * d.w * d.c);
    }
    if (d.dm > 1) {
      float* out = dx + n * d.h * d.w * d.ci;
      for (int64_t k = 0; k < d.h * d.w * d.ci; ++k) {
        float sum = 0.0f;
        for (int64_t m = 0; m < d.dm; ++m) sum += dx_n[k * d.dm + m];
        out[k] = sum;
      }
    }
  });
}

// Adds sum_{i, j} xp[i*s + p, j*s + q] * g[i, j] to acc_dw[p, q] for the P x Q taps from
// (p0, q0), one 16-channel block: P * Q accumulators share each load of g.
template <int P, int Q>
inline void KernelTile(const Dims& d, const float* xp, const float* g_n, int64_t p0,
                       int64_t q0, int64_t c0, float* acc_dw) {
  const int64_t wp = d.wp();
  V16 acc[P][Q] = {};
  for (int64_t i = 0; i < d.ho; ++i) {
    const float* xr = xp + ((i * d.s + p0) * wp + q0) * d.c + c0;
    const float* gr = g_n + i * d.wo * d.c + c0;
    for (int64_t j = 0; j < d.wo; ++j) {
      const V16 gv = Load(gr + j * d.c);
      const float* xj = xr + j * d.s * d.c;
      for (int pp = 0; pp < P; ++pp) {
        for (int qq = 0; qq < Q; ++qq) acc[pp][qq] += Load(xj + (pp * wp + qq) * d.c) * gv;
      }
    }
  }
  for (int pp = 0; pp < P; ++pp) {
    for (int qq = 0; qq < Q; ++qq) {
      float* out = acc_dw + ((p0 + pp) * d.kw + q0 + qq) * d.c + c0;
      Store(out, Load(out) + acc[pp][qq]);
    }
  }
}

// All kernel rows for kernel columns [q0, q0 + Q), in tiles of at most ~24 accumulators.
template <int Q>
void KernelColumns(const Dims& d, const float* xp, const float* g_n, int64_t q0, int64_t c0,
                   float* acc_dw) {
  constexpr int kP = Q <= 6 ? 4 : 3;
  int64_t p0 = 0;
  for (; p0 + kP <= d.kh; p0 += kP) KernelTile<kP, Q>(d, xp, g_n, p0, q0, c0, acc_dw);
  switch (d.kh - p0) {
    case 3:
      if constexpr (kP > 3) KernelTile<3, Q>(d, xp, g_n, p0, q0, c0, acc_dw);
      break;
    case 2:
      KernelTile<2, Q>(d, xp, g_n, p0, q0, c0, acc_dw);
      break;
    case 1:
      KernelTile<1, Q>(d, xp, g_n, p0, q0, c0, acc_dw);
      break;
  }
}

void KernelBlock(const Dims& d, const float* xp, const float* g_n, int64_t c0,
                 float* acc_dw) {
  int64_t q0 = 0;
  for (; q0 + kTile <= d.kw; q0 += kTile) KernelColumns<kTile>(d, xp, g_n, q0, c0, acc_dw);
  switch (d.kw - q0) {
    case 7: KernelColumns<7>(d, xp, g_n, q0, c0, acc_dw); break;
    case 6: KernelColumns<6>(d, xp, g_n, q0, c0, acc_dw); break;
    case 5: KernelColumns<5>(d, xp, g_n, q0, c0, acc_dw); break;
    case 4: KernelColumns<4>(d, xp, g_n, q0, c0, acc_dw); break;
    case 3: KernelColumns<3>(d, xp, g_n, q0, c0, acc_dw); break;
    case 2: KernelColumns<2>(d, xp, g_n, q0, c0, acc_dw); break;
    case 1: KernelColumns<1>(d, xp, g_n, q0, c0, acc_dw); break;
  }
}

// dw[p, q] = sum_{n, i, j} xp[n, i*s + p, j*s + q] * g[n, i, j]. Batch parts accumulate
// privately and are summed in a fixed order, so the result does not depend on timing.
void BackwardKernel(ffi::ThreadPool& pool, const Dims& d, const float* x, const float* g,
                    float* dw) {
  const int64_t taps = d.kh * d.kw * d.c;
  const int64_t parts = std::min<int64_t>(d.n, 2 * std::max<int64_t>(1, pool.num_threads()));
  std::vector<std::vector<float>> partial(parts, std::vector<float>(taps, 0.0f));
  ParallelFor(pool, parts, [&](int64_t part) {
    float* acc_dw = partial[part].data();
    for (int64_t n = part * d.n / parts; n < (part + 1) * d.n / parts; ++n) {
      const float* xp = PaddedImage(d, x, n);
      const float* g_n = g + n * d.ho * d.wo * d.c;
      int64_t c0 = 0;
      for (; c0 + kLanes <= d.c; c0 += kLanes) KernelBlock(d, xp, g_n, c0, acc_dw);
      for (; c0 < d.c; ++c0) {
        for (int64_t p = 0; p < d.kh; ++p) {
          for (int64_t q = 0; q < d.kw; ++q) {
            float acc = 0.0f;
            for (int64_t i = 0; i < d.ho; ++i) {
              for (int64_t j = 0; j < d.wo; ++j) {
                acc += xp[((i * d.s + p) * d.wp() + j * d.s + q) * d.c + c0] *
                       g_n[(i * d.wo + j) * d.c + c0];
              }
            }
            acc_dw[(p * d.kw + q) * d.c + c0] += acc;
          }
        }
      }
    }
  });
  std::fill(dw, dw + taps, 0.0f);
  for (const auto& part : partial) {
    for (int64_t t = 0; t < taps; ++t) dw[t] += part[t];
  }
}

ffi::Error CheckRank(const char* name, size_t rank, size_t want) {
  if (rank != want) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      std::string(name) + " has the wrong rank for depthwise conv");
  }
  return ffi::Error::Success();
}

// `image` is x (N, H, W, CI), `out` is y or g (N, HO, WO, C), `kernel` is (KH, KW, C).
ffi::Error MakeDims(ffi::AnyBuffer::Dimensions image, ffi::AnyBuffer::Dimensions out,
                    ffi::AnyBuffer::Dimensions kernel, int64_t stride, int64_t pad_h,
                    int64_t pad_w, Dims* d) {
  if (auto e = CheckRank("image", image.size(), 4); e.failure()) return e;
  if (auto e = CheckRank("output", out.size(), 4); e.failure()) return e;
  if (auto e = CheckRank("kernel", kernel.size(), 3); e.failure()) return e;
  if (image[3] < 1 || out[3] % image[3]) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      "output channels must be a multiple of input channels");
  }
  *d = Dims{image[0], image[1], image[2], out[3], kernel[0], kernel[1], out[1],
            out[2],   stride,   pad_h,    pad_w,  image[3], out[3] / image[3]};
  if (out[0] != d->n || kernel[2] != d->c || stride < 1) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      "inconsistent shapes for depthwise conv");
  }
  return ffi::Error::Success();
}

ffi::Error FwdImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w,
                   ffi::ResultBuffer<ffi::F32> y, int64_t stride, int64_t pad_h,
                   int64_t pad_w) {
  Dims d;
  if (auto e = MakeDims(x.dimensions(), y->dimensions(), w.dimensions(), stride, pad_h,
                        pad_w, &d);
      e.failure()) {
    return e;
  }
  Forward(pool, d, x.typed_data(), w.typed_data(), y->typed_data());
  return ffi::Error::Success();
}

ffi::Error BwdInputImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> g,
                        ffi::Buffer<ffi::F32> w, ffi::ResultBuffer<ffi::F32> dx,
                        int64_t stride, int64_t pad_h, int64_t pad_w) {
  Dims d;
  if (auto e = MakeDims(dx->dimensions(), g.dimensions(), w.dimensions(), stride, pad_h,
                        pad_w, &d);
      e.failure()) {
    return e;
  }
  BackwardInput(pool, d, g.typed_data(), w.typed_data(), dx->typed_data());
  return ffi::Error::Success();
}

ffi::Error BwdKernelImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x,
                         ffi::Buffer<ffi::F32> g, ffi::ResultBuffer<ffi::F32> dw,
                         int64_t stride, int64_t pad_h, int64_t pad_w) {
  Dims d;
  if (auto e = MakeDims(x.dimensions(), g.dimensions(), dw->dimensions(), stride, pad_h,
                        pad_w, &d);
      e.failure()) {
    return e;
  }
  BackwardKernel(pool, d, x.typed_data(), g.typed_data(), dw->typed_data());
  return ffi::Error::Success();
}

}  // namespace

#define SPATIALMIX_BIND                                                  \
  ffi::Ffi::Bind()                                                       \
      .Ctx<ffi::ThreadPool>()                                            \
      .Arg<ffi::Buffer<ffi::F32>>()                                      \
      .Arg<ffi::Buffer<ffi::F32>>()                                      \
      .Ret<ffi::Buffer<ffi::F32>>()                                      \
      .Attr<int64_t>("stride")                                           \
      .Attr<int64_t>("pad_h")                                            \
      .Attr<int64_t>("pad_w")

XLA_FFI_DEFINE_HANDLER_SYMBOL(SpatialmixDepthwiseFwd, FwdImpl, SPATIALMIX_BIND);
XLA_FFI_DEFINE_HANDLER_SYMBOL(SpatialmixDepthwiseBwdInput, BwdInputImpl, SPATIALMIX_BIND);
XLA_FFI_DEFINE_HANDLER_SYMBOL(SpatialmixDepthwiseBwdKernel, BwdKernelImpl, SPATIALMIX_BIND);
