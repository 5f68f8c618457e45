// The rules are llama.cpp's (src/llama-quant.cpp: tensor_allows_quantization,
// llama_tensor_get_type_impl, tensor_type_fallback), restated here; the comments name the rule
// each branch implements.
#include "quant/recipe.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <regex>

#include "core/error.h"

namespace moeserve::quant {
namespace {

// llama_ftype ids (llama.h).
namespace ft {
constexpr int32_t F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q8_0 = 7, Q5_0 = 8, Q5_1 = 9, Q2_K = 10, Q3_K_S = 11,
                  Q3_K_M = 12, Q3_K_L = 13, Q4_K_S = 14, Q4_K_M = 15, Q5_K_S = 16, Q5_K_M = 17, Q6_K = 18,
                  IQ2_XXS = 19, IQ2_XS = 20, Q2_K_S = 21, IQ3_XS = 22, IQ3_XXS = 23, IQ1_S = 24, IQ4_NL = 25,
                  IQ3_S = 26, IQ3_M = 27, IQ2_S = 28, IQ2_M = 29, IQ4_XS = 30, IQ1_M = 31, BF16 = 32,
                  MXFP4_MOE = 38;
}  // namespace ft

using T = GgmlType;

// llama-quantize's list (tools/quantize/quantize.cpp QUANT_OPTIONS), in its order, with the
// base type of each (llama_ftype_get_default_type). The ternary and 1-bit Q1_0/Q2_0 file types
// are left out: moeserve has no quantizer for them.
constexpr FileType kFileTypes[] = {
    {"Q4_0", ft::Q4_0, T::Q4_0, "4.50 bpw"},
    {"Q4_1", ft::Q4_1, T::Q4_1, "5.00 bpw"},
    {"MXFP4_MOE", ft::MXFP4_MOE, T::MXFP4, "MXFP4 experts, Q8_0 elsewhere"},
    {"Q5_0", ft::Q5_0, T::Q5_0, "5.50 bpw"},
    {"Q5_1", ft::Q5_1, T::Q5_1, "6.00 bpw"},
    {"IQ2_XXS", ft::IQ2_XXS, T::IQ2_XXS, "2.06 bpw"},
    {"IQ2_XS", ft::IQ2_XS, T::IQ2_XS, "2.31 bpw"},
    {"IQ2_S", ft::IQ2_S, T::IQ2_XS, "2.5 bpw mix"},
    {"IQ2_M", ft::IQ2_M, T::IQ2_S, "2.7 bpw mix"},
    {"IQ1_S", ft::IQ1_S, T::IQ1_S, "1.56 bpw"},
    {"IQ1_M", ft::IQ1_M, T::IQ1_M, "1.75 bpw"},
    {"Q2_K", ft::Q2_K, T::Q2_K, "2.63 bpw mix"},
    {"Q2_K_S", ft::Q2_K_S, T::Q2_K, "2.63 bpw"},
    {"IQ3_XXS", ft::IQ3_XXS, T::IQ3_XXS, "3.06 bpw"},
    {"IQ3_S", ft::IQ3_S, T::IQ3_S, "3.44 bpw"},
    {"IQ3_M", ft::IQ3_M, T::IQ3_S, "3.66 bpw mix"},
    {"Q3_K", ft::Q3_K_M, T::Q3_K, "alias for Q3_K_M"},
    {"IQ3_XS", ft::IQ3_XS, T::IQ3_S, "3.3 bpw mix"},
    {"Q3_K_S", ft::Q3_K_S, T::Q3_K, "3.44 bpw"},
    {"Q3_K_M", ft::Q3_K_M, T::Q3_K, "3.44 bpw mix"},
    {"Q3_K_L", ft::Q3_K_L, T::Q3_K, "3.44 bpw mix"},
    {"IQ4_NL", ft::IQ4_NL, T::IQ4_NL, "4.50 bpw non-linear"},
    {"IQ4_XS", ft::IQ4_XS, T::IQ4_XS, "4.25 bpw non-linear"},
    {"Q4_K", ft::Q4_K_M, T::Q4_K, "alias for Q4_K_M"},
    {"Q4_K_S", ft::Q4_K_S, T::Q4_K, "4.5 bpw"},
    {"Q4_K_M", ft::Q4_K_M, T::Q4_K, "4.5 bpw mix"},
    {"Q5_K", ft::Q5_K_M, T::Q5_K, "alias for Q5_K_M"},
    {"Q5_K_S", ft::Q5_K_S, T::Q5_K, "5.5 bpw"},
    {"Q5_K_M", ft::Q5_K_M, T::Q5_K, "5.5 bpw mix"},
    {"Q6_K", ft::Q6_K, T::Q6_K, "6.56 bpw"},
    {"Q8_0", ft::Q8_0, T::Q8_0, "8.50 bpw"},
    {"F16", ft::F16, T::F16, "16 bpw"},
    {"BF16", ft::BF16, T::BF16, "16 bpw"},
    {"F32", ft::F32, T::F32, "32 bpw"},
};

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

bool contains(std::string_view s, std::string_view part) { return s.find(part) != std::string_view::npos; }

enum class Category { TokenEmbd, AttnQ, AttnV, AttnK, AttnQkv, AttnKvB, AttnOutput, FfnUp, FfnGate, FfnDown, Output, Other };

Category category_of(std::string_view name) {
  if (name == "output.weight") return Category::Output;
  if (name == "token_embd.weight" || name == "per_layer_token_embd.weight") return Category::TokenEmbd;
  if (contains(name, "attn_qkv.weight")) return Category::AttnQkv;
  if (contains(name, "attn_kv_b.weight")) return Category::AttnKvB;
  if (contains(name, "attn_v.weight")) return Category::AttnV;
  if (contains(name, "attn_k.weight")) return Category::AttnK;
  if (contains(name, "attn_q.weight")) return Category::AttnQ;
  if (contains(name, "attn_output.weight")) return Category::AttnOutput;
  if (contains(name, "ffn_up")) return Category::FfnUp;
  if (contains(name, "ffn_gate")) return Category::FfnGate;
  if (contains(name, "ffn_down")) return Category::FfnDown;
  return Category::Other;
}

// Tensors llama.cpp treats like attn_v: the value projection, fused QKV (Qwen3-Next's linear
// attention layers have one), and MLA's kv_b.
bool is_attn_v_like(Category c) { return c == Category::AttnV || c == Category::AttnQkv || c == Category::AttnKvB; }

// The block number of "blk.N...." names, -1 for others (sscanf "blk.%d." as llama.cpp does).
int block_of(const std::string& name) {
  int layer = -1;
  return std::sscanf(name.c_str(), "blk.%d.", &layer) == 1 ? layer : -1;
}

// ggml_n_dims: dimensions up to the last one larger than 1 (a {2048, 1} tensor is 1-D).
int effective_dims(const TensorDesc& t) {
  for (int i = 3; i >= 1; --i) {
    if (t.ne[size_t(i)] > 1) return i + 1;
  }
  return 1;
}

bool is_quantized(GgmlType t) { return type_traits(t).quantized; }

class Planner {
 public:
  Planner(const ModelInfo& model, const RecipeOptions& options, const std::vector<TensorDesc>& tensors)
      : m_(model), o_(options), ftype_(options.ftype->id) {
    for (const TensorDesc& t : tensors) {
      const Category c = category_of(t.name);
      if (is_attn_v_like(c)) ++n_attention_wv_;
      if (c == Category::Output) tied_embeddings_ = false;
    }
    n_ffn_ = model.n_layer;
    for (const TypeOverride& o : options.overrides) {
      try {
        patterns_.emplace_back(std::regex(o.pattern), o.type);
      } catch (const std::regex_error& e) {
        fail("--tensor-type pattern '", o.pattern, "' is not a valid regular expression: ", e.what());
      }
    }
  }

