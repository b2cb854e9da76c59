"""Print the mutation score of each mutated file from mutmut's results (``mutants/``).

``make mutation`` runs it after ``mutmut run``; ``mutmut results`` lists the survivors,
``mutmut show NAME`` shows one.  A mutant counts as killed when a test failed, timed out
or crashed with it; "no tests" means no selected test reached the mutated function.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

SURVIVED, NO_TESTS = 0, (5, 33)


def score(root: Path = Path("mutants")) -> int:
    metas = sorted(root.rglob("*.meta"))
    if not metas:
        print(f"no mutmut results under {root}/: run `mutmut run` first", file=sys.stderr)
        return 1
    total = {"mutants": 0, "tested": 0, "killed": 0, "survived": 0, "no tests": 0}
    for meta in metas:
        codes = json.loads(meta.read_text()).get("exit_code_by_key", {})
        tested = [c for c in codes.values() if c is not None]
        row = {"mutants": len(codes), "tested": len(tested),
               "survived": sum(c == SURVIVED for c in tested),
               "no tests": sum(c in NO_TESTS for c in tested)}
        row["killed"] = row["tested"] - row["survived"] - row["no tests"]
        for key in total:
            total[key] += row[key]
        name = meta.relative_to(root).as_posix()[:-len(".meta")]
        print(f"{name}: {_line(row)}")
    print(f"all: {_line(total)}")
    return 0


def _line(row: dict) -> str:
    share = 100 * row["killed"] / row["tested"] if row["tested"] else 0.0
    return (f"{row['mutants']} mutants, {row['tested']} tested: {row['killed']} killed "
            f"({share:.1f}%), {row['survived']} survived, {row['no tests']} reached by no test")


if __name__ == "__main__":
    sys.exit(score())
