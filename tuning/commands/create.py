"""``tuning create``: make a study once, with its settings stored, for workers to share."""
from __future__ import annotations

from .. import report
from ..errors import StudyExistsError, StudyNotFoundError, TuningError
from ..storage import describe, open_storage, storage_note, storage_option
from ..study import StudySettings, create_study, open_study, settings_text
from . import options

NAME = "create"
HELP = "create a study once, with its settings stored, for workers to share"


def add_arguments(parser) -> None:
    options.add_study_location(parser)
    options.add_study_settings(parser)
    parser.add_argument("--reuse", action="store_true",
                        help="if the study exists, use it (the options given must agree with "
                        "its stored settings) instead of failing")


def run(args) -> int:
    name = options.require_study_name(args)
    storage = open_storage(args.storage, name)
    where = describe(args.storage, name)
    given = options.study_options(args)
    settings, verb = None, "created"
    if args.reuse:
        try:
            _, settings = open_study(storage, name, given)
            verb = "reusing"
        except StudyNotFoundError:
            pass
    if settings is None:
        settings = StudySettings.from_options(given)
        try:
            create_study(storage, name, settings, 0)
        except StudyExistsError:
            if not args.reuse:
                raise TuningError(
                    f"study {name!r} already exists in {where}. Pass --reuse to use it as it "
                    f"is (the options given must agree with its stored settings), or choose "
                    f"another --study-name.") from None
            _, settings = open_study(storage, name, given)  # created meanwhile elsewhere
            verb = "reusing"
    print(f"{verb} study {name!r} in {where}: {settings_text(settings)}")
    print(f"start workers with: {report.tuning_command()} worker{storage_option(args.storage)} "
          f"--study-name {name} --max-trials N{storage_note(args.storage)}")
    return 0
