#!/usr/bin/env python3
"""Re-checks a history the suite's checker rejected (as printed by tests/tests/history.rs) and
finds the single operations whose removal makes it linearizable: the register model of
tests/src/linearizability.rs (reads, writes, conditional writes; an operation of unknown
outcome may take effect at any time after its invocation, or never).

    python3 docs/rejected-histories/check.py FILE
"""
import re
import sys

sys.setrecursionlimit(100000)


def parse(path):
    ops = []
    for line in open(path):
        m = re.match(r'\s*\[([\d.]+) \.\. ([\d.]+|unknown)\] client (\d+) via gateway (\d+): (.*)$', line)
        if not m:
            continue
        inv, comp, op = float(m[1]), None if m[2] == 'unknown' else float(m[2]), m[5]
        if op.startswith('Read('):
            v = op[5:-1]
            kind = ('R', None if v == 'None' else int(v[5:-1]))
        elif op.startswith('Write('):
            v = op[6:-1]
            kind = ('W', None if v == 'None' else int(v[5:-1]))
        else:
            c = re.match(r'CondWrite \{ expect: (None|Some\((\d+)\)), value: (\d+), applied: (true|false) \}', op)
            kind = ('C', None if c[1] == 'None' else int(c[2]), int(c[3]), c[4] == 'true')
        ops.append((inv, comp, kind, line.strip()))
    return sorted(ops, key=lambda o: o[0])


def linearizable(ops):
    n, seen = len(ops), set()

    def step(done, val):
        if (done, val) in seen:
            return False
        seen.add((done, val))
        rem = [i for i in range(n) if not (done >> i) & 1]
        known = [i for i in rem if ops[i][1] is not None]
        if not known:
            return True
        horizon = min(ops[i][1] for i in known)
        for i in rem:
            if ops[i][0] > horizon:
                continue
            k, nd, unknown = ops[i][2], done | (1 << i), ops[i][1] is None
            if k[0] == 'R':
                if k[1] == val and step(nd, val):
                    return True
            elif k[0] == 'W':
                if step(nd, k[1]) or (unknown and step(nd, val)):
                    return True
            else:
                _, expect, value, applied = k
                ok = val == expect
                if unknown:
                    if (ok and step(nd, value)) or step(nd, val):
                        return True
                elif applied:
                    if ok and step(nd, value):
                        return True
                elif not ok and step(nd, val):
                    return True
        return False

    return step(0, None)


if __name__ == '__main__':
    ops = parse(sys.argv[1])
    print(f'{len(ops)} operations; linearizable: {linearizable(ops)}')
    for i, o in enumerate(ops):
        if not linearizable(ops[:i] + ops[i + 1:]):
            continue
        print('linearizable without:', o[3])
