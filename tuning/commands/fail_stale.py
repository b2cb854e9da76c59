"""``tuning fail-stale``: fail the RUNNING trials of dead workers, queue them again."""
from __future__ import annotations

from .. import workers
from ..argtypes import non_negative_float
from ..storage import open_storage
from ..study import load_any_study
from . import options

NAME = "fail-stale"
HELP = "fail the RUNNING trials of dead workers and queue their parameters again"


def add_arguments(parser) -> None:
    options.add_study_location(parser)
    parser.add_argument("--older-than", type=non_negative_float, metavar="SECONDS",
                        help="also treat as dead a RUNNING trial started more than SECONDS "
                        "ago whose worker is not seen alive on this machine (needed for "
                        "workers on other machines)")
    parser.add_argument("--dry-run", action="store_true", help="only say what would be done")


def run(args) -> int:
    from optuna.trial import TrialState  # noqa: PLC0415

    name = options.require_study_name(args)
    storage = open_storage(args.storage, name, must_exist=True, write=not args.dry_run)
    study = load_any_study(storage, name)
    results = workers.fail_stale(study, older_than=args.older_than, dry_run=args.dry_run)
    retries = {t.system_attrs.get("failed_trial"): t.number
               for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))}
    failed = 0
    for trial, action, why in results:
        line = f"trial {trial.number}: {action} ({why})"
        if action == "failed":
            failed += 1
            original = trial.system_attrs.get("failed_trial", trial.number)
            if original in retries:
                line += f"; queued again as trial {retries[original]}"
            else:
                line += f"; not queued again (retried {workers.MAX_RETRIES} times already)"
        print(line)
    kept = sum(1 for _, action, _ in results if action == "kept")
    print(f"{len(results)} running trials: {failed} failed, {kept} kept" +
          (" (dry run: nothing changed)" if args.dry_run else ""))
    if kept and args.older_than is None:
        print("trials of workers on other machines are kept; add --older-than SECONDS to fail "
              "those running longer than that")
    return 0
