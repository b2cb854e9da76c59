"""Creating, configuring and reopening studies: the functions every command builds on.

A study remembers how it was made.  ``StudySettings`` (space, epochs, data sizes, seed,
sampler, pruner, grid, objectives) is stored as the study user attribute ``tuning_settings`` when
the study is created, so ``run`` (resuming), ``best``, ``plot``, ``retrain`` and any
worker process rebuild the same objective, sampler and pruner from the storage alone.

    settings = StudySettings.from_options({"space": "cnn", "sampler": "tpe"})
    study = create_study(storage, "cnn-1", settings)
    study, settings = open_study(storage, "cnn-1")          # anywhere, later
    study.optimize(make_objective(settings), n_trials=10)
"""
from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, fields

import numpy as np
import optuna

from .spaces import LAB_GRID, SPACES, check_values, get_space
from .errors import StudyExistsError, StudyNotFoundError, TuningError
from .storage import study_names

SETTINGS_ATTR = "tuning_settings"


SAMPLERS = ("tpe", "random", "grid", "cmaes", "ga", "qmc", "rl")
PRUNERS = ("median", "hyperband", "none")
# What a study minimises: the validation error, and optionally the model's parameter count
# and its measured inference time per image (milliseconds, ``tuning.objective``).
OBJECTIVES = ("error", "params", "latency")
DEFAULT_OBJECTIVES = "error"
METRIC_NAMES = {"error": "error", "params": "params", "latency": "latency_ms"}
# Samplers that cannot optimise several objectives at once (Optuna raises at the first trial)
SINGLE_OBJECTIVE_SAMPLERS = ("cmaes", "rl")

# Defaults of a new study (chosen so that `make tune`, 20 lab-mlp trials, ends in about
# 5 minutes on 2 cores); every one is a command-line option.  Epochs and training size
# are the space's (``Space.epochs``, ``Space.train_size``; None: all 50 000).
DEFAULT_VAL_SIZE = 10_000
DEFAULT_SEED = 0
DEFAULT_SAMPLER = "tpe"
DEFAULT_PRUNER = "median"
GA_POPULATION_SIZE = 10


