# Tutorial 5: the lab's Optuna study with minidl, its plots, pruning, retraining and testing.

# %% [markdown]
# # 5. The lab's study: tuning the MLP with Optuna
#
# Hyperparameters (the hidden layer's width, the dropout rate, the learning rate, the
# optimizer, the batch size) are chosen before training. Tuning them is a black-box
# problem: find
#
# $$\lambda^* = \arg\min_{\lambda \in \Lambda} \; \mathrm{err}_{val}\big(\theta^*(\lambda)\big),
# \qquad \theta^*(\lambda) = \text{the weights that training with } \lambda \text{ produces},$$
#
# where each evaluation of the objective is a whole training run. This notebook walks
# through the lab's recipe with **minidl** models:
#
# 1. the data: a training part, a validation part (for choosing) and the test set (used once);
# 2. the lab's `Objective`, a callable object that samples $\lambda$, trains, returns the
#    validation error and reports each epoch to the pruner;
# 3. a short study (TPE sampler, median pruner), and how to read each of Optuna's plots;
# 4. retraining the best configuration, then a confusion matrix, per-class accuracy and the
#    misclassified test images.

# %%
import os, time
SMALL = os.environ.get("MINIDL_TUTORIAL_SMALL", "") not in ("", "0")   # the test suite sets it
%matplotlib inline

import warnings

import numpy as np
import matplotlib.pyplot as plt
warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm, imported by Optuna
import optuna
from optuna.visualization import matplotlib as ovm

import minidl
from minidl import nn, optim
from minidl.data import (ArrayDataset, FASHION_MNIST_MEAN, FASHION_MNIST_STD,
                         load_fashion_mnist, prepare)
from minidl.train import evaluate, fit
from tutorial import record, claim        # docs/tutorials/tutorial: stated values, checks

optuna.logging.set_verbosity(optuna.logging.WARNING)        # our own one line per trial
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
print("small mode" if SMALL else "full mode")

# %% [markdown]
# ## The data: three disjoint parts
#
# The study chooses with the **validation** error; the **test** set is touched once, at the
# very end, so that its error is an honest estimate for new images. (Choosing with the test
# set would make its error optimistic: with enough trials, some configuration fits the
# test set's quirks by chance.)
#
# We take the first images of the training file for training, the last ones for validation,
# and the official test file for testing. Small mode uses fewer images, epochs and trials,
# so its numbers are noisier; the committed notebook is a full run.

# %%
N_TRAIN = 1000 if SMALL else 10000
N_VAL = 500 if SMALL else 5000
N_TEST = 1000 if SMALL else 10000
EPOCHS = 2 if SMALL else 4
N_TRIALS = 6 if SMALL else 20

raw = load_fashion_mnist(download=False)


def fashion(images, labels):
    return prepare(images, labels, FASHION_MNIST_MEAN, FASHION_MNIST_STD)


train = fashion(raw.train_images[:N_TRAIN], raw.train_labels[:N_TRAIN])
val = fashion(raw.train_images[-N_VAL:], raw.train_labels[-N_VAL:])
test = fashion(raw.test_images[:N_TEST], raw.test_labels[:N_TEST])
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
           "Sneaker", "Bag", "Ankle boot")
print(f"train {train.x.shape}, validation {val.x.shape}, test {test.x.shape}")
print(f"{N_TRIALS} trials of at most {EPOCHS} epochs each")

# %% [markdown]
# ## The lab's network and Objective, in minidl
#
# The lab's `NNet` is `Flatten → Linear(784, hidden) → ReLU → Dropout(p) → Linear(hidden, 10)`.
# In minidl a module also has a `backward` (there is no autograd): `Sequential` runs its
# layers' `backward` in reverse order. The package has the same class as
# `tuning.models.LabNNet`.
#
# The `Objective` follows the lab line by line: `__init__` keeps the data, `__call__(trial)`
# samples the five hyperparameters with `trial.suggest_*` (the same names and ranges as the
# lab), builds and trains the model, and returns the validation error. Two additions make
# **pruning** possible: after every epoch the trial reports its validation error with
# `trial.report(error, epoch)` and asks `trial.should_prune()`; if the pruner says so, raising
# `optuna.TrialPruned` stops the run, and Optuna records the trial as *pruned*.
# `minidl.train.fit` calls our `report` function after each epoch (its `callbacks`).
#
# The hyperparameter ranges, as in the lab:
#
# | name | range | sampled |
# |---|---|---|
# | `hidden_size` | 64 … 256 | integer, uniform |
# | `dropout_rate` | 0.1 … 0.5 | uniform |
# | `learn_rate` | $10^{-4}$ … $10^{-1}$ | **log**-uniform: each factor of 10 equally likely |
# | `optimizer` | Adam, SGD | categorical |
# | `batch_size` | 32, 64, 128 | categorical |

