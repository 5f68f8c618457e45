// The value model of the template interpreter: Python's types as jinja2 sees them, with their
// semantics (truthiness, equality, ordering, str() and repr()), so output matches Python's byte for
// byte. Containers are shared by reference like Python objects; the sandbox transformers uses makes
// lists and dicts immutable from templates, so only iterators (consumed as they are read) and
// namespaces change after creation.
#pragma once

#include <cstdint>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace moeserve::jinja {

class Interpreter;
class Value;

// A failure while evaluating (Python's TypeError, UndefinedError, ...). The interpreter adds the
// template position and turns it into a TemplateError.
class RuntimeError : public std::runtime_error {
 public:
  explicit RuntimeError(const std::string& message) : std::runtime_error(message) {}
};

enum class Kind : uint8_t { Undefined, None, Bool, Int, Float, String, Seq, Dict, Callable, Object };

// Python's sequence-like types: they print, index and measure differently, so we keep them apart.
// Iterator covers generators and reverse iterators (no len(), no indexing, consumed when read).
enum class SeqKind : uint8_t { List, Tuple, Range, DictKeys, DictValues, DictItems, Iterator };

struct HeapObject {
  virtual ~HeapObject() = default;
};

struct SeqData;
struct DictData;
struct CallableObject;
struct Object;

class Value {
 public:
  Value() : i_(0) {}  // undefined
  static Value undefined(std::string hint = {}, bool unsafe = false);
  static Value none();
  static Value boolean(bool b);
  static Value integer(int64_t i);
  static Value number(double d);
  static Value string(std::string s, bool safe = false);
  static Value list(std::vector<Value> items, SeqKind kind = SeqKind::List);
  static Value tuple(std::vector<Value> items) { return list(std::move(items), SeqKind::Tuple); }
  static Value range(int64_t start, int64_t stop, int64_t step);
  static Value dict(std::shared_ptr<DictData> d);
  static Value empty_dict();
  static Value callable(std::shared_ptr<CallableObject> c);
  static Value object(std::shared_ptr<Object> o);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::Undefined; }
  bool is_none() const { return kind_ == Kind::None; }
  bool is_bool() const { return kind_ == Kind::Bool; }
  bool is_int() const { return kind_ == Kind::Int; }
  bool is_float() const { return kind_ == Kind::Float; }
  bool is_number() const { return kind_ == Kind::Int || kind_ == Kind::Float || kind_ == Kind::Bool; }
  bool is_string() const { return kind_ == Kind::String; }
  bool is_seq() const { return kind_ == Kind::Seq; }
  bool is_dict() const { return kind_ == Kind::Dict; }
  bool is_callable_kind() const { return kind_ == Kind::Callable; }
  bool is_object() const { return kind_ == Kind::Object; }
  bool is_seq_kind(SeqKind k) const;
  bool is_list_or_tuple() const { return is_seq_kind(SeqKind::List) || is_seq_kind(SeqKind::Tuple); }
  bool safe() const { return safe_; }  // a markupsafe.Markup string

  bool as_bool() const { return b_; }
  int64_t as_int() const { return kind_ == Kind::Bool ? int64_t(b_) : i_; }  // Int or Bool
  double as_float() const;                                                      // any number
  const std::string& str() const { return *str_; }
  std::shared_ptr<const std::string> str_ptr() const { return str_; }
  SeqData& seq() const;
  DictData& dict() const;
  CallableObject& callable() const;
  Object& object() const;
  const std::shared_ptr<HeapObject>& heap() const { return obj_; }
  // Undefined values carry the message their use raises, and whether they stand for a sandboxed
  // (unsafe) attribute.
  const std::string& undefined_hint() const;
  bool undefined_unsafe() const { return b_; }

 private:
  Kind kind_ = Kind::Undefined;
  bool safe_ = false;
  union {
    bool b_;
    int64_t i_;
    double f_;
  };
  std::shared_ptr<const std::string> str_;
  std::shared_ptr<HeapObject> obj_;
};

// Containers deeper than this are refused, which keeps every recursive walk (repr, json, equality,
// destruction) within a small stack.
constexpr uint32_t kMaxContainerDepth = 1000;
uint32_t container_depth(const Value& v);  // 0 for scalars

struct SeqData : HeapObject {
  SeqKind kind = SeqKind::List;
  uint32_t depth = 1;
  std::vector<Value> items;
  size_t consumed = 0;  // iterators: items a previous read already took
  // Generators run eagerly here; an error they hit is raised only when a reader gets past the
  // items produced before it, as with Python's lazy generators.
  std::exception_ptr deferred_error;
  // A tuple that is jinja2's _GroupTuple(grouper, list) from |groupby: prints as a tuple, and also
  // has .grouper and .list.
  bool group_tuple = false;
  int64_t range_start = 0, range_stop = 0, range_step = 1;
};

// An insertion-ordered dict with Python key equality (1 == 1.0 == True); string keys are indexed.
struct DictData : HeapObject {
  std::vector<std::pair<Value, Value>> items;
  uint32_t depth = 1;

  const Value* find(const Value& key) const;
  const Value* find(std::string_view key) const;
  void set(const Value& key, Value value);  // RuntimeError for unhashable keys
  size_t size() const { return items.size(); }

 private:
  std::unordered_map<std::string, size_t> string_index_;
};

struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

struct CallableObject : HeapObject {
  virtual Value call(Interpreter& interp, CallArgs& args) = 0;
  virtual std::string repr() const = 0;
};

// Other Python objects templates meet: namespace(), the loop variable.
struct Object : HeapObject {
  virtual Value get_attr(Interpreter& interp, std::string_view name) = 0;  // undefined when absent
  virtual std::string repr() const = 0;
  virtual bool is_namespace() const { return false; }
  virtual bool is_callable() const { return false; }
  virtual Value call(Interpreter& interp, CallArgs& args);
};

struct NamespaceObject : Object {
  DictData attrs;
  Value get_attr(Interpreter& interp, std::string_view name) override;
  std::string repr() const override;
  bool is_namespace() const override { return true; }
};

// Python semantics.
bool truthy(const Value& v);
bool equals(const Value& a, const Value& b);
// <0, 0, >0 like Python's ordering; RuntimeError where Python raises TypeError.
int compare(const Value& a, const Value& b);
std::string type_name(const Value& v);  // Python's type name, for messages
std::string to_str(const Value& v);     // str(v)
std::string repr(const Value& v);       // repr(v)
std::string repr_string(std::string_view s);
std::string format_float(double d);     // repr(float)
bool hashable(const Value& v);
[[noreturn]] void raise_undefined(const Value& v);  // the UndefinedError of using an undefined

// The items of an iterable as Python iterates it (dict -> keys, str -> characters); iterators are
// consumed. RuntimeError for non-iterables; undefined iterates as empty.
std::vector<Value> iterate(const Value& v);
// len(): RuntimeError where Python has none (iterators, numbers).
int64_t length(const Value& v);

}  // namespace moeserve::jinja
