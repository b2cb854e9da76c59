"""Population-based training (tuning.pbt, `tuning pbt`): exploit, explore, the population
in the storage, several processes, a killed process, bad input."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from minidl.checkpoint import save_checkpoint
from minidl.data import ArrayDataset
from tuning import pbt as P
from tuning import population as Pop
from tuning.spaces import SPACES, check_values, config_from_params, params_asked
from tuning.storage import open_storage
from tuning.study import StudySettings, create_study
from tuning_env import tuning_env


# -- helpers ------------------------------------------------------------------------------

def synthetic(n, seed):
    """Images whose class is the brightest of ten vertical bands: learnable in one epoch."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    x = rng.standard_normal((n, 1, 28, 28)).astype(np.float32) * 0.5
    for i, label in enumerate(y):
        x[i, 0, :, 2 * label + 4] += 2.0
    return ArrayDataset(x, y)


def new_population(tmp_path, space="lab-mlp", population=4, generations=2, epochs=1,
                   seed=0, **pbt_options):
    storage = open_storage(str(tmp_path / "pop.log"), "pop")
    settings = StudySettings(space=space, epochs=epochs, train_size=None, val_size=128,
                             seed=seed, sampler="random", pruner="none")
    study = create_study(storage, "pop", settings, 0)
    pbt = Pop.PBTSettings(population=population, generations=generations,
                          checkpoint_dir=str(tmp_path / "ckpt"), **pbt_options)
    study.set_user_attr(Pop.SETTINGS_ATTR, pbt.to_dict())
    objective = P.IntervalObjective(synthetic(256, 1), synthetic(128, 2), space, epochs, seed,
                                    pbt)
    return study, settings, pbt, objective


def intervals(study):
    """``{(member, generation): [trials]}`` of the study."""
    return Pop.Population(study, Pop.load_pbt_settings(study)).intervals


def bits(a):
    return np.ascontiguousarray(a).tobytes()


# -- settings and bad input -----------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, text", [
    ({"population": 1}, ValueError, "at least 2 members"),
    ({"population": 0}, ValueError, "at least 2 members"),
    ({"population": 4.0}, TypeError, "expected an int, got float"),
    ({"population": True}, TypeError, "expected an int, got bool"),
    ({"quantile": 0.0}, ValueError, r"fraction in \(0, 0.5\]"),
    ({"quantile": 0.51}, ValueError, r"fraction in \(0, 0.5\]"),
    ({"quantile": -0.25}, ValueError, r"fraction in \(0, 0.5\]"),
    ({"quantile": float("nan")}, ValueError, "finite"),
    ({"quantile": "0.25"}, TypeError, "expected a number"),
    ({"resample_probability": 1.5}, ValueError, r"probability in \[0, 1\]"),
    ({"factors": ()}, TypeError, "tuple of numbers"),
    ({"factors": (0.8, -1.2)}, ValueError, "positive numbers"),
    ({"factors": (0.8, float("inf"))}, ValueError, "finite"),
    ({"max_madds": 0}, ValueError, "positive number of multiply-adds"),
    ({"generations": 0}, ValueError, "at least 1"),
])
def test_settings_refuse_bad_values(kwargs, error, text):
    with pytest.raises(error, match=text):
        Pop.PBTSettings(**kwargs)


@pytest.mark.parametrize("population, quantile, size", [
    (8, 0.25, 2), (4, 0.25, 1), (2, 0.5, 1), (3, 0.5, 1), (10, 0.2, 2), (5, 0.25, 2),
    (2, 0.01, 1), (16, 0.5, 8)])
def test_quantile_size_counts_as_ray_tune(population, quantile, size):
    assert Pop.PBTSettings(population=population, quantile=quantile).quantile_size == size


def test_settings_round_trip_through_the_study_attribute():
    pbt = Pop.PBTSettings(population=5, quantile=0.4, resample_probability=0.1,
                          factors=(0.5, 2.0), max_madds=8e6, generations=7, checkpoint_dir="/x")
    again = Pop.PBTSettings.from_dict(json.loads(json.dumps(pbt.to_dict())))
    assert again == pbt and again.factors == (0.5, 2.0)


def test_fixed_and_mutable_parameters_split_every_space():
    for name, space in SPACES.items():
        mutable, fixed = P.mutable_params(name), P.fixed_params(name)
        assert sorted(mutable + fixed) == sorted(space.param_names)
        assert "learn_rate" in mutable and "batch_size" in mutable
        assert "optimizer" in fixed
    assert set(P.fixed_params("cnn")) >= {"n_conv", "filters_l0", "kernel_l0", "batch_norm",
                                           "pool_type", "dense_size", "hypergradient",
                                           "lr_schedule"}
    assert set(P.mutable_params("rnn")) >= {"clip_norm", "dropout_rate", "weight_decay"}