  TensorPlan plan(const TensorDesc& t) {
    if (!tensor_allows_quantization(t, o_)) return {t.type, false, ""};
    const Category c = category_of(t.name);
    TensorPlan p{o_.ftype->base, true, ""};
    // Explicit types for the embedding and output tensors win over everything, fallback included.
    if (o_.token_embedding_type && c == Category::TokenEmbd) {
      p.type = *o_.token_embedding_type;
    } else if (o_.output_type && c == Category::Output) {
      p.type = *o_.output_type;
    } else if (is_quantized(p.type)) {
      bool manual = false;
      for (const auto& [pattern, type] : patterns_) {
        if (!std::regex_search(t.name, pattern)) continue;
        if (type != p.type) p.note = str_cat("override ", type_name(p.type), " -> ", type_name(type));
        p.type = type;
        manual = true;
        break;
      }
      if (!manual && !o_.pure) p.type = mixture(t, c, p.type);
      p.type = fallback(t, p.type, p.note);
    }
    p.quantize = p.type != t.type;
    return p;
  }

 private:
  bool ftype_is(std::initializer_list<int32_t> ids) const {
    return std::find(ids.begin(), ids.end(), ftype_) != ids.end();
  }

  // use_more_bits: the first and last eighth of the layers and every third one in between.
  static bool use_more_bits(int i_layer, int n_layers) {
    return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
  }

