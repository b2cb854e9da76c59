"""``tuning enqueue``: queue a configuration to be evaluated next (manual search)."""
from __future__ import annotations

from .. import report
from ..errors import TuningError
from ..spaces import check_values
from ..storage import describe, open_storage
from ..study import create_or_open, find_study
from . import options

NAME = "enqueue"
HELP = "queue a configuration to be evaluated next (manual search)"


def add_arguments(parser) -> None:
    options.add_study_location(parser)
    options.add_study_settings(parser)
    parser.add_argument("--params", required=True, metavar="JSON|FILE",
                        help='e.g. \'{"learn_rate": 0.001, "batch_size": 64}\', or a file '
                        'holding such an object; parameters left out are sampled. Values '
                        'must lie inside the space')
    parser.add_argument("--outside-range", action="store_true",
                        help="accept numbers outside the range the space searches (still "
                        "refused: values no trial can use, such as a negative layer size)")


def parse_params(text: str) -> dict:
    """``--params``: a JSON object (or a file holding one); see ``options.parse_params``."""
    return options.parse_params(text)


def check_params(space_name: str, params: dict, outside_range: bool = False) -> list:
    """Refuse unknown names and values no trial can use, and (unless ``outside_range``)
    numbers outside the space's ranges; return warnings (``tuning.spaces.check_values``)."""
    try:
        return check_values(space_name, params, outside_range=outside_range)
    except ValueError as exc:
        raise TuningError(f"--params: {exc}") from None


def run(args) -> int:
    params = parse_params(args.params)
    name = options.new_study_name(args)
    storage = open_storage(args.storage, name)
    given = options.study_options(args)
    study, settings = find_study(storage, name, given)   # nothing written yet
    for message in check_params(settings.space, params, args.outside_range):
        options.err(f"warning: {message}")
    if settings.sampler == "grid":
        missing = sorted(set(settings.grid["axes"]) - set(params))
        if missing:
            raise TuningError(f"--params: a grid study needs every grid parameter; missing "
                              f"{', '.join(missing)}")
    if study is None:
        study, settings = create_or_open(storage, name, settings, given, 0)
    study.enqueue_trial(params, user_attrs={"enqueued": True})
    print(f"enqueued in study {name!r} ({describe(args.storage, name)}): "
          f"{report.format_params(params)}; the next trial started on this study evaluates it")
    return 0
