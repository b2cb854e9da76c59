"""``--sampler rl`` against ``random`` and ``tpe`` on one budget, and the docs picture.

    python -m benchmarks.rl_sampler                  # 9 studies, one at a time, then the table
    python -m benchmarks.rl_sampler --report-only    # the table from the journals there are
    python -m benchmarks.rl_sampler --picture docs/images/rl_sampler_policy.png

Each study is one ``python -m tuning run`` process on one thread (``--threads 1``), in its
own journal file under ``--dir``, with ``--pruner none`` so every method trains every trial
to the end: the same work for each.  A study already holding ``--trials`` finished trials
is not run again (``--total``), so an interrupted benchmark continues where it stopped.
Writes ``rl_sampler.json`` and ``rl_sampler.md`` into ``benchmarks/results/`` (or
``--out``): the best validation error of every study, each method's mean and spread, the
exact commands, the machine and its load.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from .common import REPO_ROOT, RESULTS_DIR, markdown_table, write_json, write_markdown
from .machine import machine_info

SAMPLERS = ("rl", "random", "tpe")
SEEDS = (0, 1, 2)


def study_name(sampler: str, seed: int) -> str:
    return f"lab-mlp-{sampler}-{seed}"


def command(args, sampler: str, seed: int) -> list:
    name = study_name(sampler, seed)
    return [sys.executable, "-m", "tuning", "run", "--space", "lab-mlp", "--sampler", sampler,
            "--seed", str(seed), "--total", str(args.trials), "--epochs", str(args.epochs),
            "--train-size", str(args.train_size), "--val-size", str(args.val_size),
            "--pruner", "none", "--threads", "1", "--quiet",
            "--storage", str(args.dir / f"{name}.log"), "--study-name", name]


def shown(cmd: list) -> str:
    return " ".join(["python"] + [str(c) for c in cmd[1:]])


def run_studies(args) -> dict:
    """Run every study not yet done, one after the other; ``name -> run facts``."""
    args.dir.mkdir(parents=True, exist_ok=True)
    runs = {}
    for seed in args.seeds:
        for sampler in args.samplers:
            cmd = command(args, sampler, seed)
            load = os.getloadavg()[0]
            start = time.perf_counter()
            print(f"$ {shown(cmd)}", flush=True)
            done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True)
            wall = time.perf_counter() - start
            if done.returncode != 0:
                sys.exit(f"{study_name(sampler, seed)} failed:\n{done.stdout}\n{done.stderr}")
            ran = [line for line in done.stdout.splitlines() if line.startswith("ran ")]
            print(f"  {ran[0] if ran else 'nothing to run'}; {wall:.0f}s wall, load "
                  f"{load:.2f} -> {os.getloadavg()[0]:.2f}", flush=True)
            runs[study_name(sampler, seed)] = {"wall_s": round(wall, 1),
                                               "load_before": round(load, 2),
                                               "load_after": round(os.getloadavg()[0], 2),
                                               "ran": ran[0] if ran else None}
    return runs


def read_study(args, sampler: str, seed: int):
    import optuna  # noqa: PLC0415
    from tuning.storage import open_storage  # noqa: PLC0415
    name = study_name(sampler, seed)
    path = args.dir / f"{name}.log"
    if not path.exists():
        return None
    return optuna.load_study(study_name=name, storage=open_storage(str(path), name,
                                                                   write=False))


def results(args) -> dict:
    """Per study: the best validation error, the best so far after each trial, the trial
    that reached it; per method: mean, sample standard deviation, min, max."""
    from optuna.trial import TrialState  # noqa: PLC0415
    per_study, per_method = {}, {}
    for sampler in args.samplers:
        bests = []
        for seed in args.seeds:
            study = read_study(args, sampler, seed)
            if study is None:
                continue
            trials = [t for t in study.get_trials(deepcopy=False) if t.state ==
                      TrialState.COMPLETE][:args.trials]
            if len(trials) < args.trials:
                continue
            values = [t.value for t in trials]
            so_far = np.minimum.accumulate(values).tolist()
            best = min(trials, key=lambda t: t.value)
            per_study[study_name(sampler, seed)] = {
                "sampler": sampler, "seed": seed, "best_error": best.value,
                "best_trial": best.number, "best_params": best.params,
                "best_so_far": so_far, "median_error": statistics.median(values),
                "diverged": sum(v >= 0.85 for v in values)}
            bests.append(best.value)
        if bests:
            per_method[sampler] = {
                "n": len(bests), "mean": statistics.mean(bests),
                "std": statistics.stdev(bests) if len(bests) > 1 else None,
                "min": min(bests), "max": max(bests)}
    return {"studies": per_study, "methods": per_method}


def markdown(args, res: dict, info: dict, runs: dict) -> str:
    checkpoints = [c for c in (10, 20, 30) if c <= args.trials]
    head = ["sampler", "studies", "best val error: mean", "std", "min", "max"] + \
        [f"mean best after {c}" for c in checkpoints] + ["median trial error (mean)",
                                                        "diverged trials (of all)"]
    rows = []
    for sampler, m in res["methods"].items():
        studies = [s for s in res["studies"].values() if s["sampler"] == sampler]
        rows.append([sampler, m["n"], f"{m['mean']:.4f}",
                     "-" if m["std"] is None else f"{m['std']:.4f}",
                     f"{m['min']:.4f}", f"{m['max']:.4f}"] +
                    [f"{statistics.mean(s['best_so_far'][c - 1] for s in studies):.4f}"
                     for c in checkpoints] +
                    [f"{statistics.mean(s['median_error'] for s in studies):.4f}",
                     f"{sum(s['diverged'] for s in studies)} of {len(studies) * args.trials}"])
    per_seed = [[s["sampler"], s["seed"], f"{s['best_error']:.4f}", s["best_trial"],
                 ", ".join(f"{k}={_short(v)}" for k, v in s["best_params"].items()),
                 f"{runs[n]['wall_s']:.0f}" if n in runs else "-"]
                for n, s in sorted(res["studies"].items(),
                                   key=lambda kv: (kv[1]["sampler"], kv[1]["seed"]))]
    cmds = "\n".join(shown(command(args, s, seed)) for seed in args.seeds
                     for s in args.samplers)
    flags = " ".join(info.get("cpu_vector_flags") or [])
    loads = [(r["load_before"], r["load_after"]) for r in runs.values()]
    load_text = (f"1-minute load average {min(min(p) for p in loads):.2f} to "
                 f"{max(max(p) for p in loads):.2f} over the runs (before/after each study; "
                 f"2 cores, shared with other work)") if loads else \
        f"1-minute load average {info['load_average'][0]:.2f} when the table was written"
    return f"""# `--sampler rl` vs `random` vs `tpe` on lab-mlp

