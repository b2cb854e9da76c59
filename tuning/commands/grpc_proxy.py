"""``tuning grpc-proxy``: serve a PostgreSQL/MySQL storage to workers as grpc://HOST:PORT."""
from __future__ import annotations

import warnings

from .. import workers
from ..argtypes import positive_int
from ..errors import TuningError
from ..storage import database_error, driver_missing, storage_kind
from . import options

NAME = "grpc-proxy"
HELP = "serve a PostgreSQL/MySQL storage to workers as grpc://HOST:PORT"


def add_arguments(parser) -> None:
    options.add_storage(parser, required=True, metavar="URL",
                        help="the RDB storage to serve (postgresql://..., mysql://...)")
    parser.add_argument("--host", default="localhost",
                        help="address to listen on (default localhost; 0.0.0.0 for all)")
    parser.add_argument("--port", type=positive_int, default=13000, help="default 13000")


def run(args) -> int:
    import optuna  # noqa: PLC0415

    kind = storage_kind(args.storage)
    if kind not in ("rdb", "sqlite"):
        raise TuningError(f"--storage {args.storage}: the gRPC proxy serves an RDB storage "
                          f"(postgresql://..., mysql://...); Optuna's proxy does not support "
                          f"journal storages")
    try:
        import grpc  # noqa: F401, PLC0415
        from google import protobuf  # noqa: F401, PLC0415
    except ImportError:
        raise TuningError("the gRPC proxy needs grpcio and protobuf: pip install grpcio "
                          "protobuf (or the project's [distributed] extra)") from None
    try:
        storage = optuna.storages.get_storage(args.storage)
    except ImportError as exc:
        raise TuningError(driver_missing(args.storage, exc)) from None
    except Exception as exc:  # SQLAlchemy: server down, wrong password, ...
        raise TuningError(database_error(args.storage, exc)) from None
    print(f"starting the gRPC proxy for {args.storage.split('@')[-1]} on {args.host}:"
          f"{args.port}; workers use --storage grpc://HOST:{args.port}; Ctrl-C stops",
          flush=True)
    with workers.interrupt_signals(), warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # Optuna's own server object, so that Ctrl-C stops it: run_grpc_proxy_server leaves
        # the server running when interrupted, and the exit then waits on its threads (the
        # proxy once outlived a 30 s wait after SIGINT in a loaded test run)
        try:
            from optuna.storages._grpc.server import make_server  # noqa: PLC0415
        except ImportError:      # a later Optuna moved it: its public function
            optuna.storages.run_grpc_proxy_server(storage, host=args.host, port=args.port)
            return 0
        server = make_server(storage, args.host, args.port)
        server.start()
        try:
            server.wait_for_termination()
        finally:
            server.stop(grace=2).wait(10)
    return 0
