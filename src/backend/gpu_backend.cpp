#include "backend/gpu_backend.h"

#include "core/error.h"

namespace moeserve {

#ifdef MOESERVE_HAS_CUDA
// Defined by the CUDA backend (src/backend/cuda).
std::unique_ptr<Backend> make_cuda_backend(int device);
#endif

std::unique_ptr<Backend> make_gpu_backend(int index) {
#ifdef MOESERVE_HAS_CUDA
  return make_cuda_backend(index);
#else
  fail("this build has no GPU backend (built without CUDA); cannot use GPU ", index);
#endif
}

}  // namespace moeserve