@dataclass(frozen=True)
class StudySettings:
    """Everything needed to rebuild a study's objective, sampler and pruner.

    ``train_size`` None means the whole training part of the split.  ``grid`` (grid
    sampler only) is ``{"axes": {param: [values]}, "fixed": {param: value}}``: the grid's
    axes, and the value every other parameter of the space is fixed to.
    """

    space: str
    epochs: int = 3
    train_size: int | None = None
    val_size: int = DEFAULT_VAL_SIZE
    seed: int = DEFAULT_SEED
    sampler: str = DEFAULT_SAMPLER
    pruner: str = DEFAULT_PRUNER
    grid: dict | None = None
    objectives: str = DEFAULT_OBJECTIVES

    def __post_init__(self):
        get_space(self.space)
        for name in ("epochs", "val_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise TuningError(f"{name} must be a positive int, got {value!r}")
        if self.train_size is not None and (isinstance(self.train_size, bool) or not
                                            isinstance(self.train_size, int) or
                                            self.train_size < 1):
            raise TuningError(f"train_size must be a positive int or None, got "
                              f"{self.train_size!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise TuningError(f"seed must be a non-negative int, got {self.seed!r}")
        if self.sampler not in SAMPLERS:
            raise TuningError(f"unknown sampler {self.sampler!r}; expected one of "
                              f"{', '.join(SAMPLERS)}")
        if self.pruner not in PRUNERS:
            raise TuningError(f"unknown pruner {self.pruner!r}; expected one of "
                              f"{', '.join(PRUNERS)}")
        if (self.sampler == "grid") != (self.grid is not None):
            raise TuningError("a grid is given exactly when the sampler is 'grid'")
        names = parse_objectives(self.objectives)
        if len(names) > 1:
            if self.sampler in SINGLE_OBJECTIVE_SAMPLERS:
                raise TuningError(
                    f"--sampler {self.sampler} cannot optimise several objectives "
                    f"(--objectives {self.objectives}); use tpe (multi-objective TPE), ga "
                    f"(NSGA-II), random, qmc or grid, or --objectives error")
            if self.pruner != "none":
                raise TuningError(
                    f"--pruner {self.pruner}: Optuna cannot prune a study with several "
                    f"objectives (--objectives {self.objectives}); leave --pruner out (it is "
                    f"then none) or give --objectives error")

    @property
    def objective_names(self) -> tuple:
        """``("error",)``, ``("error", "params")``, ``("error", "latency")``, ..."""
        return parse_objectives(self.objectives)

    @property
    def multi_objective(self) -> bool:
        return len(self.objective_names) > 1

    @property
    def metric_names(self) -> list:
        """The objectives' names as the study stores them (``latency`` is ``latency_ms``)."""
        return [METRIC_NAMES[n] for n in self.objective_names]

    def check_data_sizes(self, n_images: int | None = None) -> None:
        """TuningError unless the data holds ``val_size`` + ``train_size`` images.

        ``n_images``: the training images there are (default: Fashion-MNIST's 60 000).
        Checked before a study is stored and before its data is split, so an asked-for
        size is never silently replaced by a smaller one.
        """
        from .data import TRAIN_IMAGES  # noqa: PLC0415
        n = TRAIN_IMAGES if n_images is None else int(n_images)
        if self.val_size >= n:
            raise TuningError(f"--val-size {self.val_size}: the training set has {n} images "
                              f"and some must remain for training; give at most {n - 1}")
        if self.train_size is not None and self.train_size > n - self.val_size:
            raise TuningError(f"--train-size {self.train_size}: the training part holds "
                              f"{n - self.val_size} images ({n} less --val-size "
                              f"{self.val_size}); give at most {n - self.val_size}, or all")

    def to_dict(self) -> dict:
        data = asdict(self)
        # a single-objective study is stored as before the setting existed (and reads back
        # the same): older versions of the package can still open it
        if data["objectives"] == DEFAULT_OBJECTIVES:
            del data["objectives"]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "StudySettings":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def from_options(cls, options: dict) -> "StudySettings":
        """Settings of a new study from command-line options (None: not given).

        ``train_size`` may be ``"all"``; ``grid_file`` is a path to a grid JSON file
        (see ``resolve_grid``).
        """
        space = options.get("space")
        if space is None:
            raise TuningError(f"a new study needs --space (one of {', '.join(SPACES)})")
        space_defaults = get_space(space)
        objectives = ",".join(parse_objectives(options.get("objectives") or DEFAULT_OBJECTIVES))
        multi = objectives != DEFAULT_OBJECTIVES
        sampler = options.get("sampler") or DEFAULT_SAMPLER
        train_size = options.get("train_size")
        if train_size is None:
            train_size = space_defaults.train_size
        elif train_size == "all":
            train_size = None
        grid = None
        if sampler == "grid":
            grid = resolve_grid(space, read_grid_file(options.get("grid_file")))
        elif options.get("grid_file") is not None:
            raise TuningError("--grid-file needs --sampler grid")
        settings = cls(space=space,
                   epochs=_given(options, "epochs", space_defaults.epochs),
                   train_size=train_size,
                   val_size=_given(options, "val_size", DEFAULT_VAL_SIZE),
                   seed=_given(options, "seed", DEFAULT_SEED),
                   sampler=sampler,
                   pruner=_given(options, "pruner", "none" if multi else DEFAULT_PRUNER),
                   grid=grid, objectives=objectives)
        settings.check_data_sizes()
        return settings

    def check_options(self, options: dict, study_name: str) -> None:
        """Refuse options that contradict the stored settings (None: not given)."""
        given = {k: v for k, v in (options or {}).items() if v is not None}
        problems = []
        for name in ("space", "epochs", "val_size", "seed", "sampler", "pruner"):
            if name in given and given[name] != getattr(self, name):
                problems.append(f"--{name.replace('_', '-')} {given[name]} (the study has "
                                f"{getattr(self, name)})")
        if "train_size" in given:
            wanted = None if given["train_size"] == "all" else given["train_size"]
            if wanted != self.train_size:
                problems.append(f"--train-size {given['train_size']} (the study has "
                                f"{'all' if self.train_size is None else self.train_size})")
        if "objectives" in given:
            wanted = ",".join(parse_objectives(given["objectives"]))
            if wanted != self.objectives:
                problems.append(f"--objectives {given['objectives']} (the study has "
                                f"{self.objectives})")
        if "grid_file" in given:
            if self.grid is None:
                problems.append("--grid-file (the study's sampler is not grid)")
            elif resolve_grid(self.space, read_grid_file(given["grid_file"])) != self.grid:
                problems.append(f"--grid-file {given['grid_file']} (a different grid)")
        if problems:
            raise TuningError(
                f"study {study_name!r} exists with other settings: " + "; ".join(problems) +
                ". Leave these options out to continue it, or choose a new --study-name.")


def parse_objectives(text) -> tuple:
    """``"error,params"`` -> ``("error", "params")``; TuningError for anything else.

    The validation error always comes first (plots, ``retrain`` and the tables rely on
    it); ``params`` and ``latency`` may follow, each at most once.
    """
    if not isinstance(text, str) or not text.strip():
        raise TuningError(f"--objectives: expected e.g. error or error,params, got {text!r}")
    names = tuple(part.strip().lower() for part in text.split(","))
    unknown = [n for n in names if n not in OBJECTIVES]
    if unknown:
        raise TuningError(f"--objectives {text}: unknown objective {unknown[0]!r}; expected "
                          f"error, error,params or error,latency (or error,params,latency)")
    if names[0] != "error" or len(set(names)) != len(names):
        raise TuningError(f"--objectives {text}: the validation error comes first and each "
                          f"objective once, e.g. error,params or error,latency")
    return names


def _given(options, name, default):
    value = options.get(name)
    return default if value is None else value


# -- grid ---------------------------------------------------------------------------

def read_grid_file(path) -> dict | None:
    """The JSON object in ``path`` (None: no file)."""
    if path is None:
        return None
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError as exc:
        raise TuningError(f"cannot read grid file {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise TuningError(f"grid file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not data:
        raise TuningError(f"grid file {path}: expected a JSON object mapping parameter "
                          f"names to lists of values, got {type(data).__name__}")
    return data


def resolve_grid(space_name: str, grid: dict | None) -> dict:
    """``{"axes": ..., "fixed": ...}`` for a grid study of ``space_name``.

    ``grid`` maps a parameter name to a list of values (an axis of the grid) or to a
    single value (the parameter is fixed).  None means the lab's grid: ``learn_rate``
    {0.01, 0.001, 0.0001} x ``batch_size`` {32, 64, 128}.  Every parameter of the space
    that is not an axis is fixed: to the grid's value when given, else to the space's
    default.
    """
    space = get_space(space_name)
    grid = LAB_GRID if grid is None else grid
    unknown = sorted(set(grid) - set(space.defaults))
    if unknown:
        raise TuningError(f"grid: unknown parameter(s) {', '.join(unknown)} for space "
                          f"{space_name!r}; its parameters are {', '.join(space.param_names)}")
    axes, fixed = {}, {}
    for name, value in grid.items():
        if isinstance(value, list):
            if not value:
                raise TuningError(f"grid: the list of values for {name!r} is empty")
            axes[name] = value
        else:
            fixed[name] = value
    if not axes:
        raise TuningError("grid: expected at least one parameter with a list of values")
    for name, value in space.defaults.items():
        if name not in axes and name not in fixed:
            fixed[name] = value
    # Every value must be one a trial can use, inside the space: a point that fails would
    # only end FAIL, and one outside the space's distributions confuses the samplers.
    for name, values in axes.items():
        for value in values:
            try:
                check_values(space_name, {**fixed, name: value})
            except ValueError as exc:
                raise TuningError(f"grid: {name} {value!r} cannot be used: {exc}") from None
    try:
        check_values(space_name, fixed)
    except ValueError as exc:
        raise TuningError(f"grid: {exc}") from None
    return {"axes": axes, "fixed": fixed}


def grid_size(settings: StudySettings) -> int:
    return int(np.prod([len(v) for v in settings.grid["axes"].values()]))


# -- samplers and pruners ---------------------------------------------------------------

def sampler_seed(study_seed: int, *salt: int) -> int:
    """A seed derived from the study's seed and ``salt`` (e.g. trials done, worker rank).

    Resuming a study must not replay the random draws of its first session, so the
    samplers whose draws depend on the seed alone get a seed salted with the number of
    trials already in the study.
    """
    return int(np.random.SeedSequence([int(study_seed), *map(int, salt)]).generate_state(1)[0])


def make_sampler(settings: StudySettings, *salt: int):
    """The Optuna sampler ``settings.sampler`` names (Optuna 5 API)."""
    seed = sampler_seed(settings.seed, *salt)
    name = settings.sampler
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name == "tpe":
            # Multivariate (Optuna 5's default) with groups: the conditional per-layer
            # parameters of mlp/cnn are modelled jointly with the parameters they occur with.
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True)
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if name == "grid":
            # The grid's own seed only shuffles the order; visited points are read from the
            # storage, so a resumed grid study continues where it stopped.
            grid = optuna.samplers.GridSampler(settings.grid["axes"], seed=settings.seed)
            return optuna.samplers.PartialFixedSampler(settings.grid["fixed"], grid)
        if name == "cmaes":
            _require("cmaes", "the cmaes sampler")
            return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
        if name == "ga":
            return optuna.samplers.NSGAIISampler(population_size=GA_POPULATION_SIZE, seed=seed)
        if name == "qmc":
            _require("scipy", "the qmc sampler")
            # Scrambled Sobol points; the point index is kept in the study, so every
            # session must use the same (unsalted) seed to continue one sequence.
            return optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True,
                                              seed=settings.seed,
                                              warn_independent_sampling=False)
        if name == "rl":
            from .rl_sampler import RLSampler  # noqa: PLC0415 - builds on minidl
            # Unsalted: its policy is learned from the study's history and trial n's draws
            # come from (seed, n), so every session and worker must share the seed.
            return RLSampler(seed=sampler_seed(settings.seed))
    raise TuningError(f"unknown sampler {name!r}")


def _require(module: str, what: str) -> None:
    try:
        __import__(module)
    except ImportError:
        raise TuningError(f"{what} needs the '{module}' package: pip install {module}") from None


def make_pruner(settings: StudySettings):
    if settings.pruner == "median":
        # Not after the first epoch alone: it reflects the learning rate more than the
        # error a trial ends with.
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    if settings.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=settings.epochs,
                                              reduction_factor=3)
    return optuna.pruners.NopPruner()


