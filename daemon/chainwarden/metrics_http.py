"""Serve /metrics: prometheus-client's WSGI app, optionally behind TLS and HTTP basic auth."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import socket
import ssl
import threading
import zlib
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.registry import CollectorRegistry

from .config import Config, ConfigError

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
# (encoder, content type) -> the bytes that encoder would make of the whole registry, in pieces
Render = Callable[[Callable[..., bytes], str], list[bytes]]

log = logging.getLogger("chainwarden.metrics")
# Per connection, in its own thread: a peer that connects and stalls holds only its own thread.
CLIENT_TIMEOUT_SECONDS = 10.0


class _ThreadingServer(WSGIServer):
    daemon_threads = True

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(target=self._handle, args=(request, client_address), daemon=True)
        thread.start()

    def _handle(self, request: Any, client_address: Any) -> None:
        try:
            request.settimeout(CLIENT_TIMEOUT_SECONDS)
            if isinstance(request, ssl.SSLSocket):
                try:
                    request.do_handshake()  # here, not in accept(): that would stall every scrape
                except OSError:
                    return  # plain HTTP, a scanner, a stalled peer: nothing to answer
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Scrapes are not worth a log line each."""


def load_basic_auth(path: str) -> dict[str, str]:
    """`user:password` or `user:sha256:<hex of password>` per line; # comments allowed."""
    users: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError as exc:
        raise ConfigError(f"metrics.basic_auth_file {path}: cannot read: {exc.strerror or exc}") from None
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, secret = line.partition(":")
        if not sep or not user or not secret:
            raise ConfigError(f"metrics.basic_auth_file {path}, line {number}: expected user:password")
        users[user] = secret
    if not users:
        raise ConfigError(f"metrics.basic_auth_file {path}: no users")
    return users


def _password_ok(stored: str, given: str) -> bool:
    if stored.startswith("sha256:"):
        return hmac.compare_digest(stored[7:].lower(), hashlib.sha256(given.encode()).hexdigest())
    return hmac.compare_digest(stored.encode(), given.encode())


def with_basic_auth(app: WSGIApp, users: dict[str, str]) -> WSGIApp:
    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        header = environ.get("HTTP_AUTHORIZATION", "")
        if header.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                user, password = "", ""
            if user in users and _password_ok(users[user], password):
                return app(environ, start_response)
        start_response(
            "401 Unauthorized", [("WWW-Authenticate", 'Basic realm="chainwarden"'), ("Content-Type", "text/plain")]
        )
        return [b"authentication required\n"]

    return guarded


def fast_metrics_app(registry: CollectorRegistry, render: Render) -> WSGIApp:
    """prometheus-client's WSGI app, with a plain GET of the whole registry answered by `render`.

    Content negotiation and gzip are prometheus-client's own; OPTIONS, other methods and `name[]`
    filters go to its app unchanged, and so does any request `render` fails on.
    """
    slow = make_wsgi_app(registry)
    failed_once = False

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        nonlocal failed_once
        if (
            environ.get("REQUEST_METHOD") != "GET"
            or environ.get("PATH_INFO") == "/favicon.ico"
            or "name[]" in parse_qs(environ.get("QUERY_STRING", ""))
        ):
            answer: Iterable[bytes] = slow(environ, start_response)
            return answer
        encoder, content_type = choose_encoder(environ.get("HTTP_ACCEPT") or "")
        try:
            pieces = render(encoder, content_type)
        except Exception:  # noqa: BLE001 - the full encoder still answers
            if not failed_once:
                failed_once = True
                log.exception("fast /metrics rendering failed; serving the registry's own rendering")
            fallback: Iterable[bytes] = slow(environ, start_response)
            return fallback
        headers = [("Content-Type", content_type)]
        if gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING") or ""):
            compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing, as gzip.compress writes
            pieces = [compressor.compress(piece) for piece in pieces] + [compressor.flush()]
            headers.append(("Content-Encoding", "gzip"))
        headers.append(("Content-Length", str(sum(len(piece) for piece in pieces))))
        start_response("200 OK", headers)
        return pieces

    return app


def serve_metrics(
    config: Config, registry: CollectorRegistry, host: str, port: int, render: Render | None = None
) -> tuple[WSGIServer, threading.Thread]:
    app: WSGIApp = make_wsgi_app(registry) if render is None else fast_metrics_app(registry, render)
    if config.metrics_basic_auth_file:
        app = with_basic_auth(app, load_basic_auth(config.metrics_basic_auth_file))

    class Server(_ThreadingServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    httpd = make_server(host, port, app, Server, handler_class=_QuietHandler)
    if config.metrics_tls_cert and config.metrics_tls_key:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(config.metrics_tls_cert, config.metrics_tls_key)
        except (OSError, ssl.SSLError) as exc:
            httpd.server_close()
            raise ConfigError(f"metrics.tls_cert/tls_key: cannot load: {exc}") from None
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True, do_handshake_on_connect=False)
    thread = threading.Thread(target=httpd.serve_forever, name="metrics-http", daemon=True)
    thread.start()
    return httpd, thread
