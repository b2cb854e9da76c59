"""Exercise checks of notebook 11 (choosing a search method): a run's best-so-far trace
from its trials, the work it took to reach a threshold, and a median over seeds that
some never reached.  The references are ``benchmarks.search_methods`` and the committed
cells in ``benchmarks/results/search_methods/cells``."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

from . import CheckFailed, Result, run_check

__all__ = ["check_trace_from_trials", "check_work_to_reach", "check_median_over_seeds"]

ROOT = Path(__file__).resolve().parents[3]
RESULTS = ROOT / "benchmarks" / "results" / "search_methods"


def _report():
    """``benchmarks.search_methods.report`` (benchmarks/ runs from the repository)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from benchmarks.search_methods import report  # noqa: PLC0415
    return report


def _searched_cells():
    """The committed cells whose trace is built trial by trial (not PBT's intervals)."""
    cells = [c for c in _report().load_cells(RESULTS) if c["method"] != "pbt"]
    if not cells:
        raise CheckFailed(f"no committed cells under {RESULTS / 'cells'} to check against")
    return cells


def _same_trace(got, expected) -> bool:
    if len(got) != len(expected):
        return False
    for (gw, gb), (ew, eb) in zip(got, expected):
        if gw != ew or (gb is None) != (eb is None):
            return False
        if eb is not None and not math.isclose(gb, eb, rel_tol=1e-12):
            return False
    return True


def _trial(number, state, value, last, epochs, work_end):
    return {"number": number, "state": state, "value": value, "last_val_error": last,
            "epochs": epochs, "work": 50_000 * epochs, "work_end": work_end}


def _made_up_cell():
    """A run whose first trial is pruned early with a low error, then a failure: the cases
    the committed cells may lack."""
    trials = [_trial(0, "PRUNED", None, 0.21, 1, 50_000),
              _trial(1, "COMPLETE", 0.30, 0.30, 10, 550_000),
              _trial(2, "FAIL", None, None, 0, 550_000),
              _trial(3, "PRUNED", None, 0.12, 3, 700_000),
              _trial(4, "COMPLETE", 0.25, 0.25, 10, 1_200_000),
              _trial(5, "COMPLETE", 0.27, 0.27, 10, 1_700_000)]
    trace = [[50_000, None], [550_000, 0.30], [550_000, 0.30], [700_000, 0.30],
             [1_200_000, 0.25], [1_700_000, 0.25]]
    return {"task": "made-up", "method": "run", "seed": 0, "trials": trials, "trace": trace}


def check_trace_from_trials(trace_from_trials) -> Result:
    """``trace_from_trials(trials) -> [[work_end, best or None], ...]`` for a made-up run
    and every committed cell (PBT's aside), against the trace the benchmark saved beside
    the trials."""
    def body(fn):
        cells = [_made_up_cell()] + _searched_cells()
        for cell in cells:
            trials = [dict(t) for t in cell["trials"]]
            got = fn(trials)
            try:
                got = [[w, None if b is None else float(b)] for w, b in got]
            except (TypeError, ValueError):
                raise CheckFailed(f"expected a list of [work, best] pairs, got "
                                  f"{str(got)[:80]}") from None
            expected = cell["trace"]
            if _same_trace(got, expected):
                continue
            where = f"{cell['task']} {cell['method']} seed {cell['seed']}"
            if len(got) != len(expected):
                raise CheckFailed(f"{where}: {len(cell['trials'])} trials give "
                                  f"{len(expected)} points, one after each trial; got {len(got)}")
            i = next(k for k, (g, e) in enumerate(zip(got, expected)) if not _same_trace([g], [e]))
            t = cell["trials"][i]
            hint = ""
            if t["state"] != "COMPLETE" and got[i][1] is not None and \
                    (expected[i][1] is None or got[i][1] < expected[i][1]):
                hint = (f": trial {t['number']} was {t['state']} after {t['epochs']} epochs; its "
                        f"error is not a result (it did not train all its epochs)")
            elif got[i][0] != expected[i][0]:
                hint = ": the work is the total spent when the trial ended (work_end)"
            elif got[i][1] is not None and expected[i][1] is not None and got[i][1] > expected[i][1]:
                hint = ": the best so far never gets worse -- keep the minimum"
            raise CheckFailed(f"{where}, after trial {t['number']}: expected {expected[i]}, "
                              f"got {got[i]}{hint}")
        return f"gives the saved trace of all {len(cells) - 1} committed cells and a made-up run"
    return run_check("trace_from_trials", body, trace_from_trials)


def check_work_to_reach(work_to_reach) -> Result:
    """``work_to_reach(trace, threshold)`` against ``report.work_to_reach`` on every
    committed trace, at thresholds around the values it holds."""
    def body(fn):
        reference = _report().work_to_reach
        cases = 0
        for cell in _report().load_cells(RESULTS):
            trace = cell["trace"]
            bests = sorted({b for _, b in trace if b is not None})
            for threshold in ([bests[0], bests[-1], cell["settings"]["threshold"], 0.0]
                              if bests else [0.5]):
                expected = reference(trace, threshold)
                got = fn([list(p) for p in trace], threshold)
                cases += 1
                if got is None:
                    raise CheckFailed(f"{cell['method']} seed {cell['seed']}, threshold "
                                      f"{threshold:.4f}: got None; a run that never got there "
                                      f"counts as infinite work (math.inf)")
                if math.isinf(expected) and math.isinf(got):
                    continue
                if not math.isclose(float(got), expected):
                    hint = ""
                    if math.isinf(float(got)) and threshold in bests:
                        hint = " -- 'reached' includes equal to the threshold (<=)"
                    raise CheckFailed(f"{cell['task']} {cell['method']} seed {cell['seed']}, "
                                      f"threshold {threshold:.4f}: expected {expected:g}, got "
                                      f"{got}{hint}")
        return f"agrees with report.work_to_reach in {cases} cases"
    return run_check("work_to_reach", body, work_to_reach)


def check_median_over_seeds(median_over_seeds) -> Result:
    """``median_over_seeds(values)``, where ``math.inf`` is a seed that never got there,
    against ``report.quantile_inf(values, 0.5)``."""
    def body(fn):
        quantile_inf = _report().quantile_inf
        rng = np.random.default_rng(11)
        cases = [[1.0, 2.0, 3.0], [2.0, 1.0, math.inf], [1.0, math.inf, math.inf],
                 [3.0, 1.0, 2.0, 4.0], [1.0, 2.0, math.inf, math.inf], [5.0]]
        cases += [[float(x) if x < 0.7 else math.inf for x in rng.random(int(n))]
                  for n in rng.integers(1, 7, 30)]
        for values in cases:
            expected = quantile_inf(values, 0.5)
            got = fn(list(values))
            if got is None:
                raise CheckFailed(f"{values}: got None, expected {expected}")
            got = float(got)
            if (math.isinf(expected) and math.isinf(got)) or math.isclose(got, expected):
                continue
            finite = [v for v in values if math.isfinite(v)]
            hint = ""
            if finite and math.isclose(got, float(np.median(finite))):
                hint = (" -- leaving out the seeds that never got there makes the method "
                        "look better than it is; they count as infinite work")
            raise CheckFailed(f"{values}: expected {expected}, got {got}{hint}")
        return f"agrees with report.quantile_inf(values, 0.5) on {len(cases)} sets of seeds"
    return run_check("median_over_seeds", body, median_over_seeds)
