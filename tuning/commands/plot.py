"""``tuning plot``: a study's plots as PNG files."""
from __future__ import annotations

from . import options

NAME = "plot"
HELP = "write the study's plots as PNG"


def add_arguments(parser) -> None:
    options.add_study_location(parser)
    options.add_out_dir(parser, help="the folder the PNG files are written to (created if "
                        "missing). PNGs that an earlier `tuning plot` left there are replaced; "
                        "a file of the same name that it did not write is kept, and the "
                        "command refuses before drawing: give --overwrite, or another folder")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace PNGs in --out of the plots' names even when no earlier "
                        "`tuning plot` wrote them")


def run(args) -> int:
    from ..plots import plot_folder, write_plots  # noqa: PLC0415 - matplotlib only when plotting
    folder = plot_folder(args.out, overwrite=args.overwrite)
    folder.check()                      # before the study is read: nothing is drawn in vain
    study, _ = options.open_existing(args)
    written, skipped = write_plots(study, folder)
    for message in skipped:
        print(message)
    for path in written:
        print(f"wrote {path}")
    print(f"{len(written)} plots in {args.out}")
    return 0
