// The CPU backend: memory, element-wise ops, norms, rope, KV stores, the router. The heavy ops live
// in cpu_matmul.cpp, cpu_attention.cpp, cpu_moe.cpp and cpu_delta_net.cpp.
#include "backend/cpu/cpu_backend.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <thread>

#include <sys/mman.h>

#include "core/env_switch.h"
#include "core/error.h"

namespace moeserve::cpu {
namespace {

inline float* frow(const Tensor& t, int64_t r) { return reinterpret_cast<float*>(t.flat_row(r)); }

int default_threads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n ? int(n) : 1;
}

}  // namespace

bool CpuOptions::fused_layer_ops_default() { return env_switch_on("MOESERVE_CPU_FUSE"); }

CpuBackend::CpuBackend(const CpuOptions& options)
    : Backend(DeviceId{}),
      options_(options),
      kernels_(make_kernels(std::min(options.isa, detect_isa()), options.grid_lookup)),
      pool_(options.n_threads > 0 ? options.n_threads : default_threads()) {
  if (OpTimes::requested()) times_ = std::make_unique<OpTimes>();
}

CpuBackend::~CpuBackend() {
  if (times_) times_->print("CPU time per op (MOESERVE_PROFILE, wall time):");
}

void CpuBackend::op_begin(const char* op) {
  if (!times_) return;
  timed_op_ = op;
  timed_since_ = std::chrono::steady_clock::now();
}

void CpuBackend::op_end(const char*) {
  if (!times_) return;
  times_->add(timed_op_, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - timed_since_).count());
}

std::string CpuBackend::name() const {
  return str_cat("cpu (", isa_name(kernels_.isa), ", ", pool_.size(), " threads)");
}

Buffer CpuBackend::alloc(size_t bytes) {
  // Large buffers (caches, scratch, logits) come from the kernel as zero pages that are only
  // faulted in when first touched, so planning for the worst case costs no time at start-up.
  constexpr size_t kMapThreshold = size_t(1) << 20;
  if (bytes >= kMapThreshold) {
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) fail("out of memory allocating ", bytes, " bytes of CPU memory");
    return Buffer(p, bytes, [bytes](void* q) { munmap(q, bytes); });
  }
  // 64-byte alignment: cache lines and AVX-512 loads.
  const size_t size = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, size ? size : 64);
  if (!p) fail("out of memory allocating ", bytes, " bytes of CPU memory");
  std::memset(p, 0, size);
  return Buffer(p, bytes, [](void* q) { std::free(q); });
}

void CpuBackend::do_upload(const Tensor& dst, const void* host) { std::memcpy(dst.data, host, dst.n_bytes()); }
void CpuBackend::do_download(void* host, const Tensor& src) { std::memcpy(host, src.data, src.n_bytes()); }

void CpuBackend::quantize_rows(const Tensor& x, GgmlType type, char* out, int ith, int nth) const {
  const int64_t k = x.ne[0];
  const size_t stride = row_bytes(type, k);
  const QuantizeRowFn quantize = kernels_.quantize_for(type);
  const auto [b, e] = share(x.n_rows(), ith, nth);
  for (int64_t r = b; r < e; ++r) quantize(frow(x, r), out + size_t(r) * stride, k);
}

void CpuBackend::do_get_rows(const Tensor& dst, const Tensor& src, const Tensor& ids) {
  if (skip()) return;
  const DequantizeRowFn dequantize = kernels_.dequantize_for(src.type);
  if (!dequantize) fail("get_rows: no conversion from ", type_name(src.type), " to F32");
  const int32_t* id = ids.as<int32_t>();
  for (int64_t i = 0; i < dst.ne[1]; ++i) {
    if (id[i] < 0 || id[i] >= src.ne[1]) fail("internal: get_rows id ", id[i], " outside ", src.ne[1], " rows");
  }
  parallel_for(dst.ne[1], dst.ne[0], [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) dequantize(src.row(id[i]), frow(dst, i), src.ne[0]);
  });
}

float CpuBackend::rms_scale(int64_t d, const float* x, float eps) const {
  return 1.0f / std::sqrt(kernels_.dot_f32(d, x, x) / float(d) + eps);
}

void rms_apply(const float* x, float s, const float* weight, float* y, int64_t begin, int64_t end) {
  if (weight) {
    for (int64_t i = begin; i < end; ++i) y[i] = x[i] * s * weight[i];
  } else {
    for (int64_t i = begin; i < end; ++i) y[i] = x[i] * s;
  }
}

void CpuBackend::rms_norm_row(int64_t d, const float* x, const float* weight, float* y, float eps) const {
  rms_apply(x, rms_scale(d, x, eps), weight, y, 0, d);
}

void CpuBackend::rms_norm_gated_row(int64_t d, const float* x, const float* weight, const float* z, float* y,
                                    float eps) const {
  const float s = rms_scale(d, x, eps);
  for (int64_t i = 0; i < d; ++i) y[i] = x[i] * s * weight[i] * silu(z[i]);
}

