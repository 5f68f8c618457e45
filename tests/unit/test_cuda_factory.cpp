// make_cuda_backend in a build without CUDA: one clear error instead of a link failure or a crash.
#include <gtest/gtest.h>

#include <string>

#include "backend/backend.h"
#include "core/error.h"

namespace moeserve {
namespace {

TEST(CudaFactory, CpuOnlyBuildExplainsItHasNoCudaBackend) {
#ifdef MOESERVE_HAS_CUDA
  GTEST_SKIP() << "this build has the CUDA backend (tests/gpu covers it)";
#else
  try {
    make_cuda_backend(0);
    ADD_FAILURE() << "a CPU-only build made a CUDA backend";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no CUDA backend"), std::string::npos) << e.what();
  }
#endif
}

}  // namespace
}  // namespace moeserve
