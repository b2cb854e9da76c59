"""``tuning studies``: the studies in a storage, one line each."""
from __future__ import annotations

from pathlib import Path

from ..errors import TuningError
from ..storage import open_storage, show_url, study_names
from . import options

NAME = "studies"
HELP = "the studies in a storage: trials, finished, best value"
DESCRIPTION = ("List the studies in --storage (or $OPTUNA_STORAGE), or, with neither, in "
               "every journal file of ./studies/.")


def add_arguments(parser) -> None:
    options.add_storage(parser, help="an Optuna journal file or storage URL (default: "
                        "$OPTUNA_STORAGE if set, else every journal file of ./studies/)")


def run(args) -> int:
    """One line per study: its name, where it is, trials, finished trials, best value."""
    import optuna  # noqa: PLC0415
    from optuna.trial import TrialState  # noqa: PLC0415

    if args.storage is not None:
        places = [(args.storage, open_storage(args.storage, None, must_exist=True,
                                              write=False))]
    else:
        files = sorted(Path("studies").glob("*.log"))
        if not files:
            raise TuningError("no studies here: ./studies/ holds no journal file; give "
                              "--storage (or set OPTUNA_STORAGE)")
        places = [(str(f), open_storage(str(f), None, must_exist=True, write=False))
                  for f in files]
    rows = []
    for where, storage in places:
        for name in study_names(storage):
            study = optuna.load_study(study_name=name, storage=storage)
            trials = study.get_trials(deepcopy=False)
            finished = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
            if len(study.directions) > 1:    # several objectives: the Pareto front's size
                front = len(study.best_trials)
                best = f"front of {front}" if front else "-"
            else:
                try:
                    best = f"{study.best_value:.4f}"
                except (ValueError, RuntimeError):    # no complete trial yet
                    best = "-"
            rows.append((name, show_url(where), str(len(trials)), str(finished), best))
    header = ("study", "storage", "trials", "finished", "best value")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0
