"""The request lifecycle every adapter shares: open the session, close it, decide the cookie.

Adapters (ASGI, WSGI, Flask) only translate their framework's request and
response to and from these calls, so the three behave identically.

The cookie decision compares what the request brought with what the session is
at the end, rather than trusting per-object flags: one live session object is
shared by concurrent requests, so "this request created it" is only knowable by
comparing ids.
"""

from __future__ import annotations

import enum
import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..cluster_config import ClusterConfig
from ..config import DEFAULT_STATIC_FILTER, UNSET, CookieSettings, SameSite, SessionConfig
from ..core.listeners import SessionListener
from ..core.serializer import SessionSerializer
from ..core.session import Session
from ..core.store import SessionStore
from ..node import ClusterListener, Node
from ..node.loop import Outcome, gather_futures
from .cookie import SessionCookieCodec, render_delete, render_set
from .metrics import MetricsEndpoint
from .valve import ReplicationValve

__all__ = ["CookieAction", "Fetch", "Replication", "RequestSession", "SessionAdapter", "SessionFront", "build_node"]

log = logging.getLogger("replisession.web")

#: The bodies of the two 503 answers every adapter gives.
TOO_MANY_SESSIONS = b"503 Service Unavailable: the server holds too many sessions; try again later.\n"
NOT_REPLICATED = b"503 Service Unavailable: the session change did not reach every cluster member in time.\n"


class CookieAction(enum.Enum):
    NONE = "none"
    SET = "set"
    DELETE = "delete"


@dataclass(slots=True)
class Fetch:
    """The request's session must first be fetched from another member: wait, then open again.

    A failed or late fetch is no error: the request goes on with what this member has.
    """

    future: Outcome[Any]
    timeout: float

    def wait(self) -> None:
        try:
            self.future.result(self.timeout)
        except Exception as exc:
            log.debug("session fetch did not complete: %r", exc)

    async def wait_async(self) -> None:
        (outcome,) = await gather_futures([self.future], self.timeout)
        if isinstance(outcome, BaseException):
            log.debug("session fetch did not complete: %r", outcome)


@dataclass(slots=True)
class Replication:
    """The sends a request made, to wait for before its response leaves (``ack``/``sync``)."""

    futures: Sequence[Outcome[Any]]
    timeout: float
    node: Node

    def outcomes(self) -> list[Any]:
        """Every send's outcome; a send that raised or did not finish in time is an exception."""
        results: list[Any] = []
        for future in self.futures:
            try:
                results.append(future.result(self.timeout))
            except Exception as exc:  # timed out, cancelled, or failed to send at all
                results.append(exc)
        return results

    async def outcomes_async(self) -> list[Any]:
        return await gather_futures(self.futures, self.timeout)

    def failed(self, outcomes: list[Any]) -> bool:
        """True when the response must be a 503 (``send_failure=fail`` and a member missed it).

        A send that raised (too large a frame, a member stopping) counts as not replicated.
        """
        replicator = self.node.replicator
        return replicator is not None and replicator.failed(outcomes)


@dataclass(slots=True)
class RequestSession:
    """One request's hold on a session."""

    session: Session
    cookie_id: str | None  # the id of the live session the request's cookie named, if any
    cookie_route: str | None = None
    current_key: bool = True  # the cookie was signed with the newest key
    had_cookie: bool = False  # the request carried a cookie of our name, valid or not
    closed: bool = False


class SessionFront:
    def __init__(self, node: Node, codec: SessionCookieCodec | None) -> None:
        self.node = node
        self.codec = codec
        self.route = node.config.route
        self.valve = ReplicationValve(node.config.static_filter)

    def static_session(self) -> Session:
        """An empty session for filtered URLs: readable, and refusing writes with a clear error."""
        session = self.node.store.session_class()
        session._readonly = True
        return session

    def open(
        self,
        path: str,
        cookie_values: list[str],
        codec: SessionCookieCodec | None = None,
        *,
        fetched: bool = False,
    ) -> RequestSession | Fetch | None:
        """The request's session; None when the valve filters the URL; a :class:`Fetch` to
        wait for (then call again with ``fetched=True``) when another member has it."""
        if self.valve.is_static(path):
            return None
        node = self.node
        if not node.running:
            node.start()
        replicator = node.replicator
        if replicator is not None and not fetched:
            replicator.begin()
        codec = codec or self.codec
        assert codec is not None, "a front without a codec of its own needs one per request"
        for value in cookie_values:
            decoded = codec.decode(value)
            if decoded is None:
                log.debug("session cookie ignored: bad or foreign signature")
                continue
            if replicator is not None and not fetched:
                future = replicator.fetch(decoded.session_id, decoded.route)
                if future is not None:
                    return Fetch(future, replicator.config.send_timeout)
            session = node.load(decoded.session_id)
            if session is not None:
                return RequestSession(session, decoded.session_id, decoded.route, decoded.current_key, True)
            log.debug("session cookie ignored: unknown, expired or invalidated id")
        return RequestSession(node.new_session(), None, had_cookie=bool(cookie_values))

    def close(self, held: RequestSession, refresh_after: float | None = None) -> CookieAction:
        """Release the session and say what the response's cookie must do.

        ``refresh_after``: seconds after which a request that used the session
        re-sends an unchanged cookie (0 for every such request, None for never),
        so a cookie with an expiry slides with the server-side idle timeout.
        """
        if held.closed:
            return CookieAction.NONE
        held.closed = True
        session = held.session
        self.node.release(session)
        session_id = session.id
        if session_id is None:
            # Ended (invalidated, emptied) or never begun: expire a cookie that named it,
            # and a stale one the app explicitly cleared.
            if held.cookie_id is not None or (held.had_cookie and session.modified):
                return CookieAction.DELETE
            return CookieAction.NONE
        if session_id != held.cookie_id:
            return self._issue(session)
        if session.accessed:
            if held.cookie_route != self.route:
                self.node.metrics.failover(held.cookie_route, self.route)
                return self._issue(session)  # failover: re-route the balancer to this member
            if not held.current_key:
                return self._issue(session)  # re-sign, so the old key can be retired
            if refresh_after is not None:
                issued = session.cookie_issued_at
                if issued is None or self.node.clock() - issued >= refresh_after:
                    return self._issue(session)
        return CookieAction.NONE

    def replication(self) -> Replication | None:
        """After :meth:`close`: the sends to wait for before the response leaves, if any."""
        replicator = self.node.replicator
        if replicator is None:
            return None
        futures = replicator.pending()
        if not futures:
            return None
        return Replication(futures, replicator.config.send_timeout + 1.0, self.node)

    def _issue(self, session: Session) -> CookieAction:
        session.cookie_issued_at = self.node.clock()
        return CookieAction.SET