@pytest.mark.parametrize("space", sorted(SPACES))
def test_explore_stays_inside_the_space(space):
    """Many seeds, extreme factors too: every value lies in its distribution, the space
    accepts it, only mutable parameters move, and each of them does move sometimes."""
    pbt = Pop.PBTSettings(population=4)
    starts = P.initial_population(space, pbt, seed=3)
    names = P.mutable_params(space)
    moved = set()
    for factors in ((0.8, 1.2), (1e-3, 1e3)):
        settings = Pop.PBTSettings(population=4, factors=factors, resample_probability=0.25)
        for seed in range(60):
            rng = np.random.default_rng(seed)
            params = dict(starts[seed % len(starts)])
            for _ in range(5):     # a lineage explores again and again
                dists = P.space_distributions(space, params)
                new, how = P.explore(params, dists, names, settings, rng)
                assert set(new) == set(params)
                for name, value in new.items():
                    dist = dists[name]
                    assert dist._contains(dist.to_internal_repr(value)), (name, value, dist)
                    if name not in names:
                        assert value == params[name], name
                    elif value != params[name]:
                        moved.add(name)
                assert set(how) == {n for n in names if n in params}
                assert check_values(space, new) == []     # no value outside the range
                assert config_from_params(space, new)["lr_schedule"] in ("none",)
                params = new
    asked = {n for p in starts for n in p if n in names}
    assert moved == asked


def test_explore_multiplies_clips_and_moves_categoricals():
    dists = P.space_distributions("mlp", dict(SPACES["mlp"].defaults))
    pbt = Pop.PBTSettings(resample_probability=0.0, factors=(1.2,))
    params = dict(SPACES["mlp"].defaults, learn_rate=0.09, dropout_rate=0.1, batch_size=64)
    new, how = P.explore(params, dists, ["learn_rate", "dropout_rate", "batch_size"], pbt,
                         np.random.default_rng(0))
    assert new["learn_rate"] == 0.1           # 0.108 clipped to the space's 1e-1
    assert new["dropout_rate"] == pytest.approx(0.12)
    assert new["batch_size"] == 128
    assert how == {"learn_rate": "x1.2", "dropout_rate": "x1.2", "batch_size": "x1.2"}
    down, _ = P.explore(params, dists, ["batch_size"], Pop.PBTSettings(
        resample_probability=0.0, factors=(0.8,)), np.random.default_rng(0))
    assert down["batch_size"] == 32
    always, how = P.explore(params, dists, ["learn_rate"], Pop.PBTSettings(
        resample_probability=1.0), np.random.default_rng(0))
    assert how == {"learn_rate": "resampled"} and 1e-4 <= always["learn_rate"] <= 1e-1


def test_the_cost_gate_keeps_costly_networks_out():
    pbt = Pop.PBTSettings(population=6, max_madds=2e6)
    members = P.initial_population("cnn", pbt, seed=0)
    costs = [P.forward_madds(config_from_params("cnn", p)) for p in members]
    assert all(c <= 2e6 for c in costs)
    ungated = P.initial_population("cnn", Pop.PBTSettings(population=6), seed=0)
    assert max(P.forward_madds(config_from_params("cnn", p)) for p in ungated) > 2e6
    assert all(p["lr_schedule"] == "none" for p in members + ungated)
    with pytest.raises(ValueError, match="none of 1000 random cnn configurations"):
        P.initial_population("cnn", Pop.PBTSettings(population=2, max_madds=10), seed=0)


# -- exploit ---------------------------------------------------------------------------------

