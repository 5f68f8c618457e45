// Switches read from the environment to turn a default-on path off for measurements
// (MOESERVE_CUDA_PDL=0, MOESERVE_CPU_FUSE=0, ...).
#pragma once

#include <cstdlib>
#include <cstring>

namespace moeserve {

// Whether switch `name` is on: unset, or set to anything but "0".
inline bool env_switch_on(const char* name) {
  const char* v = std::getenv(name);
  return !v || std::strcmp(v, "0") != 0;
}

}  // namespace moeserve
