// Dense decode products on the 8-bit activation path (cuda_matvec.h, mmvq.cuh): the activation
// columns are quantized (one or two short columns by each block into its shared memory, others
// by one launch into the workspace), then one launch runs the rows (of up to Backend::kMaxMatmuls
// weights of one type: the products of one input share it), R rows per warp, 8 warps per block.
// Launches use PDL: the row kernel loads the grid table and issues its first weight tiles while
// whatever ran before finishes.
#include "backend/cuda/cuda_matvec.h"

#include <algorithm>
#include <cstdlib>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/mmvq.cuh"
#include "backend/cuda/row_segments.cuh"
#include "core/error.h"

namespace moeserve::cuda {

namespace {

using mmvq::ActQ8;

template <int NC>
constexpr int rows_per_warp() {
  return NC <= 2 ? 2 : 1;
}

constexpr int64_t kInBlockMaxCols = 2;        // more columns: more rows' blocks would repeat more work
constexpr size_t kInBlockMaxBytes = 24 * 1024;

// As the mul_sigmoid op (cuda_common.cuh), so the gated product gives the same values.
__device__ __forceinline__ float sigmoid_exact(float v) { return 1.0f / (1.0f + expf(-v)); }

// The gate of a gated product's input (Backend::gated_matmul): value i of column c is multiplied
// by sigmoid(g[c * col + (i / d0) * row + i % d0]), the input being [d0, k / d0, n].
struct InGate {
  const float* g;
  int64_t d0, row, col;
};

// Few columns of a short input are quantized by every block into its shared memory (as
// quantize_act does it, bit for bit) instead of by a launch of their own: x null means the
// activations are already quantized in global memory. The block may first apply what an op
// before the product would have (it reads the whole columns anyway), so that op needs no launch:
// a norm weight: rms_norm(x) * norm, the columns' RMS taken first (Backend::norm_matmuls); a gate:
// x * sigmoid(gate) (Backend::gated_matmul).
struct InBlock {
  const float* x;
  int64_t x_stride;
  int smem_bytes;  // 16-byte multiple
  const float* norm = nullptr;  // [k] or null
  float eps = 0.0f;
  InGate gate{};  // gate.g null: none

  // Called by the whole block after the wait: points act at the block's copy.
  __device__ __forceinline__ void quantize(uint8_t* at, int64_t k, int n, ActQ8& act) const {
    if (!x) return;
    int8_t* qs = reinterpret_cast<int8_t*>(at);
    float2* ds = reinterpret_cast<float2*>(at + k * n);
    const float* xs = x;
    const int64_t stride = x_stride;
    if (norm) {
      __shared__ float scale[kInBlockMaxCols];
      mmvq::rms_scales<kInBlockMaxCols>(x, x_stride, k, n, eps, scale);
      const float *sc = scale, *w = norm;
      // As the rms_norm op: (x * scale) * weight.
      mmvq::quantize_values_to_smem([=](int64_t c, int64_t i) { return xs[c * stride + i] * sc[c] * w[i]; }, k, n,
                                    qs, ds);
    } else if (gate.g) {
      const InGate gt = gate;
      mmvq::quantize_values_to_smem(
          [=](int64_t c, int64_t i) {
            return xs[c * stride + i] * sigmoid_exact(gt.g[c * gt.col + (i / gt.d0) * gt.row + i % gt.d0]);
          },
          k, n, qs, ds);
    } else {
      mmvq::quantize_to_smem(x, x_stride, k, n, qs, ds);
    }
    act = {qs, ds};
    __syncthreads();
  }

