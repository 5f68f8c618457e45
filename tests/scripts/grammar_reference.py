"""The grammar engine of constrained output (`moeserve grammar`) against Python's json module.

For each schema, documents are generated (random instances laid out compactly, with spaces and
indented) and mutated (a byte deleted, inserted or replaced, the text cut short). A text must be
accepted exactly when json.loads reads it (strictly: no NaN/Infinity), the value
matches the schema (checked by the small validator below; duplicate keys only in json_object
mode), and it keeps the documented output
limits of the grammar: properties in declaration order, no whitespace before or after the value,
whitespace between tokens of nothing / one space / a line break with up to 20 spaces or tabs, at
most 16 integer and fraction digits and 3 exponent digits.

Tool calls: assistant messages with tool calls are rendered by Python jinja2 through the real
chat templates (Qwen3-Coder's XML format, Qwen3's Hermes JSON format); the calls the template
writes must be accepted, and the same with a call to a tool that is not allowed, a missing required
argument or a cut-off call must not.

usage: grammar_reference.py MOESERVE_BINARY TEMPLATES_DIR
"""
import json
import random
import re
import subprocess
import sys

SCHEMAS = [
    None,  # json_object mode: any object
    {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
                                      "score": {"type": "number"}, "ok": {"type": "boolean"},
                                      "nothing": {"type": "null"}},
     "required": ["name", "age"], "additionalProperties": False},
    {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string", "maxLength": 5},
                                               "minItems": 1, "maxItems": 3},
                                      "mode": {"enum": ["fast", "slow", 3, None]},
                                      "version": {"const": "v1"}},
     "required": ["tags", "mode"]},
    {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"],
     "additionalProperties": {"type": "number"}},
    {"$defs": {"node": {"type": "object", "properties": {"v": {"type": "integer"},
                                                          "kids": {"type": "array", "items": {"$ref": "#/$defs/node"},
                                                                   "maxItems": 2}},
                        "required": ["v"], "additionalProperties": False}},
     "$ref": "#/$defs/node"},
    {"anyOf": [{"type": "string", "minLength": 2, "maxLength": 4}, {"type": ["integer", "null"]},
               {"type": "array", "items": {"oneOf": [{"type": "boolean"}, {"type": "object", "properties": {}}]}}]},
    {"type": "array", "items": {"type": "object", "properties": {"k": {"type": "string"}},
                                "additionalProperties": True}, "maxItems": 4},
]

UNSUPPORTED = [({"type": "string", "pattern": "^a"}, "pattern"), ({"type": "integer", "minimum": 3}, "minimum"),
               ({"allOf": [{"type": "string"}]}, "allOf"), ({"type": "object", "properties": {"a": {"not": {}}}}, "not")]


def resolve(root, ref):
    node = root
    for part in ref[2:].split("/") if ref != "#" else []:
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def is_type(v, t):
    return {"object": isinstance(v, dict), "array": isinstance(v, list), "string": isinstance(v, str),
            "integer": isinstance(v, int) and not isinstance(v, bool),
            "number": isinstance(v, (int, float)) and not isinstance(v, bool),
            "boolean": isinstance(v, bool), "null": v is None}[t]


def same(a, b):
    return type(a) == type(b) and a == b if not isinstance(a, (int, float)) or isinstance(a, bool) else \
        (isinstance(b, (int, float)) and not isinstance(b, bool) and a == b)


def conforms(s, v, root, keys):
    """keys: the value's object keys in document order (id(dict) -> list), for the order rule."""
    if s is True or s == {}:
        return True
    if "$ref" in s:
        return conforms(resolve(root, s["$ref"]), v, root, keys)
    if "const" in s:
        return same(s["const"], v)
    if "enum" in s:
        return any(same(e, v) for e in s["enum"])
    for k in ("anyOf", "oneOf"):
        if k in s:
            return any(conforms(sub, v, root, keys) for sub in s[k])
    types = s.get("type")
    if types is None:
        types = "object" if "properties" in s else "array" if "items" in s else None
    if types is None:
        return True
    types = [types] if isinstance(types, str) else types
    return any(is_type(v, t) and conforms_typed(s, t, v, root, keys) for t in types)


def conforms_typed(s, t, v, root, keys):
    if t == "string":
        return s.get("minLength", 0) <= len(v) <= s.get("maxLength", 10**9)
    if t == "array":
        if not s.get("minItems", 0) <= len(v) <= s.get("maxItems", 10**9):
            return False
        return all(conforms(s.get("items", True), x, root, keys) for x in v)
    if t == "object":
        props = s.get("properties", {})
        extra = s.get("additionalProperties", None if props else True)
        order = keys[id(v)]
        declared = [k for k in order if k in props]
        if declared != [k for k in props if k in v]:
            return False  # declaration order
        if any(r not in v for r in s.get("required", [])):
            return False
        extras = [k for k in order if k not in props]
        if extras and (extra is None or extra is False):
            return False
        if extras and order[len(declared):] != extras:
            return False  # extra properties come after the declared ones
        for k in order:
            sub = props.get(k, extra if extra not in (None, False) else True)
            if not conforms(sub, v[k], root, keys):
                return False
        return True
    return True


