"""``tuning retrain``: train the chosen configuration on train+val, test it once."""
from __future__ import annotations

from .. import report
from ..argtypes import non_negative_int
from ..errors import TuningError
from . import options

NAME = "retrain"
HELP = "train the best configuration on train+val, test it once"


def add_arguments(parser) -> None:
    options.add_study_location(parser)
    options.add_running(parser)
    options.add_out_dir(parser, help="the folder for model.npz, result.json and the plots")
    parser.add_argument("--trial", type=non_negative_int, metavar="N",
                        help="retrain trial N's configuration (default: the best trial; "
                        "required for a study with several objectives, e.g. one of its "
                        "Pareto front, which `best` lists)")
    options.add_data_options(parser, epochs_help="epochs (default: the study's)",
                             train_size_help="subsample the 60000 training images "
                             "(default: all)", train_size_all=False, val_size=False)


def run(args) -> int:
    study, settings = options.open_existing(args)
    options.check_out_dir(args.out)
    from ..data import TRAIN_IMAGES  # noqa: PLC0415
    if args.train_size is not None and args.train_size > TRAIN_IMAGES:
        raise TuningError(f"--train-size {args.train_size}: there are {TRAIN_IMAGES} training "
                          f"images; give at most {TRAIN_IMAGES}, or leave it out for all")
    options.apply_threads(args)
    from ..retrain import choose_trial, retrain_best  # noqa: PLC0415 - the training stack
    choose_trial(study, args.trial)     # a wrong --trial is refused before any training
    bar, lines = options.progress_flags(args)
    result = retrain_best(study, settings, args.out, epochs=args.epochs,
                          train_size=args.train_size, device=args.device, progress=bar,
                          log=options.err if lines else None, trial=args.trial)
    print(f"retrained trial {result['trial']} ({settings.space}) on {result['train_size']} "
          f"images for {result['epochs']} epochs in {result['train_seconds']:.1f}s")
    in_study = ("" if result["validation_error"] is None else
                f"; validation error in the study {result['validation_error']:.4f}")
    if result.get("objectives"):
        in_study = "; in the study " + report.format_values(
            result["objectives"].values(), list(result["objectives"]))
    print(f"test accuracy: {result['test_accuracy']:.4f} (test error "
          f"{result['test_error']:.4f}{in_study})")
    from ..results import per_class_table  # noqa: PLC0415
    print(per_class_table(result["per_class"]))
    print(f"wrote {args.out}/: model.npz, result.json, confusion_matrix.png, "
          f"misclassified.png, model.txt")
    print(f"use it: tuning.load_model({str(args.out)!r}) returns the trained model")
    return 0