void CpuBackend::l2_norm_row(int64_t d, const float* x, float* y, float eps) const {
  const float s = 1.0f / std::sqrt(kernels_.dot_f32(d, x, x) + eps);
  for (int64_t i = 0; i < d; ++i) y[i] = x[i] * s;
}

void CpuBackend::do_rms_norm(const Tensor& dst, const Tensor& src, const Tensor* weight, float eps) {
  if (skip()) return;
  const int64_t d = src.ne[0];
  const float* w = weight ? weight->as<float>() : nullptr;
  parallel_for(src.n_rows(), d, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) rms_norm_row(d, frow(src, r), w, frow(dst, r), eps);
  });
}

// h = h + y, then the norm of h, row by row in one pass (binary's add, then rms_norm_row).
void CpuBackend::do_add_rms_norm(const Tensor& dst, const Tensor& h, const Tensor& y, const Tensor& weight, float eps) {
  if (!options_.fused_layer_ops) return Backend::do_add_rms_norm(dst, h, y, weight, eps);
  if (skip()) return;
  const int64_t d = h.ne[0];
  const float* w = weight.as<float>();
  parallel_for(h.n_rows(), 2 * d, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      float* x = frow(h, r);
      const float* yr = frow(y, r);
      for (int64_t i = 0; i < d; ++i) x[i] = x[i] + yr[i];
      rms_norm_row(d, x, w, frow(dst, r), eps);
    }
  });
}

void CpuBackend::do_rms_norm_gated(const Tensor& dst, const Tensor& src, const Tensor& weight, const Tensor& z,
                                   float eps) {
  if (skip()) return;
  const int64_t d = src.ne[0];
  const float* w = weight.as<float>();
  // Cost per row: silu's exp is ~20 flops an element (a decode step's 32 heads of 128 then
  // spread over the threads instead of taking the caller ~25 us alone).
  parallel_for(src.n_rows(), 24 * d, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) rms_norm_gated_row(d, frow(src, r), w, frow(z, r), frow(dst, r), eps);
  });
}

void CpuBackend::do_l2_norm(const Tensor& dst, const Tensor& src, float eps) {
  if (skip()) return;
  const int64_t d = src.ne[0];
  parallel_for(src.n_rows(), d, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) l2_norm_row(d, frow(src, r), frow(dst, r), eps);
  });
}

void CpuBackend::do_unary(const Tensor& dst, const Tensor& src, UnaryOp op) {
  if (skip()) return;
  const int64_t d = src.ne[0];
  parallel_for(src.n_rows(), 8 * d, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const float* x = frow(src, r);
      float* y = frow(dst, r);
      switch (op) {
        case UnaryOp::silu: for (int64_t i = 0; i < d; ++i) y[i] = silu(x[i]); break;
        case UnaryOp::sigmoid: for (int64_t i = 0; i < d; ++i) y[i] = sigmoid(x[i]); break;
        case UnaryOp::softplus: for (int64_t i = 0; i < d; ++i) y[i] = softplus(x[i]); break;
      }
    }
  });
}

void CpuBackend::do_binary(const Tensor& dst, const Tensor& a, const Tensor& b, BinaryOp op) {
  if (skip()) return;
  const int64_t d = a.ne[0];
  parallel_for(a.n_rows(), d, [&](int64_t rb, int64_t re) {
    for (int64_t r = rb; r < re; ++r) {
      const int64_t i1 = r % a.ne[1], i2 = (r / a.ne[1]) % a.ne[2], i3 = r / (a.ne[1] * a.ne[2]);
      const float* x = reinterpret_cast<const float*>(a.row(i1, i2, i3));
      const float* y = reinterpret_cast<const float*>(b.row(i1 % b.ne[1], i2 % b.ne[2], i3 % b.ne[3]));
      float* out = reinterpret_cast<float*>(dst.row(i1, i2, i3));
      if (b.ne[0] == 1) {
        const float s = y[0];
        if (op == BinaryOp::add) {
          for (int64_t i = 0; i < d; ++i) out[i] = x[i] + s;
        } else {
          for (int64_t i = 0; i < d; ++i) out[i] = x[i] * s;
        }
      } else if (op == BinaryOp::add) {
        for (int64_t i = 0; i < d; ++i) out[i] = x[i] + y[i];
      } else {
        for (int64_t i = 0; i < d; ++i) out[i] = x[i] * y[i];
      }
    }
  });
}

void CpuBackend::do_scale(const Tensor& dst, const Tensor& src, float factor) {
  if (skip()) return;
  const int64_t d = src.ne[0];
  parallel_for(src.n_rows(), d, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const float* x = frow(src, r);
      float* y = frow(dst, r);
      for (int64_t i = 0; i < d; ++i) y[i] = x[i] * factor;
    }
  });
}

void CpuBackend::do_swiglu(const Tensor& dst, const Tensor& gate, const Tensor& up) {
  if (skip()) return;
  const int64_t d = gate.ne[0];
  parallel_for(gate.n_rows(), 8 * d, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const float* g = frow(gate, r);
      const float* u = frow(up, r);
      float* y = frow(dst, r);
      for (int64_t i = 0; i < d; ++i) y[i] = silu(g[i]) * u[i];
    }
  });
}

