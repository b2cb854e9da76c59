"""``--sampler rl`` (tuning.rl_sampler): the REINFORCE controller as an Optuna sampler.

What is asserted: the controller's policy gradient equals torch's autograd for the same
weights, decisions, advantage and entropy bonus (float64, 1e-10) and passes
``minidl.gradcheck``; on a synthetic objective with one best combination the policy's
probability of it rises above 0.5; every sampled value lies in its distribution for every
space of the project; the policy is a function of the finished trials (incremental and
from-scratch learning give the same weights, also when trials finish out of order; pruned
trials count with their last value, failed ones not); a second process that opens the
study draws the trial the first process would have drawn (fake objective, and the real
``tuning run`` on tiny data); a multi-objective study is refused.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

import minidl
from tuning import rl_sampler
from tuning.errors import TuningError
from tuning.rl_sampler import (ORDER_ATTR, Controller, ReinforceLoss, RLSampler,
                               make_choices, param_key)
from tuning.spaces import SPACES
from tuning.study import StudySettings, make_sampler, open_study, sampler_seed

REPO = Path(__file__).resolve().parents[2]
optuna.logging.set_verbosity(optuna.logging.WARNING)


# -- the policy gradient ---------------------------------------------------------------

def _controller(keys_n, seed=3, hidden=5, embed=4):
    c = Controller(seed, hidden_size=hidden, embedding_dim=embed)
    for key, n in keys_n.items():
        c.ensure(key, n)
    return c


def _torch_loss(torch, c, keys, actions, advantage, beta):
    """The same controller in torch (weights copied) and its REINFORCE loss; returns
    ``(loss, {minidl Parameter: torch leaf})``."""
    lstm = torch.nn.LSTM(c.embedding_dim, c.hidden_size).double()
    leaves = {}
    with torch.no_grad():
        for name, p in lstm.named_parameters():
            p.copy_(torch.from_numpy(getattr(c.lstm, name).data))
            leaves[getattr(c.lstm, name)] = p

    def leaf(param):
        t = torch.tensor(param.data, dtype=torch.float64, requires_grad=True)
        leaves[param] = t
        return t

    start = leaf(c.start.weight)
    emb = {k: leaf(c.embeddings[k].weight) for k in c.embeddings}
    head = {k: (leaf(c.heads[k].weight), leaf(c.heads[k].bias)) for k in c.heads}
    xs = [start[0]] + [emb[keys[t]][actions[t]] for t in range(len(keys) - 1)]
    out, _ = lstm(torch.stack(xs)[:, None])
    loss = 0
    for t, key in enumerate(keys):
        log_pi = torch.log_softmax(out[t, 0] @ head[key][0].T + head[key][1], 0)
        entropy = -(log_pi.exp() * log_pi).sum()
        loss = loss - advantage * log_pi[actions[t]] - beta * entropy
    return loss, leaves


@pytest.mark.parametrize("keys,actions,advantage,beta", [
    (["a", "b", "c"], [2, 0, 1], 0.7, 0.1),
    (["a", "b", "c", "a"], [1, 3, 0, 2], -1.3, 0.5),      # a key read twice
    (["b"], [2], 2.0, 0.0),
    (["c", "a", "b", "c", "b"], [1, 0, 3, 0, 1], 0.0, 0.3),  # entropy bonus alone
])
def test_policy_gradient_matches_torch(torch, keys, actions, advantage, beta):
    c = _controller({"a": 3, "b": 4, "c": 2})
    c.zero_grad()
    loss = c.sequence_loss(keys, actions, advantage, beta)
    c.sequence_backward()
    t_loss, leaves = _torch_loss(torch, c, keys, actions, advantage, beta)
    t_loss.backward()
    assert loss == pytest.approx(t_loss.item(), rel=1e-12)
    checked = 0
    for param, leaf in leaves.items():
        if leaf.grad is None:                 # a table the sequence never reads
            assert param.grad is None
            continue
        np.testing.assert_allclose(param.grad, leaf.grad.numpy(), rtol=0, atol=1e-10)
        checked += 1
    assert checked >= 7           # the LSTM's four, the start and a head's two at least


def test_policy_gradient_passes_gradcheck():
    c = _controller({"a": 3, "b": 4, "c": 2})
    keys, actions = ["a", "b", "c", "a", "b"], [2, 0, 1, 1, 3]   # every table read
    h0 = np.random.default_rng(0).standard_normal((1, 1, c.hidden_size)) * 0.3
    assert minidl.gradcheck(ReinforceLoss(c, keys, actions, 0.8, 0.2), h0)


def test_reinforce_loss_gradient_is_advantage_times_score_plus_entropy_term():
    logits = np.array([0.3, -1.2, 2.0, 0.1])
    loss, d = rl_sampler.reinforce_loss(logits, 2, 1.5, 0.0)
    pi = np.exp(logits) / np.exp(logits).sum()
    assert loss == pytest.approx(-1.5 * math.log(pi[2]), rel=1e-14)
    np.testing.assert_allclose(d, 1.5 * (pi - np.eye(4)[2]), rtol=0, atol=1e-15)
    _, d = rl_sampler.reinforce_loss(logits, 2, 0.0, 1.0)     # -H's gradient: to uniform
    assert d[2] > 0 and d[1] < 0


# -- choices of one parameter ----------------------------------------------------------

@pytest.mark.parametrize("dist", [
    IntDistribution(64, 256), IntDistribution(32, 512, log=True), IntDistribution(1, 20, log=True),
    IntDistribution(1, 3), IntDistribution(0, 98, step=7), FloatDistribution(0.0, 0.5),
    FloatDistribution(1e-9, 1e-2, log=True), FloatDistribution(0.1, 0.9, step=0.2),
    FloatDistribution(0.0, 1.0, step=0.05)], ids=str)
def test_every_value_is_reachable_and_maps_back_to_its_choice(dist):
    choices = make_choices(dist, n_bins=10)
    assert 2 <= choices.n <= 10
    rng = np.random.default_rng(0)
    for a in range(choices.n):
        for _ in range(50):
            v = choices.value(a, rng)
            assert dist._contains(dist.to_internal_repr(v))
            assert choices.index(v) == a
    if isinstance(choices, rl_sampler.GridChoices):       # the bins cover every value once
        ks = [k for lo, hi in choices.ranges for k in range(lo, hi + 1)]
        assert ks == list(range(choices.m))
    # outside the range: the nearest end's choice
    assert choices.index(dist.low - 1 if not dist.log else dist.low / 10) == 0
    assert choices.index(dist.high * 10 + 1) == choices.n - 1


def test_log_int_bins_follow_the_log_scale():
    choices = make_choices(IntDistribution(32, 512, log=True), n_bins=10)
    widths = [hi - lo + 1 for lo, hi in choices.ranges]
    assert choices.n == 10 and widths == sorted(widths) and widths[-1] > 5 * widths[0]
    sparse = make_choices(IntDistribution(1, 20, log=True), n_bins=10)
    assert sparse.n < 10        # bins holding no integer are dropped
    assert make_choices(IntDistribution(1, 3), n_bins=10).ranges == [(0, 0), (1, 1), (2, 2)]


def test_a_categorical_value_that_is_not_a_choice_has_no_choice():
    choices = make_choices(CategoricalDistribution(["Adam", "SGD"]))
    assert choices.index("SGD") == 1 and choices.index("RMSprop") is None


# -- learning --------------------------------------------------------------------------

BEST = [("x", CategoricalDistribution(["a", "b", "c", "d"]), "c"),
        ("z", IntDistribution(1, 5), 3), ("y", FloatDistribution(0.0, 1.0), 0.75)]


def _discrete(trial):
    x = trial.suggest_categorical("x", ["a", "b", "c", "d"])
    z = trial.suggest_int("z", 1, 5)
    y = trial.suggest_float("y", 0.0, 1.0)
    return 0.3 * (x != "c") + 0.3 * (z != 3) + 0.3 * (not 0.7 <= y < 0.8)


def _p_best(sampler, study):
    keys, actions = [], []
    for name, dist, value in BEST:
        keys.append(param_key(name, dist))
        actions.append(make_choices(dist).index(value))
    policy = sampler.policy(study)
    for key, (_, dist, _) in zip(keys, BEST):
        policy.controller.ensure(key, make_choices(dist).n)
    probs = policy.controller.probabilities(keys, actions)
    return float(np.prod([p[a] for p, a in zip(probs, actions)]))


def test_the_policy_learns_the_best_combination():
    """One best combination of a categorical, an int and a float bin (1 in 200 of the
    starting, nearly uniform policy): its probability rises above 0.5 within 120 trials."""
    sampler = RLSampler(seed=0)
    study = optuna.create_study(sampler=sampler)
    history = [_p_best(sampler, study)]
    assert history[0] < 0.02
    while len(study.trials) < 120 and history[-1] <= 0.5:
        study.optimize(_discrete, n_trials=10)
        history.append(_p_best(sampler, study))
    assert history[-1] > 0.5, history


def _fake_value(config) -> float:
    """A deterministic number from a configuration: the policy has something to learn."""
    return (len(json.dumps(config, sort_keys=True)) % 17) / 17 + 1e-3 * len(str(config))


@pytest.mark.parametrize("space", sorted(SPACES))
def test_every_sampled_value_lies_in_its_distribution(space):
    function = SPACES[space].function
    study = optuna.create_study(sampler=RLSampler(seed=1))
    study.optimize(lambda trial: _fake_value(function(trial)), n_trials=30)
    seen = set()
    for trial in study.trials:
        assert trial.state == TrialState.COMPLETE
        assert trial.system_attrs[ORDER_ATTR] == list(trial.params)   # the asked order
        for name, value in trial.params.items():
            dist = trial.distributions[name]
            if isinstance(dist, CategoricalDistribution):
                assert any(type(value) is type(c) and value == c for c in dist.choices)
            elif isinstance(dist, IntDistribution):
                assert type(value) is int and dist.low <= value <= dist.high
                assert (value - dist.low) % dist.step == 0
            else:
                assert isinstance(value, float) and dist.low <= value <= dist.high
            if getattr(dist, "log", False):
                assert value > 0
            seen.add((name, value if isinstance(dist, CategoricalDistribution) else None))
    assert len({n for n, _ in seen}) >= 5


# -- the policy is a function of the finished trials -------------------------------------

def _finished(number, value, state=TrialState.COMPLETE, intermediate=None):
    params = {"x": "abcd"[number % 4], "z": 1 + number % 5, "y": (number * 0.37) % 1}
    return create_trial(state=state, value=value if state == TrialState.COMPLETE else None,
                        params=params, distributions={n: d for n, d, _ in BEST},
                        intermediate_values=intermediate or {})


def _weights(policy):
    return [p.data.copy() for p in policy.controller.parameter_list()]


def test_learning_step_by_step_equals_learning_the_whole_history():
    trials = [_finished(i, 0.1 * ((i * 7) % 5)) for i in range(14)]
    study = optuna.create_study()
    incremental = RLSampler(seed=4)
    for i, trial in enumerate(trials):
        study.add_trial(trial)
        if i in (3, 8):
            incremental.policy(study)
    a = incremental.policy(study)
    b = RLSampler(seed=4).policy(study)
    assert a.learned == b.learned == list(range(14)) and a.updates == b.updates == 14
    for x, y in zip(_weights(a), _weights(b), strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(_weights(a)[0], _weights(RLSampler(seed=4).policy(
        optuna.create_study()))[0])       # it did learn


def test_a_trial_finishing_out_of_order_relearns_the_history_in_order():
    study = optuna.create_study(sampler=RLSampler(seed=2))
    for i in range(5):
        study.add_trial(_finished(i, 0.1 * i))
    late = study.ask()                           # trial 5 stays RUNNING meanwhile
    for i in range(6, 10):
        study.add_trial(_finished(i, 0.05 * i))
    sampler = RLSampler(seed=2)
    assert sampler.policy(study).learned == [0, 1, 2, 3, 4, 6, 7, 8, 9]
    for name, dist, _ in BEST:
        late.suggest_categorical(name, dist.choices) if name == "x" else \
            late.suggest_int(name, 1, 5) if name == "z" else late.suggest_float(name, 0.0, 1.0)
    study.tell(late, 0.33)
    a = sampler.policy(study)
    b = RLSampler(seed=2).policy(study)
    assert a.learned == b.learned == list(range(10))
    for x, y in zip(_weights(a), _weights(b), strict=True):
        np.testing.assert_array_equal(x, y)


def test_pruned_trials_count_with_their_last_value_failed_ones_do_not():
    study = optuna.create_study()
    study.add_trial(_finished(0, 0.5))
    study.add_trial(_finished(1, None, TrialState.PRUNED, {0: 0.9, 3: 0.7}))
    study.add_trial(_finished(2, None, TrialState.PRUNED))          # reported nothing
    study.add_trial(_finished(3, None, TrialState.FAIL))
    study.add_trial(_finished(4, 0.2))
    policy = RLSampler(seed=0).policy(study)
    assert policy.learned == [0, 1, 2, 4] and policy.updates == 3
    assert policy.count == 3 and policy.mean == pytest.approx(-(0.5 + 0.7 + 0.2) / 3)


def test_replay_reads_the_decisions_in_the_asked_order():
    sampler = RLSampler(seed=0)
    trial = _finished(6, 0.1)
    keys, actions = sampler.decisions(trial)
    assert keys == [param_key(n, d) for n, d, _ in BEST]
    trial.system_attrs[ORDER_ATTR] = ["y", "x", "z"]
    keys2, actions2 = sampler.decisions(trial)
    assert keys2 == [keys[2], keys[0], keys[1]] and actions2 == [actions[2], actions[0],
                                                                  actions[1]]


def test_enqueued_values_are_read_in_and_the_rest_sampled():
    study = optuna.create_study(sampler=RLSampler(seed=0))
    study.enqueue_trial({"z": 4})
    study.optimize(_discrete, n_trials=3)
    first = study.trials[0]
    assert first.params["z"] == 4 and first.system_attrs[ORDER_ATTR] == ["x", "z", "y"]


def test_sampling_leaves_minidls_generator_alone():
    minidl.manual_seed(11)
    before = minidl.random.get_generator().bit_generator.state
    optuna.create_study(sampler=RLSampler(seed=0)).optimize(_discrete, n_trials=3)
    assert minidl.random.get_generator().bit_generator.state == before


# -- two processes, one journal ----------------------------------------------------------

_FIRST_PROCESS = r"""
import json, shutil, sys
import optuna
from tuning.storage import open_storage
from tuning.study import StudySettings, create_study, open_study
from tuning.spaces import SPACES
optuna.logging.set_verbosity(optuna.logging.WARNING)
journal, snapshot, out, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

