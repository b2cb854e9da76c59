r"""``--sampler rl``: a recurrent controller trained with REINFORCE proposes the trials.

The design of Zoph & Le (2017, "Neural Architecture Search with Reinforcement
Learning"), sized for this project's spaces and written with minidl itself.

The policy
    An LSTM controller (``nn.LSTM``, one layer, float64) makes one *decision* per
    parameter, in the order the objective asks for them.  A decision is a softmax over the
    parameter's *choices*: a categorical parameter's values; an int or stepped float
    parameter's values when it has at most ``n_bins`` of them; otherwise ``n_bins`` equal
    bins on the parameter's own scale (log scale for a log parameter; an int bin holds the
    whole numbers whose position falls in it, and bins holding none are dropped), the
    value then drawn uniformly inside the chosen bin, so every value stays reachable.
    Step ``t`` of the controller reads the embedding of decision ``t - 1`` (a learned
    start vector at ``t = 0``) and its head for parameter ``t`` turns the hidden state
    into that parameter's logits::

        x_0 = start,   x_t = E_{p_{t-1}}[a_{t-1}],   h_t = LSTM(x_t, h_{t-1}),
        pi_t = softmax(W_{p_t} h_t + b_{p_t}),        a_t ~ pi_t

    Each parameter (name and distribution) has its own embedding table ``E_p``
    (``nn.Embedding``) and head ``W_p, b_p`` (``nn.Linear``), made when the parameter is
    first seen, so a decision's embedding also says which parameter it was, and a
    conditional parameter (``hidden_l1`` after ``n_layers``) is decided knowing what came
    before.  Every weight starts U(-0.1, 0.1) (ENAS's controller), drawn from a generator
    seeded with the sampler's seed and a SHA-256 digest of the parameter's name and
    distribution: the same in every process, whenever the parameter is first met.

The learning (REINFORCE, Williams 1992)
    A finished trial with value ``v`` has reward ``r = -v`` (``r = v`` when the study
    maximises).  With a moving-average baseline ``b`` and a moving variance ``s^2`` of
    ``r - b`` (both with decay ``baseline_decay``; the first trial sets ``b = r``), the
    advantage is the standardised ``A = (r - b) / s``, ``s^2`` updated first, so
    ``|A| <= (1 - decay)^{-1/2}`` whatever the objective's scale.  The trial's decisions
    ``a_0 .. a_{T-1}`` are run through the controller again (teacher forcing) and the loss

    .. math::
        L = -A \sum_t \log \pi_t(a_t) - \beta \sum_t H(\pi_t), \qquad
        H(\pi) = -\sum_j \pi_j \log \pi_j

    (``beta = entropy_weight``, the entropy bonus that keeps the policy exploring) is
    differentiated by minidl's hand-written backward: with ``z_t`` the logits,

    .. math::
        \frac{\partial L}{\partial z_{tj}} = A\,(\pi_{tj} - [j = a_t])
            + \beta\, \pi_{tj} (\log \pi_{tj} + H(\pi_t)),

    then back through the heads, the LSTM (backpropagation through time) and the
    embeddings.  The gradient's norm is clipped (``nn.utils.clip_grad_norm_``) and Adam
    (``minidl.optim.Adam``) takes one step per trial.

The state is the study's history
    Nothing of the controller is stored.  Its weights are a function of the study's
    finished trials: start from the seeded weights and learn from every COMPLETE or PRUNED
    trial in trial-number order.  A resumed study, ``run --workers K`` and ``worker``
    processes on PostgreSQL therefore act on the same policy for the same history, and
    Ctrl-C or SIGKILL lose nothing but the trial in progress.  A process keeps its
    controller and the trial numbers it has learned from; at each new trial it learns only
    from the trials finished since, when they all come after the last one learned (the
    usual case); when a trial with a smaller number finished meanwhile (another worker was
    slower), it learns the whole history again, in order, from the seeded weights (a few
    milliseconds per trial).  The decisions of a finished trial are read back from its
    parameters (a value maps to its choice; a value outside the distribution, e.g. one
    enqueued with ``--outside-range``, to the nearest bin), in the order the trial asked
    for them, which the sampler writes to the trial's system attribute
    ``rl_sampler:order`` when it ends: the storages keep parameters in their order except
    Optuna's gRPC proxy.  The random draws of trial ``n`` come from a generator seeded
    with ``(seed, n, t)`` for its ``t``-th decision, so two processes with the same
    history draw the same trial ``n``.

    * A PRUNED trial counts with its last reported value (the validation error at the
      epoch it was stopped).  Skipping pruned trials would hide from the controller most
      of the configurations the pruner found bad, keeping only the survivors; their last
      value is an early error, higher than the error they would have ended with, so it
      errs towards calling them bad -- which is what the pruner judged.  A pruned trial
      that reported nothing is skipped.
    * FAILED trials are skipped: a crash or an interruption says nothing about the
      configuration's quality (and the project queues their parameters again).
    * A trial drawn while other workers ran, from a policy a few updates older than the
      one that learns from it, is used as if drawn from the current policy (on-policy).
      Importance weights would need the probability the older policy gave it, which
      depends on which trials had finished in the drawing process at that moment -- not
      recorded, and different in every worker -- and with tens of trials their variance
      would swamp the signal.  The bias is that of asynchronous policy gradients (A3C):
      the policy is ``K - 1`` Adam steps stale at most with ``K`` workers, so the error
      is first order in the step size.  Enqueued values count the same way, as
      decisions the policy made (a demonstration weighted by its advantage).
    * Under the Hyperband pruner Optuna shows a sampler only the trials of the new trial's
      bracket (as it does for TPE), so the policy is learned per bracket; the process
      keeps a few controllers and continues the one whose history the new trial extends.

Single objective only: a multi-objective study is refused (as ``cmaes`` is).
"""
from __future__ import annotations

