// A build without CUDA has no CUDA backend to make.
#ifndef MOESERVE_HAS_CUDA
#include "backend/backend.h"
#include "core/error.h"

namespace moeserve {

std::unique_ptr<Backend> make_cuda_backend(int device) {
  fail("CUDA device ", device, " requested, but this build has no CUDA backend (built without CUDA)");
}

}  // namespace moeserve
#endif