# -- creating and opening ----------------------------------------------------------------

def load_settings(study) -> StudySettings:
    data = study.user_attrs.get(SETTINGS_ATTR)
    if data is None:
        raise TuningError(f"study {study.study_name!r} has no '{SETTINGS_ATTR}' user attribute: "
                          f"it was not created by `tuning`")
    return StudySettings.from_dict(data)


def create_study(storage, study_name: str, settings: StudySettings, *salt: int):
    """Create a new study with ``settings`` stored in it; TuningError if it exists."""
    try:
        study = optuna.create_study(storage=storage, study_name=study_name,
                                    directions=["minimize"] * len(settings.objective_names),
                                    sampler=make_sampler(settings, *salt),
                                    pruner=make_pruner(settings))
    except optuna.exceptions.DuplicatedStudyError:
        raise StudyExistsError(f"study {study_name!r} already exists in this storage") from None
    study.set_user_attr(SETTINGS_ATTR, settings.to_dict())
    if settings.multi_objective:   # plots and Optuna's own tools then name the axes
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(settings.metric_names)
    return study


def find_study(storage, study_name: str, options: dict | None = None):
    """``(study, settings)`` of an existing study, or ``(None, settings)`` for a new one.

    Nothing is written: a new study's ``settings`` come from ``options`` and are checked
    (``StudySettings.from_options``), so a command can check everything else it needs
    (the data, the values to enqueue) before it calls ``create_study``.
    """
    try:
        return open_study(storage, study_name, options)
    except StudyNotFoundError:
        if study_name is None:
            raise
    return None, StudySettings.from_options(options or {})