def objective(trial):
    c = SPACES["lab-mlp"].function(trial)
    return (abs(__import__("math").log10(c["learn_rate"]) + 3) / 3 + 0.3 * (c["optimizer"] != "Adam")
            + abs(c["dropout_rate"] - 0.2) + (256 - c["hidden_size"]) / 1000)

storage = open_storage(journal, "s")
create_study(storage, "s", StudySettings(space="lab-mlp", sampler="rl", seed=5))
study, _ = open_study(storage, "s")
study.optimize(objective, n_trials=n)        # this process learns trial by trial
shutil.copyfile(journal, snapshot)           # the study as another process finds it
weights = [p.data.tolist() for p in study.sampler.policy(study).controller.parameter_list()]
study.optimize(objective, n_trials=1)        # the trial this process draws next
json.dump({"params": study.trials[-1].params, "weights": weights}, open(out, "w"))
"""


def _draw_next(storage_path, name="s"):
    """Open the study in this process (a fresh sampler) and draw its next trial."""
    from tuning.storage import open_storage
    study, settings = open_study(open_storage(str(storage_path), name), name)
    trial = study.ask()
    SPACES[settings.space].function(trial)
    return study, trial


def test_a_second_process_draws_what_the_first_would(tmp_path):
    journal, snapshot, out = tmp_path / "j.log", tmp_path / "snap.log", tmp_path / "p.json"
    subprocess.run([sys.executable, "-c", _FIRST_PROCESS, str(journal), str(snapshot),
                    str(out), "12"], cwd=REPO, check=True, timeout=300)
    there = json.loads(out.read_text())
    study, trial = _draw_next(snapshot)
    assert trial.number == 12
    assert trial.params == there["params"]
    sampler = study.sampler
    assert isinstance(sampler, RLSampler) and sampler.seed == sampler_seed(5)
    policy = sampler.policy(study)
    assert policy.updates == 12
    # the same policy, bit for bit (a draw alone would hide small differences of weights:
    # the same uniform number usually falls into the same choice)
    here = [p.data.tolist() for p in policy.controller.parameter_list()]
    assert here == there["weights"]
    # and not that of an untrained policy: the policy learned from 12 trials gives these
    # decisions other probabilities than the starting one
    keys, actions = sampler.decisions(optuna.trial.FrozenTrial(
        number=12, state=TrialState.COMPLETE, value=0.0, values=None, datetime_start=None,
        datetime_complete=None, params=trial.params, distributions=trial.distributions,
        user_attrs={}, system_attrs={}, intermediate_values={}, trial_id=0))
    start = RLSampler(seed=sampler.seed).policy(optuna.create_study()).controller
    for key in keys:
        start.ensure(key, sampler._choices[key].n)
    learned = policy.controller.probabilities(keys, actions)
    initial = start.probabilities(keys, actions)
    assert max(abs(p[a] - q[a]) for p, q, a in zip(learned, initial, actions)) > 1e-3


def test_tuning_run_resumed_draws_what_one_session_draws(tmp_path, fashion_mnist):
    """The CLI: 4 trials in one session, and 3 trials then a new process, draw the same
    trial 3 (tiny data; the trials' errors are the same in both, so the histories are)."""
    def run(journal, n):
        subprocess.run([sys.executable, "-m", "tuning", "run", "--space", "lab-mlp",
                        "--sampler", "rl", "--n-trials", str(n), "--epochs", "1",
                        "--train-size", "300", "--val-size", "300", "--pruner", "none",
                        "--threads", "1", "--quiet", "--seed", "2", "--storage", str(journal),
                        "--study-name", "s"], cwd=REPO, check=True, timeout=300,
                       capture_output=True)
    run(tmp_path / "one.log", 4)
    run(tmp_path / "two.log", 3)
    from tuning.storage import open_storage
    one = optuna.load_study(study_name="s", storage=open_storage(str(tmp_path / "one.log"), "s"))
    study, trial = _draw_next(tmp_path / "two.log")
    assert [t.value for t in one.trials[:3]] == [t.value for t in study.trials[:3]]
    assert trial.number == 3 and trial.params == one.trials[3].params
    assert study.sampler.policy(study).updates == 3


# -- settings ---------------------------------------------------------------------------

def test_rl_is_a_sampler_of_the_settings_and_refuses_several_objectives():
    settings = StudySettings(space="mlp", sampler="rl", seed=7)
    sampler = make_sampler(settings, 3, 99)          # salts do not change it
    assert isinstance(sampler, RLSampler) and sampler.seed == sampler_seed(7)
    with pytest.raises(TuningError, match="--sampler rl cannot optimise several objectives"):
        StudySettings(space="mlp", sampler="rl", objectives="error,params", pruner="none")
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=RLSampler())
    with pytest.raises(ValueError, match="single objective; this study has 2"):
        study.ask()


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(seed=-1), ValueError, "seed >= 0"), (dict(seed=1.0), TypeError, "seed to be an int"),
    (dict(n_bins=1), ValueError, "n_bins >= 2"), (dict(lr=0), ValueError, "lr > 0"),
    (dict(baseline_decay=1.0), ValueError, r"baseline_decay in \[0, 1\)"),
    (dict(entropy_weight="0.1"), TypeError, "entropy_weight to be a number")])
def test_bad_arguments_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        RLSampler(**kwargs)


def test_cli_offers_rl():
    out = subprocess.run([sys.executable, "-m", "tuning", "run", "--help"], cwd=REPO,
                         capture_output=True, text=True, check=True, timeout=120).stdout
    assert "rl}" in out.replace(" ", "").replace("\n", "")
