// The accelerator backend of this build, behind one call so that code choosing a backend does not
// depend on whether the build has CUDA.
#pragma once

#include <memory>

#include "backend/backend.h"

namespace moeserve {

// The backend of GPU `index` (CUDA); moeserve::Error when the build has none.
std::unique_ptr<Backend> make_gpu_backend(int index);

}  // namespace moeserve
