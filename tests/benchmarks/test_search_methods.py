"""benchmarks.search_methods: every search method on the same budget of work.

What is asserted: the work accounting (a run stops at its budget, the trial in progress
then is cut at the end of its epoch, pruned and diverged trials count what they
trained), the claim on a cell (atomic; a dead owner's lock is taken over), the numbers of
the report (best-so-far, quantiles with seeds that have no result yet, work to the
threshold), the method table (rows appear when their sampler or module exists), and
``--quick`` end to end in a fresh process: every cell of the grid saved, a rerun skips
them, another budget is refused, ``--report-only`` rebuilds the report.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest

from benchmarks.search_methods import cells as cells_mod
from benchmarks.search_methods.cells import (RunSettings, WorkLedger, cell_path, claim,
                                             make_method_sampler, release, search)
from benchmarks.search_methods.cli import build_parser, plan
from benchmarks.search_methods.methods import METHODS, METHODS_BY_NAME, TASKS, get_method
from benchmarks.search_methods.report import (best_so_far, check_comparable, quantile_inf,
                                              summarize_method, work_to_reach)
from tuning import study as tuning_study
from tuning.spaces import LAB_GRID, get_space

REPO = Path(__file__).resolve().parents[2]


# -- the work budget ----------------------------------------------------------------------

@pytest.mark.parametrize("budget_trials,states,work", [
    (1.5, ["COMPLETE", "PRUNED"], 3 * 256),     # the second trial is cut after 1 epoch
    (2.0, ["COMPLETE", "COMPLETE"], 4 * 256),   # at its last epoch a trial completes
])
def test_a_run_stops_at_its_budget_cutting_the_trial_in_progress(fashion_mnist, budget_trials,
                                                                  states, work):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    settings = RunSettings.for_task("lab-mlp", budget_trials=budget_trials, quick=True)
    assert settings.budget_images == budget_trials * 2 * 256
    out = search(get_method("manual"), settings, seed=0, log=lambda _t: None)
    assert [t["state"] for t in out["trials"]] == states
    assert out["work"] == work == sum(t["work"] for t in out["trials"])
    assert out["stop"] == "budget spent"
    if states[-1] == "PRUNED":
        assert out["trials"][-1]["stop_reason"] == "budget spent at epoch 1"
        assert out["trials"][-1]["epochs"] == 1
    # the best is the best COMPLETE trial; the trace holds it after every trial
    complete = [t["value"] for t in out["trials"] if t["state"] == "COMPLETE"]
    assert out["best"]["value"] == min(complete)
    assert out["trace"][-1] == [work, min(complete)]


def test_pruned_and_diverged_trials_count_what_they_trained():
    from minidl.train import NonFiniteLossError
    ledger = WorkLedger(budget=10_000, n_train=1000, epochs=5)
    study = optuna.create_study(direction="minimize")

    def pruned(trial):    # two epochs, then pruned by the pruner
        trial.set_user_attr("curve", [{"val_error": 0.5}, {"val_error": 0.4}])
        raise optuna.TrialPruned("pruned at epoch 2")

    def diverged(trial):  # one epoch, then a NaN at batch 7 of the second (batch 32)
        trial.set_user_attr("config", {"batch_size": 32})
        trial.set_user_attr("curve", [{"val_error": 0.5}])
        try:
            raise NonFiniteLossError(2, 7, float("nan"))
        except NonFiniteLossError as exc:
            raise optuna.TrialPruned("diverged") from exc

    study.optimize(ledger.wrap(pruned), n_trials=1)
    study.optimize(ledger.wrap(diverged), n_trials=1)
    assert ledger.trial_work == {0: 2000, 1: 1000 + 7 * 32}
    assert ledger.work == 3224 and not ledger.spent()


# -- claims -------------------------------------------------------------------------------

def test_a_cell_is_claimed_once_and_a_dead_owners_lock_is_taken_over(tmp_path):
    path = cell_path(tmp_path, "lab-mlp", "tpe", 0)
    assert claim(path)
    assert not claim(path)            # held by this (living) process
    release(path)
    assert claim(path)
    release(path)
    # a lock left by a process that has exited, on this machine
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    ident = {**cells_mod.worker_identity(), "pid": child.pid, "start": None}
    path.with_suffix(".lock").write_text(json.dumps(ident))
    assert claim(path)
    assert json.loads(path.with_suffix(".lock").read_text())["pid"] == os.getpid()
    release(path)
    assert not path.with_suffix(".lock").exists()


# -- the report's numbers -------------------------------------------------------------------

def test_best_so_far_and_work_to_threshold():
    trace = [[100, None], [200, 0.30], [300, 0.30], [400, 0.12], [500, 0.11]]
    got = best_so_far(trace, [50, 100, 199, 200, 350, 400, 1000])
    assert got.tolist() == [math.inf, math.inf, math.inf, 0.30, 0.30, 0.12, 0.11]
    assert work_to_reach(trace, 0.12) == 400
    assert work_to_reach(trace, 0.115) == 500
    assert work_to_reach(trace, 0.10) == math.inf


def test_quantiles_treat_a_seed_without_result_as_infinite(rng):
    for n in (1, 2, 5, 6):
        xs = rng.random(n)
        for q in (0.25, 0.5, 0.75):
            assert quantile_inf(xs, q) == pytest.approx(float(np.quantile(xs, q)), abs=1e-15)
    assert quantile_inf([0.1, 0.2, math.inf], 0.5) == 0.2
    assert quantile_inf([0.1, math.inf, math.inf], 0.5) == math.inf
    assert quantile_inf([0.1, 0.3, math.inf, math.inf], 0.25) == pytest.approx(0.25)
    assert quantile_inf([0.1, 0.3, math.inf, math.inf], 0.5) == math.inf


def _cell(seed, trace, test=0.88, settings=None):
    return {"task": "lab-mlp", "method": "random", "label": "random", "seed": seed,
            "settings": settings or {"budget_images": 1000, "threshold": 0.12},
            "best": {"value": trace[-1][1]} if trace[-1][1] is not None else None,
            "retrain": {"test_accuracy": test}, "trace": trace, "work": trace[-1][0],
            "trials": [{"state": "COMPLETE"}] * len(trace), "stop": "budget spent",
            "seconds": {"search": 10.0, "search_cpu": 8.0, "retrain": 1.0},
            "load_average": {"start": [1.0, 1, 1], "end": [2.0, 1, 1]}}


def test_a_methods_row_summarises_its_seeds():
    cells = [_cell(0, [[100, 0.2], [200, 0.11]], 0.89),
             _cell(1, [[100, 0.13], [300, 0.125]], 0.87),
             _cell(2, [[100, None], [200, 0.119]], 0.88)]
    row = summarize_method(cells, threshold=0.12)
    assert row["final_error"]["median"] == 0.119
    assert (row["final_error"]["min"], row["final_error"]["max"]) == (0.11, 0.125)
    assert row["test_accuracy"]["median"] == pytest.approx(0.88)
    assert row["work_to_threshold"]["values"] == [200, math.inf, 200]
    assert row["work_to_threshold"]["median"] == 200 and row["work_to_threshold"]["reached"] == 2
    assert row["cpu_share"] == pytest.approx(0.8) and row["load"] == [1.0, 2.0]


def test_cells_made_with_other_settings_are_not_compared():
    a = _cell(0, [[100, 0.2]])
    b = _cell(1, [[100, 0.2]], settings={"budget_images": 2000, "threshold": 0.12})
    assert check_comparable([a, a]) == a["settings"]
    with pytest.raises(ValueError, match="budget_images 2000 vs 1000"):
        check_comparable([a, b])


# -- the method table ---------------------------------------------------------------------

def test_a_row_appears_when_its_sampler_or_module_exists(monkeypatch):
    rl = METHODS_BY_NAME["rl"]
    if "rl" not in tuning_study.SAMPLERS:
        assert "'rl' sampler" in rl.unavailable()
    monkeypatch.setattr(tuning_study, "SAMPLERS", tuning_study.SAMPLERS + ("rl",))
    assert rl.unavailable() is None
    pbt = METHODS_BY_NAME["pbt"]
    if importlib.util.find_spec("tuning.pbt") is None:
        assert "tuning.pbt" in pbt.unavailable()
    for m in METHODS:     # every sampler-based row names a sampler tuning.study knows
        if m.name not in ("rl", "pbt"):
            assert m.unavailable() is None, m.name


def test_the_grid_holds_the_hypergradient_row_on_mlp_only():
    args = build_parser().parse_args(["--tasks", "lab-mlp", "mlp", "--methods",
                                      "tpe-hypergradient", "tpe", "--seeds", "0", "1"])
    cells, _ = plan(args)
    got = [(seed, task, m.name) for seed, task, m in cells]
    assert got == [(0, "lab-mlp", "tpe"), (0, "mlp", "tpe-hypergradient"), (0, "mlp", "tpe"),
                   (1, "lab-mlp", "tpe"), (1, "mlp", "tpe-hypergradient"), (1, "mlp", "tpe")]


def test_samplers_are_the_ones_tuning_builds():
    settings = RunSettings.for_task("mlp", quick=True)
    sampler, pruner = make_method_sampler(get_method("tpe-hypergradient"), settings, 3)
    assert isinstance(sampler, optuna.samplers.PartialFixedSampler)
    assert sampler._fixed_params == {"hypergradient": True}
    assert isinstance(sampler._base_sampler, optuna.samplers.TPESampler)
    sampler, pruner = make_method_sampler(get_method("nsga2"), settings, 3)
    assert isinstance(sampler, optuna.samplers.NSGAIISampler)
    sampler, pruner = make_method_sampler(get_method("tpe-hyperband"), settings, 3)
    assert isinstance(pruner, optuna.pruners.HyperbandPruner)


def test_manual_configurations_are_complete_points_of_their_spaces():
    for task in TASKS.values():
        params = task.manual_params()
        assert len(params) == len(task.manual) >= 3
        assert params[0] == {k: v for k, v in get_space(task.space).defaults.items()
                             if k in params[0]}            # the first is the defaults
        for p in params:     # every parameter a trial asks for is given, none more
            trial = optuna.trial.FixedTrial(p)
            get_space(task.space).function(trial)
            assert trial.params == p


# -- the script, end to end -------------------------------------------------------------

def _run(*argv, check=True):
    env = dict(os.environ, OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "benchmarks.search_methods", *argv],
                          cwd=str(REPO), env=env, capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_quick_fills_every_cell_a_rerun_skips_them(fashion_mnist, tmp_path):
    out = tmp_path / "sm"
    proc = _run("--quick", "--results", str(out))
    assert "Methods not run here" in (out / "search_methods.md").read_text() or all(
        m.unavailable() is None for m in METHODS)
    expected = [(task, m.name, seed) for seed in (0, 1) for task in ("lab-mlp", "mlp")
                for m in METHODS if m.runs_on(task) and m.unavailable() is None]
    found = sorted(p.relative_to(out / "cells").as_posix() for p in out.glob("cells/*/*/*"))
    assert found == sorted(f"{t}/{m}/seed{s}.json" for t, m, s in expected)   # no locks left
    grid_axes = {k: set(v) for k, v in LAB_GRID.items()}
    for task, method, seed in expected:
        cell = json.loads(cell_path(out, task, method, seed).read_text())
        s = cell["settings"]
        assert (s["epochs"], s["train_size"], s["budget_images"]) == (2, 256, 4 * 2 * 256)
        assert cell["work"] == sum(t["work"] for t in cell["trials"]) == cell["trace"][-1][0]
        assert s["budget_images"] <= cell["work"] < s["budget_images"] + s["train_size"] or \
            cell["stop"] != "budget spent"
        bests = [b for _, b in cell["trace"] if b is not None]
        assert bests == sorted(bests, reverse=True)
        complete = [t["value"] for t in cell["trials"] if t["state"] == "COMPLETE"]
        for i, (work, best) in enumerate(cell["trace"]):     # best-so-far after trial i
            done = [t["value"] for t in cell["trials"][:i + 1] if t["state"] == "COMPLETE"]
            assert work == cell["trials"][i]["work_end"]
            assert best == (min(done) if done else None)
        if method == "pbt":      # PBT's result: the best member's latest weights, tested
            assert cell["best"]["value"] in complete and "note" in cell["retrain"]
            assert cell["work"] == s["budget_images"]      # 4 members x 2 one-epoch intervals
        else:
            assert (cell["best"] or {}).get("value") == (min(complete) if complete else None)
        if cell["best"]:
            assert 0.0 < cell["retrain"]["test_accuracy"] <= 1.0
        params = [t["params"] for t in cell["trials"]]
        if method == "grid":
            defaults = get_space(task).defaults
            for p in params:
                assert all(p[k] in grid_axes[k] for k in grid_axes)
                assert all(p[k] == defaults[k] for k in p if k not in grid_axes)
        if method == "manual":
            assert params == TASKS[task].manual_params()[:len(params)]
        if method == "tpe-hypergradient":
            assert all(p["hypergradient"] is True for p in params
                       if p["optimizer"] in ("Adam", "SGD"))
    text = (out / "search_methods.md").read_text()
    for task in ("lab-mlp", "mlp"):
        assert f"## {task}" in text and (out / f"anytime_{task}.png").stat().st_size > 10_000
    assert "`tpe-hypergradient`" in text.split("## mlp")[1]
    assert "`tpe-hypergradient`" not in text.split("## mlp")[0]
    summary = json.loads((out / "search_methods.json").read_text())
    assert len(summary["tasks"]["lab-mlp"]["cells"]) == sum(t == "lab-mlp" for t, _, _ in expected)

    saved = {p: p.stat().st_mtime_ns for p in out.glob("cells/*/*/*.json")}
    again = _run("--quick", "--results", str(out))
    assert f"cells: 0 run, {len(expected)} done before" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in out.glob("cells/*/*/*.json")} == saved
    refused = _run("--quick", "--results", str(out), "--budget", "3", check=False)
    assert refused.returncode != 0 and "budget_images 1536" in refused.stderr
    (out / "search_methods.md").unlink()
    _run("--report-only", "--results", str(out))
    assert (out / "search_methods.md").read_text().count("## ") == 2
    assert proc.stdout.count("retraining trial") == sum(
        json.loads(cell_path(out, *c).read_text())["best"] is not None for c in expected
        if c[1] != "pbt")


def test_a_failing_cell_is_not_saved_and_the_others_go_on(tmp_path, monkeypatch):
    import minidl
    from benchmarks.search_methods import cli

    threads = minidl.get_num_threads()      # fill sets --threads for the process

    def fake_run_cell(method, settings, seed, log):
        if method.name == "qmc":
            raise RuntimeError("boom")
        return {"settings": settings.to_dict(), "best": None, "retrain": None, "trials": [],
                "work": 0, "seconds": {"search": 0.0, "retrain": None},
                "load_average": {"start": [0.0], "end": [0.0]}}

    monkeypatch.setattr(cli, "run_cell", fake_run_cell)
    args = build_parser().parse_args(["--quick", "--tasks", "lab-mlp", "--methods", "random",
                                      "qmc", "tpe", "--seeds", "0"])
    lines = []
    try:
        out = cli.fill(args, tmp_path, "test", log=lines.append)
    finally:
        minidl.set_num_threads(threads)
    assert out["counts"] == {"ran": 2, "done before": 0, "held by another process": 0,
                             "failed": 1}
    assert any("qmc seed 0 FAILED" in line and "boom" in line for line in lines)
    saved = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.glob("cells/*/*/*"))
    assert saved == ["cells/lab-mlp/random/seed0.json", "cells/lab-mlp/tpe/seed0.json"]