  // Position of an ffn tensor among the layers: MoE models number their layers by name (their
  // expert tensors are not one per layer in file order), dense ones by counting.
  int layer_of(const TensorDesc& t, int counter) const {
    if (std::max(1, m_.n_expert) == 1) return counter;
    const int layer = block_of(t.name);
    if (layer < 0) fail("cannot determine the layer of tensor ", t.name);
    if (layer >= m_.n_layer) fail("tensor ", t.name, " is in layer ", layer, ", the model has ", m_.n_layer);
    return layer;
  }

  bool is_70b() const { return m_.arch == "llama" && m_.n_layer == 80 && m_.n_head != m_.n_head_kv; }

  // llama_tensor_get_type_impl: the per-file-type mixture.
  GgmlType mixture(const TensorDesc& t, Category c, GgmlType type) {
    const bool iq_low = ftype_is({ft::IQ2_XXS, ft::IQ2_XS, ft::IQ1_S, ft::IQ2_S, ft::IQ2_M, ft::IQ1_M});
    const bool iq2_sm = ftype_is({ft::IQ2_S, ft::IQ2_M});
    if (c == Category::Output || (tied_embeddings_ && c == Category::TokenEmbd)) {
      // The output projection (or the embedding it shares) gets more bits.
      if (o_.output_type) return *o_.output_type;
      if (ftype_ == ft::MXFP4_MOE) return T::Q8_0;
      if (m_.arch == "falcon" || t.ne[0] % type_traits(type).block_size != 0) return T::Q8_0;
      if (ftype_is({ft::IQ2_XXS, ft::IQ2_XS, ft::IQ3_XXS, ft::IQ1_S, ft::IQ2_S, ft::IQ2_M, ft::IQ1_M})) return T::Q5_K;
      return type != T::Q8_0 ? T::Q6_K : type;
    }
    if (ftype_ == ft::MXFP4_MOE) {
      // MXFP4_MOE: stacked expert tensors MXFP4, everything else Q8_0 (BailingMoE3's MLA
      // projections are 3-D too, so there only the ffn ones count as experts).
      const bool ffn = c == Category::FfnUp || c == Category::FfnGate || c == Category::FfnDown;
      return t.ne[2] > 1 && (m_.arch != "bailingmoe3" || ffn) ? T::MXFP4 : T::Q8_0;
    }
    if (c == Category::TokenEmbd) {
      if (ftype_is({ft::IQ2_XXS, ft::IQ2_XS, ft::IQ1_S, ft::IQ1_M})) return T::Q2_K;
      if (ftype_is({ft::IQ2_S, ft::IQ2_M, ft::IQ3_XXS})) return T::IQ3_S;
      return type;
    }
    if (iq_low) {
      // The 1- and 2-bit mixtures: attn_v at 4 bits for GQA or MoE models, the first eighth of
      // ffn_down tensors and attn_output raised.
      if (is_attn_v_like(c)) {
        type = m_.n_gqa() >= 4 || m_.n_expert >= 4 ? T::Q4_K : iq2_sm ? T::IQ3_S : T::Q2_K;
        ++i_attention_wv_;
      } else if (m_.n_expert == 8 && c == Category::AttnK) {
        type = T::Q4_K;
      } else if (c == Category::FfnDown) {
        if (i_ffn_down_ < n_ffn_ / 8) type = iq2_sm ? T::IQ3_S : T::Q2_K;
        ++i_ffn_down_;
      } else if (c == Category::AttnOutput) {
        if (m_.n_expert == 8) {
          type = T::Q5_K;
        } else if (ftype_is({ft::IQ1_S, ft::IQ1_M})) {
          type = T::IQ2_XXS;
        } else if (iq2_sm) {
          type = T::IQ3_S;
        }
      }
      return type;
    }
    const int gqa = m_.n_gqa();
    if (is_attn_v_like(c)) {
      if (ftype_ == ft::Q2_K) {
        type = gqa >= 4 ? T::Q4_K : T::Q3_K;
      } else if (ftype_ == ft::Q2_K_S && gqa >= 4) {
        type = T::Q4_K;
      } else if (ftype_ == ft::IQ3_XXS) {
        type = gqa >= 4 ? T::Q4_K : !o_.has_imatrix ? T::IQ3_S : T::IQ3_XXS;
      } else if (ftype_is({ft::IQ3_XS, ft::IQ3_S}) && gqa >= 4) {
        type = T::Q4_K;
      } else if (ftype_ == ft::IQ3_M) {
        type = T::Q4_K;
      } else if (ftype_ == ft::Q3_K_M) {
        type = i_attention_wv_ < 2 ? T::Q5_K : T::Q4_K;
      } else if (ftype_ == ft::Q3_K_L) {
        type = T::Q5_K;
      } else if (ftype_is({ft::IQ4_NL, ft::IQ4_XS}) && gqa >= 4) {
        type = T::Q5_K;
      } else if (ftype_is({ft::Q4_K_M, ft::Q5_K_M}) && use_more_bits(i_attention_wv_, n_attention_wv_)) {
        type = T::Q6_K;
      } else if (ftype_ == ft::Q4_K_S && i_attention_wv_ < 4) {
        type = T::Q5_K;
      }
      // 70B: 8 heads share each attn_v, so it is small; give it more bits.
      if (is_70b() && (type == T::Q3_K || type == T::Q4_K)) type = T::Q5_K;
      if (m_.n_expert == 8) type = T::Q8_0;  // 8-expert models: costs little
      ++i_attention_wv_;
      return type;
    }
    if (c == Category::AttnK) {
      if (m_.n_expert == 8) return T::Q8_0;
      if (ftype_ == ft::IQ3_XS) return T::IQ3_XXS;
      if (ftype_ == ft::IQ3_XXS) return T::IQ2_S;
      return type;
    }
    if (c == Category::AttnQ) {
      if (ftype_ == ft::IQ3_XS) return T::IQ3_XXS;
      if (ftype_ == ft::IQ3_XXS) return T::IQ2_S;
      return type;
    }
    if (c == Category::FfnDown) {
      const int i_layer = layer_of(t, i_ffn_down_), n_layer = n_ffn_;
      const bool falcon = m_.arch == "falcon";
      if (ftype_ == ft::Q2_K) {
        type = T::Q3_K;
      } else if (ftype_ == ft::Q2_K_S) {
        if (i_layer < n_layer / 8) type = T::Q4_K;
      } else if (ftype_ == ft::IQ3_XXS && !o_.has_imatrix) {
        type = i_layer < n_layer / 8 ? T::Q4_K : T::Q3_K;
      } else if (ftype_ == ft::Q3_K_M) {
        type = i_layer < n_layer / 16 ? T::Q5_K : !falcon || use_more_bits(i_layer, n_layer) ? T::Q4_K : T::Q3_K;
      } else if (ftype_ == ft::IQ3_M && (i_layer < n_layer / 8 || (m_.n_expert == 8 && use_more_bits(i_layer, n_layer)))) {
        type = T::Q4_K;
      } else if (ftype_ == ft::Q3_K_L) {
        type = falcon ? T::Q4_K : T::Q5_K;
      } else if (ftype_ == ft::Q4_K_M) {
        if (falcon) {
          type = i_layer < n_layer / 16 ? T::Q6_K : use_more_bits(i_layer, n_layer) ? T::Q5_K : T::Q4_K;
        } else if (use_more_bits(i_layer, n_layer)) {
          type = T::Q6_K;
        }
      } else if (i_layer < n_layer / 8 && ftype_is({ft::IQ4_NL, ft::IQ4_XS}) && !o_.has_imatrix) {
        type = T::Q5_K;
      } else if (ftype_ == ft::Q5_K_M && use_more_bits(i_layer, n_layer)) {
        type = T::Q6_K;
      } else if (ftype_ == ft::Q4_K_S && !falcon && i_layer < n_layer / 8) {
        type = T::Q5_K;
      } else if (ftype_is({ft::Q4_0, ft::Q5_0}) && o_.has_imatrix && i_layer < n_layer / 8) {
        // Guards the first ffn_down layers of Q4_0/Q5_0 with an imatrix only, so that without one
        // the result stays what it always was.
        type = ftype_ == ft::Q4_0 ? T::Q4_1 : T::Q5_1;
      }
      ++i_ffn_down_;
      return type;
    }
    if (c == Category::AttnOutput) {
      if (m_.arch != "falcon") {
        if (m_.n_expert == 8) {
          if (ftype_is({ft::Q2_K, ft::IQ3_XS, ft::IQ3_XXS, ft::Q3_K_S, ft::Q3_K_M, ft::IQ4_NL, ft::Q4_K_S, ft::Q4_K_M,
                        ft::IQ3_S, ft::IQ3_M, ft::IQ4_XS})) {
            type = T::Q5_K;
          }
        } else if (ftype_ == ft::Q2_K) {
          type = T::Q3_K;
        } else if (ftype_ == ft::IQ3_XXS) {
          type = T::IQ3_S;
        } else if (ftype_ == ft::Q3_K_M || ftype_ == ft::IQ3_M) {
          type = T::Q4_K;
        } else if (ftype_ == ft::Q3_K_L) {
          type = T::Q5_K;
        }
      } else if (ftype_ == ft::Q3_K_L) {
        type = T::Q4_K;
      }
      return type;
    }
    if (c == Category::FfnGate || c == Category::FfnUp) {
      int& counter = c == Category::FfnGate ? i_ffn_gate_ : i_ffn_up_;
      const int i_layer = layer_of(t, counter), n_layer = n_ffn_;
      if (ftype_ == ft::IQ3_XS && i_layer >= n_layer / 8 && i_layer < 7 * n_layer / 8) type = T::IQ3_XXS;
      ++counter;
    }
    return type;
  }