  // A product kernel's start once its weights' first tiles are loading (they are no kernel's
  // output): waits for the kernel before, lets the next one launch, then quantizes x.
  template <GgmlType T>
  __device__ __forceinline__ void start(uint8_t* smem, int64_t k, int n, ActQ8& act) const {
    pdl_wait();
    pdl_trigger();
    quantize(smem + mmvq::table_bytes<T>(), k, n, act);
  }
};

// The in-block quantization of x for a product with k-long rows, or none (x null).
InBlock in_block_for(const Tensor& x) {
  const int64_t n = x.ne[1], k = x.ne[0];
  const size_t bytes = (mmvq::smem_act_bytes(k, n) + 15) / 16 * 16;
  if (n > kInBlockMaxCols || bytes > kInBlockMaxBytes) return {nullptr, 0, 0};
  return {x.as<const float>(), int64_t(x.nb[1] / sizeof(float)), int(bytes)};
}

// As the swiglu op (cuda_ops_elementwise.cu), so the fused product gives the same values.
__device__ __forceinline__ float silu_exact(float v) { return v / (1.0f + expf(-v)); }

// segs.dst[s][c * d_stride + row] = w_s[row] . x_c for rows of nblk blocks. A block takes
// n_pass * kWarps * R rows of its product: each warp R rows per pass, the next pass's first tile
// loading while the current one is decoded.
template <GgmlType T, int NC>
__global__ void __launch_bounds__(mmvq::kThreads)
    q8_matvec_kernel(RowSegments segs, int n_pass, int64_t nblk, int tile_blk, ActQ8 act, InBlock in, int64_t k) {
  constexpr int R = rows_per_warp<NC>();
  extern __shared__ __align__(16) uint8_t smem[];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int seg = segment_of(segs, blockIdx.x);
  const uint8_t* w = segs.w[seg];
  const size_t nb1 = segs.nb1[seg];
  const int64_t m = segs.m[seg];
  const int64_t base = int64_t(blockIdx.x - segs.first[seg]) * n_pass * mmvq::kWarps;
  auto first_row = [&](int pass) { return (base + int64_t(pass) * mmvq::kWarps + warp) * R; };
  const int tile_bytes = tile_blk * Dq<T>::kBytes;
  uint8_t* sm = smem + mmvq::table_bytes<T>() + in.smem_bytes + warp * R * tile_bytes;
  // Rows past the end recompute the last one.
  auto rows_of = [&](int pass, const uint8_t* (&rows)[R]) {
    const int64_t r0 = first_row(pass);
#pragma unroll
    for (int r = 0; r < R; ++r) rows[r] = w + size_t(r0 + r < m ? r0 + r : m - 1) * nb1;
  };
  auto act_of = [&](int, const int8_t*& aq, const float2*& ads) {
    aq = act.qs;
    ads = act.ds;
  };
  auto done = [&](int pass, float (&acc)[R][NC]) {
    const int64_t r0 = first_row(pass);
    float* dst = segs.dst[seg];
    const int64_t d_stride = segs.d_stride[seg];
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int c = 0; c < NC; ++c) {
        const float s = mmvq::sum32(acc[r][c]);
        if (lane == 0 && r0 + r < m) dst[c * d_stride + r0 + r] = s;
      }
  };
  auto ready = [&] { in.start<T>(smem, k, NC, act); };
  mmvq::load_table<T>(smem);
  __syncthreads();
  mmvq::warp_passes<T, R, NC, 16>(n_pass, nblk, tile_blk, k, sm, smem, lane, rows_of, act_of, done, ready);
}

// dst[c * d_stride + f] = silu(gate[f] . x_c) * (up[f] . x_c): a warp per f, both rows in one pass.
template <GgmlType T, int NC>
__global__ void __launch_bounds__(mmvq::kThreads)
    q8_swiglu_kernel(const uint8_t* gate, size_t gate_nb1, const uint8_t* up, size_t up_nb1, int64_t m, int64_t nblk,
                     int tile_blk, ActQ8 act, InBlock in, int64_t k, float* dst, int64_t d_stride) {
  extern __shared__ __align__(16) uint8_t smem[];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t f = int64_t(blockIdx.x) * mmvq::kWarps + warp, fc = f < m ? f : m - 1;
  const int tile_bytes = tile_blk * Dq<T>::kBytes;
  uint8_t* sm = smem + mmvq::table_bytes<T>() + in.smem_bytes + warp * 2 * tile_bytes;
  auto rows_of = [&](int, const uint8_t* (&rows)[2]) {
    rows[0] = gate + size_t(fc) * gate_nb1;
    rows[1] = up + size_t(fc) * up_nb1;
  };
  auto act_of = [&](int, const int8_t*& aq, const float2*& ads) {
    aq = act.qs;
    ads = act.ds;
  };
  auto done = [&](int, float (&acc)[2][NC]) {
#pragma unroll
    for (int c = 0; c < NC; ++c) {
      const float g = mmvq::sum32(acc[0][c]), u = mmvq::sum32(acc[1][c]);
      if (lane == 0 && f < m) dst[c * d_stride + f] = silu_exact(g) * u;
    }
  };
  auto ready = [&] { in.start<T>(smem, k, NC, act); };
  mmvq::load_table<T>(smem);
  __syncthreads();
  mmvq::warp_passes<T, 2, NC, 16>(1, nblk, tile_blk, k, sm, smem, lane, rows_of, act_of, done, ready);
}

// Passes per block for a grid of `blocks` one-pass blocks. Up to two waves of blocks take one pass
// each; a taller product (the output head: ~10K blocks; the delta-net input products, ~770 blocks
// at the two blocks per SM their registers allow) runs as about `waves` (default 1) waves of
// blocks that take several passes, so each warp's next rows load while it decodes the current
// ones and the in-block work on x (quantization, norm) is repeated by far fewer blocks.
// MOESERVE_MATVEC_WAVES sets `waves` for measurements (0: one pass per block everywhere).
template <typename K>
int passes_for(K kernel, size_t smem, unsigned blocks) {
  static const int waves = [] {
    const char* v = std::getenv("MOESERVE_MATVEC_WAVES");
    return v && *v ? std::max(0, std::atoi(v)) : 1;
  }();
  if (waves == 0) return 1;
  int device = 0, sms = 0, per_sm = 0;
  MOESERVE_CUDA_CHECK(cudaGetDevice(&device));
  MOESERVE_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  if (int64_t(blocks) <= int64_t(2) * sms) return 1;  // two waves even at one block per SM
  MOESERVE_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, mmvq::kThreads, smem));
  const int64_t resident = int64_t(std::max(1, sms * per_sm));
  if (int64_t(blocks) <= 2 * resident) return 1;
  return int((int64_t(blocks) + resident * waves - 1) / (resident * waves));
}