def build_node(
    *,
    secret_key: Any,
    cookie: CookieSettings | None,
    session_class: type[Session],
    route: str | None,
    max_inactive_interval: float | None,
    max_lifetime: float | None,
    max_active_sessions: int | None,
    static_filter: str | re.Pattern[str] | None,
    detect_mutations: bool,
    listeners: Iterable[SessionListener],
    serializer: SessionSerializer | None,
    sweep_interval: float,
    clock: Callable[[], float],
    cluster: ClusterConfig | None,
    cluster_listeners: Iterable[ClusterListener],
    metrics_path: str | None = UNSET,
) -> Node:
    """The node of one adapter instance, from the adapters' shared keyword arguments."""
    config = SessionConfig.build(
        secret_key=secret_key,
        route=route,
        cookie=cookie,
        max_inactive_interval=max_inactive_interval,
        max_lifetime=max_lifetime,
        max_active_sessions=max_active_sessions,
        detect_mutations=detect_mutations,
        static_filter=static_filter,
        sweep_interval=sweep_interval,
        metrics_path=metrics_path,
    )
    return Node(
        config,
        listeners=listeners,
        serializer=serializer,
        session_class=session_class,
        clock=clock,
        # No cluster configuration given: the environment decides, as <distributable/> does.
        cluster=cluster if cluster is not None else ClusterConfig.from_env(route=config.route),
        cluster_listeners=cluster_listeners,
    )


class SessionAdapter:
    """What the ASGI and WSGI middleware share: their arguments and the cookie headers.

    The positional and keyword arguments are Starlette's ``SessionMiddleware``'s,
    with the same meanings; the keyword-only ones are replisession's own. Without
    ``cluster=``, the ``REPLISESSION_*`` environment variables decide whether (and
    how) this process joins a cluster.
    """

    session_class: type[Session] = Session

    def __init__(
        self,
        app: Any,
        secret_key: Any = None,
        session_cookie: str = "JSESSIONID",
        max_age: int | None = None,
        path: str = "/",
        same_site: SameSite = "lax",
        https_only: bool = False,
        domain: str | None = None,
        partitioned: bool = False,
        *,
        route: str | None = None,
        max_inactive_interval: float | None = UNSET,
        max_lifetime: float | None = None,
        max_active_sessions: int | None = None,
        static_filter: str | re.Pattern[str] | None = DEFAULT_STATIC_FILTER,
        detect_mutations: bool = True,
        listeners: Iterable[SessionListener] = (),
        serializer: SessionSerializer | None = None,
        sweep_interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        cluster: ClusterConfig | None = None,
        cluster_listeners: Iterable[ClusterListener] = (),
        metrics_path: str | None = UNSET,
    ) -> None:
        self.app = app
        self.cookie = CookieSettings(
            name=session_cookie,
            path=path,
            domain=domain,
            secure=https_only,
            samesite=same_site,
            partitioned=partitioned,
            max_age=max_age,
        )
        self.node = build_node(
            secret_key=secret_key,
            cookie=self.cookie,
            session_class=self.session_class,
            route=route,
            max_inactive_interval=max_inactive_interval,
            max_lifetime=max_lifetime,
            max_active_sessions=max_active_sessions,
            static_filter=static_filter,
            detect_mutations=detect_mutations,
            listeners=listeners,
            serializer=serializer,
            sweep_interval=sweep_interval,
            clock=clock,
            cluster=cluster,
            cluster_listeners=cluster_listeners,
            metrics_path=metrics_path,
        )
        config = self.node.config
        self.front = SessionFront(self.node, SessionCookieCodec(config.secret_keys, config.route))
        #: The opt-in metrics endpoint (``metrics_path`` or REPLISESSION_METRICS_PATH); None when off.
        self.metrics_endpoint = MetricsEndpoint(self.node, config.metrics_path) if config.metrics_path else None
        self._delete_header = render_delete(self.cookie)
        # A max_age cookie is re-sent once a quarter of its life has passed, so it
        # slides with the server-side idle timeout without a header on every response.
        self._refresh_after = max_age / 4 if max_age is not None and max_age > 0 else None

    @property
    def store(self) -> SessionStore:
        return self.node.store

    def response_cookie(self, held: RequestSession) -> tuple[bool, str | None]:
        """Close the request's session: ``(add Vary: Cookie?, Set-Cookie value or None)``."""
        session = held.session
        action = self.front.close(held, self._refresh_after)
        if action is CookieAction.SET:
            assert session.id is not None
            assert self.front.codec is not None
            return session.accessed, render_set(self.cookie, self.front.codec.encode(session.id))
        if action is CookieAction.DELETE:
            return session.accessed, self._delete_header
        return session.accessed, None