NUMBER = re.compile(r"-?(0|[1-9][0-9]{0,15})(\.[0-9]{1,16})?([eE][+-]?[0-9]{1,3})?")
SPACE = re.compile(r"( |\n[ \t]{0,20})?")


def within_limits(text):
    if not text or text[0] in " \t\n\r" or text[-1] in " \t\n\r":
        return False
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            i += 1
            while text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
        elif c in " \t\n\r":
            j = i
            while j < n and text[j] in " \t\n\r":
                j += 1
            if not SPACE.fullmatch(text[i:j]):
                return False
            i = j
        elif c in "-0123456789":
            j = i
            while j < n and text[j] in "-+.eE0123456789":
                j += 1
            if not NUMBER.fullmatch(text[i:j]):
                return False
            i = j
        else:
            i += 1
    return True


def expected(schema, text):
    keys = {}

    def pairs(items):
        names = [k for k, _ in items]
        # Any object may repeat a key (json_object mode); a schema's properties may not.
        if schema is not None and len(set(names)) != len(names):
            raise ValueError("duplicate key")
        d = dict(items)
        keys[id(d)] = names
        return d

    def no_constant(name):
        raise ValueError(name)

    try:
        v = json.loads(text, object_pairs_hook=pairs, parse_constant=no_constant)
    except (ValueError, RecursionError):
        return False
    if schema is None:
        ok = isinstance(v, dict)
    else:
        ok = conforms(schema, v, schema, keys)
    return ok and within_limits(text)


WORDS = ["a", "bb", "héllo", "x y", "q\"t", "back\\slash", "tab\tx", "ü", "日本", "", "line\nbreak", "k"]


def instance(s, root, rng, depth=0):
    if s is True or s == {} or s is None:
        return rng.choice([1, "s", None, True, [1, 2], {"z": 1}, 2.5])
    if "$ref" in s:
        return instance(resolve(root, s["$ref"]), root, rng, depth + 1)
    if "const" in s:
        return s["const"]
    if "enum" in s:
        return rng.choice(s["enum"])
    for k in ("anyOf", "oneOf"):
        if k in s:
            return instance(rng.choice(s[k]), root, rng, depth)
    t = s.get("type", "object" if "properties" in s else "array" if "items" in s else "integer")
    t = rng.choice(t) if isinstance(t, list) else t
    if t == "object":
        props = s.get("properties", {})
        out = {}
        for k, sub in props.items():
            if k in s.get("required", []) or (depth < 3 and rng.random() < 0.6):
                out[k] = instance(sub, root, rng, depth + 1)
        extra = s.get("additionalProperties", None if props else True)
        if extra not in (None, False) and rng.random() < 0.5:
            out["extra_" + str(rng.randint(0, 9))] = instance(extra, root, rng, depth + 1)
        return out
    if t == "array":
        lo = s.get("minItems", 0)
        hi = min(s.get("maxItems", 3), 3) if depth < 3 else lo
        return [instance(s.get("items", True), root, rng, depth + 1) for _ in range(rng.randint(lo, max(lo, hi)))]
    if t == "string":
        lo, hi = s.get("minLength", 0), s.get("maxLength", 12)
        w = "".join(rng.choice(WORDS) for _ in range(3))
        while len(w) < lo:
            w += "z"
        return w[:rng.randint(lo, max(lo, min(hi, len(w))))]
    if t == "integer":
        return rng.choice([0, 7, -42, 123456789, 10**15])
    if t == "number":
        return rng.choice([0, 1.5, -0.25, 3e10, 12.0, 1e-7])
    if t == "boolean":
        return rng.choice([True, False])
    return None


def layouts(v, rng):
    yield json.dumps(v, separators=(",", ":"), ensure_ascii=rng.random() < 0.5)
    yield json.dumps(v)
    yield json.dumps(v, indent=2, ensure_ascii=False)
    yield json.dumps(v, indent="\t")


def mutations(text, rng):
    alphabet = '{}[]",: \n0123456789.-eEtruefalsnl\\ab'
    for _ in range(6):
        i = rng.randrange(len(text) + 1)
        k = rng.random()
        if k < 0.3 and i < len(text):
            yield text[:i] + text[i + 1:]
        elif k < 0.6:
            yield text[:i] + rng.choice(alphabet) + text[i:]
        elif k < 0.8 and i < len(text):
            yield text[:i] + rng.choice(alphabet) + text[i + 1:]
        else:
            yield text[:i]


TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]},
                                         "days": {"type": "integer"}, "detailed": {"type": "boolean"}},
        "required": ["city"]}}},
    {"type": "function", "function": {"name": "write_file", "parameters": {
        "type": "object", "properties": {"path": {"type": "string"}, "content": {"type": "string"},
                                         "lines": {"type": "array", "items": {"type": "integer"}},
                                         "meta": {"type": "object", "properties": {"mode": {"type": "string"}}}},
        "required": ["path", "content"]}}},
]

