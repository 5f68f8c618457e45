#!/usr/bin/env python3
"""Where a replayed decode step's time goes, from a kernel_trace.cpp timeline.

usage: critical_path.py TRACE

Steps are the replays of the decode graph, each starting with the embedding rows kernel. In each
step the kernels are ordered by their end; a kernel's increment is its end minus the end of the
kernel before it in the chain, i.e. how much later the step's chain finishes because of it (with
programmatic dependent launch a kernel starts long before its predecessor ends, so its own
duration says little). The shared expert's two kernels (the SwiGLU product and the product
launched after it) run on a branch beside the chain and are left out. Q8 decode products are told
apart by their grid size. Prints the mean increment per kernel and step, after two warm-up steps.
"""
import collections
import re
import sys


def short_name(mangled, grid_x):
    m = re.search(r'_cu_[0-9a-f]+\d\d?([a-z_0-9]+?)(?:I|E)', mangled)
    name = re.sub(r'^\d+', '', m.group(1)) if m else mangled[:40]
    t = re.search(r'GgmlTypeE(\d+)ELi(\d+)', mangled)
    if t:
        name += f'<{t.group(1)},{t.group(2)}>'
    if name.startswith('q8_matvec_kernel'):
        name += f' grid {grid_x}'
    return name


def steps_of(path):
    kernels = []
    for line in open(path):
        f = line.split()
        if int(f[3]) == 0:  # not in a graph
            continue
        kernels.append((int(f[0]), int(f[1]), short_name(f[9], int(f[5]))))
    kernels.sort()
    steps = []
    for k in kernels:
        if k[2].startswith('get_rows'):
            steps.append([])
        if steps:
            steps[-1].append(k)
    return [s for s in steps if len(s) > 20][2:]


def main():
    steps = steps_of(sys.argv[1])
    if not steps:
        sys.exit('no decode graph replays in the trace')
    inc = collections.defaultdict(float)
    count = collections.defaultdict(int)
    spans = []
    for st in steps:
        chain, after_swiglu = [], False
        for k in st:  # by start
            if k[2].startswith('q8_swiglu'):
                after_swiglu = True
                continue
            if after_swiglu and k[2].startswith('q8_matvec'):
                after_swiglu = False
                continue
            chain.append(k)
        chain.sort(key=lambda k: k[1])
        for prev, k in zip(chain, chain[1:]):
            inc[k[2]] += k[1] - prev[1]
            count[k[2]] += 1
        spans.append(max(k[1] for k in st) - min(k[0] for k in st))
    n = len(steps)
    print(f'{n} steps, span {sum(spans) / n / 1000:.1f} us')
    print(f'{"kernel":40s} {"us/step":>8s} {"per step":>8s} {"mean us":>8s}')
    for name, total in sorted(inc.items(), key=lambda x: -x[1]):
        print(f'{name:40s} {total / n / 1000:8.1f} {count[name] / n:8.1f} {total / count[name] / 1000:8.2f}')


if __name__ == '__main__':
    main()
