"""Tutorial 11: choosing a search method (source of docs/tutorials/11-choosing-a-search-method.ipynb)."""
# %% [markdown]
# # 11. Which search method should I use?
#
# The lab lists the families of tuning methods: manual, grid, random, Bayesian (TPE),
# gradient-based, evolutionary, reinforcement learning. Notebooks 5 and 10 ran some of
# them once each. One run of a *stochastic* search says little, and runs with different
# budgets cannot be compared at all, so this notebook reads the results of a benchmark
# that ran **every method on the same tasks, the same data and the same budget of work,
# several times with different seeds**:
#
#     .venv/bin/python -m benchmarks.search_methods --threads 1    # the grid (hours: one process per core)
#
# Each (task, method, seed) run is saved as one file under
# `benchmarks/results/search_methods/cells/`; this notebook only reads them (it does not
# train anything), so it runs in seconds. The methods and the settings are described in
# `docs/search-methods.md`; here we learn to *read* such a comparison.
#
# The **budget** is counted in work, not seconds: training images processed (epochs x
# images, summed over every trial of a run, pruned trials counting the epochs they
# trained). A *full trial* trains 10 epochs on 50 000 images = 0.5 M images, and every run
# may spend 20 full trials' worth (10 M images). Work does not depend on the machine or
# on what else it was doing; seconds do.

# %%
import os, sys, math
SMALL = os.environ.get("MINIDL_TUTORIAL_SMALL", "") not in ("", "0")   # nothing to shrink here
%matplotlib inline
from pathlib import Path

import warnings

import numpy as np
import matplotlib.pyplot as plt
warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm, imported by Optuna

ROOT = Path.cwd().resolve().parents[1]            # the notebook runs in docs/tutorials
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))                 # benchmarks/ runs from the repository
from benchmarks.search_methods import report
from tutorial import record, claim

RESULTS = ROOT / "benchmarks" / "results" / "search_methods"
summaries = report.summarize(RESULTS)             # {task: {"settings", "rows", "cells"}}
LAB = summaries["lab-mlp"]
rows = {r["method"]: r for r in LAB["rows"]}
cells = LAB["cells"]
seeds = sorted({c["seed"] for c in cells})
for task, s in summaries.items():
    print(f"{task}: {len(s['cells'])} runs, {len(s['rows'])} methods, seeds "
          f"{sorted({c['seed'] for c in s['cells']})}, budget "
          f"{s['settings']['budget_images'] / 1e6:g} M images, threshold "
          f"{s['settings']['threshold']}")
claim(all(len(r["seeds"]) == len(seeds) for r in LAB["rows"]),
      "every method of lab-mlp ran with the same seeds")
record(n_lab_runs=len(cells), n_lab_methods=len(rows), n_lab_seeds=len(seeds))


def cell(method, seed, task="lab-mlp"):
    return next(c for c in summaries[task]["cells"] if c["method"] == method and c["seed"] == seed)

# %% [markdown]
# On `lab-mlp`, the lab's own space (one hidden layer, dropout, Adam or SGD, learning
# rate, batch size), there are {{n_lab_runs}} runs: {{n_lab_methods}} methods x
# {{n_lab_seeds}} seeds.
#
# ## 1. A search is a curve, not a number
#
# A run proposes a configuration, trains it, records its validation error, and proposes
# the next. What a user cares about is **the best error found so far, after so much
# work**: the *anytime* curve. Here is one seed of random search and of TPE: every dot is
# a trial, the step line is the best so far.

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
for ax, method in zip(axes, ("random", "tpe")):
    c = cell(method, seeds[0])
    done = [t for t in c["trials"] if t["state"] == "COMPLETE"]
    ax.scatter([t["work_end"] / 1e6 for t in done], [t["value"] for t in done], s=18,
               color="0.45", label="a trial's validation error")
    trace = [(w / 1e6, b) for w, b in c["trace"] if b is not None]
    ax.step([w for w, _ in trace], [b for _, b in trace], where="post", color="C3", lw=2,
            label="best so far")
    ax.axhline(LAB["settings"]["threshold"], color="C0", ls=":", lw=1.2,
               label=f"threshold {LAB['settings']['threshold']}")
    ax.set_title(f"{rows[method]['label']}, seed {seeds[0]}")
    ax.set_xlabel("work done (million training images)")
    ax.set_ylim(0.095, 0.16)
    ax.legend(fontsize=8, loc="upper right")
