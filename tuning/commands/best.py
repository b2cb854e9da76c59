"""``tuning best``: the best trial (or a multi-objective study's Pareto front)."""
from __future__ import annotations

from .. import report
from . import options

NAME = "best"
HELP = "the best value and hyperparameters"


def add_arguments(parser) -> None:
    options.add_study_location(parser)
    parser.add_argument("--json", action="store_true")


def run(args) -> int:
    study, settings = options.open_existing(args)
    if args.json:
        print(report.dumps(report.best_dict(study, settings)))
    else:
        print(report.best_text(study, settings))
    return 0