def test_plan_copies_top_into_bottom_and_keeps_the_rest():
    pbt = Pop.PBTSettings(population=8, quantile=0.25)
    dists = P.space_distributions("lab-mlp", SPACES["lab-mlp"].defaults)
    values = [0.30, 0.10, 0.50, 0.20, 0.90, 0.40, None, 0.15]   # member 6 diverged
    results = [Pop.MemberResult(m, 100 + m, v, dict(SPACES["lab-mlp"].defaults,
                                                  hidden_size=64 + m), dists)
               for m, v in enumerate(values)]
    donors = set()
    for seed in range(40):
        plan = P.plan_generation(results, "lab-mlp", pbt, np.random.default_rng(seed))
        assert [p["member"] for p in plan] == list(range(8))
        for p in plan:
            if p["member"] in (4, 6):          # the bottom two (the diverged one is last)
                assert p["exploited"] in (1, 7)
                donors.add(p["exploited"])
                assert p["parent"] == 100 + p["exploited"]
                assert p["params"]["hidden_size"] == 64 + p["exploited"]   # network kept
            else:
                assert p["exploited"] is None and p["parent"] == 100 + p["member"]
                assert p["params"] == results[p["member"]].params and p["explored"] == {}
    assert donors == {1, 7}
    again = P.plan_generation(results, "lab-mlp", pbt, np.random.default_rng(5))
    assert again == P.plan_generation(results, "lab-mlp", pbt, np.random.default_rng(5))


def test_every_member_without_a_result_copies_even_beyond_the_quantile():
    pbt = Pop.PBTSettings(population=4, quantile=0.25)
    dists = P.space_distributions("lab-mlp", SPACES["lab-mlp"].defaults)
    good = dict(SPACES["lab-mlp"].defaults)
    results = [Pop.MemberResult(0, 10, 0.2, good, dists), Pop.MemberResult(1, 11, None),
               Pop.MemberResult(2, None, None), Pop.MemberResult(3, 13, float("nan"))]
    plan = P.plan_generation(results, "lab-mlp", pbt, np.random.default_rng(0))
    assert [p["exploited"] for p in plan] == [None, 0, 0, 0]
    with pytest.raises(P.PopulationFailed, match="no member of the generation"):
        P.plan_generation([Pop.MemberResult(m, m, None) for m in range(4)], "lab-mlp", pbt,
                          np.random.default_rng(0))


@pytest.mark.parametrize("optimizer, hypergradient", [("Adam", False), ("SGD", True),
                                                      ("RMSprop", False)])
def test_exploit_copies_weights_and_optimizer_state_bitwise(tmp_path, optimizer, hypergradient):
    """A child starts from its parent's weights and optimizer state bit for bit, with its
    own (explored) hyperparameters in the optimizer and the network."""
    params = params_asked("cnn", dict(n_conv=1, filters_l0=8, batch_norm=True, dense_size=32,
                                      optimizer=optimizer, lr_schedule="none",
                                      hypergradient=hypergradient, dropout_rate=0.2))
    parent_config = config_from_params("cnn", params)
    model, opt = P.start_member(parent_config, seed=1)
    data = synthetic(64, 0)
    from minidl import nn
    loss = nn.CrossEntropyLoss()
    for i in range(3):
        opt.zero_grad()
        loss(model(data.x[i * 16:(i + 1) * 16]), data.y[i * 16:(i + 1) * 16])
        model.backward(loss.backward())
        opt.step()
    path = save_checkpoint(tmp_path / "parent.npz", model, opt)

    pbt = Pop.PBTSettings(resample_probability=0.0, factors=(0.5,))
    child_params, how = P.explore(params, P.space_distributions("cnn", params),
                                  P.mutable_params("cnn"), pbt, np.random.default_rng(0))
    assert child_params["learn_rate"] == params["learn_rate"] * 0.5
    child_config = config_from_params("cnn", child_params)
    child, child_opt = P.start_member(child_config, seed=99, parent_checkpoint=path)

    parent_state, child_state = model.state_dict(), child.state_dict()
    assert list(parent_state) == list(child_state)
    assert all(bits(parent_state[k]) == bits(child_state[k]) for k in parent_state)
    saved, loaded = opt.state_dict()["state"], child_opt.state_dict()["state"]
    assert sorted(saved) == sorted(loaded) and saved
    for index, entries in saved.items():
        assert sorted(entries) == sorted(loaded[index])
        for name, value in entries.items():
            other = loaded[index][name]
            assert (bits(value) == bits(other)) if isinstance(value, np.ndarray) \
                else value == other, (index, name)
    group = child_opt.param_groups[0]
    assert group["lr"] == child_config["learn_rate"] != opt.param_groups[0]["lr"]
    assert group["weight_decay"] == child_config["weight_decay"]
    if hypergradient:
        assert group["hypergrad_lr"] == child_config["hypergrad_lr"]
    dropouts = [m.p for m in child.modules() if type(m).__name__ == "Dropout"]
    assert dropouts and all(p == child_config["dropout_rate"] == 0.1 for p in dropouts)


# -- the population in a storage, in this process ----------------------------------------------