import hashlib
import math
import threading
from dataclasses import dataclass, field

import numpy as np
import optuna
from optuna.distributions import (CategoricalDistribution, FloatDistribution,
                                  IntDistribution, distribution_to_json)
from optuna.trial import TrialState

from minidl import nn, optim
from minidl.nn.utils import clip_grad_norm_
from minidl.random import get_generator

ORDER_ATTR = "rl_sampler:order"
N_BINS = 10
HIDDEN_SIZE = 32
EMBEDDING_DIM = 16
LEARNING_RATE = 0.02
ENTROPY_WEIGHT = 0.1
BASELINE_DECAY = 0.8
MAX_GRAD_NORM = 1.0
INIT_RANGE = 0.1
# Controllers kept per process: one per Hyperband bracket (at most 3 brackets for the
# project's epochs), and one spare.
CACHED_POLICIES = 4


def stable_digest(text: str) -> list:
    """Four 32-bit words of SHA-256(``text``): a seed part that is the same in every
    process (Python's ``hash`` of a str changes with PYTHONHASHSEED)."""
    digest = hashlib.sha256(text.encode()).digest()
    return [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4)]


# -- choices of one parameter -------------------------------------------------------------

class Choices:
    """The choices of one parameter's decision: ``n`` of them; ``value(a, rng)`` is a value
    of choice ``a`` (drawn uniformly inside a bin), ``index(value)`` the choice a value
    belongs to (None: a categorical value that is not one of the choices)."""

    n: int

    def value(self, a: int, rng: np.random.Generator):
        raise NotImplementedError

    def index(self, value):
        raise NotImplementedError


class CategoricalChoices(Choices):
    def __init__(self, dist: CategoricalDistribution):
        self.dist = dist
        self.n = len(dist.choices)

    def value(self, a, rng):
        return self.dist.choices[a]

    def index(self, value):
        try:
            return int(self.dist.to_internal_repr(value))
        except ValueError:
            return None


