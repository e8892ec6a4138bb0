// Native CPU depthwise convolution (depth multiplier 1) for jax.ffi.
//
// Layouts: x (N, H, W, C), w (KH, KW, C), y / g (N, HO, WO, C), all float32, row-major.
// y[n, i, j, c] = sum_{p, q} x[n, i*s + p - pad_h, j*s + q - pad_w, c] * w[p, q, c], with
// out-of-range x reading as zero ('SAME' padding is given by pad_h / pad_w; the high pad
// is implied by the shapes). Depth multipliers > 1 are handled by the Python side.
//
// Every loop nest keeps a block of channels in registers across the sum it accumulates
// (over taps, or over output columns for the kernel gradient), so each multiply-add
// costs two loads instead of two loads and a load/store of the accumulator.
// Work is split over rows (or batch parts) on XLA's intra-op thread pool.

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

// Runs fn(item) for item in [0, n) on the pool and the calling thread. The caller only
// waits for items to finish, never for tasks to start, so it cannot deadlock when it is
// itself a pool thread; late tasks find no work and touch only the shared state.
template <typename F>
void ParallelFor(ffi::ThreadPool& pool, int64_t n, const F& fn) {
  if (n <= 0) return;
  int64_t threads = std::min<int64_t>(pool.num_threads(), n - 1);
  if (threads <= 0) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  struct State {
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> done{0};
    std::mutex mu;
    std::condition_variable cv;
  };
  auto state = std::make_shared<State>();
  const F* fp = &fn;
  auto work = [state, n, fp]() {
    for (int64_t i; (i = state->next.fetch_add(1)) < n;) {
      (*fp)(i);
      if (state->done.fetch_add(1) + 1 == n) {
        std::lock_guard<std::mutex> lock(state->mu);
        state->cv.notify_all();
      }
    }
  };
  for (int64_t t = 0; t < threads; ++t) {
    auto task = work;
    pool.Schedule(std::move(task));
  }
  work();
  std::unique_lock<std::mutex> lock(state->mu);
  state->cv.wait(lock, [&] { return state->done.load() == n; });
}

// Calls block.template operator()<B>(c0) over [0, c) with the widest blocks first.
template <typename Block>
inline void ForChannelBlocks(int64_t c, const Block& block) {
  int64_t c0 = 0;
  for (; c0 + 64 <= c; c0 += 64) block.template operator()<64>(c0);
  for (; c0 + 16 <= c; c0 += 16) block.template operator()<16>(c0);
  for (; c0 < c; ++c0) block.template operator()<1>(c0);
}

// Taps t in [0, k) with 0 <= o*s + t - pad < size.
inline void TapRange(int64_t o, int64_t s, int64_t pad, int64_t k, int64_t size,
                     int64_t* lo, int64_t* hi) {
  *lo = std::max<int64_t>(0, pad - o * s);
  *hi = std::min<int64_t>(k, size + pad - o * s);
}

struct Dims {
  int64_t n, h, w, c, kh, kw, ho, wo, s, pad_h, pad_w;
};

void Forward(ffi::ThreadPool& pool, const Dims& d, const float* x, const float* w,
             float* y) {
  ParallelFor(pool, d.n * d.ho, [&](int64_t row) {
    const int64_t n = row / d.ho, i = row % d.ho;
    int64_t p_lo, p_hi;
    TapRange(i, d.s, d.pad_h, d.kh, d.h, &p_lo, &p_hi);
    const float* x_n = x + n * d.h * d.w * d.c;
    float* y_row = y + row * d.wo * d.c;
    for (int64_t j = 0; j < d.wo; ++j) {
      int64_t q_lo, q_hi;
      TapRange(j, d.s, d.pad_w, d.kw, d.w, &q_lo, &q_hi);
      ForChannelBlocks(d.c, [&]<int B>(int64_t c0) {
        float acc[B] = {};
        for (int64_t p = p_lo; p < p_hi; ++p) {
          const float* xr = x_n + ((i * d.s + p - d.pad_h) * d.w) * d.c + c0;
          const float* wr = w + p * d.kw * d.c + c0;
          for (int64_t q = q_lo; q < q_hi; ++q) {
            const float* xv = xr + (j * d.s + q - d.pad_w) * d.c;
            const float* wv = wr + q * d.c;
            for (int b = 0; b < B; ++b) acc[b] += xv[b] * wv[b];
          }
        }
        std::memcpy(y_row + j * d.c + c0, acc, sizeof(acc));
      });
    }
  });
}