# %%
class NNet(nn.Module):
    def __init__(self, input_size, hidden_size, dropout_rate):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Flatten(),
            nn.Linear(input_size, hidden_size),
            nn.ReLU(),
            nn.Dropout(dropout_rate),
            nn.Linear(hidden_size, 10),
        )

    def forward(self, x):
        return self.layers(x)

    def backward(self, dout):
        return self.layers.backward(dout)


def train_model(params, train_dataset, monitor_dataset, epochs, seed, callbacks=()):
    """Build the lab's network for ``params`` and train it; ``(model, history)``."""
    minidl.manual_seed(seed)                              # the initial weights
    model = NNet(28 * 28, params["hidden_size"], params["dropout_rate"])
    if params["optimizer"] == "Adam":
        optimizer = optim.Adam(model.parameters(), lr=params["learn_rate"])
    else:
        optimizer = optim.SGD(model.parameters(), lr=params["learn_rate"])
    history = fit(model, nn.CrossEntropyLoss(), optimizer, train_dataset, monitor_dataset,
                  epochs=epochs, batch_size=params["batch_size"], callbacks=callbacks,
                  seed=seed, progress=False)
    return model, history


class Objective:
    def __init__(self, train_dataset, validation_dataset, epochs):
        self.train_dataset = train_dataset
        self.validation_dataset = validation_dataset
        self.epochs = epochs

    def __call__(self, trial):
        # sample hyperparameters (the lab's names and ranges)
        params = {
            "hidden_size": trial.suggest_int("hidden_size", 64, 256),
            "dropout_rate": trial.suggest_float("dropout_rate", 0.1, 0.5),
            "learn_rate": trial.suggest_float("learn_rate", 1e-4, 1e-1, log=True),
            "optimizer": trial.suggest_categorical("optimizer", ["Adam", "SGD"]),
            "batch_size": trial.suggest_categorical("batch_size", [32, 64, 128]),
        }

        def report(epoch, record):            # fit calls this after every epoch
            trial.report(record["val_error"], epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {epoch}")

        _, history = train_model(params, self.train_dataset, self.validation_dataset,
                                 self.epochs, seed=trial.number, callbacks=[report])
        return history.epochs[-1]["val_error"]     # the error on the validation set

# %% [markdown]
# ## The study: TPE sampler and median pruner
#
# **The sampler** proposes each trial's hyperparameters. The first trials are random; then
# the *Tree-structured Parzen Estimator* (TPE) splits the finished trials into the best
# fraction ("good") and the rest ("bad"), fits a density to each, $\ell(\lambda)$ to the
# good and $g(\lambda)$ to the bad, and proposes the candidate $\lambda$ that maximises
# $\ell(\lambda)/g(\lambda)$: values that were common among good trials and rare among bad
# ones. As trials accumulate, sampling concentrates where the error was low.
#
# **The pruner** stops unpromising trials early. Optuna's median rule: at epoch $e$, stop a
# trial if its *best* validation error so far (over epochs $1..e$) is worse than the
# *median* of the errors that the **complete** trials reported at epoch $e$. Pruned trials
# never count in that median, only the ones that ran to the end. So the bar is not "half
# of all trials": the complete trials are mostly those that were *not* pruned, the better
# ones, and once a few good trials have completed a new trial has to beat the median of
# the survivors — which is why so many trials end pruned below. We wait for 5 complete
# trials before pruning (`n_startup_trials`) and never prune after the first epoch alone
# (`n_warmup_steps=2`: after one epoch the error reflects the learning rate more than
# where a run will end).
#
# Both are seeded, so the study is repeatable (up to trials whose errors tie).
# `optuna.create_study` takes keyword arguments only (Optuna 5).

# %%
study = optuna.create_study(
    study_name="lab-mlp-tutorial",
    direction="minimize",
    sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=5),
    pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2),
)


