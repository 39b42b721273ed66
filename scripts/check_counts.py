"""Checks a `keyed-count` output file (JSON lines) for the demo: every key's
counts run 1, 2, 3, ... in order, each once, and add up to EXPECTED events.
Prints a summary, with how many lines `keyed-count` 2.0.0 wrote (they carry
`last_seen=`); with --v2, at least one must be.

    python3 scripts/check_counts.py FILE EXPECTED [--v2]
"""
import json
import sys

path, expected = sys.argv[1], int(sys.argv[2])
nxt, v2 = {}, 0
for line in open(path):
    e = json.loads(line)
    n = int(e["value"].split()[0])
    want = nxt.get(e["key"], 1)
    assert n == want, f"key {e['key']}: count {n} where {want} was due"
    nxt[e["key"]] = n + 1
    v2 += "last_seen=" in e["value"]
total = sum(v - 1 for v in nxt.values())
print(f"{len(nxt)} keys, {total} events counted (expected {expected}), each count once; {v2} lines by 2.0.0")
assert total == expected, f"{total} events counted, {expected} expected"
assert v2 > 0 or "--v2" not in sys.argv[3:], "keyed-count 2.0.0 wrote nothing"
