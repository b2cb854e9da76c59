"""``tuning trials``: every trial of a study, as a table, CSV or JSON."""
from __future__ import annotations

import sys

from .. import report
from . import options

NAME = "trials"
HELP = "every trial as a table"


def add_arguments(parser) -> None:
    options.add_study_location(parser)
    fmt = parser.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_true", help="CSV on standard output")
    fmt.add_argument("--json", action="store_true",
                     help="strict JSON on standard output (a NaN or infinite number is "
                     'written as the string "NaN", "Infinity" or "-Infinity")')


def run(args) -> int:
    study, settings = options.open_existing(args)
    if args.csv:
        report.write_trials_csv(study, settings, sys.stdout)
    elif args.json:
        print(report.trials_json(study))
    else:
        print(report.trials_table(study, settings))
        print(report.summary_line(study))
    return 0
