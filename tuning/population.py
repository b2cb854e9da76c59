"""A population's trials in the storage: what population-based training writes, read back.

``tuning.pbt`` trains a population as one trial per member per interval; this module
holds what every reader of such a study needs without the training: the settings stored
in the study (``PBTSettings``, ``load_pbt_settings``), the user attributes that place a
trial in the population (``member``, ``generation``, ``parent``, ``exploited``,
``explored``), the snapshot of the population (``Population``), the checkpoint of a trial
(``checkpoint_path``) and the population's result (``final_trial``), which ``tuning
best`` and ``tuning retrain`` show for a population.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from optuna.trial import TrialState

from .errors import TuningError

SETTINGS_ATTR = "pbt"
MEMBER, GENERATION, PARENT = "member", "generation", "parent"
EXPLOITED, EXPLORED = "exploited", "explored"
DEFAULT_POPULATION = 8
DEFAULT_QUANTILE = 0.25
DEFAULT_RESAMPLE_PROBABILITY = 0.25
DEFAULT_FACTORS = (0.8, 1.2)
# A finished interval (``tuning.FINISHED_OK``; not imported: report reads this module)
FINISHED_OK = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass(frozen=True)
class PBTSettings:
    """How a population explores and exploits; stored in the study as ``pbt``.

    ``generations``: the number of intervals every member trains (None: until stopped);
    ``checkpoint_dir``: where the checkpoints are (an absolute path, see
    ``checkpoint_dir``).
    """

    population: int = DEFAULT_POPULATION
    quantile: float = DEFAULT_QUANTILE
    resample_probability: float = DEFAULT_RESAMPLE_PROBABILITY
    factors: tuple = DEFAULT_FACTORS
    max_madds: float | None = None
    generations: int | None = None
    checkpoint_dir: str | None = None

    def __post_init__(self):
        def number(name, value):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"PBT {name}: expected a number, got {type(value).__name__} "
                                f"{value!r}")
            if not math.isfinite(value):
                raise ValueError(f"PBT {name}: expected a finite number, got {value!r}")

        for name in ("population", "generations"):
            value = getattr(self, name)
            if value is None and name == "generations":
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"PBT {name}: expected an int, got {type(value).__name__} "
                                f"{value!r}")
        if self.population < 2:
            raise ValueError(f"PBT population: expected at least 2 members (one to copy "
                             f"from, one to copy into), got {self.population}")
        if self.generations is not None and self.generations < 1:
            raise ValueError(f"PBT generations: expected at least 1, got {self.generations}")
        number("quantile", self.quantile)
        if not 0 < self.quantile <= 0.5:
            raise ValueError(f"PBT quantile: expected a fraction in (0, 0.5] (the top and "
                             f"bottom quantiles must not overlap), got {self.quantile!r}")
        number("resample_probability", self.resample_probability)
        if not 0 <= self.resample_probability <= 1:
            raise ValueError(f"PBT resample_probability: expected a probability in [0, 1], "
                             f"got {self.resample_probability!r}")
        if not isinstance(self.factors, (tuple, list)) or len(self.factors) < 1:
            raise TypeError(f"PBT factors: expected a tuple of numbers such as (0.8, 1.2), "
                            f"got {self.factors!r}")
        for value in self.factors:
            number("factors", value)
            if value <= 0:
                raise ValueError(f"PBT factors: expected positive numbers such as 0.8, 1.2, "
                                 f"got {tuple(self.factors)!r}")
        object.__setattr__(self, "factors", tuple(float(f) for f in self.factors))
        if self.max_madds is not None:
            number("max_madds", self.max_madds)
            if self.max_madds <= 0:
                raise ValueError(f"PBT max_madds: expected a positive number of "
                                 f"multiply-adds, got {self.max_madds!r}")

    @property
    def quantile_size(self) -> int:
        """Members in the top (and in the bottom) quantile: ``ceil(P q)``, at most ``P // 2``."""
        return max(1, min(math.ceil(self.population * self.quantile), self.population // 2))

    def to_dict(self) -> dict:
        data = asdict(self)
        data["factors"] = list(self.factors)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "PBTSettings":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: (tuple(v) if k == "factors" else v) for k, v in data.items()
                      if k in known})