axes[0].set_ylabel("validation error")
fig.suptitle("lab-mlp: one run of each, trial by trial")
fig.tight_layout()
plt.show()

r0, t0 = cell("random", seeds[0]), cell("tpe", seeds[0])
same_start = sum(a["params"] == b["params"] for a, b in zip(r0["trials"][:10], t0["trials"][:10]))
off_chart = sum(t["value"] > 0.16 for t in r0["trials"] if t["state"] == "COMPLETE")
record(same_start=same_start, off_chart=off_chart)

# %% [markdown]
# Two things to see. Most of a search's trials are *not* good: a curve is shaped by its
# few best trials, so the best-so-far line falls in steps and then sits flat for long
# stretches ({{off_chart}} of random's trials are even above the top of the picture).
# And the two runs begin alike: with the same seed, TPE's first 10 trials are random
# draws from the same generator ({{same_start}} of the first 10 configurations are
# identical), so everything that separates TPE from random search happens in its last
# 10 trials, when its model of "good" and "bad" configurations takes over.
#
# ## 2. Why several seeds
#
# Run the same method with another seed and its random draws change, and so does its
# result. How much? Each dot below is one seed's final best validation error; the bar is
# the median over seeds. The grey band is the *noise of the measurement itself*: a
# validation error $p$ measured on $n$ = 10 000 images has a standard error
# $\sqrt{p(1-p)/n}$, and the band is two of those either side of the overall median.

# %%
order = [r["method"] for r in LAB["rows"]]
finals = {m: np.array(rows[m]["final_error"]["values"]) for m in order}
medians = {m: rows[m]["final_error"]["median"] for m in order}
overall = float(np.median(np.concatenate(list(finals.values()))))
n_val = LAB["settings"]["val_size"]
se = math.sqrt(overall * (1 - overall) / n_val)

fig, ax = plt.subplots(figsize=(11, 4))
ax.axhspan(overall - 2 * se, overall + 2 * se, color="0.88", label="±2 standard errors of one measurement")
for i, m in enumerate(order):
    ax.scatter(np.full(len(finals[m]), i) + np.linspace(-0.15, 0.15, len(finals[m])), finals[m],
               s=22, color="C0", zorder=3, label="one seed's final best" if i == 0 else None)
    ax.plot([i - 0.3, i + 0.3], [medians[m]] * 2, color="C3", lw=2.5,
            label="median over seeds" if i == 0 else None)
ax.set_xticks(range(len(order)), [m for m in order], rotation=30, ha="right")
ax.set_xlabel("method")
ax.set_ylabel("best validation error at the end")
ax.set_title(f"lab-mlp: the final result of each run ({len(seeds)} seeds per method)")
ax.legend(fontsize=8, loc="lower left")
fig.tight_layout()
plt.show()

winners = {s: min(order, key=lambda m: cell(m, s)["best"]["value"]) for s in seeds}
spread = {m: float(finals[m].max() - finals[m].min()) for m in order}
med_spread = float(np.median(list(spread.values())))
gap = float(max(medians.values()) - min(medians.values()))
record(overall=overall, two_se=2 * se, med_spread=med_spread, gap=gap,
       winners=", ".join(f"{winners[s]} (seed {s})" for s in seeds),
       n_winners=len(set(winners.values())))
claim(len(set(winners.values())) > 1, "the winner changes from seed to seed")

# %% [markdown]
# One measurement of a validation error near {{overall:.3f}} (the median of all runs) is uncertain by about ±{{two_se:.4f}}
# (two standard errors), and a typical method's results over the seeds spread by
# {{med_spread:.4f}} (median of the methods' max - min); the medians of *all* methods lie
# within {{gap:.4f}} of each other. The winner changes from seed to seed:
# {{winners}} — {{n_winners}} different methods for the {{n_lab_seeds}} seeds. A
# comparison from a single seed would have crowned whichever method was lucky, which is
# why the published comparisons (Bergstra & Bengio 2012, the Hyperband and BOHB papers,
# HPOBench) repeat every run and report medians and spreads, as we do here.
#
# ## 3. The anytime curves, side by side
#
# For every method, the median over seeds of the best-so-far error, against work on a
# log axis, with the band between the 25th and 75th percentiles of the seeds. The methods
# are in three groups so the lines stay readable; random search is in every panel as the
# yardstick.