  // tensor_type_fallback: rows that are not a whole number of blocks of the chosen type take the
  // nearest type with 32-element blocks, or F16.
  static GgmlType fallback(const TensorDesc& t, GgmlType type, std::string& note) {
    const int64_t ncols = t.ne[0];
    if (ncols % type_traits(type).block_size == 0) return type;
    GgmlType to;
    switch (type) {
      case T::IQ1_S:
      case T::IQ1_M:
      case T::IQ2_XXS:
      case T::IQ2_XS:
      case T::IQ2_S:
      case T::IQ3_XXS:
      case T::IQ3_S:
      case T::IQ4_XS: to = T::IQ4_NL; break;
      case T::Q2_K:
      case T::Q3_K: to = T::Q4_0; break;
      case T::Q4_K: to = T::Q5_0; break;
      case T::Q5_K: to = T::Q5_1; break;
      case T::Q6_K: to = T::Q8_0; break;
      default:
        fail("tensor ", t.name, ": rows of ", ncols, " elements do not fit ", type_name(type), " blocks of ",
             type_traits(type).block_size, " and no fallback type is defined for it");
    }
    if (ncols % type_traits(to).block_size != 0) to = T::F16;
    note = str_cat("rows of ", ncols, " are not a multiple of ", type_traits(type).block_size, ": ", type_name(type),
                   " -> ", type_name(to));
    return to;
  }