template <GgmlType T, int NC>
void launch_rows(cudaStream_t stream, std::span<const MatmulProduct> products, ActQ8 act, InBlock in, int64_t k) {
  constexpr int R = rows_per_warp<NC>();
  const int64_t nblk = k / Dq<T>::kQk;
  const int tile_blk = mmvq::tile_blocks<T, 16>(nblk);
  const size_t smem = size_t(mmvq::table_bytes<T>()) + size_t(in.smem_bytes) +
                      size_t(mmvq::kWarps * R) * size_t(tile_blk * Dq<T>::kBytes);
  mmvq::allow_smem(q8_matvec_kernel<T, NC>, smem);
  RowSegments segs = row_segments(products, int64_t(mmvq::kWarps) * R);
  if (segs.first[segs.n] == 0) return;
  const int n_pass = passes_for(q8_matvec_kernel<T, NC>, smem, segs.first[segs.n]);
  if (n_pass > 1) segs = row_segments(products, int64_t(mmvq::kWarps) * R * n_pass);
  launch_pdl(q8_matvec_kernel<T, NC>, segs.first[segs.n], mmvq::kThreads, smem, stream, segs, n_pass, nblk, tile_blk,
             act, in, k);
}

template <GgmlType T, int NC>
void launch_swiglu(cudaStream_t stream, const Tensor& dst, const Tensor& gate, const Tensor& up, ActQ8 act,
                   InBlock in) {
  const int64_t m = gate.ne[1], k = gate.ne[0], nblk = k / Dq<T>::kQk;
  const int tile_blk = mmvq::tile_blocks<T, 16>(nblk);
  const size_t smem = size_t(mmvq::table_bytes<T>()) + size_t(in.smem_bytes) +
                      size_t(mmvq::kWarps * 2) * size_t(tile_blk * Dq<T>::kBytes);
  mmvq::allow_smem(q8_swiglu_kernel<T, NC>, smem);
  launch_pdl(q8_swiglu_kernel<T, NC>, unsigned((m + mmvq::kWarps - 1) / mmvq::kWarps), mmvq::kThreads, smem, stream,
             static_cast<const uint8_t*>(gate.data), gate.nb[1], static_cast<const uint8_t*>(up.data), up.nb[1], m,
             nblk, tile_blk, act, in, k, dst.as<float>(), int64_t(dst.nb[1] / sizeof(float)));
}

// The activations of x: quantized by the row kernels themselves where in_block_for allows it,
// else by one launch into the workspace.
ActQ8 activations(cudaStream_t stream, const Tensor& x, const InBlock& in, void* workspace) {
  if (in.x) return {nullptr, nullptr};
  return mmvq::quantize_columns(stream, x, x.ne[0], x.ne[1], workspace);
}

void check_columns(int64_t n) {
  if (n < 1 || n > kQ8MaxCols) fail("internal: cuda q8 matvec takes 1 to ", kQ8MaxCols, " columns, not ", n);
}

}  // namespace

size_t q8_matvec_workspace_bytes(const Tensor& w, const Tensor& x) {
  const int64_t n = x.ne[1], k = w.ne[0];
  if (n < 1 || n > kQ8MaxCols || !mmvq::is_q8_type(w.type) || k % 32 != 0) return 0;
  return mmvq::act_bytes(k, n);
}

bool q8_matvec_usable(const Tensor& w, const Tensor& x) {
  return q8_matvec_workspace_bytes(w, x) > 0 && mmvq::row_vec(w) == 16 && x.nb[1] % sizeof(float) == 0;
}

void q8_matvec(cudaStream_t stream, const Tensor& dst, const Tensor& w, const Tensor& x, void* workspace) {
  const MatmulProduct p{dst, w};
  q8_matvecs(stream, x, std::span<const MatmulProduct>(&p, 1), workspace);
}