def create_or_open(storage, study_name: str, settings: StudySettings, options: dict | None,
                   *salt: int):
    """Create the study ``find_study`` did not find; if another process created it
    meanwhile, open that one (the options must agree with it).  ``(study, settings)``."""
    try:
        return create_study(storage, study_name, settings, *salt), settings
    except StudyExistsError:
        return open_study(storage, study_name, options)


def open_study(storage, study_name: str | None, options: dict | None = None,
               create: bool = False, salt=None):
    """Open a study (creating it from ``options`` when ``create``); ``(study, settings)``.

    The sampler and pruner are rebuilt from the stored settings; ``salt`` (a tuple of
    ints) salts the sampler's seed, by default with the number of trials in the study.
    Options given for an existing study must agree with its settings.
    """
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except (KeyError, ValueError) as exc:
        # KeyError: no such name; ValueError: no name given and not exactly one study.
        if not create or study_name is None:
            names = study_names(storage)
            raise StudyNotFoundError(
                (f"study {study_name!r} not found" if study_name else str(exc)) +
                (f"; studies in this storage: {', '.join(names)}" if names else
                 "; this storage has no studies")) from None
        settings = StudySettings.from_options(options or {})
        try:
            study = create_study(storage, study_name, settings, *(salt or (0,)))
            return study, settings
        except StudyExistsError:  # another process created it in between: open that one
            study = optuna.load_study(study_name=study_name, storage=storage)
    settings = load_settings(study)
    settings.check_options(options, study.study_name)
    if salt is None:
        salt = (len(study.get_trials(deepcopy=False)),)
    study.sampler = make_sampler(settings, *salt)
    study.pruner = make_pruner(settings)
    return study, settings


