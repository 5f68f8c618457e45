#include <cstdio>
#include <cstring>

#include "commands.h"
#include "core/error.h"
#include "core/ggml_type.h"

namespace moeserve::cli {

int cmd_types(int argc, char** argv) {
  if (argc > 1) {
    if (std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0) {
      std::printf("usage: moeserve types\n\nLists every ggml tensor type: id, block size, bytes per block,\n"
                  "bits per weight, whether reference dequantize/quantize exist, and the\n"
                  "activation type of its dot product (vec_dot).\n");
      return 0;
    }
    fail("unknown argument '", argv[1], "' (moeserve types takes none)");
  }
  std::printf("%-4s %-8s %6s %6s %8s %-10s %-8s %-7s\n", "id", "type", "block", "bytes", "bpw", "dequantize", "quantize",
              "vec_dot");
  for (const TypeTraits* t = all_types().begin; t != all_types().end; ++t) {
    const double bpw = 8.0 * double(t->block_bytes) / double(t->block_size);
    std::printf("%-4d %-8s %6lld %6zu %8.4f %-10s %-8s %-7s\n", int(t->type), t->name, (long long)t->block_size,
                t->block_bytes, bpw, t->dequantize ? "yes" : "-", t->quantize ? "yes" : "-",
                t->vec_dot ? type_name(t->vec_dot_type) : "-");
  }
  return 0;
}

}  // namespace moeserve::cli