namespace {

// The products of x with the activations act / in.
void run_products(cudaStream_t stream, const Tensor& x, std::span<const MatmulProduct> products, ActQ8 act,
                  const InBlock& in) {
  const int64_t n = x.ne[1], k = x.ne[0];
  // Runs of one weight type, one launch each (the forward lists such products together).
  for (size_t i = 0; i < products.size();) {
    size_t j = i + 1;
    while (j < products.size() && products[j].w.type == products[i].w.type) ++j;
    const std::span<const MatmulProduct> run = products.subspan(i, j - i);
    const bool ok = mmvq::dispatch_q8(products[i].w.type, [&]<GgmlType T>() {
      with_column_count<kQ8MaxCols>(n, [&]<int NC>() { launch_rows<T, NC>(stream, run, act, in, k); });
    });
    if (!ok) fail("internal: cuda q8 matvec has no kernel for ", type_name(products[i].w.type));
    i = j;
  }
}

}  // namespace

void q8_matvecs(cudaStream_t stream, const Tensor& x, std::span<const MatmulProduct> products, void* workspace) {
  check_columns(x.ne[1]);
  const InBlock in = in_block_for(x);
  run_products(stream, x, products, activations(stream, x, in, workspace), in);
}

bool q8_norm_matvecs_usable(const Tensor& x, std::span<const MatmulProduct> products) {
  for (const MatmulProduct& p : products) {
    if (!q8_matvec_usable(p.w, x)) return false;
  }
  return in_block_for(x).x != nullptr;
}

void q8_norm_matvecs(cudaStream_t stream, const Tensor& x, const Tensor& weight, float eps,
                     std::span<const MatmulProduct> products) {
  check_columns(x.ne[1]);
  InBlock in = in_block_for(x);
  if (!in.x) fail("internal: cuda q8 norm matvecs: x [", x.ne[0], ", ", x.ne[1], "] is not quantized in-block");
  in.norm = weight.as<const float>();
  in.eps = eps;
  run_products(stream, x, products, ActQ8{nullptr, nullptr}, in);
}

namespace {

// x [d0, d1, n] with contiguous columns as the product's [d0 * d1, n] input.
Tensor gated_input(const Tensor& x) { return x.reshape({x.ne[0] * x.ne[1], x.ne[2], 1, 1}); }

}  // namespace

bool q8_gated_matvec_usable(const Tensor& w, const Tensor& x, const Tensor& gate) {
  if (!x.is_contiguous() || x.ne[3] != 1 || gate.ne != x.ne || gate.nb[0] != sizeof(float) ||
      gate.nb[1] % sizeof(float) != 0 || gate.nb[2] % sizeof(float) != 0) {
    return false;
  }
  const Tensor x2 = gated_input(x);
  return q8_matvec_usable(w, x2) && in_block_for(x2).x != nullptr;
}

void q8_gated_matvec(cudaStream_t stream, const Tensor& dst, const Tensor& w, const Tensor& x, const Tensor& gate) {
  const Tensor x2 = gated_input(x);
  check_columns(x2.ne[1]);
  InBlock in = in_block_for(x2);
  if (!in.x) fail("internal: cuda q8 gated matvec: x [", x2.ne[0], ", ", x2.ne[1], "] is not quantized in-block");
  in.gate = {gate.as<const float>(), x.ne[0], int64_t(gate.nb[1] / sizeof(float)), int64_t(gate.nb[2] / sizeof(float))};
  const MatmulProduct p{dst, w};
  run_products(stream, x2, std::span<const MatmulProduct>(&p, 1), ActQ8{nullptr, nullptr}, in);
}

void q8_matvec_swiglu(cudaStream_t stream, const Tensor& dst, const Tensor& gate, const Tensor& up, const Tensor& x,
                      void* workspace) {
  const int64_t n = x.ne[1], k = x.ne[0];
  check_columns(n);
  if (dst.nb[1] % sizeof(float) != 0) fail("internal: cuda matmul_swiglu dst row stride is not a multiple of 4");
  if (gate.ne[1] == 0) return;
  const InBlock in = in_block_for(x);
  const ActQ8 act = activations(stream, x, in, workspace);
  const bool ok = mmvq::dispatch_q8(gate.type, [&]<GgmlType T>() {
    with_column_count<kQ8MaxCols>(n, [&]<int NC>() { launch_swiglu<T, NC>(stream, dst, gate, up, act, in); });
  });
  if (!ok) fail("internal: cuda q8 matvec has no kernel for ", type_name(gate.type));
}

}  // namespace moeserve::cuda
