"""``tuning plot``: a study's plots as PNG files."""
from __future__ import annotations

from . import options

NAME = "plot"
HELP = "write the study's plots as PNG"


def add_arguments(parser) -> None:
    options.add_study_location(parser)
    options.add_out_dir(parser, help="the folder the PNG files are written to")


def run(args) -> int:
    study, _ = options.open_existing(args)
    from ..plots import write_plots  # noqa: PLC0415 - matplotlib only when plotting
    written, skipped = write_plots(study, args.out)
    for message in skipped:
        print(message)
    for path in written:
        print(f"wrote {path}")
    print(f"{len(written)} plots in {args.out}")
    return 0