class GridChoices(Choices):
    """An int (or stepped float) parameter: values ``low + k * step``, ``k = 0 .. m-1``.

    Position of value ``k`` on the parameter's scale: ``(k + 1/2) / m`` (linear) or
    ``(log v_k - log low) / (log high - log low)`` (log); bin ``min(floor(n_bins * pos),
    n_bins - 1)``.  With ``m <= n_bins`` every value is its own choice; otherwise a
    choice is a non-empty bin, a range of consecutive ``k``.
    """

    def __init__(self, dist, n_bins: int):
        self.dist = dist
        self.is_int = isinstance(dist, IntDistribution)
        self.low, self.high, self.step = dist.low, dist.high, dist.step
        self.m = int(round((self.high - self.low) / self.step)) + 1
        if self.m <= n_bins:
            self.ranges = [(k, k) for k in range(self.m)]
        else:
            self.n_bins = n_bins
            starts = [self._first_k_in_bin_at_least(b) for b in range(n_bins)] + [self.m]
            self.ranges = [(starts[b], starts[b + 1] - 1) for b in range(n_bins)
                           if starts[b] < starts[b + 1]]
        self.n = len(self.ranges)
        self._first_ks = [lo for lo, _ in self.ranges]

    def _value(self, k: int):
        v = self.low + k * self.step
        return int(v) if self.is_int else float(min(v, self.high))

    def _bin(self, k: int) -> int:
        if self.dist.log:
            pos = (math.log(self._value(k)) - math.log(self.low)) / \
                (math.log(self.high) - math.log(self.low))
        else:
            pos = (k + 0.5) / self.m
        return min(int(pos * self.n_bins), self.n_bins - 1)

    def _first_k_in_bin_at_least(self, b: int) -> int:
        lo, hi = 0, self.m                  # the bin of k never decreases with k
        while lo < hi:
            mid = (lo + hi) // 2
            if self._bin(mid) >= b:
                hi = mid
            else:
                lo = mid + 1
        return lo

    def value(self, a, rng):
        lo, hi = self.ranges[a]
        return self._value(lo if lo == hi else int(rng.integers(lo, hi + 1)))

    def index(self, value):
        k = int(round((float(value) - self.low) / self.step))
        k = min(max(k, 0), self.m - 1)      # outside the range: the nearest end
        return int(np.searchsorted(self._first_ks, k, side="right")) - 1


class ContinuousChoices(Choices):
    """A float parameter without step: ``n_bins`` equal bins of ``pos = (v - low) /
    (high - low)`` (log: of ``log v``), the value drawn uniformly inside the bin."""

    def __init__(self, dist: FloatDistribution, n_bins: int):
        self.dist = dist
        self.n = n_bins
        self.log = dist.log
        self.a = math.log(dist.low) if self.log else dist.low
        self.b = math.log(dist.high) if self.log else dist.high

    def value(self, a, rng):
        pos = (a + rng.random()) / self.n
        v = self.a + pos * (self.b - self.a)
        v = math.exp(v) if self.log else v
        return float(min(max(v, self.dist.low), self.dist.high))

    def index(self, value):
        v = float(value)
        if self.log:
            v = math.log(v) if v > 0 else -math.inf
        pos = (v - self.a) / (self.b - self.a)
        return min(max(int(math.floor(pos * self.n)) if math.isfinite(pos) else
                       (0 if pos < 0 else self.n - 1), 0), self.n - 1)


def make_choices(dist, n_bins: int = N_BINS) -> Choices:
    """The ``Choices`` of an Optuna distribution (see the module docstring)."""
    if isinstance(dist, CategoricalDistribution):
        return CategoricalChoices(dist)
    if isinstance(dist, IntDistribution) or (isinstance(dist, FloatDistribution) and
                                             dist.step is not None):
        return GridChoices(dist, n_bins)
    if isinstance(dist, FloatDistribution):
        return ContinuousChoices(dist, n_bins)
    raise TypeError(f"RLSampler: expected a Categorical, Int or Float distribution, got "
                    f"{type(dist).__name__}")


