"""``tuning darts``: differentiable architecture search (DARTS, first order) of the cnn
space; the logic is ``tuning.darts``."""
from __future__ import annotations

import json
import math
import sys
import time

from ..argtypes import positive_int
from ..errors import TuningError
from . import options

# The defaults of tuning.darts (SPACE, DEFAULT_ARCH_LR), repeated here so that building the
# parser does not import the training stack; a test checks they agree.
SPACE = "cnn"
DEFAULT_ARCH_LR = 3e-3
# Names DARTS decides (kernel_l0..2, pool_type): --params must leave them out.
SEARCHED_PREFIXES = ("kernel_l", "pool_type")

NAME = "darts"
HELP = "search the cnn space's kernel sizes and pooling by gradient (DARTS, first order)"
DESCRIPTION = (
    "Train one supernet whose every block mixes the convolutions of kernel 3, 5 and 7 and "
    "whose poolings mix max and average pooling, with softmax weights over architecture "
    "parameters: the network's weights on the training split, the architecture parameters "
    "on the validation split, alternating (first-order DARTS, Liu et al. 2019). The data "
    "options are run's. Prints and writes the derived configuration as the cnn space's "
    "parameters (OUT/params.json: `retrain --params` trains it, `enqueue --params` queues it "
    "into a study), OUT/darts.json and a plot of "
    "the architecture weights (OUT/alphas.png). Ctrl-C or SIGTERM stops the search and saves "
    "what it learned so far (exit status 130).")


def add_arguments(parser) -> None:
    parser.add_argument("--space", choices=(SPACE,), default=SPACE,
                        help="the space searched (only cnn: its kernel sizes and pool type)")
    options.add_data_options(parser, epochs_help="epochs of the search: passes over the "
                             "training part, each step a validation batch for the "
                             "architecture and a training batch for the weights (default 3)")
    options.add_seed(parser, help="data split, weight initialisation and batch order seed "
                     "(default 0)")
    parser.add_argument("--threads", type=positive_int, metavar="N",
                        help="BLAS and Numba threads (default: minidl's default)")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch progress lines")
    parser.add_argument("--params", metavar="JSON|FILE",
                        help="the parameters that are not searched, as for enqueue (a JSON "
                        "object or a file holding one; left out: the cnn space's defaults, "
                        "2 blocks of 32 and 64 filters, Adam 1e-3, batch 64, ...); kernel_l* "
                        "and pool_type are searched")
    parser.add_argument("--arch-lr", type=float, default=DEFAULT_ARCH_LR, metavar="LR",
                        help=f"Adam learning rate of the architecture parameters (default "
                        f"{DEFAULT_ARCH_LR:g}; the paper's 3e-4 is for 50 epochs)")
    options.add_result_folder(parser, "params.json, darts.json and alphas.png", "darts search",
                              "searching")


def _base(text):
    """The base parameters from ``--params`` (None: the space's defaults)."""
    from ..darts import base_params  # noqa: PLC0415
    given = None
    if text is not None:
        given = options.parse_params(text)
        searched = sorted(n for n in given if n.startswith(SEARCHED_PREFIXES))
        if searched:
            raise TuningError(f"--params: {', '.join(searched)}: searched by DARTS; leave "
                              f"them out")
    try:
        return base_params(given)
    except ValueError as exc:
        raise TuningError(f"--params: {exc}") from None


def run(args) -> int:
    if not (math.isfinite(args.arch_lr) and args.arch_lr > 0):
        raise TuningError(f"--arch-lr {args.arch_lr}: expected a finite number > 0")
    base = _base(args.params)
    from ..study import StudySettings  # noqa: PLC0415
    settings = StudySettings.from_options({"space": args.space, "epochs": args.epochs,
                                           "train_size": args.train_size,
                                           "val_size": args.val_size, "seed": args.seed})
    out = options.check_out_dir(args.out)
    options.apply_threads(args)
    from .. import darts  # noqa: PLC0415 - the training stack
    from ..interrupts import interrupt_signals  # noqa: PLC0415
    folder = darts.output_folder(out, overwrite=args.overwrite)
    folder.check()                  # before searching: a refusal loses nothing
    # SIGTERM stops the command as Ctrl-C does: while loading the data (exit status 130),
    # or during the search, which then saves what it learned; after the first signal its
    # repeats are ignored, so saving is not cut short
    with interrupt_signals():
        return _search_and_save(args, base, settings, out, folder)


def _search_and_save(args, base, settings, out, folder) -> int:
    import minidl  # noqa: PLC0415 - the training stack
    from .. import darts  # noqa: PLC0415
    from ..data import study_data  # noqa: PLC0415
    from ..report import format_params, tuning_command  # noqa: PLC0415

    t0 = time.perf_counter()
    train, val = study_data(settings.val_size, settings.seed, settings.train_size)
    load_seconds = time.perf_counter() - t0
    fixed = {k: v for k, v in darts.derived_params(base, {}).items()
             if not k.startswith(SEARCHED_PREFIXES)}
    print(f"DARTS (first order) on the cnn space: {settings.epochs} epochs, seed "
          f"{settings.seed}, arch lr {args.arch_lr:g}; searching "
          f"{', '.join(darts.searched_names(base))}; fixed: {format_params(fixed)}")
    print(f"data: {len(train)} training / {len(val)} validation images "
          f"({load_seconds:.1f}s to load)", flush=True)
    bar, lines = options.progress_flags(args)
    status = _StatusLine() if bar else None
    log = None if args.quiet else (status.log if bar else options.err)
    result = darts.search(base, train, val, settings.epochs, seed=settings.seed,
                          arch_lr=args.arch_lr, log=log, progress=status)
    if status is not None:
        status.clear()
    darts.save(result, folder, {
        "epochs": settings.epochs, "epochs_done": len(result.epochs_done),
        "train_size": len(train), "val_size": len(val), "seed": settings.seed,
        "arch_lr": args.arch_lr, "arch_betas": list(darts.ARCH_BETAS),
        "arch_weight_decay": darts.ARCH_WEIGHT_DECAY, "threads": minidl.get_num_threads(),
        "load_seconds": load_seconds, "command": "tuning " + " ".join(sys.argv[1:])})
    what = "interrupted after" if result.interrupted else "searched"
    print(f"{what} {len(result.epochs_done)} epochs ({result.steps} steps) in "
          f"{result.seconds:.1f}s; architecture weights: {darts.weights_text(result.choices)}")
    print(f"derived configuration: {format_params(result.chosen)}")
    print(f"parameters (cnn space): {json.dumps(result.params)}")
    print(f"wrote {out}/: params.json, darts.json, alphas.png")
    print(f"train and test it: {tuning_command()} retrain --params {out}/params.json "
          f"--space cnn --out DIR")
    print(f"seed a study with it: {tuning_command()} enqueue --study-name NAME --space cnn "
          f"--params {out}/params.json")
    if result.interrupted:
        options.err(f"\ninterrupted: the search so far ({len(result.epochs_done)} full epochs, "
                    f"{result.steps} steps) and its derived configuration are saved in {out}/")
        return options.EXIT_INTERRUPTED
    return 0


class _StatusLine:
    """One status line on a terminal's standard error, rewritten in place; ``log`` prints a
    line above it."""

    WIDTH = 150

    def __call__(self, text: str) -> None:
        print("\r  " + text[:self.WIDTH].ljust(self.WIDTH), end="", file=sys.stderr,
              flush=True)

    def clear(self) -> None:
        print("\r" + " " * (self.WIDTH + 2) + "\r", end="", file=sys.stderr, flush=True)

    def log(self, text: str) -> None:
        self.clear()
        options.err(text)
