// Dense decode products on the 8-bit activation path (cuda_matvec.h, mmvq.cuh): one launch
// quantizes the activation columns, one runs the rows, R rows per warp, 8 warps per block.
#include "backend/cuda/cuda_matvec.h"

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/mmvq.cuh"
#include "core/error.h"

namespace moeserve::cuda {

namespace {

using mmvq::ActQ8;

template <int NC>
constexpr int rows_per_warp() {
  return NC <= 2 ? 2 : 1;
}

// dst[c * d_stride + row] = w[row] . x_c for rows of nblk blocks; grid ceil(m / (kWarps * R)).
template <GgmlType T, int NC>
__global__ void __launch_bounds__(mmvq::kThreads)
    q8_matvec_kernel(const uint8_t* w, size_t nb1, int64_t m, int64_t nblk, int tile_blk, ActQ8 act, int64_t k,
                     float* dst, int64_t d_stride) {
  constexpr int R = rows_per_warp<NC>();
  extern __shared__ __align__(16) uint8_t smem[];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t r0 = (int64_t(blockIdx.x) * mmvq::kWarps + warp) * R;
  const int tile_bytes = tile_blk * Dq<T>::kBytes;
  uint8_t* sm = smem + mmvq::table_bytes<T>() + warp * R * tile_bytes;
  // Rows past the end recompute the last one (the whole block reaches the barrier).
  auto rows_of = [&](int, const uint8_t* (&rows)[R]) {
#pragma unroll
    for (int r = 0; r < R; ++r) rows[r] = w + size_t(r0 + r < m ? r0 + r : m - 1) * nb1;
  };
  auto act_of = [&](int, const int8_t*& aq, const float2*& ads) {
    aq = act.qs;
    ads = act.ds;
  };
  auto done = [&](int, float (&acc)[R][NC]) {
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int c = 0; c < NC; ++c) {
        const float s = mmvq::sum32(acc[r][c]);
        if (lane == 0 && r0 + r < m) dst[c * d_stride + r0 + r] = s;
      }
  };
  mmvq::load_table<T>(smem);
  __syncthreads();
  mmvq::warp_passes<T, R, NC, 16>(1, nblk, tile_blk, k, sm, smem, lane, rows_of, act_of, done);
}

template <GgmlType T, int NC>
void launch(cudaStream_t stream, const Tensor& dst, const Tensor& w, ActQ8 act) {
  constexpr int R = rows_per_warp<NC>();
  const int64_t m = w.ne[1], k = w.ne[0], nblk = k / Dq<T>::kQk;
  const int tile_blk = mmvq::tile_blocks<T, 16>(nblk);
  const size_t smem = size_t(mmvq::table_bytes<T>()) + size_t(mmvq::kWarps * R) * size_t(tile_blk * Dq<T>::kBytes);
  mmvq::allow_smem(q8_matvec_kernel<T, NC>, smem);
  const int64_t per_block = int64_t(mmvq::kWarps) * R;
  const dim3 grid(unsigned((m + per_block - 1) / per_block));
  q8_matvec_kernel<T, NC><<<grid, mmvq::kThreads, smem, stream>>>(static_cast<const uint8_t*>(w.data), w.nb[1], m,
                                                                  nblk, tile_blk, act, k, dst.as<float>(),
                                                                  int64_t(dst.nb[1] / sizeof(float)));
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
  const int64_t n = x.ne[1], k = w.ne[0];
  if (dst.nb[1] % sizeof(float) != 0) fail("internal: cuda matmul dst row stride is not a multiple of 4");
  const ActQ8 act = mmvq::quantize_columns(stream, x, k, n, workspace);
  const bool ok = mmvq::dispatch_q8(w.type, [&]<GgmlType T>() {
    if (!with_column_count<kQ8MaxCols>(n, [&]<int NC>() { launch<T, NC>(stream, dst, w, act); })) {
      fail("internal: cuda q8 matvec takes 1 to ", kQ8MaxCols, " columns, not ", n);
    }
  });
  if (!ok) fail("internal: cuda q8 matvec has no kernel for ", type_name(w.type));
  MOESERVE_CUDA_CHECK_LAUNCH();
}

}  // namespace moeserve::cuda