def show_trial(study, trial):
    pruned = trial.state == optuna.trial.TrialState.PRUNED
    outcome = "pruned          " if pruned else f"val error {trial.value:.4f}"
    params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in trial.params.items())
    print(f"trial {trial.number:2d}: {outcome} after {len(trial.intermediate_values)} "
          f"epoch(s)  {params}")


start = time.perf_counter()
study.optimize(Objective(train, val, EPOCHS), n_trials=N_TRIALS, callbacks=[show_trial])
study_seconds = time.perf_counter() - start
print(f"\n{len(study.trials)} trials in {study_seconds:.1f} s")
print(f"best: trial {study.best_trial.number}, validation error {study.best_value:.4f}")
print(f"best hyperparameters: {study.best_params}")


def median_rule_says_prune(trial):
    """Replay the rule for a pruned trial: its best error so far against the median of
    the errors of the trials that had completed before it, at the epoch it stopped."""
    step = max(trial.intermediate_values)
    best_so_far = min(trial.intermediate_values.values())
    complete_before = [t for t in study.trials[:trial.number]
                       if t.state == optuna.trial.TrialState.COMPLETE]
    median = np.median([t.intermediate_values[step] for t in complete_before])
    return best_so_far > median


pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
claim(all(median_rule_says_prune(t) for t in pruned),
      "every pruned trial's best error so far was worse than the median of the complete "
      "trials' errors at the epoch it stopped")

# %% [markdown]
# ## Reading the plots
#
# Optuna draws every plot in two flavours: `optuna.visualization` (interactive Plotly) and
# `optuna.visualization.matplotlib` (plain images, used here so they show in any notebook
# viewer). Each function takes the study and returns matplotlib axes. They also switch
# matplotlib to their own style for good; `optuna_plot` below draws one inside
# `plt.rc_context()` so the later figures keep the default look, sizes it, and names
# Optuna's generic "Objective Value" (here: the validation error) and "Step" (the epoch).
#
# ### Optimization history
#
# One dot per finished trial (its validation error, in trial order) and the line of the
# best error so far. What to look at: the best-so-far line should step down early and then
# flatten; if it is still falling at the last trial, more trials would likely help. Dots
# that cluster low in the later trials show TPE exploiting what it learned; a spread that
# stays wide shows it still exploring. Pruned trials have no final value, so they are not
# drawn.

# %%
OPTUNA_NAMES = {"Objective Value": "validation error", "Intermediate Value": "validation error",
                "Step": "epoch", "Best Value": "best validation error so far"}


def optuna_plot(function, size, **kwargs):
    with plt.rc_context():                       # keep Optuna's style change local
        axes = function(study, **kwargs)
    figure = np.atleast_1d(axes).flat[0].figure
    for ax in figure.axes:                       # colour bars included
        for get, set_ in ((ax.get_xlabel, ax.set_xlabel), (ax.get_ylabel, ax.set_ylabel)):
            label = OPTUNA_NAMES.get(get())
            if label:
                set_(label)
        legend = ax.get_legend()
        for text in legend.get_texts() if legend is not None else []:
            text.set_text(OPTUNA_NAMES.get(text.get_text(), text.get_text()))
        labels = [t.get_text() for t in ax.get_xticklabels()]   # parallel coordinates
        if any(label in OPTUNA_NAMES for label in labels):
            ax.set_xticks(ax.get_xticks(), [OPTUNA_NAMES.get(x, x) for x in labels])
    figure.set_size_inches(*size)
    return axes


optuna_plot(ovm.plot_optimization_history, (8, 4))
plt.show()

# %% [markdown]
# ### Learning curves and pruning (intermediate values)
#
# One line per trial: the validation error it reported after each epoch, pruned trials
# included (their lines stop early). What to look at: a line that stops early was, at its
# last epoch, still above the median of the complete trials there; the epochs it did not
# run are the time the pruner saved. Lines far above the rest are usually learning rates at the extremes of
# the range (SGD at $10^{-4}$ barely moves; Adam at $10^{-1}$ diverges or stalls). The
# error axis is logarithmic so that those few do not squash the others.

# %%
ax = optuna_plot(ovm.plot_intermediate_values, (8, 4))
ax.get_legend().remove()            # one entry per trial: too many to read
ax.set_yscale("log")                # the few very bad trials would flatten the rest
plt.show()

