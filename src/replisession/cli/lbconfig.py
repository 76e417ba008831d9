"""``replisession lb-config``: print a ready sticky-session balancer configuration.

One ``--member ROUTE=HOST:PORT`` per balancer entry: a member, or a host whose
workers (``uvicorn --workers N``, ``gunicorn -w N``) share one port and one route.
The input is checked as the members check their own settings (a route the cookie
can carry, a real host and port); a mistake is a usage error (exit status 2)
that says what is wrong, never a file that fails later in the balancer.
"""

from __future__ import annotations

import argparse
import functools
import re
import shlex
from typing import Any

from ..cluster_config import _host_problem, _Malformed, _split_address
from ..config import _route
from ..errors import ConfigError
from ._balancers import BALANCERS, DEFAULT_APACHE_MODULES, Address, Backend, Settings

__all__ = ["register"]

DEFAULT_LISTEN = "127.0.0.1:8080"
DEFAULT_COOKIE = "JSESSIONID"
#: nginx reads the cookie as the variable $cookie_NAME, whose name allows only these.
_COOKIE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "lb-config",
        help="print a sticky-session configuration for nginx, HAProxy or Apache httpd",
        description=(
            "Print a complete nginx.conf, haproxy.cfg or Apache httpd configuration that "
            "sticks each session to the member of its cookie's route (JSESSIONID=<id>.<route>, "
            "as Tomcat's jvmRoute) and fails over to the other members while that one is down."
        ),
        epilog=(
            "A host running several workers of the app (uvicorn --workers N, gunicorn -w N) "
            "is one member here: its workers share its port and its route."
        ),
    )
    parser.add_argument("balancer", choices=tuple(BALANCERS), help="the balancer to configure")
    parser.add_argument(
        "--member",
        dest="members",
        action="append",
        type=_backend,
        required=True,
        metavar="ROUTE=HOST:PORT",
        help="a member's route (REPLISESSION_ROUTE) and HTTP address; once per member or host",
    )
    parser.add_argument(
        "--listen",
        type=_listen,
        default=_listen(DEFAULT_LISTEN),
        metavar="HOST:PORT",
        help=f"where the balancer accepts requests (default {DEFAULT_LISTEN})",
    )
    parser.add_argument(
        "--cookie",
        type=_cookie_name,
        default=DEFAULT_COOKIE,
        metavar="NAME",
        help=f"the session cookie's name (default {DEFAULT_COOKIE}, the middleware's session_cookie)",
    )
    parser.add_argument(
        "--apache-modules",
        default=DEFAULT_APACHE_MODULES,
        metavar="DIR",
        help=f"Apache httpd's module directory, for its LoadModule lines (default {DEFAULT_APACHE_MODULES})",
    )
    parser.set_defaults(handler=functools.partial(_run, parser))


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    backends: tuple[Backend, ...] = tuple(args.members)
    seen_routes: dict[str, Backend] = {}
    seen_addresses: dict[Address, Backend] = {}
    for backend in backends:
        if backend.route in seen_routes:
            parser.error(
                f"route {backend.route!r} is given twice ({seen_routes[backend.route].address} and "
                f"{backend.address}): give each route once; the workers of one host share its "
                "port, so the host is one --member"
            )
        if backend.address in seen_addresses:
            parser.error(
                f"{backend.address} is given for both {seen_addresses[backend.address].route!r} and "
                f"{backend.route!r}: one address serves one route"
            )
        seen_routes[backend.route] = seen_addresses[backend.address] = backend
    if args.balancer != "apache" and args.apache_modules != DEFAULT_APACHE_MODULES:
        parser.error(f"--apache-modules applies to apache only, not {args.balancer}")
    if not args.apache_modules.startswith("/") or any(c.isspace() or c == '"' for c in args.apache_modules):
        parser.error(f"--apache-modules {args.apache_modules!r} must be an absolute path without spaces or quotes")
    settings = Settings(
        backends=backends,
        listen=args.listen,
        cookie=args.cookie,
        command=command_line(args.balancer, backends, args.listen, args.cookie, args.apache_modules),
        apache_modules=args.apache_modules,
    )
    print(BALANCERS[args.balancer](settings), end="")
    return 0


def command_line(balancer: str, backends: tuple[Backend, ...], listen: Address, cookie: str, modules: str) -> str:
    """The command that prints this configuration again (recorded in its first lines)."""
    words = ["replisession", "lb-config", balancer]
    for backend in backends:
        words += ["--member", f"{backend.route}={backend.address}"]
    words += ["--listen", str(listen)]
    if cookie != DEFAULT_COOKIE:
        words += ["--cookie", cookie]
    if modules != DEFAULT_APACHE_MODULES:
        words += ["--apache-modules", modules]
    return shlex.join(words)


def _backend(text: str) -> Backend:
    route, equals, address = text.partition("=")
    if not equals:
        raise argparse.ArgumentTypeError(f"{text!r}: expected ROUTE=HOST:PORT, as in node1=127.0.0.1:8001")
    try:
        checked = _route(route or None, {}) or ""
        if not checked:
            raise ConfigError("the route before '=' is empty")
        return Backend(checked, _parse_address(address))
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None


def _listen(text: str) -> Address:
    try:
        return _parse_address(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None


def _parse_address(text: str) -> Address:
    try:
        host, first, last = _split_address(text, "HOST:PORT")
    except _Malformed as exc:
        raise ConfigError(str(exc)) from None
    if first != last:
        raise ConfigError("one port, not a range: the workers of a host share one HTTP port")
    problem = _host_problem(host) or (None if 1 <= first <= 65535 else f"port {first} is outside 1-65535")
    if problem:
        raise ConfigError(problem)
    return Address(host, first)


def _cookie_name(text: str) -> str:
    if not _COOKIE_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r}: use letters, digits and '_', not starting with a digit (nginx reads it as $cookie_NAME)"
        )
    return text
