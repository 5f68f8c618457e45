#include "grammar/json_schema.h"

#include <array>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>

#include "core/error.h"

namespace moeserve::grammar {
namespace {

using json = nlohmann::ordered_json;
using B = GrammarBuilder;

const std::set<std::string> kAnnotations = {"title",   "description", "default",  "examples", "format",
                                            "$schema", "$id",         "$comment", "deprecated",
                                            "readOnly", "writeOnly", "$defs", "definitions"};
const std::set<std::string> kKeywords = {"type",     "properties", "required",  "additionalProperties",
                                         "items",    "minItems",   "maxItems",  "minLength",
                                         "maxLength", "enum",      "const",     "anyOf",
                                         "oneOf",    "$ref"};

// Shared pieces, created on first use.
struct Pieces {
  std::optional<Element> space, character, escape, string, integer, number, value, object_value;
};

class Compiler {
 public:
  Compiler(B& b, const json& root) : b_(b), root_(root) {}

  Element compile(const json& schema, const std::string& path);
  Element space();
  Element string_of(int64_t min, int64_t max);
  Element string() { return cached(p_.string, [&] { return string_of(0, -1); }); }
  Element integer();
  Element number();
  Element value();
  Element any_object();

 private:
  template <class F>
  Element cached(std::optional<Element>& slot, F make) {
    if (!slot) slot = make();
    return *slot;
  }
  Element character();
  Element escape();
  Element key_not_in(const std::vector<std::string>& names);
  Element typed(const std::string& type, const json& schema, const std::string& path);
  Element object(const json& schema, const std::string& path);
  Element array(const json& schema, const std::string& path);
  Element resolve(const std::string& ref, const std::string& path);
  Element members(const Sequence& key, const Element& value);

