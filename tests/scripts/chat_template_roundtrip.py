#!/usr/bin/env python3
"""Tool calls survive a trip through the real chat templates.

Renders assistant messages with tool calls through the Qwen3-Coder template
(shared/spec/templates/qwen3-coder.jinja, XML calls) and the Qwen3 template (qwen3.jinja: JSON
calls after a <think> block) with Jinja2 configured as HF transformers renders chat templates
(trim_blocks, lstrip_blocks, tojson = json.dumps(ensure_ascii=False)); the environment is first
checked byte-for-byte against the spec's golden prompts. The assistant text so produced is exactly
what the model is trained to emit; `moeserve parse-output` must give back the original calls:
names, argument values and their JSON types (a number-typed 5.0 may come back as 5, as the spec's
conversion rule says), and argument text printed exactly as Python's json.dumps prints it.

usage: chat_template_roundtrip.py MOESERVE_BINARY SPEC_TEMPLATES_DIR [CASES]
"""
import json
import math
import random
import subprocess
import sys

import jinja2

NULL_WORDS = {"null", "none"}


def environment():
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])

    def tojson(x, indent=None, separators=None, sort_keys=False, ensure_ascii=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env.filters["tojson"] = tojson
    return env


def check_golden(env, templates):
    golden = json.load(open(f"{templates}/qwen3-coder.golden.json", encoding="utf-8"))
    template = env.from_string(open(f"{templates}/qwen3-coder.jinja", encoding="utf-8").read())
    for case in golden["cases"]:
        args = {k: v for k, v in case.items() if k not in ("name", "expected")}
        if template.render(**args) != case["expected"]:
            sys.exit(f"the Jinja2 environment does not reproduce golden case {case['name']!r}")


# ---- random data -------------------------------------------------------------------------------

WORDS = ["alpha", "beta", "ünïcödé", "日本語", "emoji 😀", "tab\there", "quote \" and ' marks", "back\\slash",
         "x < y > z", "a & b", "{not json", "[1, 2", "use </parameter> here", "a <tool_call> b", "<function=x> inline",
         "ends with </function> text", "{{ jinja }}", "%s", "$HOME", "NaN", "  spaced  "]
LOOKALIKES = ["42", "-7", "3.14", "1e5", "true", "false", "True", "[1, 2]", "{\"a\": 1}", "0x10", "007", ""]


def rand_string(rng, allow_null_word=True):
    kind = rng.random()
    if kind < 0.2:
        s = rng.choice(LOOKALIKES + (["null", "None"] if allow_null_word else []))
    else:
        parts = [rng.choice(WORDS) for _ in range(rng.randint(1, 5))]
        s = rng.choice([" ", "\n", "\n\n", ", "]).join(parts)
        if rng.random() < 0.2:
            s = "\n" + s
        if rng.random() < 0.2:
            s = s + "\n"
        if rng.random() < 0.15:  # code with indentation and blank lines
            s = "def f(x):\n    return x  # " + s + "\n\nprint(f(1))"
    if not allow_null_word and s.lower() in NULL_WORDS:
        s = "not " + s
    return s


def rand_float(rng):
    k = rng.random()
    if k < 0.2:
        return float(rng.randint(-1000, 1000))  # integral: comes back as an int, numerically equal
    if k < 0.3:
        return rng.choice([1e-300, 2.5e-8, 1e300, 1.7976931348623157e308, 5e-324, -0.5, 0.1, 1e16])
    return rng.uniform(-1e6, 1e6) * (10 ** rng.randint(-8, 8))


def rand_json(rng, depth=0):
    k = rng.random()
    if depth > 2 or k < 0.45:
        return rng.choice([lambda: rand_string(rng), lambda: rng.randint(-10**20, 10**20), lambda: rand_float(rng),
                           lambda: rng.choice([True, False, None])])()
    if k < 0.75:
        return [rand_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rand_string(rng).strip() or "k": rand_json(rng, depth + 1) for _ in range(rng.randint(0, 4))}


PARAM_KINDS = {
    "string": ({"type": "string"}, lambda rng: rand_string(rng)),
    "integer": ({"type": "integer"}, lambda rng: rng.choice([0, -1, rng.randint(-10**6, 10**6), 2**70, -(2**64)])),
    "number": ({"type": "number"}, rand_float),
    "boolean": ({"type": "boolean"}, lambda rng: rng.random() < 0.5),
    "object": ({"type": "object"}, lambda rng: {f"k{i}": rand_json(rng, 1) for i in range(rng.randint(0, 4))}),
    "array": ({"type": "array"}, lambda rng: [rand_json(rng, 1) for _ in range(rng.randint(0, 5))]),
    "nullable_string": ({"anyOf": [{"type": "string"}, {"type": "null"}]},
                        lambda rng: None if rng.random() < 0.3 else rand_string(rng, allow_null_word=False)),
    "nullable_integer": ({"anyOf": [{"type": "integer"}, {"type": "null"}]},
                         lambda rng: None if rng.random() < 0.3 else rng.randint(-99, 99)),
}


def make_tools(rng):
    tools = []
    for t in range(rng.randint(1, 3)):
        kinds = rng.sample(sorted(PARAM_KINDS), rng.randint(1, 5))
        props = {f"p_{kind}_{i}": dict(PARAM_KINDS[kind][0], description=f"a {kind}") for i, kind in enumerate(kinds)}
        tools.append({"type": "function", "function": {"name": f"tool_{t}.do-it", "description": "test tool",
                                                       "parameters": {"type": "object", "properties": props,
                                                                      "required": list(props)}}})
    return tools


def make_call(rng, tool):
    fn = tool["function"]
    props = fn["parameters"]["properties"]
    names = rng.sample(list(props), rng.randint(0, len(props)))
    args = {}
    for name in names:
        kind = name.split("_", 1)[1].rsplit("_", 1)[0]
        args[name] = PARAM_KINDS[kind][1](rng)
    return {"type": "function", "function": {"name": fn["name"], "arguments": args}}


# ---- comparison --------------------------------------------------------------------------------

def same(expected, got, number_schema=False):
    """Equal values with equal JSON types (bool is not a number; a number schema lets 5.0 be 5)."""
    if isinstance(expected, bool) or isinstance(got, bool):
        return type(expected) is type(got) and expected == got
    if number_schema and isinstance(expected, (int, float)) and isinstance(got, (int, float)):
        return expected == got
    if type(expected) is not type(got):
        return False
    if isinstance(expected, float):
        return expected == got or (math.isnan(expected) and math.isnan(got))
    if isinstance(expected, list):
        return len(expected) == len(got) and all(same(a, b) for a, b in zip(expected, got))
    if isinstance(expected, dict):
        return list(expected) == list(got) and all(same(expected[k], got[k]) for k in expected)
    return expected == got


def assistant_text(rendered):
    start = rendered.rindex("<|im_start|>assistant\n") + len("<|im_start|>assistant\n")
    return rendered[start:rendered.index("<|im_end|>", start)]


def main():
    binary, templates = sys.argv[1], sys.argv[2]
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 300
    env = environment()
    check_golden(env, templates)
    coder = env.from_string(open(f"{templates}/qwen3-coder.jinja", encoding="utf-8").read())
    qwen3 = env.from_string(open(f"{templates}/qwen3.jinja", encoding="utf-8").read())
    rng = random.Random(1234)

    cases, expectations = [], []
    for i in range(count):
        tools = make_tools(rng)
        calls = [make_call(rng, rng.choice(tools)) for _ in range(rng.randint(1, 3))]
        content = rng.choice(["", "", "I'll use the tools.", "Plan:\n1. read\n2. write ✓", "Calling <b>now</b>."])
        hermes = i % 3 == 2
        user = {"role": "user", "content": "do it"}
        if hermes:
            reasoning = rng.choice(["", "Need two calls.", "Think: x < y\nso call tool_0."])
            message = {"role": "assistant", "content": content, "reasoning_content": reasoning, "tool_calls": calls}
            text = assistant_text(qwen3.render(messages=[user, message], tools=tools, add_generation_prompt=False))
        else:
            reasoning = ""
            message = {"role": "assistant", "content": content, "tool_calls": calls}
            text = assistant_text(coder.render(messages=[user, message], tools=tools, add_generation_prompt=False))
        cases.append({"text": text, "tools": tools, "format": "hermes" if hermes else "qwen3-coder",
                      "reasoning": hermes, "chunk": rng.choice([0, 0, 1, 2, 3, 5, 8])})
        expectations.append((content, reasoning, calls, tools, hermes))

    run = subprocess.run([binary, "parse-output", "--jsonl"], input="\n".join(json.dumps(c) for c in cases) + "\n",
                         capture_output=True, text=True, encoding="utf-8")
    if run.returncode != 0:
        sys.exit(f"moeserve parse-output failed ({run.returncode}): {run.stderr}")
    replies = [json.loads(line) for line in run.stdout.splitlines()]
    if len(replies) != len(cases):
        sys.exit(f"expected {len(cases)} replies, got {len(replies)}")

    failures = 0
    checked_values = 0
    for case, reply, (content, reasoning, calls, tools, hermes) in zip(cases, replies, expectations):
        problems = []
        if reply["content"] != content.strip():
            problems.append(f"content {reply['content']!r} != {content.strip()!r}")
        if reply["reasoning_content"] != reasoning.strip():
            problems.append(f"reasoning {reply['reasoning_content']!r} != {reasoning.strip()!r}")
        if len(reply["tool_calls"]) != len(calls):
            problems.append(f"{len(reply['tool_calls'])} calls, expected {len(calls)}")
        schemas = {t["function"]["name"]: t["function"]["parameters"]["properties"] for t in tools}
        for got, want in zip(reply["tool_calls"], calls):
            fn = want["function"]
            if got["name"] != fn["name"] or not got["known"]:
                problems.append(f"call {got['name']!r} (known={got['known']}) != {fn['name']!r}")
                continue
            args = json.loads(got["arguments"])
            # Formatting: exactly what Python's json.dumps prints for the same value.
            if got["arguments"] != json.dumps(args, ensure_ascii=False):
                problems.append(f"arguments not in json.dumps form: {got['arguments']}")
            if hermes and got["arguments"] != json.dumps(fn["arguments"], ensure_ascii=False):
                problems.append(f"arguments {got['arguments']} != {json.dumps(fn['arguments'], ensure_ascii=False)}")
            if list(args) != list(fn["arguments"]):
                problems.append(f"argument names {list(args)} != {list(fn['arguments'])}")
            for name, value in fn["arguments"].items():
                checked_values += 1
                numeric = schemas[fn["name"]][name].get("type") == "number"
                if name in args and not same(value, args[name], numeric):
                    problems.append(f"{fn['name']}.{name}: got {args[name]!r}, expected {value!r}")
        if problems:
            failures += 1
            if failures <= 5:
                print(f"--- case text:\n{case['text']}\n--- problems:\n  " + "\n  ".join(problems))
    print(f"{len(cases)} rendered replies, {checked_values} argument values, {failures} failing")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
