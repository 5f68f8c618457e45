// The split backend over the CUDA backend and the CPU backend sharing a decode step's routed
// experts in RAM (MOESERVE_SPLIT_GPU_SLOTS): the GPU runs the first kg slots of every token,
// reading the page-locked copy of the experts through its host pointer (unified addressing), the
// CPU the others, and the GPU adds the two sums.
// * op level (Q8_0 and IQ2_XS experts, 1 or 3 tokens, kg = 0, 1, k/2, k; the inputs in one
//   allocation, fetched in one transfer, or in separate ones): the result is, bit for
//   bit, the CUDA backend's own op over those kg slots with the experts in device memory (the same
//   kernels on the same bytes) plus the CPU backend's op over the other slots (one f32 add); and
//   near the CPU backend's op over all slots: for Q8_0 both round x and h to the same 8-bit
//   blocks of 32, so they differ by f32 summation order and the odd h value whose rounding flips
//   (2e-2 of the largest output); for IQ2_XS the CPU rounds x and h in blocks of 256 with one
//   scale (Q8_K) where the GPU uses blocks of 32, and h of random blocks is heavy-tailed, so a
//   256-block's step is coarse for its small values: 1e-1, a sanity bound only (the exact
//   decomposition above is the test; test_cuda_matvec.cpp bounds the GPU's op against exact
//   products);
// * whole models (Hugging Face fixtures, F32, every expert in RAM): logits of decode steps of one
//   and three sequences against the all-CPU run within test_cuda_model.cpp's F32 bound, for each
//   kg, with the counters showing the expert ops ran the way kg says.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <random>

#include "../unit/convert_test_util.h"
#include "backend/gpu_devices.h"
#include "backend/split_backend.h"
#include "gpu_test_util.h"
#include "model/model.h"
#include "runtime/device_setup.h"
#include "runtime/engine.h"
#include "../unit/split_slots_test_util.h"