  B& b_;
  const json& root_;
  Pieces p_;
  std::map<std::string, uint32_t> refs_;
};

int64_t count_of(const json& schema, const char* key, const std::string& path, int64_t fallback) {
  const auto it = schema.find(key);
  if (it == schema.end()) return fallback;
  if (!it->is_number_integer() || it->get<int64_t>() < 0) fail(path, ".", key, " must be a non-negative integer");
  if (it->get<int64_t>() > 10000) fail(path, ".", key, " of ", it->get<int64_t>(), " is beyond the supported 10000");
  return it->get<int64_t>();
}

// Nothing, one space, or a line break with up to 20 spaces or tabs of indentation (llama.cpp's
// converter allows the same): room for the usual layouts, none for runs of blank lines.
Element Compiler::space() {
  return cached(p_.space, [&] {
    ByteSet indent;
    indent.set(' ');
    indent.set('\t');
    return B::ref(b_.rule_of({{}, {B::byte(' ')}, {B::byte('\n'), b_.repeat({B::set(indent)}, 0, 20)}}));
  });
}

// What follows a backslash in a JSON string.
Element Compiler::escape() {
  return cached(p_.escape, [&] {
    ByteSet escaped;
    for (char c : std::string("\"\\/bfnrt")) escaped.set(uint8_t(c));
    ByteSet hex;
    for (char c : std::string("0123456789abcdefABCDEF")) hex.set(uint8_t(c));
    return B::ref(b_.rule_of({{B::set(escaped)}, {B::byte('u'), B::set(hex), B::set(hex), B::set(hex), B::set(hex)}}));
  });
}

Element Compiler::character() {
  return cached(p_.character, [&] {
    ByteSet plain;
    for (int c = 0x20; c < 0x80; ++c) plain.set(size_t(c));
    plain.reset('"');
    plain.reset('\\');
    const Element cont = B::range(0x80, 0xBF);
    return B::ref(b_.rule_of({
        {B::set(plain)},
        {B::range(0xC2, 0xDF), cont},
        {B::range(0xE0, 0xEF), cont, cont},
        {B::range(0xF0, 0xF4), cont, cont, cont},
        {B::byte('\\'), escape()},
    }));
  });
}

Element Compiler::string_of(int64_t min, int64_t max) {
  return B::ref(b_.rule_of({{B::byte('"'), b_.repeat({character()}, int(min), int(max)), B::byte('"')}}));
}

Element Compiler::integer() {
  return cached(p_.integer, [&] {
    const Element int_part = B::ref(b_.rule_of({{B::byte('0')}, {B::range('1', '9'), b_.repeat({B::range('0', '9')}, 0, 15)}}));
    const Element minus = b_.repeat({B::byte('-')}, 0, 1);
    return B::ref(b_.rule_of({{minus, int_part}}));
  });
}

Element Compiler::number() {
  return cached(p_.number, [&] {
    const Element frac = b_.repeat({B::byte('.'), b_.repeat({B::range('0', '9')}, 1, 16)}, 0, 1);
    ByteSet e, sign;
    e.set('e');
    e.set('E');
    sign.set('+');
    sign.set('-');
    const Element exp = b_.repeat({B::set(e), b_.repeat({B::set(sign)}, 0, 1), b_.repeat({B::range('0', '9')}, 1, 3)}, 0, 1);
    return B::ref(b_.rule_of({{integer(), frac, exp}}));
  });
}

// `{` members `}` where each member is key ws `:` ws value ws, separated by `,` ws.
Element Compiler::members(const Sequence& key, const Element& value) {
  Sequence member = key;
  for (const Element& e : {space(), B::byte(':'), space(), value, space()}) member.push_back(e);
  Sequence more = {B::byte(','), space()};
  B::append(more, member);
  Sequence some = member;
  some.push_back(b_.repeat(more, 0, -1));
  return B::ref(b_.rule_of({{B::byte('{'), space(), b_.repeat(some, 0, 1), B::byte('}')}}));
}

Element Compiler::value() {
  if (p_.value) return *p_.value;
  const uint32_t v = b_.new_rule();
  p_.value = B::ref(v);
  const Element item = B::ref(v);
  Sequence array_items = {item, space()};
  Sequence more = {B::byte(','), space(), item, space()};
  array_items.push_back(b_.repeat(more, 0, -1));
  const Element array = B::ref(b_.rule_of({{B::byte('['), space(), b_.repeat(array_items, 0, 1), B::byte(']')}}));
  b_.add(v, {members({string()}, item)});
  b_.add(v, {array});
  b_.add(v, {string()});
  b_.add(v, {number()});
  b_.add(v, B::lit("true"));
  b_.add(v, B::lit("false"));
  b_.add(v, B::lit("null"));
  return item;
}

Element Compiler::any_object() { return cached(p_.object_value, [&] { return members({string()}, value()); }); }

// A JSON string that is none of `names` (byte-exact; names without escapes or non-ASCII bytes).
Element Compiler::key_not_in(const std::vector<std::string>& names) {
  for (const std::string& n : names) {
    for (char c : n) {
      if (uint8_t(c) >= 0x80 || c == '"' || c == '\\' || uint8_t(c) < 0x20) return string();
    }
  }
  // A trie of the names; at each node: end here (unless a name ends here), a child byte, or any
  // other character followed by a free tail.
  const Element tail = B::ref(b_.rule_of({{b_.repeat({character()}, 0, -1), B::byte('"')}}));
  std::function<Element(const std::string&)> node = [&](const std::string& prefix) -> Element {
    const uint32_t r = b_.new_rule();
    bool is_name = false;
    ByteSet children;
    for (const std::string& n : names) {
      if (n.size() == prefix.size() && n == prefix) is_name = true;
      if (n.size() > prefix.size() && n.compare(0, prefix.size(), prefix) == 0) children.set(uint8_t(n[prefix.size()]));
    }
    if (!is_name) b_.add(r, {B::byte('"')});
    for (int c = 0; c < 256; ++c) {
      if (children.test(size_t(c))) b_.add(r, {B::byte(uint8_t(c)), node(prefix + char(c))});
    }
    ByteSet plain;
    for (int c = 0x20; c < 0x80; ++c) plain.set(size_t(c));
    plain.reset('"');
    plain.reset('\\');
    plain &= ~children;
    const Element cont = B::range(0x80, 0xBF);
    b_.add(r, {B::set(plain), tail});
    b_.add(r, {B::range(0xC2, 0xDF), cont, tail});
    b_.add(r, {B::range(0xE0, 0xEF), cont, cont, tail});
    b_.add(r, {B::range(0xF0, 0xF4), cont, cont, cont, tail});
    b_.add(r, {B::byte('\\'), escape(), tail});
    return B::ref(r);
  };
  return B::ref(b_.rule_of({{B::byte('"'), node("")}}));
}

Element Compiler::object(const json& schema, const std::string& path) {
  const json empty = json::object();
  const json& props = schema.contains("properties") ? schema["properties"] : empty;
  if (!props.is_object()) fail(path, ".properties must be an object");
  std::set<std::string> required;
  if (const auto it = schema.find("required"); it != schema.end()) {
    if (!it->is_array()) fail(path, ".required must be an array of property names");
    for (const json& n : *it) {
      if (!n.is_string()) fail(path, ".required must be an array of property names");
      if (!props.contains(n.get<std::string>())) fail(path, ".required names '", n.get<std::string>(), "', which is not in properties");
      required.insert(n.get<std::string>());
    }
  }
  std::optional<Element> extra_value;
  std::vector<std::string> names;
  for (const auto& [name, sub] : props.items()) names.push_back(name);
  if (const auto it = schema.find("additionalProperties"); it != schema.end()) {
    if (it->is_boolean()) {
      if (it->get<bool>()) extra_value = value();
    } else if (it->is_object()) {
      extra_value = compile(*it, path + ".additionalProperties");
    } else {
      fail(path, ".additionalProperties must be a boolean or a schema");
    }
  } else if (props.empty()) {
    extra_value = value();  // a bare {"type": "object"}: any object
  }
  if (props.empty() && extra_value) return members({string()}, *extra_value);

  // rest[i][c]: members from property i on; c = a member was already written (a comma is due).
  const size_t n = names.size();
  std::vector<std::array<uint32_t, 2>> rest(n + 1);
  for (auto& r : rest) r = {b_.new_rule(), b_.new_rule()};
  Sequence extra_member;
  if (extra_value) {
    extra_member = {key_not_in(names), space(), B::byte(':'), space(), *extra_value, space()};
  }
  for (int c = 0; c < 2; ++c) {
    b_.add(rest[n][size_t(c)], {});
    if (extra_value) {
      Sequence s;
      if (c) B::append(s, {B::byte(','), space()});
      B::append(s, extra_member);
      s.push_back(B::ref(rest[n][1]));
      b_.add(rest[n][size_t(c)], std::move(s));
    }
  }
  for (size_t i = n; i-- > 0;) {
    const Element v = compile(props[names[i]], path + ".properties." + names[i]);
    const Sequence key = B::lit(json(names[i]).dump());
    for (int c = 0; c < 2; ++c) {
      Sequence s;
      if (c) B::append(s, {B::byte(','), space()});
      B::append(s, key);
      B::append(s, {space(), B::byte(':'), space(), v, space(), B::ref(rest[i + 1][1])});
      b_.add(rest[i][size_t(c)], std::move(s));
      if (!required.count(names[i])) b_.add(rest[i][size_t(c)], {B::ref(rest[i + 1][size_t(c)])});
    }
  }
  return B::ref(b_.rule_of({{B::byte('{'), space(), B::ref(rest[0][0]), B::byte('}')}}));
}

Element Compiler::array(const json& schema, const std::string& path) {
  const Element item = schema.contains("items") ? compile(schema["items"], path + ".items") : value();
  const int64_t min = count_of(schema, "minItems", path, 0);
  const int64_t max = count_of(schema, "maxItems", path, -1);
  if (max >= 0 && max < min) fail(path, ": maxItems ", max, " is below minItems ", min);
  if (max == 0) return B::ref(b_.rule_of({{B::byte('['), space(), B::byte(']')}}));
  const Sequence more = {B::byte(','), space(), item, space()};
  const Sequence some = {item, space(), b_.repeat(more, int(std::max<int64_t>(min - 1, 0)), max < 0 ? -1 : int(max - 1))};
  const Element body = min > 0 ? B::ref(b_.rule_of({some})) : b_.repeat(some, 0, 1);
  return B::ref(b_.rule_of({{B::byte('['), space(), body, B::byte(']')}}));
}

Element Compiler::resolve(const std::string& ref, const std::string& path) {
  if (const auto it = refs_.find(ref); it != refs_.end()) return B::ref(it->second);
  if (ref.empty() || ref[0] != '#') fail(path, ".$ref '", ref, "': only references into this schema (#...) are supported");
  const json* target = nullptr;
  try {
    target = &root_.at(json::json_pointer(ref.substr(1)));
  } catch (const std::exception&) {
    fail(path, ".$ref '", ref, "' does not name a part of this schema");
  }
  // The rule exists before its body, so recursive references end at it.
  const uint32_t r = b_.new_rule();
  refs_[ref] = r;
  b_.add(r, {compile(*target, ref)});
  return B::ref(r);
}

Element Compiler::typed(const std::string& type, const json& schema, const std::string& path) {
  if (type == "object") return object(schema, path);
  if (type == "array") return array(schema, path);
  if (type == "string") {
    const int64_t min = count_of(schema, "minLength", path, 0);
    const int64_t max = count_of(schema, "maxLength", path, -1);
    if (max >= 0 && max < min) fail(path, ": maxLength ", max, " is below minLength ", min);
    return min == 0 && max < 0 ? string() : string_of(min, max);
  }
  if (type == "integer") return integer();
  if (type == "number") return number();
  if (type == "boolean") return B::ref(b_.rule_of({B::lit("true"), B::lit("false")}));
  if (type == "null") return B::ref(b_.rule_of({B::lit("null")}));
  fail(path, ".type '", type, "' is not a JSON Schema type");
}

Element Compiler::compile(const json& schema, const std::string& path) {
  if (schema.is_boolean()) {
    if (!schema.get<bool>()) fail(path, ": the schema `false` matches nothing");
    return value();
  }
  if (!schema.is_object()) fail(path, " must be a schema object");
  for (const auto& [key, v] : schema.items()) {
    if (!kKeywords.count(key) && !kAnnotations.count(key)) fail(path, ": keyword '", key, "' is not supported");
  }
  if (const auto it = schema.find("$ref"); it != schema.end()) {
    if (!it->is_string()) fail(path, ".$ref must be a string");
    return resolve(it->get<std::string>(), path);
  }
  if (const auto it = schema.find("const"); it != schema.end()) return B::ref(b_.rule_of({B::lit(it->dump())}));
  if (const auto it = schema.find("enum"); it != schema.end()) {
    if (!it->is_array() || it->empty()) fail(path, ".enum must be a non-empty array");
    std::vector<Sequence> alts;
    for (const json& v : *it) alts.push_back(B::lit(v.dump()));
    return B::ref(b_.rule_of(std::move(alts)));
  }
  for (const char* key : {"anyOf", "oneOf"}) {
    if (const auto it = schema.find(key); it != schema.end()) {
      if (!it->is_array() || it->empty()) fail(path, ".", key, " must be a non-empty array");
      std::vector<Sequence> alts;
      for (size_t i = 0; i < it->size(); ++i) alts.push_back({compile((*it)[i], str_cat(path, ".", key, "[", i, "]"))});
      return B::ref(b_.rule_of(std::move(alts)));
    }
  }
  if (const auto it = schema.find("type"); it != schema.end()) {
    if (it->is_string()) return typed(it->get<std::string>(), schema, path);
    if (!it->is_array() || it->empty()) fail(path, ".type must be a type name or a non-empty array of them");
    std::vector<Sequence> alts;
    for (const json& t : *it) {
      if (!t.is_string()) fail(path, ".type must be a type name or a non-empty array of them");
      alts.push_back({typed(t.get<std::string>(), schema, path)});
    }
    return B::ref(b_.rule_of(std::move(alts)));
  }
  if (schema.contains("properties") || schema.contains("additionalProperties") || schema.contains("required")) return object(schema, path);
  if (schema.contains("items") || schema.contains("minItems") || schema.contains("maxItems")) return array(schema, path);
  return value();
}

}  // namespace

Element compile_json_schema(GrammarBuilder& builder, const nlohmann::ordered_json& schema, const nlohmann::ordered_json& root) {
  Compiler c(builder, root);
  return c.compile(schema, "schema");
}

Element json_value(GrammarBuilder& builder, bool object_only) {
  Compiler c(builder, nlohmann::ordered_json::object());
  return object_only ? c.any_object() : c.value();
}

Element json_space(GrammarBuilder& builder) {
  Compiler c(builder, nlohmann::ordered_json::object());
  return c.space();
}

std::shared_ptr<const Grammar> json_schema_grammar(const nlohmann::ordered_json& schema) {
  GrammarBuilder b;
  const Element v = compile_json_schema(b, schema, schema);
  return b.build(b.rule_of({{v}}));
}

}  // namespace moeserve::grammar