def test_a_population_runs_its_generations_and_children_start_where_parents_ended(tmp_path):
    study, settings, pbt, objective = new_population(tmp_path, generations=3)
    why = P.run_population(study, objective, "lab-mlp", pbt, settings.seed, timeout=120,
                           keep_checkpoints=True)
    assert why == "3 generations done"
    found = intervals(study)
    assert sorted(found) == [(m, g) for m in range(4) for g in range(3)]
    assert all(len(ts) == 1 and ts[0].state == TrialState.COMPLETE for ts in found.values())
    trials = {t.number: t for t in study.get_trials()}
    copies = 0
    for (member, generation), (trial,) in found.items():
        parent = trial.user_attrs["parent"]
        if generation == 0:
            assert parent is None and trial.user_attrs["exploited"] is None
            continue
        source = trials[parent]
        assert source.user_attrs["generation"] == generation - 1
        previous = [found[(m, generation - 1)][0] for m in range(4)]
        ranked = sorted(previous, key=lambda t: (t.value, t.user_attrs["member"]))
        if trial.user_attrs["exploited"] is None:
            assert source.user_attrs["member"] == member
            assert trial.params == source.params
        else:
            copies += 1
            assert member == ranked[-1].user_attrs["member"]       # the worst copies ...
            assert source.number == ranked[0].number                # ... the best (P=4)
            for name in P.fixed_params("lab-mlp"):
                assert trial.params[name] == source.params[name]
        # Retrain the interval from the parent's checkpoint: the same bits come out, so
        # the child trained from exactly the parent's weights and optimizer state.
        config = config_from_params("lab-mlp", trial.params)
        model, opt = P.start_member(config, P.interval_seed(0, member, generation),
                                    Pop.checkpoint_path(pbt, parent))
        history = objective._fit(model, opt, config, member, generation, lambda e, r: None)
        assert history.epochs[-1]["val_error"] == trial.value
        reference, ref_opt = P.start_member(config, 0, Pop.checkpoint_path(pbt, trial.number))
        assert all(bits(a) == bits(b) for a, b in zip(model.state_dict().values(),
                                                      reference.state_dict().values()))
    assert copies == 2          # one per generation after the first
    assert Pop.final_trial(study, pbt).user_attrs["generation"] == 2


def test_old_checkpoints_are_deleted_unless_kept(tmp_path):
    study, settings, pbt, objective = new_population(tmp_path, generations=4)
    P.run_population(study, objective, "lab-mlp", pbt, settings.seed, timeout=120)
    left = sorted(int(p.stem.split("-")[1]) for p in Path(pbt.checkpoint_dir).glob("*.npz"))
    by_number = {t.number: t for t in study.get_trials()}
    assert {by_number[n].user_attrs["generation"] for n in left} == {2, 3}
    assert len(left) == 8
    assert not list(Path(pbt.checkpoint_dir).glob("*.tmp"))


def test_a_failing_interval_is_retried_then_given_up_and_its_member_copies(tmp_path,
                                                                          monkeypatch):
    study, settings, pbt, objective = new_population(tmp_path, generations=2)
    real = P.start_member

    def broken(config, seed, parent_checkpoint=None, device="cpu"):
        if seed == P.interval_seed(0, 2, 0):        # member 2's first interval
            raise MemoryError("out of memory (simulated)")
        return real(config, seed, parent_checkpoint, device)

    monkeypatch.setattr(P, "start_member", broken)
    lines = []
    assert P.run_population(study, objective, "lab-mlp", pbt, 0, timeout=120,
                            log=lines.append) == "2 generations done"
    member2 = intervals(study)[(2, 0)]
    assert [t.state for t in member2] == [TrialState.FAIL] * P.MAX_ATTEMPTS + [TrialState.PRUNED]
    assert "MemoryError: out of memory" in member2[-1].user_attrs["stop_reason"]
    assert member2[-1].user_attrs["stop_reason"].startswith("given up after 3 failed")
    assert any("given up" in line for line in lines)
    (next_interval,) = intervals(study)[(2, 1)]
    assert next_interval.state == TrialState.COMPLETE
    assert next_interval.user_attrs["exploited"] is not None


