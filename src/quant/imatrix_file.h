// Importance matrices as llama.cpp's `llama-imatrix` writes them, read the way llama-quantize
// reads them: the GGUF format (keys imatrix.datasets / imatrix.chunk_count / imatrix.chunk_size,
// per weight tensor <name>.in_sum2 with the summed squared activations of each input column and
// <name>.counts with the number of activations summed, one count per matrix of a 3-D expert
// tensor) and the legacy binary .dat format.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace moeserve::quant {

struct ImatrixFile {
  std::string path;
  bool legacy = false;
  std::vector<std::string> datasets;
  uint32_t chunk_count = 0;
  uint32_t chunk_size = 0;
  // Weight tensor name -> importance per column: ne[0] values per matrix, matrices in order. Each
  // is the mean squared activation sum / count; a matrix that was never used (count 0, e.g. an
  // expert no calibration token was routed to) gets 1 everywhere.
  std::unordered_map<std::string, std::vector<float>> entries;

  const std::vector<float>* find(const std::string& tensor_name) const {
    const auto it = entries.find(tensor_name);
    return it == entries.end() ? nullptr : &it->second;
  }
};

// Throws moeserve::Error naming the file and what is wrong with it.
ImatrixFile read_imatrix(const std::string& path);

}  // namespace moeserve::quant
