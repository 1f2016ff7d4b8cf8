"""optuna-dashboard on a study's storage, with the study's artifact store (learning curves, models).

Bound to 127.0.0.1 by default: the dashboard can change studies (tell trials, delete
artifacts), so it is only exposed on a network when ``host`` says so.

Example:
    >>> server = make_server("sqlite:///studies/rings.db", "rings", port=0)  # doctest: +SKIP
    >>> print(dashboard_url(server, study))  # doctest: +SKIP
    >>> server.serve_forever()  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from regsweep.errors import SettingsError

if TYPE_CHECKING:
    import optuna

_logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


class _Server(ThreadingMixIn, WSGIServer):
    """A threaded WSGI server: the dashboard page fires several API requests at once."""

    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    """Request lines go to the debug log, not to stderr."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        _logger.debug("dashboard: " + format, *args)


def check_port(port: Any) -> int:
    """A TCP port: 0 (any free port) to 65535."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise SettingsError(f"port: got {port!r}; allowed: an int from 0 (any free port) to 65535")
    return port


def make_app(study: optuna.Study) -> Any:
    """The optuna-dashboard WSGI app on the study's storage and artifact store."""
    import optuna_dashboard

    from regsweep.artifacts import artifact_store, storage_url
    from regsweep.storage import make_storage

    storage = make_storage(storage_url(study), heartbeat=False, create_file=False)
    return optuna_dashboard.wsgi(storage, artifact_store=artifact_store(study))


def make_server(study: optuna.Study, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> WSGIServer:
    """Bind optuna-dashboard for ``study`` to ``host:port`` (port 0: a free one) without serving yet."""
    check_port(port)
    app = make_app(study)
    try:
        server = _Server((host, port), _QuietHandler)
    except OSError as exc:
        raise SettingsError(f"port: cannot listen on {host}:{port} ({exc.strerror}); allowed: a free port, "
                            "e.g. --port 0 for any") from exc
    server.set_app(app)
    return server


def dashboard_url(server: WSGIServer, study: optuna.Study) -> str:
    """The URL of the study's page on a bound server."""
    host, port = server.server_address[:2]
    return f"http://{host}:{port}/dashboard/studies/{study._study_id}"


def serve(study: optuna.Study, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          on_ready: Any = None) -> None:
    """Serve optuna-dashboard for ``study`` until interrupted; ``on_ready(url)`` runs once bound."""
    server = make_server(study, host=host, port=port)
    try:
        if on_ready is not None:
            on_ready(dashboard_url(server, study))
        server.serve_forever()
    finally:
        server.server_close()