def test_a_queued_duplicate_interval_is_not_trained_twice(tmp_path):
    """Two processes that both find a generation complete queue it twice: of two trials of
    one interval, the one with the smaller number trains it, the other ends FAIL before
    training, whether it comes after the first finished or while it runs."""
    study, settings, pbt, objective = new_population(tmp_path, generations=1)
    P.run_population(study, objective, "lab-mlp", pbt, 0, timeout=120)
    first = study.get_trials()[1]
    queued = {k: first.user_attrs[k] for k in ("member", "generation", "parent", "exploited",
                                                 "explored")}
    study.enqueue_trial(first.system_attrs["fixed_params"], user_attrs=queued)
    study.optimize(objective, n_trials=1, catch=(Exception,))    # pops the twin
    twin = study.get_trials()[-1]
    assert twin.state == TrialState.FAIL
    assert twin.user_attrs["stop_reason"] == \
        f"not started: member 1's interval 0 is trial {first.number}'s"
    assert "curve" not in twin.user_attrs       # nothing was trained

    # both queued, the first taken by another process and still running
    attrs = dict(queued, member=9)
    for _ in range(2):
        study.enqueue_trial(first.system_attrs["fixed_params"], user_attrs=attrs)
    running, second = study.get_trials()[-2:]
    assert study._storage.set_trial_state_values(running._trial_id, state=TrialState.RUNNING)
    study.optimize(objective, n_trials=1, catch=(Exception,))
    second = study.get_trials()[second.number]
    assert second.state == TrialState.FAIL
    assert second.user_attrs["stop_reason"] == \
        f"not started: member 9's interval 0 is trial {running.number}'s"


def test_queued_twins_of_finished_intervals_are_dropped(tmp_path):
    study, settings, pbt, objective = new_population(tmp_path, generations=1)
    P.start_population(study, "lab-mlp", pbt, 0)
    first = study.get_trials()[1]
    study.enqueue_trial(first.system_attrs["fixed_params"], user_attrs=first.user_attrs)
    P.run_population(study, objective, "lab-mlp", pbt, 0, timeout=120)
    twins = intervals(study)[(1, 0)]
    assert [t.state for t in twins] == [TrialState.COMPLETE, TrialState.FAIL]
    assert twins[1].user_attrs["stop_reason"] == \
        f"not started: member 1's interval 0 is trial {twins[0].number}'s"
    assert not study.get_trials(states=(TrialState.WAITING,))


def test_an_interval_left_running_without_a_worker_is_run_again(tmp_path, monkeypatch):
    """Ctrl-C between Optuna handing a worker its trial and the worker recording itself
    leaves a RUNNING trial nobody owns: after ORPHAN_SECONDS it is failed and queued."""
    study, settings, pbt, objective = new_population(tmp_path, generations=1)
    P.start_population(study, "lab-mlp", pbt, 0)
    waiting = study.get_trials(states=(TrialState.WAITING,))[0]
    assert study._storage.set_trial_state_values(waiting._trial_id, state=TrialState.RUNNING)
    monkeypatch.setattr(P, "ORPHAN_SECONDS", 0.0)
    monkeypatch.setattr(P, "CHECK_SECONDS", 1.0)
    lines = []
    assert P.run_population(study, objective, "lab-mlp", pbt, 0, timeout=120,
                            log=lines.append) == "1 generations done"
    orphan = study.get_trials()[waiting.number]
    assert orphan.state == TrialState.FAIL
    assert orphan.user_attrs["stop_reason"].startswith("worker died: interrupted before")
    assert any(f"trial {waiting.number} " in line and "left RUNNING" in line for line in lines)
    assert sorted(_values(study)) == [(m, 0) for m in range(4)]


def test_a_timeout_starts_no_interval_that_would_end_after_it(tmp_path):
    study, settings, pbt, objective = new_population(tmp_path, generations=None)
    started = time.monotonic()
    why = P.run_population(study, objective, "lab-mlp", pbt, 0, timeout=3.0)
    elapsed = time.monotonic() - started
    assert why.startswith("timeout")
    longest = max(t.user_attrs["seconds"] for t in study.get_trials()
                  if t.state == TrialState.COMPLETE)
    assert elapsed < 3.0 + longest + 1.0
    assert not study.get_trials(states=(TrialState.RUNNING,))


# -- the command: real data, real processes ------------------------------------------------------

TINY = ["--space", "lab-mlp", "--population", "4", "--train-size", "2000", "--val-size",
        "500", "--threads", "1"]


def _pbt(folder, *args, timeout=300, **kwargs):
    return subprocess.run([sys.executable, "-m", "tuning", "pbt", *args], cwd=folder,
                          env=tuning_env(), text=True, capture_output=True, timeout=timeout, **kwargs)


def _load(folder, name="lab-mlp"):
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
        str(folder / "studies" / f"{name}.log")))
    return optuna.load_study(study_name=name, storage=storage)


