// Helpers for the op tests: host tensors with random contents, the two backends under test, and
// error measures.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "backend/gpu_devices.h"
#include "quant_test_util.h"

namespace moeserve::test {

// A tensor with its own host memory (both backends under test work on host memory).
struct HostTensor {
  std::shared_ptr<std::vector<uint8_t>> bytes;
  Tensor t;

  static HostTensor make(GgmlType type, std::array<int64_t, 4> ne) {
    HostTensor h;
    const size_t n = row_bytes(type, ne[0]) * size_t(ne[1] * ne[2] * ne[3]);
    h.bytes = std::make_shared<std::vector<uint8_t>>(n + 64, 0);
    h.t = Tensor::contiguous(type, ne, h.bytes->data());
    return h;
  }
  float* f() const { return t.as<float>(); }
  int32_t* i() const { return t.as<int32_t>(); }
  int64_t size() const { return t.n_elements(); }
  // A deep copy (so in-place ops can run on both backends from the same input).
  HostTensor clone() const {
    HostTensor h;
    h.bytes = std::make_shared<std::vector<uint8_t>>(*bytes);
    h.t = t;
    h.t.data = h.bytes->data();
    return h;
  }
};

// h as a tensor of device d (the same host bytes): the split backend's tests place inputs by it.
inline HostTensor on(DeviceId d, HostTensor h) {
  h.t.device = d;
  return h;
}

// The device list of one GPU with 64 GiB free, for placement tests whose "GPU" is the reference
// backend.
inline GpuDeviceList stand_in_gpu() {
  GpuDevice d;
  d.index = 0;
  d.name = "reference backend standing in for CUDA0";
  d.free_bytes = size_t(64) << 30;
  return {{d}, ""};
}

// One generator, restarted from the same seed at the start of every test: a test's inputs do not
// depend on which tests ran before it in the process (ctest runs each alone, a filtered gtest run
// runs many in one).
inline std::mt19937& rng() {
  static std::mt19937 gen(1234);
  static const testing::TestInfo* seeded_for = nullptr;
  const testing::TestInfo* current = testing::UnitTest::GetInstance()->current_test_info();
  if (current != seeded_for) {
    seeded_for = current;
    gen.seed(1234);
  }
  return gen;
}

inline HostTensor random_f32(std::array<int64_t, 4> ne, float lo = -1.0f, float hi = 1.0f) {
  HostTensor h = HostTensor::make(GgmlType::F32, ne);
  std::uniform_real_distribution<float> dist(lo, hi);
  for (int64_t i = 0; i < h.size(); ++i) h.f()[i] = dist(rng());
  return h;
}

// Random values quantized to `type` with its reference quantizer; types without one (the
// i-quants) get random blocks with sane scales (every index, sign and sub-scale pattern).
inline HostTensor random_typed(GgmlType type, std::array<int64_t, 4> ne, float scale = 1.0f) {
  HostTensor h = HostTensor::make(type, ne);
  const TypeTraits& tr = type_traits(type);
  if (!tr.quantize) {
    const std::vector<uint8_t> blocks = random_blocks(type, h.t.n_elements(), uint32_t(rng()()));
    std::memcpy(h.t.data, blocks.data(), blocks.size());
    return h;
  }
  HostTensor src = random_f32(ne, -scale, scale);
  for (int64_t r = 0; r < h.t.n_rows(); ++r) tr.quantize(src.f() + r * ne[0], h.t.flat_row(r), ne[0]);
  return h;
}

inline std::vector<float> to_floats(const Tensor& t) {
  std::vector<float> out(static_cast<size_t>(t.n_elements()));
  for (int64_t r = 0; r < t.n_rows(); ++r) {
    type_traits(t.type).dequantize(t.flat_row(r), out.data() + r * t.ne[0], t.ne[0]);
  }
  return out;
}

// Whether two contiguous tensors of one shape hold the same bytes (bit-identical results).
inline bool same_bits(const HostTensor& a, const HostTensor& b) {
  return std::memcmp(a.t.data, b.t.data, row_bytes(a.t.type, a.t.ne[0]) * size_t(a.t.n_rows())) == 0;
}

// max |a - b| / max |b| (b is the reference).
inline double rel_error(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num = std::max(num, double(std::fabs(a[i] - b[i])));
    den = std::max(den, double(std::fabs(b[i])));
  }
  return den > 0 ? num / den : num;
}

// log softmax of n logits, in double (the exact reference for probabilities from logits).
inline std::vector<double> log_softmax(const float* l, int64_t n) {
  double mx = l[0], sum = 0;
  for (int64_t v = 0; v < n; ++v) mx = std::max(mx, double(l[v]));
  for (int64_t v = 0; v < n; ++v) sum += std::exp(double(l[v]) - mx);
  std::vector<double> out;
  for (int64_t v = 0; v < n; ++v) out.push_back(double(l[v]) - mx - std::log(sum));
  return out;
}

inline std::unique_ptr<cpu::CpuBackend> cpu_backend(int threads = 3, cpu::Isa isa = cpu::Isa::avx512,
                                                    int chunk_min = 8) {
  cpu::CpuOptions o;
  o.n_threads = threads;
  o.isa = isa;
  o.delta_net_chunk_min = chunk_min;
  return std::make_unique<cpu::CpuBackend>(o);
}

// Batch metadata owned by the test.
struct TestBatch {
  std::vector<int32_t> pos, seq;
  std::vector<SeqRun> runs;
  BatchInfo info() const {
    return BatchInfo{int32_t(pos.size()), pos.data(), seq.data(), runs.data(), int32_t(runs.size())};
  }
  // Appends `count` tokens of sequence `s` at positions start, start+1, ...
  void add_run(int32_t s, int32_t start, int32_t count) {
    runs.push_back(SeqRun{s, int32_t(pos.size()), count});
    for (int32_t i = 0; i < count; ++i) {
      pos.push_back(start + i);
      seq.push_back(s);
    }
  }
};

}  // namespace moeserve::test
