#include "backend/cuda/cuda_check.h"

#include "core/error.h"

namespace moeserve::cuda {

void cuda_fail(cudaError_t err, const char* call, const char* file, int line) {
  const char* base = file;
  for (const char* p = file; *p; ++p) {
    if (*p == '/') base = p + 1;
  }
  fail("CUDA error ", cudaGetErrorName(err), " (", cudaGetErrorString(err), ") in ", call, " at ", base, ":", line);
}

}  // namespace moeserve::cuda