The same budget for every method: **{args.trials} trials** of the lab-mlp space, each
trained **{args.epochs} epochs** on **{args.train_size} training images**, validated on
**{args.val_size}**, no pruning (every trial trains to the end), one thread per study,
studies run one at a time.  Seeds {", ".join(map(str, args.seeds))} (the study seed sets
the data split, the training seeds and the sampler's seed).  Lower is better.

{markdown_table(head, rows)}

"mean best after N": the best validation error after the study's first N trials, averaged
over the seeds.  Diverged: trials ending with validation error >= 0.85 (chance is 0.9).

Per study:

{markdown_table(["sampler", "seed", "best val error", "best trial", "its parameters",
                 "wall s"], per_seed)}

Commands (each study in its own journal; `--total` makes a rerun skip a finished study):

```
{cmds}
```

All of them: `python -m benchmarks.rl_sampler --dir {args.dir}` (add `--report-only` to
rebuild this table from the journals).

Machine: {info['cpu']} ({flags}), {info['logical_cpus']} logical CPUs; {load_text}.
Python {info['python']}, NumPy {info['numpy']}, minidl commit {info.get('minidl_commit')},
{info['date']}.
"""


def _short(v):
    return f"{v:.4g}" if isinstance(v, float) else str(v)


# -- the docs picture -------------------------------------------------------------------

def _discrete(trial):
    """The synthetic objective of tests/tuning/test_rl_sampler.py: one best combination."""
    x = trial.suggest_categorical("x", ["a", "b", "c", "d"])
    z = trial.suggest_int("z", 1, 5)
    y = trial.suggest_float("y", 0.0, 1.0)
    return 0.3 * (x != "c") + 0.3 * (z != 3) + 0.3 * (not 0.7 <= y < 0.8)


def choice_labels(choices) -> list:
    """Short labels of a decision's choices (values, or a bin's range)."""
    from tuning import rl_sampler  # noqa: PLC0415
    if isinstance(choices, rl_sampler.CategoricalChoices):
        return [str(c) for c in choices.dist.choices]
    if isinstance(choices, rl_sampler.GridChoices):
        return [_short(choices._value(lo)) + ("" if lo == hi else f"-{_short(choices._value(hi))}")
                for lo, hi in choices.ranges]
    edges = np.linspace(choices.a, choices.b, choices.n + 1)
    edges = np.exp(edges) if choices.log else edges
    return [f"{edges[i]:.2g}" for i in range(choices.n)]


def greedy_softmax(sampler, study, asked):
    """The controller's softmax for each decision of ``asked`` (``[(name, dist)]``), each
    step reading in the most likely choice of the step before."""
    policy = sampler.policy(study)
    c = policy.controller
    x, hc = c.initial_state()
    out = []
    for name, dist in asked:
        key, choices = sampler._decision(name, dist)
        c.ensure(key, choices.n)
        logits, hc = c.step(x, hc, key)
        e = np.exp(logits - logits.max())
        p = e / e.sum()
        out.append((name, choice_labels(choices), p))
        x = c.embed(key, int(np.argmax(p)))
    return out


def draw_picture(path: Path, args) -> None:
    """Left: the probability of the best combination of the synthetic objective over the
    trials (3 seeds); right: the lab-mlp controller's softmax per decision after the
    benchmark's rl study of seed 0 (when its journal is in ``--dir``)."""
    import matplotlib  # noqa: PLC0415
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    import optuna  # noqa: PLC0415
    from tuning.rl_sampler import RLSampler  # noqa: PLC0415
    from tuning.spaces import params_asked, SPACES  # noqa: PLC0415
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    study0 = read_study(args, "rl", 0)
    fig, axes = plt.subplots(1, 2 if study0 is not None else 1, figsize=(12, 4.2),
                             squeeze=False, gridspec_kw={"width_ratios": [1, 1.5]}
                             if study0 is not None else None)
    ax = axes[0, 0]
    from optuna.distributions import (CategoricalDistribution, FloatDistribution,  # noqa
                                      IntDistribution)
    best = [("x", CategoricalDistribution(["a", "b", "c", "d"]), "c"),
            ("z", IntDistribution(1, 5), 3), ("y", FloatDistribution(0.0, 1.0), 0.75)]
    for seed in range(3):
        sampler = RLSampler(seed=seed)
        study = optuna.create_study(sampler=sampler)
        xs, ps = [], []
        for n in range(0, 121, 5):
            if n:
                study.optimize(_discrete, n_trials=5)
            keys, actions = [], []
            for name, dist, value in best:
                key, choices = sampler._decision(name, dist)
                keys.append(key)
                actions.append(choices.index(value))
            c = sampler.policy(study).controller
            for key, (_, dist, _) in zip(keys, best):
                c.ensure(key, sampler._choices[key].n)
            probs = c.probabilities(keys, actions)
            xs.append(n)
            ps.append(float(np.prod([p[a] for p, a in zip(probs, actions)])))
        ax.plot(xs, ps, marker=".", label=f"sampler seed {seed}")
    ax.axhline(1 / 200, color="gray", ls=":", label="uniform policy (1/200)")
    ax.set_xlabel("finished trials")
    ax.set_ylabel("P(best combination)")
    ax.set_title("synthetic objective: 4 x 5 x 10 choices, one best")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8)
    if study0 is not None:
        ax = axes[0, 1]
        sampler = RLSampler(seed=study0.sampler.seed if isinstance(study0.sampler, RLSampler)
                            else _rl_seed(0))
        params = SPACES["lab-mlp"].defaults
        last = study0.trials[-1]
        asked = [(name, last.distributions[name]) for name in params_asked("lab-mlp", params)
                 if name in last.distributions]
        rows = greedy_softmax(sampler, study0, asked)
        x0, ticks, labels = 0, [], []
        for name, names, p in rows:
            xs = np.arange(x0, x0 + len(p))
            ax.bar(xs, p, width=0.8, label=name)
            ticks += list(xs)
            labels += names
            x0 += len(p) + 1
        ax.set_xticks(ticks)
        ax.set_xticklabels(labels, rotation=90, fontsize=6)
        ax.set_ylabel("probability")
        ax.set_title(f"lab-mlp controller after {len(study0.trials)} trials (seed 0), "
                     f"softmax per decision")
        ax.legend(fontsize=7, ncol=5)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def _rl_seed(seed: int) -> int:
    from tuning.study import sampler_seed  # noqa: PLC0415
    return sampler_seed(seed)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--train-size", type=int, default=15_000)
    parser.add_argument("--val-size", type=int, default=10_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS))
    parser.add_argument("--dir", type=Path, default=Path("/tmp/rl_sampler_bench"),
                        help="the studies' journal files (default /tmp/rl_sampler_bench)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--picture", type=Path, metavar="PNG",
                        help="draw the docs picture into PNG (and nothing else)")
    parser.add_argument("--quick", action="store_true",
                        help="prove the script: 3 trials of 1 epoch on 500 images, seed 0, "
                        "the studies in a folder under --out (the numbers mean nothing)")
    args = parser.parse_args(argv)
    if args.quick:
        args.trials, args.epochs, args.train_size, args.val_size = 3, 1, 500, 200
        args.seeds, args.dir = [0], args.out / "rl_sampler_studies"
    if args.picture is not None:
        draw_picture(args.picture, args)
        return 0
    runs = {}
    runs_file = args.dir / "runs.json"
    if runs_file.exists():
        import json  # noqa: PLC0415
        runs = json.loads(runs_file.read_text())
    if not args.report_only:
        import json  # noqa: PLC0415
        for name, facts in run_studies(args).items():
            if facts["ran"] is not None or name not in runs:
                runs[name] = facts
        runs_file.write_text(json.dumps(runs, indent=1))
    info = machine_info(with_torch=False)
    res = results(args)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    write_json(args.out, "rl_sampler", {"settings": settings, "machine": info, "runs": runs,
                                        **res})
    path = write_markdown(args.out, "rl_sampler", markdown(args, res, info, runs))
    print(f"wrote {path}")
    for sampler, m in res["methods"].items():
        print(f"{sampler:>7}: best val error {m['mean']:.4f} +- "
              f"{(m['std'] or math.nan):.4f} (min {m['min']:.4f}, max {m['max']:.4f}, "
              f"{m['n']} studies)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