def param_key(name: str, dist) -> str:
    """What a decision is about: the parameter's name and its distribution (a name asked
    with another range or choice list is another decision, with its own head)."""
    return f"{name}:{distribution_to_json(dist)}"


# -- the controller ---------------------------------------------------------------------

def _quietly(make):
    """``make()`` with minidl's generator left as it was: the controller's layers draw
    their default initialisation from it, which is replaced by seeded draws anyway."""
    generator = get_generator()
    state = generator.bit_generator.state
    try:
        return make()
    finally:
        generator.bit_generator.state = state


def _seeded_uniform_(module, seed: int, what: str) -> None:
    rng = np.random.default_rng([seed, *stable_digest(what)])
    for _, p in module.named_parameters():
        p.data[...] = rng.uniform(-INIT_RANGE, INIT_RANGE, size=p.data.shape)


def reinforce_loss(logits: np.ndarray, action: int, advantage: float,
                   entropy_weight: float):
    r"""One decision's share of the REINFORCE loss and its gradient w.r.t. the logits.

    ``logits`` ``(n,)``; returns ``(loss, dlogits)`` with
    ``loss = -A log pi_a - beta H(pi)`` and ``dlogits = A (pi - e_a) + beta pi (log pi + H)``
    (``pi = softmax(logits)``; see the module docstring).
    """
    shifted = logits - logits.max()
    log_pi = shifted - math.log(np.exp(shifted).sum())
    pi = np.exp(log_pi)
    entropy = -float((pi * log_pi).sum())
    loss = -advantage * float(log_pi[action]) - entropy_weight * entropy
    dlogits = advantage * pi
    dlogits[action] -= advantage
    dlogits += entropy_weight * pi * (log_pi + entropy)
    return loss, dlogits


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max())
    return e / e.sum()


