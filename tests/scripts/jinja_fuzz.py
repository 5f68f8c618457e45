#!/usr/bin/env python3
"""Differential fuzzing: random templates built from Jinja syntax fragments, rendered with Python
jinja2 (transformers' environment, see jinja_reference.py) and with `moeserve template`. Outputs
must agree; where jinja2 raises, moeserve must fail too. Deterministic for a given --seed.

Known, documented differences are skipped, not failed: Python integers beyond 64 bits (moeserve
reports an overflow) and printed object addresses ("<... object at 0x...>").

usage: jinja_fuzz.py --binary PATH [--seed N] [--count N]
"""
import argparse
import copy
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from jinja_reference import BOS, EOS, FIXED_NOW, first_difference, make_environment  # noqa: E402

CONTEXT = {
    "s": "Hello World", "e": "", "u": "héllo wörld 🚀 ΣΑΣ", "n": 3, "m": -2, "z": 0, "f": 2.5, "g": -0.1,
    "t": True, "no": False, "nil": None, "l": [3, "a", 1.5, None, True], "nums": [4, 1, 3, 1],
    "strs": ["b", "A", "a", "c"], "d": {"x": 1, "y": "two", "z": [1, 2], "w": {"k": "v"}},
    "msgs": [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi <b>"},
             {"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}]}],
}
NAMES = list(CONTEXT) + ["undefined_x", "loop"]
FILTERS = [
    ("length", []), ("count", []), ("first", []), ("last", []), ("list", []), ("string", []), ("trim", []),
    ("upper", []), ("lower", []), ("title", []), ("capitalize", []), ("reverse", []), ("sort", []),
    ("unique", []), ("sum", []), ("min", []), ("max", []), ("abs", []), ("int", []), ("float", []),
    ("round", []), ("tojson", []), ("tojson", ["indent=2"]), ("tojson", ["sort_keys=true"]), ("join", ["', '"]),
    ("join", []), ("default", ["'dflt'"]), ("default", ["'dflt'", "true"]), ("replace", ["'l'", "'L'"]),
    ("items", []), ("dictsort", []), ("e", []), ("safe", []), ("select", ["'odd'"]), ("reject", ["'none'"]),
    ("map", ["'string'"]), ("map", ["attribute='role'"]), ("selectattr", ["'role'", "'equalto'", "'user'"]),
    ("batch", ["2"]), ("slice", ["2"]), ("indent", ["2"]), ("center", ["9"]),
    ("truncate", ["8", "true"]), ("format", ["1"]), ("list", []), ("string", []),
]
TESTS = ["defined", "undefined", "none", "string", "number", "integer", "float", "mapping", "iterable",
         "sequence", "boolean", "true", "false", "odd", "even", "callable", "divisibleby 2", "in [1, 'a']",
         "eq 3", "gt 1", "lower", "upper", "sameas none", "escaped"]
METHODS = ["upper()", "lower()", "strip()", "split()", "split('l')", "startswith('H')", "endswith('d')",
           "replace('o', '0')", "find('o')", "title()", "count('l')", "items()", "keys()", "values()",
           "get('x')", "get('q', 5)", "index(1)", "format(1)", "rstrip('d')", "splitlines()", "join(['a', 'b'])"]
BINOPS = ["+", "-", "*", "/", "//", "%", "**", "~", "==", "!=", "<", ">", "<=", ">=", "and", "or", "in", "not in"]


class Gen:
    def __init__(self, rng):
        self.r = rng

    def literal(self):
        return self.r.choice([
            "0", "1", "2", "-1", "3.5", "0.1", "1e3", "'a'", "'Hello'", "''", "'x y'", "\"q'uote\"", "true",
            "false", "none", "[]", "[1, 2, 3]", "['a', 'b']", "{}", "{'k': 1, 'j': [2]}", "(1, 2)", "(1,)",
            "'<&>'", "'ü'", "range(4)",
        ])

    def expr(self, depth=0):
        r = self.r
        if depth > 3:
            return r.choice([self.literal(), r.choice(NAMES)])
        k = r.randrange(12)
        if k == 0:
            return self.literal()
        if k == 1:
            return r.choice(NAMES)
        if k == 2:
            return f"{self.expr(depth + 1)} {r.choice(BINOPS)} {self.expr(depth + 1)}"
        if k == 3:
            name, args = r.choice(FILTERS)
            return f"{self.atom(depth)}|{name}" + (f"({', '.join(args)})" if args else "")
        if k == 4:
            neg = r.choice(["", "not "])
            return f"{self.atom(depth)} is {neg}{r.choice(TESTS)}"
        if k == 5:
            return f"{self.atom(depth)}.{r.choice(METHODS)}"
        if k == 6:
            # Subscripts of variables only: jinja2 folds constant expressions at compile time through
            # the sandbox's getitem, so a slice of a non-sliceable literal yields undefined there
            # while the same slice of a variable raises (slices bypass the sandbox at run time).
            return f"{r.choice(NAMES)}[{r.choice(['0', '-1', '1:', ':2', '::-1', repr('x'), repr('role'), '1:3'])}]"
        if k == 7:
            return f"{self.atom(depth)}.{r.choice(['x', 'y', 'role', 'content', 'missing', 'items', 'length'])}"
        if k == 8:
            return f"({self.expr(depth + 1)} if {self.expr(depth + 1)} else {self.expr(depth + 1)})"
        if k == 9:
            return f"not {self.atom(depth)}"
        if k == 10:
            return f"-{self.atom(depth)}"
        return f"({self.expr(depth + 1)})"

    def atom(self, depth):
        return self.r.choice([self.literal(), self.r.choice(NAMES), f"({self.expr(depth + 1)})"])

    def ws(self, open_tag):
        return self.r.choice(["", "", "", "-", "+"] if open_tag else ["", "", "", "-"])

    def text(self):
        return self.r.choice(["", "x", " ", "\n", "  \n", "a b", "\n  ", "{", "}", "#", "\t"])

    def body(self, depth=0, in_loop=False):
        out = []
        for _ in range(self.r.randrange(1, 4)):
            out.append(self.stmt(depth, in_loop))
            out.append(self.text())
        return "".join(out)

    def stmt(self, depth, in_loop):
        r = self.r
        w1, w2 = self.ws(True), self.ws(False)
        k = r.randrange(10 if depth < 2 else 3)
        if k <= 1:
            return f"{{{{{w1} {self.expr()} {w2}}}}}"
        if k == 2:
            return f"{{%{w1} set v{r.randrange(3)} = {self.expr()} {w2}%}}"
        if k == 3:
            return (f"{{%{w1} if {self.expr()} {w2}%}}{self.body(depth + 1, in_loop)}"
                    f"{{%{self.ws(True)} else {self.ws(False)}%}}{self.body(depth + 1, in_loop)}{{% endif %}}")
        if k == 4:
            it = r.choice(["l", "nums", "strs", "d", "msgs", "s", "range(3)", "[]", "undefined_x", "d.items()"])
            return (f"{{%{w1} for i in {it} {w2}%}}{{{{ loop.index }}}}{{{{ i }}}}{self.body(depth + 1, True)}"
                    f"{{% endfor %}}")
        if k == 5:
            return f"{{% set ns = namespace(c=0) %}}{{% for i in nums %}}{{% set ns.c = ns.c + i %}}{{% endfor %}}{{{{ ns.c }}}}"
        if k == 6:
            return (f"{{% macro mac(a, b='B') %}}[{{{{ a }}}}|{{{{ b }}}}]{self.body(depth + 1)}{{% endmacro %}}"
                    f"{{{{ mac({self.expr()}) }}}}")
        if k == 7 and in_loop:
            return r.choice(["{% if loop.first %}{% continue %}{% endif %}", "{% if loop.index > 2 %}{% break %}{% endif %}"])
        if k == 8:
            return f"{{# comment {self.expr()} #}}"
        return f"{{{{ {self.expr()} }}}}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--count", type=int, default=300)
    ap.add_argument("--show", action="store_true")
    ap.add_argument("--show-skipped", action="store_true")
    opts = ap.parse_args()
    warnings.simplefilter("ignore", SyntaxWarning)  # jinja2's generated code for nonsense templates
    rng = random.Random(opts.seed)
    gen = Gen(rng)
    env = make_environment()
    failures, skipped = [], 0
    with tempfile.TemporaryDirectory() as workdir:
        messages = os.path.join(workdir, "m.json")
        ctx = os.path.join(workdir, "c.json")
        with open(messages, "w") as f:
            json.dump([], f)
        with open(ctx, "w", encoding="utf-8") as f:
            json.dump(CONTEXT, f, ensure_ascii=False)
        for i in range(opts.count):
            source = gen.body()
            path = os.path.join(workdir, "t.jinja")
            with open(path, "w", encoding="utf-8", newline="") as f:
                f.write(source)
            try:
                expected = env.from_string(source).render(
                    messages=[], tools=None, documents=None, add_generation_prompt=True,
                    bos_token=BOS, eos_token=EOS, **copy.deepcopy(CONTEXT))
                error = None
            except RecursionError:
                skipped += 1
                continue
            except Exception as e:
                expected, error = None, f"{type(e).__name__}: {e}"
            r = subprocess.run([opts.binary, "template", "--chat-template-file", path, "--messages", messages,
                                "--kwargs", ctx, "--bos-token", BOS, "--eos-token", EOS,
                                "--now", FIXED_NOW.strftime("%Y-%m-%dT%H:%M:%S")], capture_output=True, timeout=60)
            err = r.stderr.decode("utf-8", "replace").strip()
            if error is None and (" at 0x" in expected or re.search(r"\d{19,}", expected)):
                skipped += 1
                if opts.show_skipped:
                    print(f"skipped #{i}: {expected[:200]!r}")
                continue
            if error is None and r.returncode == 1 and "integer overflow" in err:
                skipped += 1
                if opts.show_skipped:
                    print(f"skipped #{i} (overflow): {source[:200]!r}")
                continue
            if error is not None:
                ok = r.returncode == 1 and "error" in err
                problem = f"jinja2 raised ({error}) but moeserve exited {r.returncode}"
            elif r.returncode != 0:
                ok, problem = False, f"moeserve failed ({err}) where jinja2 rendered {expected!r}"
            else:
                actual = r.stdout.decode("utf-8", "replace")
                ok = actual == expected
                problem = "" if ok else f"output differs {first_difference(expected, actual)}"
            if opts.show:
                print(f"--- #{i} {'ok' if ok else 'FAIL'}\n{source}\n=> {error or repr(expected)}")
            if not ok:
                failures.append(f"case #{i}: {problem}\n  template: {source!r}")
    for f in failures:
        print("FAIL " + f)
    print(f"{opts.count - len(failures) - skipped}/{opts.count} random templates match jinja2 "
          f"({skipped} skipped as known differences), seed {opts.seed}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