def _values(study):
    """``{(member, generation): validation error}`` of the finished intervals."""
    out = {}
    for key, trials in intervals(study).items():
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        assert len(done) <= 1, key
        if done:
            out[key] = done[0].value
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory, fashion_mnist):
    """A population run from start to end without interruption: ``(folder, values)``."""
    folder = tmp_path_factory.mktemp("reference")
    done = _pbt(folder, *TINY, "--generations", "3")
    assert done.returncode == 0, done.stderr
    values = _values(_load(folder))
    assert sorted(values) == [(m, g) for m in range(4) for g in range(3)]
    return folder, values


def _result(folder):
    return json.loads((folder / "studies" / "lab-mlp-pbt" / "result" / "result.json")
                      .read_text())


def _stop_after_first_intervals(folder, sig):
    """Start the reference's command in ``folder`` and send ``sig`` as soon as member 1's
    second interval has ended; the process, and the lines it printed."""
    proc = subprocess.Popen([sys.executable, "-m", "tuning", "pbt", *TINY, "--generations",
                             "3"], cwd=folder, env=tuning_env(), text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if line.startswith("member 1 gen 1:"):    # an interval has just ended
                proc.send_signal(sig)
                break
        seen += proc.stdout.readlines()
        proc.wait(timeout=60)
    finally:
        proc.kill()
    return proc, "".join(seen) + proc.stderr.read()


@pytest.mark.parametrize("sig, status", [(signal.SIGKILL, -signal.SIGKILL), (signal.SIGTERM, 130)])
def test_a_stopped_population_resumes_with_nothing_lost(tmp_path, reference, sig, status):
    """SIGKILL (nothing runs after it) or SIGTERM (as Ctrl-C) just after an interval ended:
    the finished intervals are kept, at most the one in progress is lost, and running the
    command again gives every interval and the result bit for bit as the run that was not
    stopped."""
    ref_folder, expected = reference
    proc, text = _stop_after_first_intervals(tmp_path, sig)
    assert proc.returncode == status, text
    if sig == signal.SIGTERM:
        assert "continue with: " in text and "pbt --study-name lab-mlp" in text
    before = _load(tmp_path)
    kept = {t.number: (t.value, t.params) for t in before.get_trials()
            if t.state == TrialState.COMPLETE}
    assert len(kept) >= 6
    # the interval in progress: failed and queued (SIGTERM), or left RUNNING (SIGKILL, or
    # a SIGTERM between Optuna handing the trial over and the worker recording itself)
    assert len(before.get_trials(states=(TrialState.RUNNING,))) <= 1

    resumed = _pbt(tmp_path, "--study-name", "lab-mlp")
    assert resumed.returncode == 0, resumed.stderr
    after = _load(tmp_path)
    assert _values(after) == expected                  # every interval, bit for bit
    for number, (value, params) in kept.items():       # finished intervals were kept
        trial = after.get_trials()[number]
        assert (trial.value, trial.params) == (value, params)
    failed = after.get_trials(states=(TrialState.FAIL,))
    assert len(failed) <= 1
    assert all(t.user_attrs["stop_reason"] == "interrupted"
               or t.user_attrs["stop_reason"].startswith("worker died") for t in failed)
    assert not after.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    result, ref = _result(tmp_path), _result(ref_folder)
    assert result["test_accuracy"] == ref["test_accuracy"]
    assert result["confusion_matrix"] == ref["confusion_matrix"]


def test_two_workers_share_one_population(tmp_path, fashion_mnist):
    done = _pbt(tmp_path, *TINY, "--generations", "3", "--workers", "2",
                "--train-size", "6000", timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    study = _load(tmp_path)
    found = intervals(study)
    assert sorted(found) == [(m, g) for m in range(4) for g in range(3)]
    trained = {}
    for key, trials in found.items():
        ran = [t for t in trials if "curve" in t.user_attrs]      # started training
        assert len(ran) == 1 and ran[0].state == TrialState.COMPLETE, key
        trained[key] = ran[0]
    ranks = {t.user_attrs["worker"]["rank"] for t in trained.values()}
    assert ranks == {0, 1}
    # the two workers trained intervals of one generation at the same time
    overlaps = 0
    for g in range(3):
        spans = sorted((t.datetime_start, t.datetime_complete) for (m, gen), t in
                       trained.items() if gen == g)
        overlaps += sum(a[1] > b[0] for a, b in zip(spans, spans[1:]))
    assert overlaps >= 1
    # and no interval of a generation started before the previous generation ended
    for g in range(1, 3):
        ended = max(t.datetime_complete for (m, gen), t in trained.items() if gen == g - 1)
        assert all(t.datetime_start >= ended for (m, gen), t in trained.items() if gen == g)
    out = tmp_path / "studies" / "lab-mlp-pbt" / "result"
    for name in ("model.npz", "result.json", "confusion_matrix.png", "schedule.png",
                 "lineage.png", "model.txt"):
        assert (out / name).is_file(), name
    from tuning.loading import load_model
    from tuning.data import test_data
    from minidl.train import evaluate
    result = json.loads((out / "result.json").read_text())
    assert evaluate(load_model(out), test_data())["accuracy"] == result["test_accuracy"]
    assert result["trial"] == Pop.final_trial(study, Pop.load_pbt_settings(study)).number
    assert "result: member" in done.stdout and "(w0)" in done.stdout and "(w1)" in done.stdout


@pytest.mark.parametrize("args, text", [
    (["--population", "1"], "--population: expected at least 2 members"),
    (["--quantile", "0.7"], r"--quantile: expected a fraction in (0, 0.5]"),
    (["--resample-probability", "2"], "--resample-probability: expected a probability"),
    (["--perturb-factors", "0.8,0"], "--perturb-factors: expected positive numbers"),
    ([], "give --generations G"),
])
def test_bad_options_are_one_line_errors_and_leave_nothing(cli, tmp_path, args, text):
    budget = [] if args == [] else ["--generations", "2"]
    status, out, err = cli("pbt", "--space", "lab-mlp", *budget, *args)
    assert status == 1
    assert text in err and "Traceback" not in err
    assert not (tmp_path / "studies").exists()


def test_unparsable_factors_are_a_usage_error(cli):
    with pytest.raises(SystemExit) as exc:
        cli("pbt", "--space", "lab-mlp", "--generations", "1", "--perturb-factors", "a,b")
    assert exc.value.code == 2


def test_a_study_of_tuning_run_is_not_a_population(cli, fashion_mnist):
    status, _, err = cli("run", "--space", "lab-mlp", "--n-trials", "1", "--epochs", "1",
                         "--train-size", "200", "--val-size", "100", "--pruner", "none")
    assert status == 0, err
    status, _, err = cli("pbt", "--study-name", "lab-mlp", "--generations", "1")
    assert status == 1 and "is not a population" in err


def test_continuing_with_other_settings_is_refused(cli, fashion_mnist):
    base = ["pbt", "--space", "lab-mlp", "--population", "2", "--train-size", "200",
            "--val-size", "100", "--generations", "1", "--threads", "1", "--quiet"]
    status, out, err = cli(*base)
    assert status == 0, err
    status, _, err = cli("pbt", "--study-name", "lab-mlp", "--population", "3",
                         "--quantile", "0.5", "--generations", "2")
    assert status == 1
    assert "--population 3 (the population has 2)" in err
    assert "--quantile 0.5 (the population has 0.25)" in err
    # a worker joining a population that is done trains nothing and writes no result
    status, out, err = cli("pbt", "--study-name", "lab-mlp", "--join", "--quiet")
    assert status == 0, err
    assert "1 generations done" in out and "result:" not in out


def test_help_lists_what_each_space_keeps(cli):
    with pytest.raises(SystemExit):
        cli("pbt", "--help")
    from tuning.cli import build_parser
    text = build_parser()._subparsers._group_actions[0].choices["pbt"].format_help()
    flat = " ".join(text.split())
    for name in SPACES:
        assert (f"{name}: explore changes {', '.join(P.mutable_params(name))}; fixed: "
                f"{', '.join(P.fixed_params(name))} ") in flat + " "


def test_workers_share_a_population_on_postgresql(tmp_path, postgres_url, fashion_mnist):
    name = f"pbt-{os.getpid()}"
    done = _pbt(tmp_path, "--storage", postgres_url, "--study-name", name, "--space",
                "lab-mlp", "--population", "2", "--train-size", "1000", "--val-size", "300",
                "--threads", "1", "--generations", "2", "--workers", "2", "--heartbeat", "2",
                timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    study = optuna.load_study(study_name=name, storage=postgres_url)
    found = intervals(study)
    assert sorted(found) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    for key, trials in found.items():
        assert [t.state for t in trials if "curve" in t.user_attrs] == [TrialState.COMPLETE]
    assert (tmp_path / "studies" / f"{name}-pbt" / "result" / "model.npz").is_file()
    assert "test accuracy" in done.stdout


@pytest.mark.parametrize("space", ["mlp", "cnn", "rnn"])
def test_every_space_trains_and_copies(tmp_path, space):
    storage = open_storage(str(tmp_path / "pop.log"), "pop")
    settings = StudySettings(space=space, epochs=1, train_size=None, val_size=64, seed=1,
                             sampler="random", pruner="none")
    study = create_study(storage, "pop", settings, 0)
    pbt = Pop.PBTSettings(population=2, generations=2, max_madds=1e6,
                        checkpoint_dir=str(tmp_path / "ckpt"))
    study.set_user_attr(Pop.SETTINGS_ATTR, pbt.to_dict())
    objective = P.IntervalObjective(synthetic(96, 1), synthetic(64, 2), space, 1, 1, pbt)
    assert P.run_population(study, objective, space, pbt, 1,
                            timeout=120) == "2 generations done"
    found = intervals(study)
    assert sorted(found) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    copied = [ts[-1] for (m, g), ts in found.items() if g == 1 and ts[-1].user_attrs["exploited"]
              is not None]
    assert len(copied) == 1                      # the worse of two copies the better
    child = copied[0]
    parent = study.get_trials()[child.user_attrs["parent"]]
    for name in P.fixed_params(space):
        assert child.params.get(name) == parent.params.get(name), name


def test_a_population_in_sqlite_is_read_by_trials_best_and_studies(cli, tmp_path, fashion_mnist):
    storage = f"sqlite:///{tmp_path / 'pop.db'}"
    status, out, err = cli("pbt", "--storage", storage, "--study-name", "p", "--space",
                           "lab-mlp", "--population", "2", "--train-size", "300",
                           "--val-size", "100", "--generations", "2", "--threads", "1",
                           "--quiet")
    assert status == 0, err
    assert (tmp_path / "p-pbt" / "result" / "model.npz").is_file()    # beside the database
    assert "test accuracy" in out
    status, out, err = cli("trials", "--storage", storage, "--study-name", "p")
    assert status == 0 and "4 trials (4 complete)" in out
    status, out, err = cli("best", "--storage", storage, "--study-name", "p")
    assert status == 0 and "Best trial:" in out
    status, out, err = cli("studies", "--storage", storage)
    assert status == 0 and "p " in out


def test_best_names_the_final_member_and_plain_workers_are_refused(cli, tmp_path, fashion_mnist):
    status, out, err = cli("pbt", "--study-name", "p", "--space", "lab-mlp", "--population", "2",
                           "--train-size", "300", "--val-size", "100", "--generations", "3",
                           "--threads", "1", "--quiet")
    assert status == 0, err
    study = _load(tmp_path, "p")
    from tuning.population import final_trial, load_pbt_settings
    from tuning.report import best_trial
    final = final_trial(study, load_pbt_settings(study))
    assert final.user_attrs["generation"] == 2          # a last interval, not any generation's
    assert best_trial(study).number == final.number
    status, out, _ = cli("best", "--study-name", "p", "--json")
    assert status == 0 and json.loads(out)["trial"] == final.number
    for command in (("worker", "--study-name", "p", "--max-trials", "9"),
                    ("run", "--study-name", "p", "--n-trials", "1")):
        status, _, err = cli(*command)
        assert status == 1
        assert "is a population-based training study" in err and "tuning pbt --study-name p" in err
    assert len(study.trials) == len(_load(tmp_path, "p").trials)   # nothing was trained


def test_best_of_a_population_is_a_last_interval_not_the_lowest_error_ever():
    # generation 0 of member 0 had the lowest error of all; the population's result is the
    # best of each member's LAST interval (its weights are the ones kept): member 1's
    from optuna.distributions import FloatDistribution
    from optuna.trial import create_trial
    from tuning.population import SETTINGS_ATTR, PBTSettings
    from tuning.report import best_trial

    study = optuna.create_study(direction="minimize")
    study.set_user_attr(SETTINGS_ATTR, PBTSettings(population=2).to_dict())
    for member, generation, value in ((0, 0, 0.10), (1, 0, 0.30), (0, 1, 0.25), (1, 1, 0.20)):
        study.add_trial(create_trial(
            value=value, params={"learn_rate": 1e-3},
            distributions={"learn_rate": FloatDistribution(1e-4, 1e-1, log=True)},
            user_attrs={"member": member, "generation": generation}))
    assert study.best_trial.number == 0
    assert best_trial(study).number == 3