void CpuBackend::do_copy(const Tensor& dst, const Tensor& src) {
  if (skip()) return;
  const int64_t d = src.ne[0];
  parallel_for(src.n_rows(), d, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      if (dst.type == src.type) {
        std::memcpy(dst.flat_row(r), src.flat_row(r), dst.row_size());
      } else if (dst.type == GgmlType::F32) {
        kernels_.dequantize_for(src.type)(src.flat_row(r), frow(dst, r), d);
      } else {
        kernels_.quantize_for(dst.type)(frow(src, r), dst.flat_row(r), d);
      }
    }
  });
}

void CpuBackend::do_zero(const Tensor& dst) {
  if (skip()) return;
  if (dst.is_contiguous()) {
    std::memset(dst.data, 0, dst.n_bytes());
    return;
  }
  for (int64_t r = 0; r < dst.n_rows(); ++r) std::memset(dst.flat_row(r), 0, dst.row_size());
}

void CpuBackend::do_rope(const Tensor& dst, const Tensor& src, const BatchInfo& batch, const RopeParams& p) {
  if (skip()) return;
  constexpr int kMaxHalf = 1024;
  const int half = p.n_rot / 2;
  if (half > kMaxHalf) fail("rope: ", p.n_rot, " rotary dims are more than this backend supports");
  const int64_t hd = src.ne[0], n_head = src.ne[1];
  parallel_for(src.ne[2], n_head * hd * 4, [&](int64_t tb, int64_t te) {
    float cos_t[kMaxHalf], sin_t[kMaxHalf];
    for (int64_t t = tb; t < te; ++t) {
      for (int i = 0; i < half; ++i) {
        const float inv_freq = float(std::pow(double(p.freq_base), -2.0 * i / p.n_rot));
        const float theta = float(batch.pos[t]) * inv_freq;
        cos_t[i] = std::cos(theta);
        sin_t[i] = std::sin(theta);
      }
      for (int64_t h = 0; h < n_head; ++h) {
        const float* x = reinterpret_cast<const float*>(src.row(h, t));
        float* y = reinterpret_cast<float*>(dst.row(h, t));
        for (int i = 0; i < half; ++i) {
          const int i0 = p.neox ? i : 2 * i, i1 = p.neox ? i + half : 2 * i + 1;
          const float a = x[i0], b = x[i1];
          y[i0] = a * cos_t[i] - b * sin_t[i];
          y[i1] = a * sin_t[i] + b * cos_t[i];
        }
        if (y != x) std::memcpy(y + p.n_rot, x + p.n_rot, size_t(hd - p.n_rot) * sizeof(float));
      }
    }
  });
}

void CpuBackend::do_kv_store(const Tensor& cache, const Tensor& src, const BatchInfo& batch) {
  if (skip()) return;
  const QuantizeRowFn quantize = kernels_.quantize_for(cache.type);
  parallel_for(batch.n_tokens, src.ne[0] * 4, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) quantize(frow(src, t), cache.row(batch.pos[t], batch.seq[t]), cache.ne[0]);
  });
}

void route_token(const float* l, int64_t n_expert, int64_t k, bool normalize, int32_t* id, float* w) {
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t x = 0; x < n_expert; ++x) mx = std::max(mx, l[x]);
  float sum = 0;
  for (int64_t x = 0; x < n_expert; ++x) sum += std::exp(l[x] - mx);
  // Selection by logit (softmax is monotonic), ties to the lower index: one pass keeping the
  // best k so far in order; a later expert enters only with a strictly larger logit than the
  // last kept one, behind every kept one with an equal logit (those have lower indices).
  int64_t kept = 0;
  for (int64_t x = 0; x < n_expert; ++x) {
    if (kept == k && !(l[x] > l[id[k - 1]])) continue;
    int64_t at = kept < k ? kept++ : k - 1;
    for (; at > 0 && l[x] > l[id[at - 1]]; --at) id[at] = id[at - 1];
    id[at] = int32_t(x);
  }
  float chosen = 0;
  for (int64_t j = 0; j < k; ++j) {
    w[j] = std::exp(l[id[j]] - mx) / sum;
    chosen += w[j];
  }
  if (normalize) {
    const float denom = std::max(chosen, 6.103515625e-5f);
    for (int64_t j = 0; j < k; ++j) w[j] /= denom;
  }
}

void CpuBackend::do_moe_route(const Tensor& ids, const Tensor& weights, const Tensor& logits, bool normalize) {
  if (skip()) return;
  const int64_t n_expert = logits.ne[0], k = ids.ne[0];
  parallel_for(logits.ne[1], n_expert * 16, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      route_token(frow(logits, t), n_expert, k, normalize, ids.as<int32_t>() + t * k, weights.as<float>() + t * k);
    }
  });
}

}  // namespace moeserve::cpu

namespace moeserve {

std::unique_ptr<Backend> make_cpu_backend(int n_threads) {
  cpu::CpuOptions options;
  options.n_threads = n_threads;
  return std::make_unique<cpu::CpuBackend>(options);
}

}  // namespace moeserve