class Controller(nn.Module):
    """The LSTM, the start vector, and per parameter an embedding table and a head.

    ``parameter_list()`` is every parameter in a fixed order (the LSTM's, the start's,
    then per parameter key in sorted order its embedding's and head's): the order the
    gradient's norm is summed in, the same in every process whatever order the
    parameters were met in.
    """

    def __init__(self, seed: int, hidden_size: int = HIDDEN_SIZE,
                 embedding_dim: int = EMBEDDING_DIM):
        super().__init__()
        self.seed = int(seed)
        self.hidden_size, self.embedding_dim = int(hidden_size), int(embedding_dim)
        self.lstm = _quietly(lambda: nn.LSTM(embedding_dim, hidden_size).double())
        self.start = _quietly(lambda: nn.Embedding(1, embedding_dim).double())
        _seeded_uniform_(self.lstm, self.seed, "lstm")
        _seeded_uniform_(self.start, self.seed, "start")
        self.embeddings, self.heads = {}, {}
        self.tables = nn.Module()            # registers them: parameters(), gradcheck
        self.on_new_parameters = None        # called with the new Parameters (the optimizer)

    def ensure(self, key: str, n: int) -> None:
        """Make the embedding table and head of decision ``key`` (``n`` choices) if new."""
        if key in self.heads:
            return
        emb = _quietly(lambda: nn.Embedding(n, self.embedding_dim).double())
        head = _quietly(lambda: nn.Linear(self.hidden_size, n).double())
        _seeded_uniform_(emb, self.seed, "embedding " + key)
        _seeded_uniform_(head, self.seed, "head " + key)
        self.embeddings[key], self.heads[key] = emb, head
        name = "".join(f"{w:08x}" for w in stable_digest(key))
        setattr(self.tables, f"embedding_{name}", emb)
        setattr(self.tables, f"head_{name}", head)
        if self.on_new_parameters is not None:
            self.on_new_parameters([emb.weight, head.weight, head.bias])

    def parameter_list(self) -> list:
        params = list(self.lstm.parameters()) + list(self.start.parameters())
        for key in sorted(self.heads):
            params += list(self.embeddings[key].parameters())
            params += list(self.heads[key].parameters())
        return params

    def zero_grad(self) -> None:
        for p in self.parameter_list():
            p.grad = None

    # -- one step at a time (sampling) ---------------------------------------------------
    def initial_state(self):
        """``(x, (h, c))`` before the first decision: the start vector, zero state."""
        zeros = np.zeros((1, 1, self.hidden_size))
        return self.start.weight.data[0].copy(), (zeros, zeros.copy())

    def step(self, x, hc, key: str) -> tuple:
        """One controller step on input ``x`` ``(E,)``: ``(logits (n,), (h, c))``."""
        _, hc = self.lstm(x.reshape(1, 1, -1), hc)
        return self.heads[key](hc[0][0])[0], hc

    def embed(self, key: str, a: int) -> np.ndarray:
        return self.embeddings[key].weight.data[a].copy()

    # -- a whole sequence (teacher forcing) ----------------------------------------------
    def sequence_loss(self, keys, actions, advantage: float, entropy_weight: float,
                      h0=None) -> float:
        """The REINFORCE loss of the decisions ``actions`` (one per key, in order),
        the controller reading them in (teacher forcing); keeps what
        ``sequence_backward`` needs.  ``h0`` ``(1, 1, H)``: the initial hidden state
        (default zeros, as when sampling; given, ``sequence_backward`` returns its
        gradient)."""
        T = len(keys)
        if T == 0 or len(actions) != T:
            raise ValueError(f"Controller: expected one action per key and at least one, got "
                             f"{len(actions)} actions for {T} keys")
        x = np.empty((T, 1, self.embedding_dim))
        x[0, 0] = self.start(np.zeros(1, np.int64))[0]
        prev = _positions(keys[:-1])             # embedding key -> steps reading it (+1)
        for key, steps in prev.items():
            x[np.array(steps) + 1, 0] = self.embeddings[key](
                np.array([actions[t] for t in steps]))
        hx = None if h0 is None else (h0, np.zeros_like(h0))
        out, _ = self.lstm(x, hx)
        hs = out[:, 0]
        heads = _positions(keys)
        loss, dlogits = 0.0, {}
        for key, steps in heads.items():
            logits = self.heads[key](hs[steps])
            rows = []
            for row, t in enumerate(steps):
                part, d = reinforce_loss(logits[row], actions[t], advantage, entropy_weight)
                loss += part
                rows.append(d)
            dlogits[key] = np.stack(rows)
        self._sequence = (T, prev, heads, dlogits, h0 is not None)
        return loss

    def sequence_backward(self):
        """Accumulate the loss's gradient into every parameter the sequence used; return
        dL/d h0 when ``h0`` was given (else None)."""
        T, prev, heads, dlogits, given_h0 = self._sequence
        dhs = np.zeros((T, 1, self.hidden_size))
        for key, steps in heads.items():
            dhs[steps, 0] += self.heads[key].backward(dlogits[key])
        dx = self.lstm.backward(dhs)
        self.start.backward(dx[0])
        for key, steps in prev.items():
            self.embeddings[key].backward(dx[np.array(steps) + 1, 0])
        return self.lstm.hx_grad[0] if given_h0 else None

    def probabilities(self, keys, actions) -> list:
        """The softmax of every step when the controller reads ``actions`` in: a list of
        ``(n_t,)`` arrays (teacher forcing; no gradient)."""
        x, hc = self.initial_state()
        probs = []
        for key, a in zip(keys, actions):
            logits, hc = self.step(x, hc, key)
            probs.append(softmax(logits))
            x = self.embed(key, a)
        return probs


