"""Host-header check for the dashboard server: only loopback names (and names the user allows) get in.

The dashboard has no authentication. Binding to 127.0.0.1 keeps other machines out, but not a web
page in the user's own browser: with DNS rebinding, ``rebind.attacker.example`` first resolves to the
attacker's server, then to 127.0.0.1, and the page's scripts talk to the dashboard as a same-origin
site, over HTTP and over the WebSocket that drives the app. What such a request cannot fake is its
``Host`` header: the attacker's name. :class:`HostGuard` (an ASGI middleware, installed by
``asgi_app.py`` in front of Streamlit) answers 403 to any HTTP request or WebSocket handshake whose
``Host`` is not one of :func:`allowed_hosts`: ``localhost``, ``127.0.0.1``, ``[::1]``, the address the
server is bound to (unless it is 0.0.0.0 or ::), and every ``--allow-host NAME`` given after ``--`` on
the streamlit command line (``balpm dashboard --allow-host NAME`` passes them). The port is not
checked: an SSH tunnel (``ssh -L 9000:127.0.0.1:8501``) sends ``Host: localhost:9000``.
"""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from typing import Any

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
FLAG = "--allow-host"
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_PORT = re.compile(r":[0-9]{1,5}")


def normalize(name: str) -> str | None:
    """``name`` as the guard compares it (lower case, IPv6 in brackets), or None when it is not a host
    name or an IP address (a port, a path, a wildcard, an empty string)."""
    name = str(name).strip().lower()
    bare = name[1:-1] if name.startswith("[") and name.endswith("]") else name
    try:
        ip = ipaddress.ip_address(bare)
    except ValueError:
        ip = None
    if ip is not None:
        return f"[{ip.compressed}]" if ip.version == 6 else ip.compressed
    if bare != name or len(name) > 253 or not all(_LABEL.fullmatch(part) for part in name.split(".")):
        return None
    return name


def is_loopback(address: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1)."""
    name = normalize(address)
    if name is None:
        return False
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(bind_address: str | None = None, extra: Iterable[str] = ()) -> frozenset[str]:
    """The names :class:`HostGuard` lets in: the loopback names, ``bind_address`` (not the unspecified
    0.0.0.0 / ::) and ``extra``. A name that :func:`normalize` rejects raises ValueError."""
    names = set(LOOPBACK_NAMES)
    if bind_address:
        bound = normalize(bind_address)
        if bound is not None and bound not in ("0.0.0.0", "[::]"):
            names.add(bound)
    for name in extra:
        norm = normalize(name)
        if norm is None:
            raise ValueError(f"{FLAG} {name!r} is not a host name or an IP address")
        names.add(norm)
    return frozenset(names)


def hosts_from_argv(argv: Sequence[str]) -> list[str]:
    """The NAMEs of every ``--allow-host NAME`` / ``--allow-host=NAME`` in ``argv``."""
    out = []
    for i, arg in enumerate(argv):
        if arg == FLAG and i + 1 < len(argv):
            out.append(argv[i + 1])
        elif arg.startswith(FLAG + "="):
            out.append(arg.split("=", 1)[1])
    return out


def host_name(header: str | None) -> str | None:
    """The host name of a ``Host`` header value without its port (``[::1]:8501`` -> ``[::1]``), lower
    case; None when the header is missing or malformed."""
    if not header:
        return None
    value = header.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        name, rest = (value[:end + 1], value[end + 1:]) if end > 0 else ("", "x")
    else:
        name, colon, port = value.partition(":")
        rest = colon + port
    if rest and not _PORT.fullmatch(rest):
        return None
    return normalize(name)


class HostGuard:
    """ASGI middleware: HTTP requests and WebSocket handshakes whose ``Host`` is not in ``allowed`` get
    403 and never reach the app (a refused WebSocket is closed before it is accepted, which the server
    answers with HTTP 403)."""

    def __init__(self, app: Any, allowed: Iterable[str]) -> None:
        self.app = app
        self.allowed = frozenset(allowed)

    def permits(self, scope: dict[str, Any]) -> bool:
        """True when the request's ``Host`` header names an allowed host."""
        headers = [v for k, v in scope.get("headers") or () if k == b"host"]
        if len(headers) != 1:  # no Host, or two of them: refuse
            return False
        return host_name(headers[0].decode("latin-1")) in self.allowed

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket") or self.permits(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        body = (b"403 Forbidden: this balpm dashboard answers only to localhost, 127.0.0.1 and [::1] (and names "
                b"given with balpm dashboard --allow-host NAME).\n")
        await send({"type": "http.response.start", "status": 403,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