namespace moeserve::test {
namespace {

const DeviceId kCpu{DeviceKind::cpu, 0};

// Device copies of the hs' buffers, each with its h's view into it: one after the other in one
// allocation of backend b (as a step's activations share the engine's scratch: the split backend
// then fetches a step's x, ids and weights in one transfer), or one allocation each (separate
// transfers: a copy over the gaps between allocations would be invalid).
std::vector<DevTensor> on_device(Backend& b, std::initializer_list<const HostTensor*> hs, bool one_buffer) {
  size_t total = 0;
  for (const HostTensor* h : hs) total += (h->bytes->size() + 255) / 256 * 256;
  std::shared_ptr<Buffer> buf;
  std::vector<DevTensor> out;
  size_t at = 0;
  for (const HostTensor* h : hs) {
    if (!buf || !one_buffer) {
      buf = std::make_shared<Buffer>(b.alloc(one_buffer ? total : h->bytes->size()));
      at = 0;
    }
    DevTensor d;
    d.buf = buf;
    d.size = h->bytes->size();
    char* base = static_cast<char*>(buf->data()) + at;
    b.upload(byte_tensor(base, d.size), h->bytes->data());
    d.offset = at + size_t(static_cast<const uint8_t*>(h->t.data) - h->bytes->data());
    d.t = h->t;
    d.t.data = static_cast<char*>(buf->data()) + d.offset;
    d.t.device = b.device();
    out.push_back(d);
    at += (d.size + 255) / 256 * 256;
  }
  return out;
}

HostTensor random_experts(GgmlType type, std::array<int64_t, 4> ne, uint32_t seed) {
  HostTensor h = HostTensor::make(type, ne);
  const std::vector<uint8_t> blocks = random_blocks(type, h.t.n_elements(), seed);
  std::memcpy(h.t.data, blocks.data(), blocks.size());
  h.t.device = kCpu;
  return h;
}

TEST(CudaSplitSlots, OpIsTheGpusSlotsPlusTheCpus) {
  if (list_gpu_devices().devices.empty()) GTEST_SKIP() << "no GPU: " << list_gpu_devices().why_none;
  const int64_t n_embd = 256, n_ff = 256, n_expert = 32, k = 10;
  std::mt19937 rng(7);
  auto cpu = make_cpu_backend(0);
  for (GgmlType type : {GgmlType::Q8_0, GgmlType::IQ2_XS}) {
    const HostTensor gate = random_experts(type, {n_embd, n_ff, n_expert, 1}, uint32_t(rng()));
    const HostTensor up = random_experts(type, {n_embd, n_ff, n_expert, 1}, uint32_t(rng()));
    const HostTensor down = random_experts(type, {n_ff, n_embd, n_expert, 1}, uint32_t(rng()));
    const ExpertWeights in_ram{gate.t, up.t, down.t};
    const DevTensor dgate = to_gpu(gate), dup = to_gpu(up), ddown = to_gpu(down);
    const ExpertWeights in_vram{dgate.t, dup.t, ddown.t};
    for (int64_t n : {1, 3}) {
      // x: every other row of a [n_embd, 2n] tensor for three tokens (a strided download).
      const HostTensor x_all = random_f32({n_embd, 2 * n, 1, 1});
      HostTensor x = x_all;
      if (n > 1) x.t = x_all.t.view({n_embd, n, 1, 1}, {x_all.t.nb[0], 2 * x_all.t.nb[1], 0, 0});
      else x.t = x_all.t.rows(0, 1);
      HostTensor hx = HostTensor::make(GgmlType::F32, {n_embd, n, 1, 1});
      for (int64_t r = 0; r < n; ++r) std::memcpy(hx.t.row(r), x.t.row(r), x.t.row_size());
      HostTensor ids = HostTensor::make(GgmlType::I32, {k, n, 1, 1});
      HostTensor w = HostTensor::make(GgmlType::F32, {k, n, 1, 1});
      for (int64_t t = 0; t < n; ++t) {
        std::vector<int32_t> pool(static_cast<size_t>(n_expert));
        for (int32_t e = 0; e < int32_t(n_expert); ++e) pool[size_t(e)] = e;
        std::shuffle(pool.begin(), pool.end(), rng);
        for (int64_t j = 0; j < k; ++j) {
          ids.i()[t * k + j] = pool[size_t(j)];
          w.f()[t * k + j] = std::uniform_real_distribution<float>(0.05f, 0.6f)(rng);
        }
      }
      // The CPU's op over slots [first, first + count), and the CUDA backend's with the experts
      // in device memory.
      auto on_cpu = [&](int64_t first, int64_t count) {
        HostTensor out = HostTensor::make(GgmlType::F32, {n_embd, n, 1, 1});
        cpu->moe_experts(out.t, hx.t, in_ram, slots(ids, first, count).t, slots(w, first, count).t);
        return to_floats(out.t);
      };
      auto on_gpu = [&](int64_t first, int64_t count) {
        const HostTensor like = HostTensor::make(GgmlType::F32, {n_embd, n, 1, 1});
        const DevTensor out = to_gpu(poisoned(GgmlType::F32, {n_embd, n, 1, 1}));
        const DevTensor dx = to_gpu(hx), dids = to_gpu(slots(ids, first, count)), dw = to_gpu(slots(w, first, count));
        gpu().moe_experts(out.t, dx.t, in_vram, dids.t, dw.t);
        return to_floats(from_gpu(out, like).t);
      };
      const std::vector<float> all_cpu = on_cpu(0, k);

      for (int64_t kg : {int64_t(0), int64_t(1), k / 2, k}) {
        for (bool one_buffer : {true, false}) {
          SCOPED_TRACE(std::string(type_name(type)) + ", " + std::to_string(n) + " tokens, kg " + std::to_string(kg) +
                       (one_buffer ? ", inputs in one allocation" : ", inputs in separate allocations"));
          const SlotsSetting setting(std::to_string(kg));
          auto be = make_split_backend(make_cuda_backend(0), make_cpu_backend(0),
                                       [](const std::string&) { return kCpu; });
          ASSERT_TRUE(be->reads_host_memory());
          const HostTensor y0 = poisoned(GgmlType::F32, {n_embd, n, 1, 1});
          const std::vector<DevTensor> d = on_device(*be, {&x, &ids, &w, &y0}, one_buffer);
          const DevTensor &dx = d[0], &dids = d[1], &dw = d[2], &dy = d[3];
          // The dry run plans the staging and, ending, copies the experts to page-locked memory.
          be->begin_measure();
          be->moe_experts(dy.t, dx.t, in_ram, dids.t, dw.t);
          be->end_measure();
          be->moe_experts(dy.t, dx.t, in_ram, dids.t, dw.t);
          HostTensor got = HostTensor::make(GgmlType::F32, {n_embd, n, 1, 1});
          be->download(got.t.data, dy.t);

          std::vector<float> want;
          if (kg == 0) {
            want = all_cpu;
          } else if (kg == k) {
            want = on_gpu(0, k);
          } else {
            const std::vector<float> g = on_gpu(0, kg), h = on_cpu(kg, k - kg);
            for (size_t i = 0; i < g.size(); ++i) want.push_back(g[i] + h[i]);
          }
          EXPECT_EQ(to_floats(got.t), want);
          EXPECT_LT(rel_error(to_floats(got.t), all_cpu), type == GgmlType::Q8_0 ? 2e-2 : 1e-1);

          const SplitExpertCounts c = split_expert_counts(*be);
          EXPECT_EQ(c.shared, kg > 0 && kg < k ? 1 : 0);
          EXPECT_EQ(c.primary_only, kg == k ? 1 : 0);
          EXPECT_EQ(c.host_only, kg == 0 ? 1 : 0);
        }
      }
    }
  }
}

// The CUDA backend tells ranges inside one of its allocations (the driver's address range) from
// ranges that span two, or that are not its memory at all.
TEST(CudaSplitSlots, OneAllocationIsTheDriversAddressRange) {
  if (list_gpu_devices().devices.empty()) GTEST_SKIP() << "no GPU: " << list_gpu_devices().why_none;
  auto be = make_cuda_backend(0);
  const Buffer a = be->alloc(1 << 20), b = be->alloc(1 << 20);
  const char* pa = static_cast<const char*>(a.data());
  const char* pb = static_cast<const char*>(b.data());
  EXPECT_TRUE(be->one_allocation(pa, pa + (1 << 20)));
  EXPECT_TRUE(be->one_allocation(pa + 4096, pa + 8192));
  EXPECT_FALSE(be->one_allocation(std::min(pa, pb), std::max(pa, pb) + 16));
  EXPECT_FALSE(be->one_allocation(pa + 16, pa + 16));
  const std::vector<char> host(64);
  EXPECT_FALSE(be->one_allocation(host.data(), host.data() + host.size()));
}

class CudaSplitSlotsModel : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaSplitSlotsModel, LogitsMatchTheCpuForEveryShare) {
  if (list_gpu_devices().devices.empty()) GTEST_SKIP() << "no GPU: " << list_gpu_devices().why_none;
  check_logits_for_every_share(GetParam(), 0, true, [](const gguf::GgufFile& file, const PlacementFlags& flags) {
    DeviceSetup setup = make_device_setup(file, flags, 0);
    EXPECT_TRUE(setup.gpu) << "the split has no CUDA primary";
    return setup;
  });
}

INSTANTIATE_TEST_SUITE_P(Hf, CudaSplitSlotsModel, ::testing::Values("qwen3next", "qwen3moe"));

}  // namespace
}  // namespace moeserve::test
