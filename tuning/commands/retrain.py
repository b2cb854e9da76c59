"""``tuning retrain``: train the chosen configuration on train+val, test it once.

The configuration is a study's best trial, its trial ``--trial N``, or, without a study,
a space's parameters given with ``--params`` (e.g. ``tuning darts``'s ``params.json``).
``--seed S`` sets the weight initialisation and batch order (default: the study's seed;
0 with ``--params``), so a configuration can be retrained with several seeds.  It
prints ``minidl.summary`` of the retrained model.

``--out DIR``: a file there of one of the names a retrain writes is replaced only when an
earlier retrain left it (unchanged since); any other is kept and the command refuses
before training, unless ``--overwrite`` (``tuning.outputs``).  Ctrl-C or SIGTERM stops
the retrain (exit status 130); each file is renamed into place whole, so the folder
never holds half a file.
"""
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
    options.add_result_folder(parser, "model.npz, result.json, confusion_matrix.png, "
                              "misclassified.png and model.txt", "retrain", "training")
    parser.add_argument("--trial", type=non_negative_int, metavar="N",
                        help="retrain trial N's configuration (default: the best trial; "
                        "required for a study with several objectives, e.g. one of its "
                        "Pareto front, which `best` lists)")
    parser.add_argument("--params", metavar="JSON|FILE",
                        help="retrain these parameters of --space instead of a study's trial "
                        "(a JSON object, or a file holding one, such as `tuning darts`'s "
                        "params.json; parameters left out take the space's defaults)")
    options.add_space(parser, help="with --params: the space the parameters belong to")
    options.add_data_options(parser, epochs_help="epochs (default: the study's; with "
                             "--params the space's default for a study)",
                             train_size_help="subsample the 60000 training images "
                             "(default: all)", train_size_all=False, val_size=False)
    options.add_seed(parser, help="weight initialisation and batch order seed (default: the "
                     "study's seed; 0 with --params)")


def run(args) -> int:
    if args.params is None:
        if args.space is not None:
            raise TuningError("--space is for --params; a study's retrain uses the study's "
                              "space")
        study, settings = options.open_existing(args)
    else:
        if args.study_name is not None or args.trial is not None:
            raise TuningError("--params retrains the given parameters without a study: leave "
                              "out --study-name and --trial (or leave out --params)")
        if args.space is None:
            raise TuningError("--params needs --space, the space the parameters belong to")
        study = settings = None
        params = options.parse_params(args.params)
        from ..spaces import check_values  # noqa: PLC0415
        try:
            for message in check_values(args.space, params, outside_range=True):
                options.err(f"warning: {message}")
        except ValueError as exc:
            raise TuningError(f"--params: {exc}") from None
    options.check_out_dir(args.out)
    from ..outputs import OutputFolder  # noqa: PLC0415
    from ..results import RETRAIN_FILES  # noqa: PLC0415
    folder = OutputFolder(args.out, "retrain", RETRAIN_FILES, overwrite=args.overwrite)
    folder.check()
    from ..data import TRAIN_IMAGES  # noqa: PLC0415
    if args.train_size is not None and args.train_size > TRAIN_IMAGES:
        raise TuningError(f"--train-size {args.train_size}: there are {TRAIN_IMAGES} training "
                          f"images; give at most {TRAIN_IMAGES}, or leave it out for all")
    options.apply_threads(args)
    from ..retrain import choose_trial, retrain_best, retrain_params  # noqa: PLC0415
    from ..interrupts import interrupt_signals  # noqa: PLC0415
    bar, lines = options.progress_flags(args)
    common = dict(epochs=args.epochs, train_size=args.train_size, device=args.device,
                  progress=bar, log=options.err if lines else None, seed=args.seed)
    if study is not None:
        choose_trial(study, args.trial)     # a wrong --trial is refused before any training
    try:
        with interrupt_signals():           # SIGTERM stops it as Ctrl-C does
            if study is None:
                result = retrain_params(args.space, params, folder,
                                        **{**common, "seed": args.seed or 0})
                what = f"the given {args.space} configuration"
            else:
                result = retrain_best(study, settings, folder, trial=args.trial, **common)
                what = f"trial {result['trial']} ({settings.space})"
    except KeyboardInterrupt:
        done = (f"wrote only {', '.join(folder.written)} before it stopped"
                if folder.written else "nothing was written")
        options.err(f"\ninterrupted: the retrain did not finish; {done} in {args.out}/")
        return options.EXIT_INTERRUPTED
    print(f"retrained {what} on {result['train_size']} images for {result['epochs']} epochs "
          f"(seed {result['seed']}) in {result['train_seconds']:.1f}s")
    in_study = ("" if result["validation_error"] is None else
                f"; validation error in the study {result['validation_error']:.4f}")
    if result.get("objectives"):
        in_study = "; in the study " + report.format_values(
            result["objectives"].values(), list(result["objectives"]))
    print(f"test accuracy: {result['test_accuracy']:.4f} (test error "
          f"{result['test_error']:.4f}{in_study})")
    from ..results import per_class_table  # noqa: PLC0415
    print(per_class_table(result["per_class"]))
    print("model (minidl.summary, one 1x28x28 image):")
    print(report.model_summary(result["config"]))
    print(f"wrote {args.out}/: model.npz, result.json, confusion_matrix.png, "
          f"misclassified.png, model.txt")
    print(f"use it: tuning.load_model({str(args.out)!r}) returns the trained model")
    return 0