# %%
states = [t.state for t in study.trials]
n_pruned = states.count(optuna.trial.TrialState.PRUNED)
epochs_run = sum(len(t.intermediate_values) for t in study.trials)
print(f"{n_pruned} of {len(study.trials)} trials pruned; {epochs_run} epochs trained out of "
      f"{len(study.trials) * EPOCHS} without pruning "
      f"({1 - epochs_run / (len(study.trials) * EPOCHS):.0%} of the training saved)")

# %% [markdown]
# ### Hyperparameter importances
#
# How much each hyperparameter matters for reaching a low validation error, as shares
# that sum to 1. Optuna's default estimator, PED-ANOVA, takes the complete trials whose
# error is among the best 10 % (`target_quantile=0.1`) and asks, for each
# hyperparameter, how differently its values are spread among those good trials than
# among all complete trials: a hyperparameter whose good values bunch up in one region
# gets a large share. Only **complete** trials count (a pruned trial has no final error),
# and a tenth of {{n_complete}} complete trials is one or two trials, where the method's
# documentation asks for at least five: read the bars as a hint, and expect them to change
# if you rerun with more trials. In this run the largest share went to `{{top_param}}`
# ({{top_share:.2f}}), then `{{second_param}}` ({{second_share:.2f}}).

# %%
n_complete = sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
print(f"importances estimated from {n_complete} complete trials")
importances = optuna.importance.get_param_importances(study)   # what the plot draws
(top_param, top_share), (second_param, second_share) = list(importances.items())[:2]
record(top_param=top_param, top_share=top_share, second_param=second_param,
       second_share=second_share, n_complete=n_complete)
optuna_plot(ovm.plot_param_importances, (8, 3.5))
plt.show()

# %% [markdown]
# ### Slice plot
#
# One panel per hyperparameter: every finished trial's error against that
# hyperparameter's value, coloured by trial number (darker = later). What to look at: a
# clear trend or valley (look at the learning-rate panel, on its log axis) says where the
# good values are;
# a flat cloud says the hyperparameter hardly matters in this range; late trials (dark)
# gathering in one region show where TPE has decided to search.

# %%
optuna_plot(ovm.plot_slice, (10, 3.5),
            params=["learn_rate", "hidden_size", "dropout_rate", "batch_size"])
plt.show()

# %% [markdown]
# ### Contour plot of two hyperparameters
#
# The error interpolated over a plane of two hyperparameters, with the trials as dots.
# What to look at: the dark region (low error) and whether it is a band along one axis
# (only that hyperparameter matters) or a diagonal (the two interact). Between the dots the
# colours are interpolation, not measurements: trust them only where dots are dense.
#
# Only *continuous* hyperparameters belong on a contour plot: between batch size 32 and 64
# there is nothing to interpolate, and a colour drawn there would be invented. So the plane
# here is the learning rate against the hidden layer's width, and the categorical
# hyperparameters get a plot of their own below.

# %%
CONTOUR = ["learn_rate", "hidden_size"]
claim(not any(isinstance(study.trials[0].distributions[p],
                         optuna.distributions.CategoricalDistribution) for p in CONTOUR),
      "both axes of the contour plot are continuous hyperparameters")
optuna_plot(ovm.plot_contour, (6, 4.5), params=CONTOUR)
plt.show()

# %% [markdown]
# The categorical ones, batch size and optimizer, as what they are: one column of dots
# per value, the error of each finished trial, the learning rate as the colour (a larger
# batch often wants a larger rate).

# %%
finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True, layout="constrained")
jitter = np.random.default_rng(0)
for ax, name in zip(axes, ["batch_size", "optimizer"]):
    choices = list(study.trials[0].distributions[name].choices)
    xs = [choices.index(t.params[name]) + jitter.uniform(-0.12, 0.12) for t in finished]
    dots = ax.scatter(xs, [t.value for t in finished], c=[t.params["learn_rate"] for t in finished],
                      cmap="viridis", norm=plt.matplotlib.colors.LogNorm(1e-4, 1e-1),
                      edgecolor="k", s=30)
    ax.set_xticks(range(len(choices)), [str(c) for c in choices])
    ax.set_xlim(-0.5, len(choices) - 0.5)
    ax.set_xlabel(name)
axes[0].set_ylabel("validation error")
fig.colorbar(dots, ax=axes, label="learn_rate (log scale)")
fig.suptitle("Complete trials by categorical hyperparameter")
plt.show()