# %%
STYLES = ["-", "--", ":", "-.", (0, (5, 1.5, 1, 1.5))]
MARKERS = ["o", "s", "^", "D", "v"]
GROUPS = {"simple": ["random", "manual", "grid", "qmc"],
          "Bayesian, with and without pruning": ["random", "tpe", "tpe-median", "tpe-hyperband"],
          "evolutionary, learned, population": ["random", "cmaes", "nsga2", "rl", "pbt"]}


def anytime_panels(task, groups, ylim):
    s = summaries[task]
    labels = {r["method"]: r["label"] for r in s["rows"]}
    works = np.geomspace(5e4, s["settings"]["budget_images"], 160)
    fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 4.2), sharey=True)
    for ax, (title, methods) in zip(axes, groups.items()):
        for k, m in enumerate([m for m in methods if m in labels]):
            q = report.anytime([c for c in s["cells"] if c["method"] == m], works)
            ok = np.isfinite(q["median"])
            line, = ax.plot(works[ok] / 1e6, q["median"][ok], ls=STYLES[k], marker=MARKERS[k],
                            markevery=16, ms=4, lw=1.8, label=labels[m])
            band = np.isfinite(q["q25"]) & np.isfinite(q["q75"])
            ax.fill_between(works[band] / 1e6, q["q25"][band], q["q75"][band],
                            color=line.get_color(), alpha=0.12)
        ax.axhline(s["settings"]["threshold"], color="0.3", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set_xlim(works[0] / 1e6, works[-1] / 1e6)
        ax.set_ylim(*ylim)
        ax.set_title(title)
        ax.set_xlabel("work done (million training images, log)")
        ax.legend(fontsize=7, loc="upper right")
    axes[0].set_ylabel("best validation error so far (median over seeds)")
    fig.suptitle(f"{task}: anytime curves (bands: 25th-75th percentile of the seeds; "
                 f"dotted: threshold {s['settings']['threshold']})")
    fig.tight_layout()
    plt.show()


anytime_panels("lab-mlp", GROUPS, (0.098, 0.135))

# %% [markdown]
# The table behind the pictures (median over seeds; "work to 0.115" is the work after
# which the best so far first reached the threshold, a seed that never did counting as
# infinite):

# %%
def table(task):
    s = summaries[task]
    print(f"{'method':32s} {'final error':>11s} {'range':>15s} {'test acc.':>9s} "
          f"{'work to thr.':>12s} {'trials':>6s} {'pruned':>6s}")
    for r in s["rows"]:
        fe, ta, wt = r["final_error"], r["test_accuracy"], r["work_to_threshold"]
        print(f"{r['label'][:32]:32s} {fe['median']:11.4f} {fe['min']:7.4f}-{fe['max']:.4f} "
              f"{ta['median']:9.4f} {report.fmt_work(wt['median']):>12s} "
              f"{r['trials']:6.0f} {r['pruned']:6.0f}")


table("lab-mlp")

# %% [markdown]
# ## 4. When is random search enough?
#
# Bergstra & Bengio (2012) argued that random search beats a grid because only a few
# hyperparameters matter, and a grid spends most of its points varying the ones that do
# not. The lab's grid here is different: it varies exactly the two that matter most
# (learning rate and batch size) and keeps the rest at the space's defaults, which are
# good. So it does well early, and then stops.

# %%
def med(m, task="lab-mlp"):
    return {r["method"]: r for r in summaries[task]["rows"]}[m]["final_error"]["median"]


tpe_minus_random = [cell("tpe", s)["best"]["value"] - cell("random", s)["best"]["value"]
                    for s in seeds]
record(random_med=med("random"), tpe_med=med("tpe"), grid_med=med("grid"),
       manual_med=med("manual"), qmc_med=med("qmc"),
       tpe_better=sum(d < 0 for d in tpe_minus_random),
       tpe_diff_med=float(np.median(tpe_minus_random)),
       grid_share=rows["grid"]["work_used"] / LAB["settings"]["budget_images"],
       grid_reach=report.fmt_work(rows["grid"]["work_to_threshold"]["median"]),
       random_reach=report.fmt_work(rows["random"]["work_to_threshold"]["median"]))
claim(abs(float(np.median(tpe_minus_random))) < 2 * se,
      "TPE's median difference from random is inside two standard errors")

# %% [markdown]
# The grid reached the threshold after {{grid_reach}} (median; random search after
# {{random_reach}}) and ended having spent {{grid_share:.0%}} of the budget.
# Medians of the final errors over the seeds: manual {{manual_med:.4f}} (four configurations a person would
# try first), grid {{grid_med:.4f}}, random {{random_med:.4f}}, QMC {{qmc_med:.4f}}, TPE
# {{tpe_med:.4f}}. Seed by seed — the fair pairing, since TPE and random share their first
# 10 trials — TPE ended better than random in {{tpe_better}} of {{n_lab_seeds}} seeds,
# with a median difference of {{tpe_diff_med:+.4f}}, inside the ±{{two_se:.4f}} of one
# measurement. On a space this small (five parameters, two of them categorical with two
# and three choices), 20 random trials already cover it well enough that a model of the
# good region has little left to add: **random search is enough when the budget is large
# compared with the number of parameters that matter**, and it is the yardstick any
# cleverer method must beat.
#
# ## 5. What pruning buys
#
# Most trials are bad, and a bad trial usually looks bad after an epoch or two. A pruner
# stops such trials early, and the work it saves buys more trials. The median pruner stops
# a trial whose best error so far is worse than the median of the complete trials at the
# same epoch (notebook 5); Hyperband runs trials in brackets and keeps only the best third
# at each rung (1, 3 and 9 epochs). How long did the trials of each run train?

# %%
fig, ax = plt.subplots(figsize=(8, 3.6))
edges = np.arange(0.5, 11.5, 1)
for k, m in enumerate(["tpe", "tpe-median", "tpe-hyperband"]):
    epochs = [t["epochs"] for c in cells if c["method"] == m for t in c["trials"]]
    ax.hist(epochs, bins=edges, histtype="step", lw=2, ls=STYLES[k],
            label=f"{rows[m]['label']}: {len(epochs)} trials in {len(seeds)} runs")
ax.set_xlabel("epochs a trial trained before it ended")
ax.set_ylabel("trials (all seeds)")
ax.set_title("lab-mlp: where the work of a run went")
ax.legend(fontsize=8, loc="upper center")
fig.tight_layout()
plt.show()

trials_of = {m: rows[m]["trials"] for m in ("tpe", "tpe-median", "tpe-hyperband")}
record(trials_tpe=trials_of["tpe"], trials_median=trials_of["tpe-median"],
       trials_hb=trials_of["tpe-hyperband"], pruned_median=rows["tpe-median"]["pruned"],
       median_med=med("tpe-median"), hb_med=med("tpe-hyperband"),
       reach_tpe=report.fmt_work(rows["tpe"]["work_to_threshold"]["median"]),
       reach_median=report.fmt_work(rows["tpe-median"]["work_to_threshold"]["median"]),
       reach_hb=report.fmt_work(rows["tpe-hyperband"]["work_to_threshold"]["median"]))
def beats_random(task):
    """``{method: seeds where its final best was below random search's, same seed}``."""
    mine = {(c["method"], c["seed"]): c["best"]["value"] for c in summaries[task]["cells"]}
    return {m: sum(v < mine[("random", s)] for (mm, s), v in mine.items() if mm == m)
            for m, _ in mine if m != "random"}


beats = {task: beats_random(task) for task in ("lab-mlp", "mlp")}
n_seeds = {task: len({c["seed"] for c in summaries[task]["cells"]}) for task in beats}
always = [m for m in beats["lab-mlp"]
          if all(beats[t].get(m) == n_seeds[t] for t in beats)]
record(median_beats_lab=beats["lab-mlp"]["tpe-median"], median_beats_mlp=beats["mlp"]["tpe-median"])
claim(always == ["tpe-median"],
      "TPE + median pruning is the only method that beat random search in every seed of both tasks")
claim(med("tpe-hyperband") >= med("tpe"),
      "on lab-mlp, Hyperband's harder pruning did not improve TPE's median")
claim(trials_of["tpe-median"] > trials_of["tpe"] and trials_of["tpe-hyperband"] > trials_of["tpe"],
      "both pruners buy more trials than TPE alone for the same work")

# %% [markdown]
# For the same 10 M images, TPE alone ran {{trials_tpe:.0f}} trials (median over seeds),
# TPE with the median pruner {{trials_median:.0f}} ({{pruned_median:.0f}} of them
# pruned) and TPE with Hyperband {{trials_hb:.0f}}. Median final errors: {{median_med:.4f}}
# and {{hb_med:.4f}} against TPE's {{tpe_med:.4f}}; work until the threshold was first
# reached: {{reach_median}} and {{reach_hb}} against {{reach_tpe}}. Seed by seed, TPE with
# the median pruner ended below random search in {{median_beats_lab}} of {{n_lab_seeds}}
# seeds here and in {{median_beats_mlp}} of {{n_mlp_seeds}} on `mlp` (section 7): it is the
# only method of either table that beat random search in every seed of both tasks.
# Pruning changes nothing about how configurations are proposed, only how much is spent
# on the ones that will not win. Hyperband prunes harder (its rungs are at 1 and 3
# epochs), and on this space that did not pay. Its risk is the other
# side of the same coin: a configuration that starts slowly (a small learning rate, a
# big batch) is judged after one epoch and may be stopped although it would have won.
#
# ## 6. What the evolutionary and learned methods need
#
# CMA-ES adapts a Gaussian over the numeric parameters generation by generation (7
# trials each here) and draws the categorical ones at random; NSGA-II, with one
# objective, is a genetic algorithm whose first generation is 10 random trials; the RL
# controller (an LSTM written with minidl, trained by REINFORCE) learns a policy from the
# rewards of its own trials. Each of them **needs many trials before its learning pays
# off**: with a budget of 20 full trials, CMA-ES sees fewer than three generations, NSGA-II one
# generation of children, and the controller 20 rewards. PBT is different in kind: it
# trains a population of 20 networks for one epoch at a time and, every epoch, copies
# the weights of the best quarter into the worst quarter and perturbs their
# hyperparameters, so it tunes a *schedule* during training, not a configuration.

# %%
pbt = [cell("pbt", s) for s in seeds]
pbt_models = int(np.median([len(c["trials"]) for c in pbt]))
learned = {m: med(m) for m in ("cmaes", "nsga2", "rl", "pbt")}
record(cmaes_med=learned["cmaes"], nsga2_med=learned["nsga2"], rl_med=learned["rl"],
       pbt_med=learned["pbt"], pbt_models=pbt_models,
       pbt_test=rows["pbt"]["test_accuracy"]["median"],
       best_other_test=max(rows[m]["test_accuracy"]["median"] for m in order if m != "pbt"),
       best_other_test_method=max((m for m in order if m != "pbt"),
                                  key=lambda m: rows[m]["test_accuracy"]["median"]))
claim(pbt_models >= 10 * rows["random"]["trials"],
      "PBT validates ten times as many models as a search has trials")
claim(all(abs(learned[m] - med("random")) < 2 * se for m in ("cmaes", "nsga2", "rl")),
      "CMA-ES, NSGA-II and RL end within two standard errors of random search")

# %% [markdown]
# Median final errors: CMA-ES {{cmaes_med:.4f}}, NSGA-II {{nsga2_med:.4f}}, RL
# {{rl_med:.4f}}, against random's {{random_med:.4f}}: at this budget the learned and
# evolutionary searches do not separate from random search by more than the noise of
# one measurement — which is what "they need many trials" looks like in a table.
#
# PBT's validation error, {{pbt_med:.4f}}, needs a warning before it is compared: a PBT
# run validates every member after every epoch, {{pbt_models}} models in all, and keeps
# the lowest error. The minimum of many noisy measurements on the *same* validation set
# is biased downwards (the same reason a search's best validation error flatters it), and
# PBT takes its minimum over ten times as many. The honest comparison is the **test
# accuracy**, measured once on images no method ever saw: PBT's best member reaches
# {{pbt_test:.4f}} (median over seeds), the best of the others {{best_other_test:.4f}}
# ({{best_other_test_method}}, its configuration retrained).
#
# ## 7. The second task: `mlp`
#
# Task 1's space is larger: 1 to 3 hidden layers with their own sizes (conditional
# parameters, asked only when the network has that many layers), activation, three
# optimizers, weight decay, learning-rate schedules, and the hypergradient optimizers of
# notebook 10. One more method runs here: TPE with `hypergradient` fixed to true, so
# every Adam or SGD trial adapts its own learning rate while it trains.

# %%
MLP_GROUPS = {"simple": ["random", "manual", "grid", "qmc"],
              "Bayesian": ["random", "tpe", "tpe-median", "tpe-hyperband", "tpe-hypergradient"],
              "evolutionary, learned, population": ["random", "cmaes", "nsga2", "rl", "pbt"]}
MLP = summaries["mlp"]
anytime_panels("mlp", MLP_GROUPS, (0.090, 0.135))
table("mlp")
mlp_rows = {r["method"]: r for r in MLP["rows"]}
mlp_med = {m: r["final_error"]["median"] for m, r in mlp_rows.items()}
mlp_best, mlp_worst = min(mlp_med, key=mlp_med.get), max(mlp_med, key=mlp_med.get)
record(n_mlp_seeds=len({c["seed"] for c in MLP["cells"]}), n_mlp_methods=len(mlp_rows),
       mlp_best_method=mlp_best, mlp_best=mlp_med[mlp_best],
       mlp_worst_method=mlp_worst, mlp_worst=mlp_med[mlp_worst],
       mlp_gap=mlp_med[mlp_worst] - mlp_med[mlp_best],
       hg_med=mlp_med["tpe-hypergradient"], mlp_tpe_med=mlp_med["tpe"],
       mlp_random_med=mlp_med["random"], mlp_grid_med=mlp_med["grid"],
       mlp_reached=sum(2 * r["work_to_threshold"]["reached"] > len(r["seeds"])
                       for r in mlp_rows.values()))

# %% [markdown]
# On `mlp` ({{n_mlp_methods}} methods x {{n_mlp_seeds}} seeds) the medians of the methods
# span {{mlp_gap:.4f}}, against {{gap:.4f}} on `lab-mlp`: from {{mlp_best:.4f}}
# ({{mlp_best_method}}) to {{mlp_worst:.4f}} ({{mlp_worst_method}}). Random search ended at
# {{mlp_random_med:.4f}}; the lab's grid, which here varies only the learning rate and the
# batch size of one fixed 256-128 network, at {{mlp_grid_med:.4f}}. TPE with the
# hypergradient fixed on ended at {{hg_med:.4f}}, against {{mlp_tpe_med:.4f}} for TPE that
# may choose it. {{mlp_reached}} of the {{n_mlp_methods}} methods reached the threshold
# 0.110 in more than half of their seeds.

# %% [markdown]
# ## What this comparison does and does not say
#
# It is one data set (Fashion-MNIST), two small spaces, one budget (20 full trials) and
# one machine. Methods built for hundreds of trials are judged at 20. On such small
# spaces the differences between reasonable methods are of the size of the measurement
# noise, and the lessons that hold across the seeds are about *how* a search spends its
# work: pruning buys trials; a grid stops when its points run out; a model-based or
# learned method starts as random search and needs trials to learn from; selecting the
# best of many validation measurements flatters the winner, so the final word belongs to
# a test set.

# %% [markdown]
# ## Exercises
#
# Fill in each function, run its cell, and read what the check says. The checks compare
# your function with the benchmark's own code (`benchmarks/search_methods/report.py`) on
# the committed results. (Worked solutions are in `docs/tutorials/solutions/ex11.py`; try
# first.)
#
# **1. The best-so-far trace.** `trials` is a run's list of trials in order, each a dict
# with `"state"` (`"COMPLETE"`, `"PRUNED"` or `"FAIL"`), `"value"` (the validation error
# of a complete trial, else `None`), `"last_val_error"` (its error at the last epoch it
# trained) and `"work_end"` (the run's total work when the trial ended). Return
# `[[work_end, best], ...]`, one pair per trial, `best` being the lowest error of the
# complete trials so far (`None` before the first).

# %%
from tutorial.ex11 import check_trace_from_trials, check_work_to_reach, check_median_over_seeds


def trace_from_trials(trials):
    raise NotImplementedError          # your code here


check_trace_from_trials(trace_from_trials)

# %% [markdown]
# **2. Work to a threshold.** Given such a trace and a threshold, return the work after
# which the best so far was first at or below the threshold (`math.inf` if never).

# %%
def work_to_reach(trace, threshold):
    raise NotImplementedError          # your code here


check_work_to_reach(work_to_reach)

# %% [markdown]
# **3. A median over seeds.** `values` holds one number per seed, `math.inf` for a seed
# that never reached the threshold. Return their median (halfway between the two middle
# values for an even count), counting the infinite ones as the largest.

# %%
def median_over_seeds(values):
    raise NotImplementedError          # your code here


check_median_over_seeds(median_over_seeds)

# %% [markdown]
# This is the last notebook; back to [the first](01-layer-by-hand.ipynb).
