// copy: same type moves bytes (one cudaMemcpy when both sides are contiguous); F32 to and from
// F16, BF16, Q8_0 and Q4_0 converts, rows quantized one warp per row and one lane per element.
#include <optional>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_formats.h"
#include "core/error.h"

namespace moeserve::cuda {
namespace {

template <typename Word>
__global__ void copy_rows_kernel(View dst, View src, int64_t words_per_row, int64_t n_rows) {
  pdl_wait();
  pdl_trigger();
  for (int64_t r = blockIdx.x; r < n_rows; r += gridDim.x) {
    Word* d = reinterpret_cast<Word*>(flat_row_ptr(dst, r));
    const Word* s = reinterpret_cast<const Word*>(flat_row_ptr(src, r));
    for (int64_t i = threadIdx.x; i < words_per_row; i += blockDim.x) d[i] = s[i];
  }
}

// One warp per row: F32 source row to the destination format.
__global__ void quantize_rows_kernel(View dst, View src, Fmt fmt, int64_t n_rows) {
  pdl_wait();
  pdl_trigger();
  const int64_t r = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (r >= n_rows) return;
  const float* x = reinterpret_cast<const float*>(flat_row_ptr(src, r));
  store_row_warp(fmt, flat_row_ptr(dst, r), src.ne[0], threadIdx.x % 32, [&](int64_t i) { return x[i]; });
}

__global__ void dequantize_rows_kernel(View dst, View src, Fmt fmt, int64_t n_rows) {
  pdl_wait();
  pdl_trigger();
  for (int64_t r = blockIdx.x; r < n_rows; r += gridDim.x) {
    float* y = reinterpret_cast<float*>(flat_row_ptr(dst, r));
    const char* x = flat_row_ptr(src, r);
    for (int64_t i = threadIdx.x; i < dst.ne[0]; i += blockDim.x) y[i] = load_elem(fmt, x, i);
  }
}

bool aligned_to(const Tensor& t, size_t a) {
  if (reinterpret_cast<uintptr_t>(t.data) % a != 0 || t.row_size() % a != 0) return false;
  for (int d = 1; d < 4; ++d) {
    if (t.nb[d] % a != 0) return false;
  }
  return true;
}

unsigned row_blocks(int64_t rows) { return unsigned(std::min<int64_t>(rows, 65535)); }

}  // namespace

void CudaBackend::do_copy(const Tensor& dst, const Tensor& src) {
  if (dst.type != src.type) {
    const GgmlType other = dst.type == GgmlType::F32 ? src.type : dst.type;
    if (!format_of(other)) {
      fail("CUDA backend: copy between ", type_name(src.type), " and ", type_name(dst.type),
           " is not supported (F32 to or from F16, BF16, Q8_0, Q4_0)");
    }
  }
  if (skip()) return;
  const int64_t rows = dst.n_rows();
  if (rows == 0) return;
  if (dst.type == src.type) {
    if (dst.is_contiguous() && src.is_contiguous()) {
      MOESERVE_CUDA_CHECK(cudaMemcpyAsync(dst.data, src.data, dst.n_bytes(), cudaMemcpyDeviceToDevice, stream_));
    } else if (aligned_to(dst, 16) && aligned_to(src, 16)) {
      launch_pdl(copy_rows_kernel<uint4>, row_blocks(rows), 128, 0, stream_, view_of(dst), view_of(src),
                 int64_t(dst.row_size() / 16), rows);
    } else if (aligned_to(dst, 4) && aligned_to(src, 4)) {
      launch_pdl(copy_rows_kernel<uint32_t>, row_blocks(rows), 128, 0, stream_, view_of(dst), view_of(src),
                 int64_t(dst.row_size() / 4), rows);
    } else {
      launch_pdl(copy_rows_kernel<uint8_t>, row_blocks(rows), 128, 0, stream_, view_of(dst), view_of(src),
                 int64_t(dst.row_size()), rows);
    }
  } else if (src.type == GgmlType::F32) {
    constexpr int kWarps = 4;
    launch_pdl(quantize_rows_kernel, unsigned((rows + kWarps - 1) / kWarps), 32 * kWarps, 0, stream_, view_of(dst),
               view_of(src), *format_of(dst.type), rows);
  } else {
    launch_pdl(dequantize_rows_kernel, row_blocks(rows), 128, 0, stream_, view_of(dst), view_of(src),
               *format_of(src.type), rows);
  }
}

}  // namespace moeserve::cuda