# %% [markdown]
# ### Parallel coordinates
#
# Each finished trial is one line through a vertical axis per hyperparameter (and the
# objective, leftmost), coloured by its error. What to look at: follow the best-coloured
# lines and see where they cross each axis. Where they bunch together, that value
# matters; where they fan out over the whole axis, it does not.

# %%
axes = optuna_plot(ovm.plot_parallel_coordinate, (10, 4.5))
axes.set_xlabel("hyperparameter (each vertical axis has its own scale)")
axes.set_ylabel("validation error (leftmost axis)")
axes.set_title("")                          # the figure's title says it
axes.figure.suptitle("Parallel coordinates: one line per complete trial")
plt.show()

# %% [markdown]
# ## Retraining the best configuration
#
# The study's models were trained on the training part only. For the final model we take
# the best hyperparameters and train once more on the training **and** validation parts
# together: there is nothing left to choose, so the validation images are better used as
# training data. `fit` still wants a data set to report on after each epoch; as
# `tuning retrain` does, we give it the first 1000 training images (a training accuracy,
# not a validation one). Then, once, the test set.

# %%
best = study.best_params
train_all = ArrayDataset(np.concatenate([train.x, val.x]), np.concatenate([train.y, val.y]))
monitor = ArrayDataset(train_all.x[:1000], train_all.y[:1000])
start = time.perf_counter()
model, history = train_model(best, train_all, monitor, EPOCHS, seed=0)
print(f"retrained on {len(train_all)} images for {EPOCHS} epochs in "
      f"{time.perf_counter() - start:.1f} s; training loss by epoch: "
      + ", ".join(f"{r['train_loss']:.3f}" for r in history.epochs))

scores = evaluate(model, test)
print(f"test accuracy {scores['accuracy']:.4f} (error {scores['error']:.4f}) on "
      f"{len(test)} test images; the study's best validation error was {study.best_value:.4f}")

# %% [markdown]
# ## Where the model goes wrong: the confusion matrix
#
# $C_{tp}$ counts the test images of true class $t$ that the model predicted as class $p$.
# The diagonal holds the correct answers; row $t$ divided by its sum gives how the images of
# class $t$ were spread over the predictions, and its diagonal entry is the **per-class
# accuracy** (the recall of class $t$). The colour below is that row fraction; the numbers
# are counts.
#
# What to look at: the bright off-diagonal cells. In Fashion-MNIST the upper-body garments
# (T-shirt/top, pullover, coat, shirt) are confused with each other. In this run the worst
# class is {{worst_class}} ({{worst_accuracy:.1%}} right) and the best {{best_class}}
# ({{best_accuracy:.1%}}). Sandals, sneakers and ankle boots are confused mostly among
# themselves: {{footwear_share:.0%}} of the mistakes on footwear images name another shoe.

# %%
from tuning.results import confusion_matrix, per_class, per_class_table, predict

predicted = predict(model, test.x)
matrix = confusion_matrix(test.y, predicted, len(CLASSES))
fractions = matrix / matrix.sum(axis=1, keepdims=True)
recall = np.diag(fractions)
footwear = [CLASSES.index(c) for c in ("Sandal", "Sneaker", "Ankle boot")]
shoe_errors = matrix[np.ix_(footwear, footwear)].sum() - np.trace(matrix[np.ix_(footwear, footwear)])
all_shoe_errors = matrix[footwear].sum() - matrix[footwear, footwear].sum()
footwear_share = shoe_errors / all_shoe_errors
claim(footwear_share > 0.5, "most mistakes on footwear images name another shoe")
record(worst_class=CLASSES[recall.argmin()], worst_accuracy=recall.min(),
       best_class=CLASSES[recall.argmax()], best_accuracy=recall.max(),
       footwear_share=footwear_share)

fig, ax = plt.subplots(figsize=(7.5, 6.5))
image = ax.imshow(fractions, cmap="Blues", vmin=0, vmax=1)
for t in range(len(CLASSES)):
    for p in range(len(CLASSES)):
        if matrix[t, p]:
            ax.text(p, t, matrix[t, p], ha="center", va="center", fontsize=7,
                    color="white" if fractions[t, p] > 0.5 else "black")