CALLS = [
    [("get_weather", {"city": "Paris"})],
    [("get_weather", {"city": "New York", "unit": "f", "days": 3, "detailed": True})],
    [("write_file", {"path": "a.py", "content": "def f():\n    return '<p>' < 3\n"})],
    [("write_file", {"path": "b", "content": "x", "lines": [1, 2], "meta": {"mode": "w"}}),
     ("get_weather", {"city": "Oslo", "detailed": False})],
]


def tool_cases(templates):
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from jinja_reference import make_environment
    env = make_environment()
    cases = []  # (case without text, text, expected)
    for name, fmt in (("Qwen3-Coder.jinja", "qwen3-coder"), ("Qwen-Qwen3-0.6B.jinja", "hermes")):
        template = env.from_string(open(f"{templates}/{name}", encoding="utf-8").read())
        for calls in CALLS:
            messages = [{"role": "user", "content": "go"},
                        {"role": "assistant", "content": "",
                         "tool_calls": [{"type": "function", "function": {"name": n, "arguments": a}} for n, a in calls]}]
            text = template.render(messages=messages, tools=TOOLS, add_generation_prompt=False)
            reply = text[text.rindex("<|im_start|>assistant"):]
            reply = reply[reply.index("<tool_call>"):reply.rindex("</tool_call>") + len("</tool_call>")]
            base = {"tools": TOOLS, "format": fmt}
            cases.append((base, reply, True))
            cases.append(({**base, "parallel": False}, reply, len(calls) == 1))
            cases.append(({**base, "allowed": [calls[0][0]]}, reply, all(n == calls[0][0] for n, _ in calls)))
            other = "write_file" if calls[0][0] == "get_weather" else "get_weather"
            cases.append(({**base, "allowed": [other]}, reply, False))
            cases.append((base, reply[:-1], False))
            cases.append((base, reply + "\n", False))
            cases.append(({**base, "reasoning_end": "</think>"}, "I will call it.</think>\n" + reply, True))
            first_required = "city" if calls[0][0] == "get_weather" else "path"
            if fmt == "qwen3-coder":
                cut = reply.replace(f"<parameter={first_required}>", "<parameter=nope>", 1)
            else:
                cut = reply.replace(f'"{first_required}"', '"nope"', 1)
            cases.append((base, cut, False))
    return cases


def main():
    binary = sys.argv[1]
    rng = random.Random(1234)
    cases = []
    for schema in SCHEMAS:
        for _ in range(60):
            v = instance(schema if schema is not None else {"type": "object", "additionalProperties": True}, schema, rng)
            for text in layouts(v, rng):
                cases.append((schema, text))
                for m in mutations(text, rng):
                    cases.append((schema, m))
        # Hand-picked near misses.
        for text in ['{}', '{"a":1}', ' {}', '{} ', '{"a":NaN}', '{"a":01}', '[]', '"x"', '{"a":1,}', '{"a" :\n\n1}',
                     '{"a":1e1234}', '{"a":12345678901234567}', '{"name":"x","age":1}', '{"age":1,"name":"x"}',
                     '{"name":"x","age":1.0}', '{"name":"x","age":1,"age":2}', '{"tags":["abcdef"],"mode":3}',
                     '{"tags":["abcde"],"mode":3}', '{"tags":[],"mode":3}', '{"id":1,"x":2,"y":"s"}', '{"id":1,"id":2}',
                     '"ab"', '"abcde"', 'null', '[true,{}]', '[{"k":"v","w":[1]}]', '{"v":1,"kids":[{"v":2,"kids":[]}]}']:
            cases.append((schema, text))
    lines = []
    for schema, text in cases:
        case = {"text": text, "json_object": True} if schema is None else {"text": text, "schema": schema}
        lines.append(json.dumps(case))
    for schema, _ in UNSUPPORTED:
        lines.append(json.dumps({"text": "1", "schema": schema}))
    tools = tool_cases(sys.argv[2])
    for case, text, _ in tools:
        lines.append(json.dumps({**case, "text": text}))
    out = subprocess.run([binary, "grammar"], input="\n".join(lines) + "\n", capture_output=True, text=True, check=True)
    results = [json.loads(l) for l in out.stdout.splitlines()]
    assert len(results) == len(lines), (len(results), len(lines), out.stderr)
    failures = 0
    accepted = 0
    for (schema, text), r in zip(cases, results):
        want = expected(schema, text)
        accepted += want
        if "error" in r or r["accepted"] != want:
            failures += 1
            if failures <= 20:
                print(f"MISMATCH schema={json.dumps(schema)[:80]} text={text!r} python={want} moeserve={r}")
    for (schema, keyword), r in zip(UNSUPPORTED, results[len(cases):]):
        if "error" not in r or keyword not in r["error"]:
            failures += 1
            print(f"MISMATCH unsupported {keyword}: {r}")
    for (case, text, want), r in zip(tools, results[len(cases) + len(UNSUPPORTED):]):
        if "error" in r or r["accepted"] != want:
            failures += 1
            print(f"MISMATCH tool call {case.get('format')} allowed={case.get('allowed')} text={text!r} want={want} got={r}")
    print(f"{len(cases)} texts ({accepted} valid), {len(UNSUPPORTED)} unsupported schemas, {len(tools)} tool-call texts, "
          f"{failures} mismatches")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