// dx[n, r, col, c] = sum of g[n, i, j, c] * w[p, q, c] over i*s + p - pad_h == r (and the
// same for columns): the forward's transpose written as a gather, so rows are independent.
void BackwardInput(ffi::ThreadPool& pool, const Dims& d, const float* g, const float* w,
                   float* dx) {
  ParallelFor(pool, d.n * d.h, [&](int64_t row) {
    const int64_t n = row / d.h, r = row % d.h;
    const float* g_n = g + n * d.ho * d.wo * d.c;
    float* dx_row = dx + row * d.w * d.c;
    for (int64_t col = 0; col < d.w; ++col) {
      ForChannelBlocks(d.c, [&]<int B>(int64_t c0) {
        float acc[B] = {};
        for (int64_t p = 0; p < d.kh; ++p) {
          const int64_t t = r + d.pad_h - p;
          if (t < 0 || t % d.s || t / d.s >= d.ho) continue;
          const float* gr = g_n + (t / d.s) * d.wo * d.c + c0;
          const float* wr = w + p * d.kw * d.c + c0;
          for (int64_t q = 0; q < d.kw; ++q) {
            const int64_t u = col + d.pad_w - q;
            if (u < 0 || u % d.s || u / d.s >= d.wo) continue;
            const float* gv = gr + (u / d.s) * d.c;
            const float* wv = wr + q * d.c;
            for (int b = 0; b < B; ++b) acc[b] += gv[b] * wv[b];
          }
        }
        std::memcpy(dx_row + col * d.c + c0, acc, sizeof(acc));
      });
    }
  });
}

// dw[p, q, c] = sum_{n, i, j} x[n, i*s + p - pad_h, j*s + q - pad_w, c] * g[n, i, j, c].
// Batch parts accumulate privately (a k*k*C buffer stays in L1/L2) and are summed in a
// fixed order, so the result does not depend on thread timing.
void BackwardKernel(ffi::ThreadPool& pool, const Dims& d, const float* x, const float* g,
                    float* dw) {
  const int64_t taps = d.kh * d.kw * d.c;
  const int64_t parts = std::min<int64_t>(d.n, 2 * std::max<int64_t>(1, pool.num_threads()));
  std::vector<std::vector<float>> partial(parts, std::vector<float>(taps, 0.0f));
  ParallelFor(pool, parts, [&](int64_t part) {
    float* acc_dw = partial[part].data();
    for (int64_t n = part * d.n / parts; n < (part + 1) * d.n / parts; ++n) {
      const float* x_n = x + n * d.h * d.w * d.c;
      for (int64_t i = 0; i < d.ho; ++i) {
        const float* g_row = g + (n * d.ho + i) * d.wo * d.c;
        int64_t p_lo, p_hi;
        TapRange(i, d.s, d.pad_h, d.kh, d.h, &p_lo, &p_hi);
        for (int64_t p = p_lo; p < p_hi; ++p) {
          const float* x_row = x_n + (i * d.s + p - d.pad_h) * d.w * d.c;
          for (int64_t q = 0; q < d.kw; ++q) {
            // Output columns j with 0 <= j*s + q - pad_w < W.
            const int64_t a = d.pad_w - q;
            const int64_t j_lo = a <= 0 ? 0 : (a + d.s - 1) / d.s;
            const int64_t last = d.w - 1 + d.pad_w - q;
            const int64_t j_hi = last < 0 ? 0 : std::min<int64_t>(d.wo, last / d.s + 1);
            if (j_lo >= j_hi) continue;
            float* acc_pq = acc_dw + (p * d.kw + q) * d.c;
            ForChannelBlocks(d.c, [&]<int B>(int64_t c0) {
              float acc[B] = {};
              for (int64_t j = j_lo; j < j_hi; ++j) {
                const float* xv = x_row + (j * d.s + q - d.pad_w) * d.c + c0;
                const float* gv = g_row + j * d.c + c0;
                for (int b = 0; b < B; ++b) acc[b] += xv[b] * gv[b];
              }
              for (int b = 0; b < B; ++b) acc_pq[c0 + b] += acc[b];
            });
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

// `image` is x (N, H, W, C), `out` is y or g (N, HO, WO, C), `kernel` is (KH, KW, C).
ffi::Error MakeDims(ffi::AnyBuffer::Dimensions image, ffi::AnyBuffer::Dimensions out,
                    ffi::AnyBuffer::Dimensions kernel, int64_t stride, int64_t pad_h,
                    int64_t pad_w, Dims* d) {
  if (auto e = CheckRank("image", image.size(), 4); e.failure()) return e;
  if (auto e = CheckRank("output", out.size(), 4); e.failure()) return e;
  if (auto e = CheckRank("kernel", kernel.size(), 3); e.failure()) return e;
  *d = Dims{image[0], image[1], image[2], image[3], kernel[0], kernel[1],
            out[1],   out[2],   stride,   pad_h,    pad_w};
  if (out[0] != d->n || out[3] != d->c || kernel[2] != d->c || stride < 1) {
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