def load_pbt_settings(study) -> PBTSettings | None:
    """The study's ``PBTSettings``, or None for a study that is not a population."""
    data = study.user_attrs.get(SETTINGS_ATTR)
    return None if data is None else PBTSettings.from_dict(data)


@dataclass
class MemberResult:
    """One member's finished interval, as ``plan_generation`` ranks it."""

    member: int
    trial: int | None           # the trial number (None: no trial to copy from)
    value: float | None         # the validation error; None: no usable result
    params: dict = field(default_factory=dict)
    distributions: dict = field(default_factory=dict)

    @property
    def usable(self) -> bool:
        return self.value is not None and math.isfinite(self.value) and self.trial is not None


def is_interval(trial) -> bool:
    return MEMBER in trial.user_attrs and GENERATION in trial.user_attrs


def key_of(trial) -> tuple[int, int]:
    return int(trial.user_attrs[MEMBER]), int(trial.user_attrs[GENERATION])


class Population:
    """A snapshot of the population's trials: ``intervals[(member, generation)]``."""

    def __init__(self, study, pbt: PBTSettings):
        self.pbt = pbt
        self.trials = study.get_trials(deepcopy=False)
        self.intervals = {}
        for t in self.trials:
            if is_interval(t):
                self.intervals.setdefault(key_of(t), []).append(t)
        self.generation = max((g for _, g in self.intervals), default=None)

    def finished(self, member: int, generation: int):
        """The trial that finished this interval (COMPLETE or PRUNED), or None."""
        for t in self.intervals.get((member, generation), []):
            if t.state in FINISHED_OK:
                return t
        return None

    def live(self, member: int, generation: int) -> bool:
        return any(t.state in (TrialState.RUNNING, TrialState.WAITING)
                   for t in self.intervals.get((member, generation), []))

    def complete(self, generation: int) -> bool:
        return all(self.finished(m, generation) is not None
                   for m in range(self.pbt.population))

    def unfinished(self, generation: int) -> list:
        return [m for m in range(self.pbt.population) if self.finished(m, generation) is None]

    def n_finished(self) -> int:
        return sum(t.state in FINISHED_OK for t in self.trials)

    def result(self, member: int, generation: int) -> MemberResult:
        t = self.finished(member, generation)
        if t is None or t.state != TrialState.COMPLETE:
            return MemberResult(member, None if t is None else t.number, None)
        return MemberResult(member, t.number, t.value, dict(t.params), dict(t.distributions))

    def latest(self) -> list:
        """Each member's last finished interval that COMPLETEd (its latest weights)."""
        out = []
        for m in range(self.pbt.population):
            done = [t for (member, _), ts in self.intervals.items() if member == m
                    for t in ts if t.state == TrialState.COMPLETE]
            if done:
                out.append(max(done, key=lambda t: t.user_attrs[GENERATION]))
        return out


def checkpoint_path(pbt: PBTSettings, trial_number: int) -> Path:
    return Path(pbt.checkpoint_dir) / f"trial-{int(trial_number)}.npz"


def final_trial(study, pbt: PBTSettings):
    """The result of the population: among each member's last completed interval, the
    one with the lowest validation error (ties: the lower member).  A member whose last
    completed interval has no checkpoint any more (its later intervals all diverged, and
    older checkpoints were deleted) does not take part."""
    latest = Population(study, pbt).latest()
    if pbt.checkpoint_dir is not None and Path(pbt.checkpoint_dir).is_dir():
        latest = [t for t in latest if checkpoint_path(pbt, t.number).exists()]
    if not latest:
        raise TuningError(f"study {study.study_name!r}: no member has completed an interval "
                          f"yet")
    return min(latest, key=lambda t: (t.value, t.user_attrs[MEMBER]))
