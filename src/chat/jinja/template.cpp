#include "chat/jinja/template.h"

#include "chat/jinja/builtins.h"
#include "chat/jinja/parser.h"

namespace moeserve::jinja {

Template Template::compile(std::string_view source) {
  return Template(std::make_shared<const Body>(parse_template(source)));
}

std::string Template::render(const DictData& context, const RenderOptions& options) const {
  DictData globals;
  add_globals(globals);
  Interpreter interp(options.limits, options.now);
  return interp.render(*body_, globals, context);
}

namespace {

Value convert(const nlohmann::ordered_json& j, int depth) {
  if (depth > kMaxJsonDepth) fail("JSON input nested deeper than ", kMaxJsonDepth, " levels");
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null: return Value::none();
    case nlohmann::ordered_json::value_t::boolean: return Value::boolean(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer: return Value::integer(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
      const uint64_t u = j.get<uint64_t>();
      if (u > uint64_t(INT64_MAX)) fail("JSON integer ", u, " does not fit in 64 bits");
      return Value::integer(int64_t(u));
    }
    case nlohmann::ordered_json::value_t::number_float: return Value::number(j.get<double>());
    case nlohmann::ordered_json::value_t::string: return Value::string(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      std::vector<Value> items;
      items.reserve(j.size());
      for (const auto& item : j) items.push_back(convert(item, depth + 1));
      return Value::list(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      auto d = std::make_shared<DictData>();
      for (auto it = j.begin(); it != j.end(); ++it) d->set(Value::string(it.key()), convert(it.value(), depth + 1));
      return Value::dict(std::move(d));
    }
    default: fail("unsupported JSON value (binary data)");
  }
}

}  // namespace

Value from_json(const nlohmann::ordered_json& json) { return convert(json, 0); }

}  // namespace moeserve::jinja