def make_objective(settings: StudySettings, device: str = "cpu", progress=False, log=None):
    """The ``Objective`` a study's settings describe, with its data loaded."""
    from .data import study_data  # noqa: PLC0415 - reading the data is slow; only when needed
    from .objective import Objective  # noqa: PLC0415 - imports minidl's training stack

    train, val = study_data(settings.val_size, settings.seed, settings.train_size)
    return Objective(train, val, settings.epochs, space=settings.space, seed=settings.seed,
                     device=device, progress=progress, log=log,
                     objectives=settings.objective_names)


def load_any_study(storage, study_name: str):
    """Any study (also one not made by ``tuning``), or ``StudyNotFoundError``."""
    try:
        return optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        names = study_names(storage)
        raise StudyNotFoundError(
            f"study {study_name!r} not found; " + (f"studies in this storage: {', '.join(names)}"
                                                   if names else "this storage has no studies")
        ) from None


def settings_text(settings: StudySettings) -> str:
    """``space cnn, sampler tpe, pruner median, 3 epochs, ...``: a study's settings in a line."""
    train_size = "all" if settings.train_size is None else settings.train_size
    text = (f"space {settings.space}, sampler {settings.sampler}, pruner {settings.pruner}, "
            f"{settings.epochs} epochs, train {train_size} / val {settings.val_size} images, "
            f"seed {settings.seed}")
    if settings.multi_objective:
        text += (f"; objectives {', '.join(settings.metric_names)} (no pruning with several "
                 f"objectives)")
    return text
