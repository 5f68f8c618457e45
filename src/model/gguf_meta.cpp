#include "model/gguf_meta.h"

#include <cmath>

#include "core/error.h"

namespace moeserve {

void GgufMeta::fail_key(std::string_view name, const std::string& why) const {
  fail(file_.path(), ": key ", key(name), ": ", why);
}

std::optional<int64_t> GgufMeta::count_opt(std::string_view name) const {
  const gguf::Value* v = file_.find(key(name));
  if (!v) return std::nullopt;
  if (!v->is_integer()) fail_key(name, str_cat("expected an integer, found ", gguf::value_type_name(v->type)));
  const int64_t n = v->as_int();
  if (n < 0 || n > (int64_t(1) << 40)) fail_key(name, str_cat("value ", n, " is out of range"));
  return n;
}

int64_t GgufMeta::count(std::string_view name, bool allow_zero) const {
  const std::optional<int64_t> n = count_opt(name);
  if (!n) fail(file_.path(), ": missing key ", key(name));
  if (*n == 0 && !allow_zero) fail_key(name, "must be > 0");
  return *n;
}

std::optional<float> GgufMeta::real_opt(std::string_view name) const {
  const gguf::Value* v = file_.find(key(name));
  if (!v) return std::nullopt;
  if (!v->is_number()) fail_key(name, str_cat("expected a number, found ", gguf::value_type_name(v->type)));
  const double x = v->as_float();
  if (!std::isfinite(x)) fail_key(name, "is not finite");
  return float(x);
}

float GgufMeta::real(std::string_view name) const {
  const std::optional<float> x = real_opt(name);
  if (!x) fail(file_.path(), ": missing key ", key(name));
  return *x;
}

std::optional<bool> GgufMeta::flag_opt(std::string_view name) const {
  const gguf::Value* v = file_.find(key(name));
  if (!v) return std::nullopt;
  return v->as_bool();
}

std::vector<int64_t> GgufMeta::per_layer(std::string_view name, int64_t n_layer) const {
  const gguf::Value* v = file_.find(key(name));
  if (!v) fail(file_.path(), ": missing key ", key(name));
  if (v->type != gguf::ValueType::ARRAY) return std::vector<int64_t>(size_t(n_layer), count(name, true));
  const gguf::Array& a = v->as_array();
  if (int64_t(a.items.size()) != n_layer) {
    fail_key(name, str_cat("has ", a.items.size(), " entries for ", n_layer, " layers"));
  }
  std::vector<int64_t> out;
  for (const gguf::Value& item : a.items) {
    if (!item.is_integer() || item.as_int() < 0) fail_key(name, "entries must be non-negative integers");
    out.push_back(item.as_int());
  }
  return out;
}

}  // namespace moeserve