ax.set_xticks(range(len(CLASSES)), CLASSES, rotation=45, ha="right")
ax.set_yticks(range(len(CLASSES)), CLASSES)
ax.set_xlabel("predicted class")
ax.set_ylabel("true class")
ax.set_title(f"Test set confusion matrix (accuracy {scores['accuracy']:.3f})")
fig.colorbar(image, ax=ax, label="fraction of the true class")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Per-class accuracy
#
# The diagonal of the row-normalised matrix, one bar per class, with the class each one
# is most often mistaken for (`tuning.results.per_class`, which `tuning retrain` writes
# into its `result.json`). The dashed line is the overall accuracy.

# %%
rows = per_class(matrix, CLASSES)
print(per_class_table(rows))

fig, ax = plt.subplots(figsize=(8, 3.5))
ax.barh([r["class"] for r in rows], [r["accuracy"] for r in rows], color="C0")
ax.axvline(scores["accuracy"], color="k", ls="--", lw=1, label="overall")
ax.invert_yaxis()
ax.set_xlim(0, 1)
ax.set_xlabel("accuracy on the test images of the class")
ax.set_ylabel("true class")
ax.set_title("Per-class accuracy on the test set")
ax.legend(loc="lower right")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Misclassified test images
#
# The first 15 test images the model got wrong, with the true and the predicted class.
# What to look at: many mistakes are understandable (a shirt without visible buttons
# looks like a T-shirt or a pullover at 28×28 pixels), and a few test labels are arguable.
# A model that errs mostly on such images is near what this data allows a small MLP; the
# convolutional networks of the `cnn` space do better on the upper-body classes.

# %%
wrong = np.flatnonzero(predicted != test.y)[:15]
fig, axes = plt.subplots(3, 5, figsize=(9, 6.2))
for ax in axes.flat:
    ax.axis("off")
for ax, i in zip(axes.flat, wrong):
    ax.imshow(raw.test_images[i], cmap="gray_r")
    ax.set_title(f"true: {CLASSES[test.y[i]]}\npred: {CLASSES[predicted[i]]}", fontsize=8)
fig.suptitle(f"{len(np.flatnonzero(predicted != test.y))} of {len(test)} test images "
             f"misclassified; the first {len(wrong)}")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## The same from the command line
#
# The package runs this whole recipe with more trials and epochs, a stored study (so it can
# be resumed, inspected and shared), progress lines and the plots as PNG files:
#
#     .venv/bin/python -m tuning run --space lab-mlp --n-trials 20            # the lab's study
#     .venv/bin/python -m tuning best  --study-name lab-mlp
#     .venv/bin/python -m tuning plot  --study-name lab-mlp --out plots/
#     .venv/bin/python -m tuning retrain --study-name lab-mlp --out model/
#
# `tuning.objective.Objective` is the `Objective` above with more bookkeeping (each trial's
# learning curve and timing stored on the trial, diverging runs ended as pruned), and the
# `mlp` and `cnn` spaces are the lab's tasks 1 and 2.
#
# ## Try it
#
# - Replace the sampler with `optuna.samplers.RandomSampler(seed=0)` and compare the
#   optimization histories.
# - Use `optuna.pruners.NopPruner()` and compare the total time with the time above.
# - Add a second hidden layer to `NNet` with its own `suggest_int`, as the lab's task 1 asks.

# %% [markdown]
# ## Exercises
#
# Fill in each function, run its cell, and read what the check says: it runs your function
# beside minidl's own implementation and names what differs. (Worked solutions are in
# `docs/tutorials/solutions/ex05.py`; try first.)
#
# **1. The median rule.** `values` maps each epoch $1..$`step` to the running trial's
# validation error; `others` lists the study's other trials as `(state, {epoch: error})`
# with state `"complete"` or `"pruned"`. Return whether Optuna's `MedianPruner` (no
# start-up or warm-up) would prune the trial at `step`.

# %%
from tutorial.ex05 import check_should_prune, check_confusion_matrix


def should_prune(values, others, step):
    raise NotImplementedError          # your code here


check_should_prune(should_prune)

# %% [markdown]
# **2. The confusion matrix.** Return the `n` x `n` matrix whose entry $(t, p)$ counts the
# samples of true class $t$ predicted as $p$.

# %%
def confusion_matrix(y_true, y_pred, n):
    raise NotImplementedError          # your code here


check_confusion_matrix(confusion_matrix)

# %% [markdown]
# Next: [6. Kernels and speed](06-kernels-and-speed.ipynb).
