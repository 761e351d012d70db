"""``mlpsearch dashboard``: optuna-dashboard on a study's storage, on 127.0.0.1 only.

optuna-dashboard is an optional extra (``pip install -e ".[dashboard]"``); without it the
command says so in one line (exit 2). The dashboard reads the same storage the study writes
(``results/<study>/journal.log`` or the ``--storage`` URL), so it follows a running study live.
It has no login: it listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import errno
import threading
from collections.abc import Callable
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import optuna

from mlpsearch.errors import BadInput

HOST = "127.0.0.1"
DEFAULT_PORT = 8080
INSTALL = 'pip install "mlpsearch[dashboard]" (or: pip install optuna-dashboard)'


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # no line per request
        pass


def make_dashboard(storage: optuna.storages.BaseStorage, port: int = DEFAULT_PORT) -> WSGIServer:
    """A WSGI server of optuna-dashboard on ``HOST:port`` (0: a free port), not yet serving.

    Raises BadInput (one line) when optuna-dashboard is not installed or the port is taken.
    """
    try:
        from optuna_dashboard import wsgi
    except ImportError:
        raise BadInput(f"dashboard: optuna-dashboard is not installed; {INSTALL}") from None
    if not 0 <= port <= 65535:
        raise BadInput(f"--port: {port} is out of range; allowed: 0 to 65535")
    app = wsgi(storage)
    try:
        return make_server(HOST, port, app, handler_class=_QuietHandler)
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise BadInput(
                f"--port {port}: already in use on {HOST}; give another --port"
            ) from None
        raise BadInput(f"--port {port}: cannot listen on {HOST}: {err.strerror}") from None


def serve(
    storage: optuna.storages.BaseStorage,
    study_name: str,
    port: int = DEFAULT_PORT,
    echo: Callable[[str], None] = print,
) -> None:
    """Serve the dashboard until Ctrl-C (which ends it normally)."""
    server = make_dashboard(storage, port)
    echo(f"dashboard of study {study_name}: http://{HOST}:{server.server_port}/ (Ctrl-C stops it)")
    try:
        server.serve_forever(poll_interval=0.25)
    except KeyboardInterrupt:
        echo("dashboard stopped")
    finally:
        server.server_close()


class Dashboard:
    """A dashboard served from a background thread (for Python: ``study.dashboard()``).

    ``url`` is where it listens; :meth:`stop` ends it.
    """

    def __init__(self, storage: optuna.storages.BaseStorage, port: int = 0) -> None:
        self._server = make_dashboard(storage, port)
        self.url = f"http://{HOST}:{self._server.server_port}/"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.25}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __repr__(self) -> str:
        return f"Dashboard({self.url})"


# --- the command -----------------------------------------------------------------------------


def register(sub: argparse._SubParsersAction) -> None:
    from mlpsearch.results_cli import study_options

    dash = sub.add_parser(
        "dashboard",
        help="open a study in optuna-dashboard (on 127.0.0.1)",
        description="Serve optuna-dashboard on the study's storage (its journal.log, or "
        "--storage URL --study NAME) at http://127.0.0.1:PORT/ until Ctrl-C. It follows a "
        "running study live. Needs the optional extra: pip install 'mlpsearch[dashboard]'.",
    )
    dash.add_argument("study", nargs="?", metavar="STUDY", help="the study's results folder")
    dash.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port (default: 8080; 0: any free)"
    )
    study_options(dash, writes=False)
    dash.set_defaults(handler=cmd_dashboard)


def cmd_dashboard(args: argparse.Namespace) -> int:
    from mlpsearch.results_cli import locate_study, open_results
    from mlpsearch.storage import open_storage

    where = (args.study, args.storage, args.study_name, Path(args.out))
    study, _ = open_results(*where)  # the study must exist: one line if not
    url, _, _ = locate_study(*where)
    serve(open_storage(url), study.study_name, port=args.port)
    return 0
