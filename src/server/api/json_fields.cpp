#include "server/api/json_fields.h"

#include <cmath>

namespace moeserve::server {

void bad_request(const std::string& param, const std::string& message) {
  throw ApiError{400, message, "invalid_request_error", param};
}

std::string field_path(const std::string& path, const std::string& key) { return path.empty() ? key : path + "." + key; }

std::string index_path(const std::string& path, size_t index) { return path + "[" + std::to_string(index) + "]"; }

ordered_json parse_json_body(const std::string& body) {
  ordered_json value;
  try {
    value = ordered_json::parse(body);
  } catch (const nlohmann::json::parse_error& e) {
    // nlohmann's message carries the byte position; keep it, drop its internal prefix.
    std::string what = e.what();
    const size_t colon = what.find("] ");
    bad_request("", "invalid JSON in request body: " + (colon == std::string::npos ? what : what.substr(colon + 2)));
  }
  if (!value.is_object()) bad_request("", "request body must be a JSON object");
  return value;
}

namespace {

const ordered_json* present(const ordered_json& obj, const char* key) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

}  // namespace

std::optional<std::string> opt_string(const ordered_json& obj, const char* key, const std::string& path) {
  const ordered_json* v = present(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_string()) bad_request(field_path(path, key), "'" + field_path(path, key) + "' must be a string");
  return v->get<std::string>();
}

std::optional<bool> opt_bool(const ordered_json& obj, const char* key, const std::string& path) {
  const ordered_json* v = present(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) bad_request(field_path(path, key), "'" + field_path(path, key) + "' must be a boolean");
  return v->get<bool>();
}

std::optional<double> opt_number(const ordered_json& obj, const char* key, const std::string& path) {
  const ordered_json* v = present(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_number()) bad_request(field_path(path, key), "'" + field_path(path, key) + "' must be a number");
  const double d = v->get<double>();
  if (!std::isfinite(d)) bad_request(field_path(path, key), "'" + field_path(path, key) + "' must be finite");
  return d;
}

std::optional<int64_t> opt_integer(const ordered_json& obj, const char* key, const std::string& path) {
  const ordered_json* v = present(obj, key);
  if (!v) return std::nullopt;
  if (v->is_number_integer()) return v->get<int64_t>();
  // JSON has one number type; accept 5.0 but not 5.5.
  if (v->is_number_float()) {
    const double d = v->get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e15) return int64_t(d);
  }
  bad_request(field_path(path, key), "'" + field_path(path, key) + "' must be an integer");
}

std::optional<double> opt_number_in(const ordered_json& obj, const char* key, double lo, double hi, const std::string& path) {
  const std::optional<double> v = opt_number(obj, key, path);
  if (v && (*v < lo || *v > hi)) {
    std::string range = "[" + ordered_json(lo).dump() + ", " + ordered_json(hi).dump() + "]";
    bad_request(field_path(path, key), "'" + field_path(path, key) + "' must be in " + range + ", got " + ordered_json(*v).dump());
  }
  return v;
}

const ordered_json* opt_array(const ordered_json& obj, const char* key, const std::string& path) {
  const ordered_json* v = present(obj, key);
  if (v && !v->is_array()) bad_request(field_path(path, key), "'" + field_path(path, key) + "' must be an array");
  return v;
}

const ordered_json* opt_object(const ordered_json& obj, const char* key, const std::string& path) {
  const ordered_json* v = present(obj, key);
  if (v && !v->is_object()) bad_request(field_path(path, key), "'" + field_path(path, key) + "' must be an object");
  return v;
}

ordered_json arguments_object(const ordered_json& arguments, const std::string& path) {
  if (arguments.is_object()) return arguments;
  if (arguments.is_null()) return ordered_json::object();
  if (arguments.is_string()) {
    const std::string& s = arguments.get_ref<const std::string&>();
    if (s.find_first_not_of(" \t\r\n") == std::string::npos) return ordered_json::object();
    ordered_json parsed = ordered_json::parse(s, nullptr, false);
    if (parsed.is_object()) return parsed;
  }
  bad_request(path, "'" + path + "' must be a JSON object (or a string holding one)");
}

}  // namespace moeserve::server