def _positions(keys) -> dict:
    """``key -> [steps]`` in order of first appearance."""
    out = {}
    for t, key in enumerate(keys):
        out.setdefault(key, []).append(t)
    return out


class ReinforceLoss(nn.Module):
    """The loss of one trial's decisions as a minidl loss, e.g. for ``minidl.gradcheck``:
    ``forward(h0) -> loss`` and ``backward() -> dL/dh0``, the controller's parameters its
    parameters."""

    def __init__(self, controller: Controller, keys, actions, advantage: float,
                 entropy_weight: float):
        super().__init__()
        self.controller, self.keys, self.actions = controller, list(keys), list(actions)
        self.advantage, self.entropy_weight = float(advantage), float(entropy_weight)

    def forward(self, h0):
        return self.controller.sequence_loss(self.keys, self.actions, self.advantage,
                                             self.entropy_weight, h0=h0)

    def backward(self):
        return self.controller.sequence_backward()


# -- the policy learned from a history -------------------------------------------------

@dataclass
class Policy:
    """A controller, its optimizer and baseline, and the trials it has learned from."""

    controller: Controller
    optimizer: object
    settings: dict
    learned: list = field(default_factory=list)        # trial numbers, ascending
    baseline: float | None = None
    count: int = 0
    mean: float = 0.0
    sum_squares: float = 0.0
    updates: int = 0

    @classmethod
    def new(cls, seed: int, settings: dict) -> "Policy":
        controller = Controller(seed, settings["hidden_size"], settings["embedding_dim"])
        optimizer = optim.Adam(controller.parameter_list(), lr=settings["lr"])
        controller.on_new_parameters = lambda params: optimizer.add_param_group(
            {"params": params})
        return cls(controller, optimizer, settings)

    def advantage(self, reward: float) -> float:
        """``(reward - b) / s`` (see the module docstring); then updates ``b`` and ``s``."""
        decay = self.settings["baseline_decay"]
        if self.baseline is None:
            self.baseline = reward
        deviation = reward - self.baseline
        # Welford's running mean and sum of squared deviations of every reward so far
        self.count += 1
        delta = reward - self.mean
        self.mean += delta / self.count
        self.sum_squares += delta * (reward - self.mean)
        self.baseline = decay * self.baseline + (1 - decay) * reward
        scale = math.sqrt(self.sum_squares / self.count)
        return deviation / scale if scale > 0 else 0.0

    def learn(self, keys, actions, reward: float) -> None:
        """One REINFORCE step on a trial's decisions (see the module docstring)."""
        advantage = self.advantage(reward)
        c = self.controller
        c.zero_grad()
        c.sequence_loss(keys, actions, advantage, self.settings["entropy_weight"])
        c.sequence_backward()
        clip_grad_norm_([p for p in c.parameter_list() if p.grad is not None],
                        self.settings["max_grad_norm"])
        self.optimizer.step()
        self.updates += 1


@dataclass
class _TrialState:
    """A trial being sampled: the policy it uses, the controller's input and state for
    its next decision, and the parameters decided so far, in order."""

    policy: Policy
    x: np.ndarray
    hc: tuple
    names: list = field(default_factory=list)