  const ModelInfo& m_;
  const RecipeOptions& o_;
  int32_t ftype_;
  std::vector<std::pair<std::regex, GgmlType>> patterns_;
  bool tied_embeddings_ = true;  // until an output.weight is seen
  int n_attention_wv_ = 0, n_ffn_ = 0;
  int i_attention_wv_ = 0, i_ffn_down_ = 0, i_ffn_gate_ = 0, i_ffn_up_ = 0;
};

}  // namespace

std::span<const FileType> file_types() { return kFileTypes; }

const FileType* find_file_type(std::string_view name_or_id) {
  for (const FileType& f : kFileTypes) {
    if (iequals(f.name, name_or_id)) return &f;
  }
  int id = 0;
  const auto [end, ec] = std::from_chars(name_or_id.data(), name_or_id.data() + name_or_id.size(), id);
  if (ec == std::errc() && end == name_or_id.data() + name_or_id.size()) {
    for (const FileType& f : kFileTypes) {
      if (f.id == id) return &f;
    }
  }
  return nullptr;
}

bool tensor_allows_quantization(const TensorDesc& t, const RecipeOptions& options) {
  if (effective_dims(t) < 2) return false;  // only 2-D matrices and 3-D expert stacks
  const std::string_view name = t.name;
  if (!name.ends_with("weight")) return false;
  if (contains(name, "_norm.weight")) return false;
  if (!options.quantize_output && name == "output.weight") return false;
  // Small or special tensors llama.cpp keeps as they are: the MoE router, conv1d of SSM layers,
  // position embeddings, and a list of tiny tensors of other architectures.
  static constexpr std::string_view kKept[] = {
      "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel", "per_layer_model_proj", "ssm_conv1d",
      "shortconv.conv.weight", "indexer.k_proj.weight", "indexer.q_proj.weight", "time_mix_first.weight",
      "time_mix_w0.weight", "time_mix_w1.weight", "time_mix_w2.weight", "time_mix_v0.weight", "time_mix_v1.weight",
      "time_mix_v2.weight", "time_mix_a0.weight", "time_mix_a1.weight", "time_mix_a2.weight", "time_mix_g1.weight",
      "time_mix_g2.weight", "time_mix_decay_w1.weight", "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight",
      "attn_rel_b.weight", ".position_embd", "sam.pos_embd", "sam.neck.", "sam.net_", ".rel_pos", ".patch_embd",
      ".patch_merger", "a.rvq.codebook", "mm.a.code_embd",
  };
  for (std::string_view part : kKept) {
    if (contains(name, part)) return false;
  }
  return name != "position_embd.weight" && name != "token_types.weight";
}

std::vector<size_t> llama_tensor_order(const std::vector<TensorDesc>& tensors) {
  std::vector<size_t> order(tensors.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const int la = block_of(tensors[a].name), lb = block_of(tensors[b].name);
    if (la != lb) return la < lb;
    return tensors[a].name < tensors[b].name;
  });
  return order;
}

std::vector<TensorPlan> plan_types(const ModelInfo& model, const RecipeOptions& options,
                                   const std::vector<TensorDesc>& tensors) {
  if (!options.ftype) fail("internal: no file type given");
  Planner planner(model, options, tensors);
  std::vector<TensorPlan> plans;
  plans.reserve(tensors.size());
  for (const TensorDesc& t : tensors) plans.push_back(planner.plan(t));
  return plans;
}

}  // namespace moeserve::quant
