"""``tuning best``: the best trial (or a multi-objective study's Pareto front).

For a study with one objective it also prints ``minidl.summary`` of the best trial's
model (its layers, output shapes, parameters and multiply-adds for one image);
``--json`` gives that table's content as ``"summary"``.
"""
from __future__ import annotations

from .. import report
from . import options

NAME = "best"
HELP = "the best value and hyperparameters, and the best model's layer summary"


def add_arguments(parser) -> None:
    options.add_study_location(parser)
    parser.add_argument("--json", action="store_true")


def run(args) -> int:
    study, settings = options.open_existing(args)
    best = None if report.is_multi(study) else report.best_dict(study, settings)
    if args.json:
        data = report.best_dict(study, settings) if best is None else dict(best)
        if best is not None:
            data["summary"] = report.model_summary(best["config"]).to_dict()
        print(report.dumps(data))
        return 0
    print(report.best_text(study, settings))
    if best is not None:
        print(f"Model of trial {best['trial']} (minidl.summary, one 1x28x28 image):")
        print(report.model_summary(best["config"]))
    return 0