class RLSampler(optuna.samplers.BaseSampler):
    """An Optuna sampler whose trials an LSTM controller proposes, learning by REINFORCE.

    Parameters
    ----------
    seed : int
        The controller's initial weights and every random draw (trial ``n``'s from
        ``(seed, n, decision index)``): processes with the same seed and history propose
        the same trial.
    n_bins : int
        Choices of a numeric parameter with more values than this (default 10).
    hidden_size, embedding_dim : int
        The LSTM's hidden units (32) and the decision embeddings' length (16).
    lr : float
        Adam's learning rate (0.05: a study here has tens of trials, not Zoph & Le's
        thousands, so the policy must move in a few steps).
    entropy_weight : float
        ``beta`` of the entropy bonus (0.01).
    baseline_decay : float
        Decay of the reward's moving average and variance (0.8: about the last 5 trials).
    max_grad_norm : float
        The gradient's norm is clipped to this (1.0).

    See the module docstring for the policy, the learning, and how the history is read.
    """

    def __init__(self, seed: int = 0, *, n_bins: int = N_BINS, hidden_size: int = HIDDEN_SIZE,
                 embedding_dim: int = EMBEDDING_DIM, lr: float = LEARNING_RATE,
                 entropy_weight: float = ENTROPY_WEIGHT, baseline_decay: float = BASELINE_DECAY,
                 max_grad_norm: float = MAX_GRAD_NORM):
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"RLSampler: expected seed to be an int, got {type(seed).__name__}")
        if seed < 0:
            raise ValueError(f"RLSampler: expected seed >= 0, got {seed}")
        for name, value in (("n_bins", n_bins), ("hidden_size", hidden_size),
                            ("embedding_dim", embedding_dim)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"RLSampler: expected {name} to be an int, got "
                                f"{type(value).__name__}")
            if value < (2 if name == "n_bins" else 1):
                raise ValueError(f"RLSampler: expected {name} >= "
                                 f"{2 if name == 'n_bins' else 1}, got {value}")
        for name, value, ok, what in (
                ("lr", lr, lambda v: v > 0, "> 0"),
                ("entropy_weight", entropy_weight, lambda v: v >= 0, ">= 0"),
                ("baseline_decay", baseline_decay, lambda v: 0 <= v < 1, "in [0, 1)"),
                ("max_grad_norm", max_grad_norm, lambda v: v > 0, "> 0")):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"RLSampler: expected {name} to be a number, got "
                                f"{type(value).__name__}")
            if not (math.isfinite(value) and ok(value)):
                raise ValueError(f"RLSampler: expected {name} {what}, got {value}")
        self.seed = int(seed)
        self.n_bins = int(n_bins)
        self.settings = dict(hidden_size=int(hidden_size), embedding_dim=int(embedding_dim),
                             lr=float(lr), entropy_weight=float(entropy_weight),
                             baseline_decay=float(baseline_decay),
                             max_grad_norm=float(max_grad_norm))
        self._policies = []              # most recently used first
        self._states = {}                # trial number -> _TrialState
        self._choices = {}               # param key -> Choices
        self._lock = threading.RLock()

    # -- Optuna's sampler interface -----------------------------------------------------
    def reseed_rng(self) -> None:
        """Nothing to reseed: every draw comes from ``(seed, trial number, decision)``."""

    def infer_relative_search_space(self, study, trial) -> dict:
        return {}

    def sample_relative(self, study, trial, search_space) -> dict:
        return {}

    def before_trial(self, study, trial) -> None:
        with self._lock:
            self._start(study, trial)

    def sample_independent(self, study, trial, param_name, param_distribution):
        with self._lock:
            state = self._states.get(trial.number)
            if state is None:                # e.g. this sampler was set mid-trial
                state = self._start(study, trial)
            self._read_given(state, trial, exclude=param_name)
            key, choices = self._decision(param_name, param_distribution)
            c = state.policy.controller
            c.ensure(key, choices.n)
            logits, state.hc = c.step(state.x, state.hc, key)
            rng = np.random.default_rng([self.seed, trial.number, len(state.names)])
            cdf = np.cumsum(softmax(logits))
            a = min(int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right")),
                    choices.n - 1)
            value = choices.value(a, rng)
            state.x = c.embed(key, a)
            state.names.append(param_name)
            return value

    def after_trial(self, study, trial, state, values) -> None:
        with self._lock:
            ours = self._states.pop(trial.number, None)
            if state not in (TrialState.COMPLETE, TrialState.PRUNED):
                return
            names = list(ours.names) if ours is not None else []
            names += [n for n in trial.params if n not in names]
            study._storage.set_trial_system_attr(trial._trial_id, ORDER_ATTR, names)

    # -- the policy --------------------------------------------------------------------
    def policy(self, study) -> Policy:
        """The policy learned from ``study``'s finished trials (see the module docstring)."""
        with self._lock:
            return self._sync(study)

    def decisions(self, trial):
        """``(keys, actions)`` of a finished trial, read back from its parameters in the
        order it asked for them; None when a value is not one of its choices."""
        order = [n for n in trial.system_attrs.get(ORDER_ATTR, []) if n in trial.params]
        order += [n for n in trial.params if n not in order]
        keys, actions = [], []
        for name in order:
            dist = trial.distributions[name]
            if dist.single():               # Optuna does not ask the sampler for these
                continue
            key, choices = self._decision(name, dist)
            a = choices.index(trial.params[name])
            if a is None:
                return None
            keys.append(key)
            actions.append(a)
        return keys, actions

    def _decision(self, name, dist):
        key = param_key(name, dist)
        choices = self._choices.get(key)
        if choices is None:
            choices = self._choices[key] = make_choices(dist, self.n_bins)
        return key, choices

    def _start(self, study, trial) -> _TrialState:
        if len(study.directions) > 1:
            raise ValueError(f"RLSampler: the rl sampler optimises a single objective; this "
                             f"study has {len(study.directions)} (use tpe, ga (NSGA-II), "
                             f"random, qmc or grid for several)")
        policy = self._sync(study)
        x, hc = policy.controller.initial_state()
        state = self._states[trial.number] = _TrialState(policy, x, hc)
        return state

    def _read_given(self, state, trial, exclude) -> None:
        """Read in the parameters the trial got without this sampler (enqueued, fixed)
        since its last decision: the controller's state then knows them too."""
        c = state.policy.controller
        for name, value in trial.params.items():
            if name == exclude or name in state.names:
                continue
            dist = trial.distributions[name]
            state.names.append(name)
            if dist.single():
                continue
            key, choices = self._decision(name, dist)
            a = choices.index(value)
            c.ensure(key, choices.n)
            _, state.hc = c.step(state.x, state.hc, key)
            state.x = c.embed(key, 0 if a is None else a)

    def _sync(self, study) -> Policy:
        """The policy that has learned from exactly ``study``'s finished trials."""
        finished = sorted(study.get_trials(deepcopy=False,
                                           states=(TrialState.COMPLETE, TrialState.PRUNED)),
                          key=lambda t: t.number)
        numbers = [t.number for t in finished]
        best = None
        for policy in self._policies:        # one whose history this one extends
            n = len(policy.learned)
            if numbers[:n] == policy.learned and (best is None or n > len(best.learned)):
                best = policy
        if best is None:
            best = Policy.new(self.seed, self.settings)
        else:
            self._policies.remove(best)
        self._policies.insert(0, best)
        del self._policies[CACHED_POLICIES:]
        direction = study.direction
        for trial in finished[len(best.learned):]:
            best.learned.append(trial.number)
            reward = _reward(trial, direction)
            decided = self.decisions(trial) if reward is not None else None
            if decided is None or not decided[0]:
                continue
            keys, actions = decided
            for key in keys:
                best.controller.ensure(key, self._choices[key].n)
            best.learn(keys, actions, reward)
        return best


def _reward(trial, direction) -> float | None:
    """``-value`` (``value`` when maximising) of a COMPLETE trial, of a PRUNED trial's last
    reported value; None when there is none or it is not finite."""
    if trial.state == TrialState.COMPLETE:
        value = trial.value
    elif trial.intermediate_values:
        value = trial.intermediate_values[max(trial.intermediate_values)]
    else:
        return None
    if value is None or not math.isfinite(value):
        return None
    return float(value) if direction == optuna.study.StudyDirection.MAXIMIZE else -float(value)
