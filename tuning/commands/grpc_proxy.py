"""``tuning grpc-proxy``: serve a PostgreSQL/MySQL storage to workers as grpc://HOST:PORT.

A port another process already listens on is refused: gRPC servers share a port by
default (``SO_REUSEPORT``), and two proxies on one port would split the workers between
two databases at random.  The proxy checks the port before it starts and listens without
port sharing, so the second of two proxies started at once fails too.
"""
from __future__ import annotations

import errno
import socket
import warnings

from ..interrupts import interrupt_signals
from ..argtypes import positive_int
from ..errors import TuningError
from ..storage import database_error, driver_missing, show_url, storage_kind
from . import options

NAME = "grpc-proxy"
HELP = "serve a PostgreSQL/MySQL storage to workers as grpc://HOST:PORT"


def add_arguments(parser) -> None:
    options.add_storage(parser, required=True, metavar="URL",
                        help="the RDB storage to serve (postgresql://..., mysql://...); default: "
                        "$OPTUNA_STORAGE if set")
    parser.add_argument("--host", default="localhost",
                        help="address to listen on (default localhost; 0.0.0.0 for all)")
    parser.add_argument("--port", type=positive_int, default=13000, help="default 13000")


def run(args) -> int:
    import optuna  # noqa: PLC0415

    kind = storage_kind(args.storage)
    if kind not in ("rdb", "sqlite"):
        raise TuningError(f"--storage {show_url(args.storage)}: the gRPC proxy serves an RDB "
                          f"storage (postgresql://..., mysql://...); Optuna's proxy does not "
                          f"support journal storages")
    try:
        import grpc  # noqa: F401, PLC0415
        from google import protobuf  # noqa: F401, PLC0415
    except ImportError:
        raise TuningError("the gRPC proxy needs grpcio and protobuf: pip install grpcio "
                          "protobuf (or the project's [distributed] extra)") from None
    check_port_free(args.host, args.port)
    try:
        storage = optuna.storages.get_storage(args.storage)
    except ImportError as exc:
        raise TuningError(driver_missing(args.storage, exc)) from None
    except Exception as exc:  # SQLAlchemy: server down, wrong password, ...
        raise TuningError(database_error(args.storage, exc)) from None
    started = (f"starting the gRPC proxy for {show_url(args.storage)} on {args.host}:"
               f"{args.port}; workers use --storage grpc://HOST:{args.port}; Ctrl-C stops")
    with interrupt_signals(), warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # Optuna's own server object, so that Ctrl-C stops it: run_grpc_proxy_server leaves
        # the server running when interrupted, and the exit then waits on its threads (the
        # proxy once outlived a 30 s wait after SIGINT in a loaded test run)
        try:
            server = make_server(storage, args.host, args.port)
        except ImportError:      # a later Optuna moved its server: its public function
            print(started, flush=True)
            optuna.storages.run_grpc_proxy_server(storage, host=args.host, port=args.port)
            return 0
        server.start()
        print(started, flush=True)   # once it listens (Ctrl-C from here on stops it)
        try:
            server.wait_for_termination()
        finally:
            server.stop(grace=2).wait(10)
    return 0


def check_port_free(host: str, port: int) -> None:
    """TuningError naming the port if a process listens on ``host:port`` already.

    A plain socket without ``SO_REUSEPORT`` cannot bind where anything listens (also a
    gRPC server that shares its port); ``SO_REUSEADDR`` lets it past a closed
    connection's ``TIME_WAIT`` only.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise TuningError(f"--host {host}: cannot resolve it ({exc.strerror})") from None
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise TuningError(
                        f"--port {port}: another process already listens on {host}:{port} "
                        f"(another gRPC proxy?); stop it, or choose another --port") from None
                if exc.errno == errno.EADDRNOTAVAIL:   # e.g. ::1 without IPv6
                    continue
                raise TuningError(f"--port {port}: cannot listen on {host}:{port} "
                                  f"({exc.strerror})") from None


def make_server(storage, host: str, port: int):
    """Optuna's gRPC storage server, listening on ``host:port`` without sharing the port
    (``grpc.so_reuseport`` off); TuningError naming the port if it cannot listen."""
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    import grpc  # noqa: PLC0415
    from optuna.storages._grpc import servicer  # noqa: PLC0415
    from optuna.storages._grpc.auto_generated import api_pb2_grpc  # noqa: PLC0415
    server = grpc.server(ThreadPoolExecutor(max_workers=10),
                         options=[("grpc.so_reuseport", 0)])
    api_pb2_grpc.add_StorageServiceServicer_to_server(
        servicer.OptunaStorageProxyService(storage), server)
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as exc:   # newer grpcio raises where older ones return 0
        bound, why = 0, f" ({exc})"
    else:
        why = ""
    if not bound:
        raise TuningError(f"--port {port}: cannot listen on {host}:{port}{why}; another "
                          f"process may listen there: stop it, or choose another --port")
    return server
