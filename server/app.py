"""The composition root: ``create_app(config)`` builds the Starlette app.

The lifespan owns every long-lived resource and closes them in order: connections are closed
by the ASGI server first (1012, so clients reconnect), in-flight work gets
``shutdown_timeout_s``, then background tasks stop, then the broker, then the store (which
flushes its pending writes).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route, Router
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.broker import Broker, MemoryBroker
from server.broker.redis import RedisBroker
from server.broker.redis_cluster import RedisClusterBroker
from server.config import Config
from server.gateway import Gateway
from server.http_api import API_HEADERS, HttpApi, json_response
from server.hub import Hub
from server.lifecycle.service import OrgDeletionRunner, OrgLifecycleService
from server.metrics import Metrics
from server.operations import Operations, now_ms
from server.presence import MemoryPresence, PresenceDirectory, RedisPresence
from server.privacy.account_deletion import AccountDeletion, DeletionRunner
from server.privacy.compaction import Compactor
from server.privacy.export import Exports
from server.privacy.retention import RetentionJob
from server.public_page import PublicPages
from server.ratelimit import (
    LocalWriteLimiter,
    RateClass,
    RedisWriteLimiter,
    WriteLimiter,
    class_limits,
)
from server.redisclient import RedisClient, RedisGuard, redis_client
from server.sessions.accounts import Accounts
from server.sessions.registry import SessionRegistry
from server.sessions.watcher import SessionWatcher
from server.signin.limits import SignInLimits
from server.signin.oidc import Oidc
from server.signin.passwords import Passwords
from server.signin.service import SignIn
from server.signin.sessions import Sessions
from server.tasks import TaskSupervisor
from storage import Store, StoreError, open_store

logger = logging.getLogger(__name__)

GATEWAY_PATH = "/ws"
# Why: a readiness probe must answer quickly even when the store hangs.
READY_TIMEOUT_S = 2.0


@dataclass(slots=True)
class Runtime:
    """What the lifespan built; routes reach it through ``app.state.runtime``."""

    store: Store
    broker: Broker
    presence: PresenceDirectory
    limits: Mapping[RateClass, WriteLimiter]
    redis: RedisClient | None
    guard: RedisGuard | None  # the breaker in front of ``redis``
    hub: Hub
    tasks: TaskSupervisor
    gateway: Gateway
    api: Router
    metrics: Metrics
    sessions: SessionWatcher
    deletions: DeletionRunner
    org_deletions: OrgDeletionRunner
    retention: RetentionJob
    compactor: Compactor
    signin_limits: SignInLimits
    oidc: Oidc


async def _build(config: Config) -> Runtime:
    store = await open_store(config.resolved_store_url)
    tasks = TaskSupervisor()
    metrics = Metrics()
    node = secrets.token_hex(6)  # names this process in broker envelopes and presence
    broker: Broker
    presence: PresenceDirectory
    limits: Mapping[RateClass, WriteLimiter]
    redis: RedisClient | None = None
    guard: RedisGuard | None = None
    shared_url = config.redis_cluster_url or config.redis_url
    if shared_url:
        redis = redis_client(shared_url, cluster=bool(config.redis_cluster_url))
        guard = RedisGuard(redis)  # one breaker: presence and the rate limit fail over together
        broker = (
            RedisClusterBroker(config.redis_cluster_url, prefix=config.redis_prefix)
            if config.redis_cluster_url
            else RedisBroker(config.redis_url, prefix=config.redis_prefix)
        )
        presence = RedisPresence(guard, prefix=config.redis_prefix, node=node)
        limits = {
            cls: RedisWriteLimiter(
                guard, prefix=config.redis_prefix, rate_per_s=rate, burst=burst, cls=cls
            )
            for cls, (rate, burst) in class_limits(config).items()
        }
    else:
        broker = MemoryBroker()
        presence = MemoryPresence()
        limits = {
            cls: LocalWriteLimiter(rate, burst)
            for cls, (rate, burst) in class_limits(config).items()
        }
    hub = Hub(
        store,
        broker,
        presence,
        tasks,
        metrics,
        node=node,
        reconcile_interval_s=config.reconcile_interval_s,
    )
    await broker.start(hub)
    await hub.start()
    operations = Operations(store, hub, limits, config)
    registry = SessionRegistry(max_per_user=config.max_connections_per_user)
    watcher = SessionWatcher(
        store, registry, poll_interval_s=config.session_poll_interval_s, end_org=hub.end_org
    )
    await watcher.start()
    retention = RetentionJob(
        store,
        server_days=config.retention_days,
        node=node,
        clock=now_ms,
        batch=config.retention_batch,
        interval_s=config.retention_interval_s,
        scrub=store.scrub,
        metrics=metrics,
    )
    await retention.start()
    gateway = Gateway(config, store, hub, operations, metrics, registry)
    metrics.gauge("cloison_connections", "Open WebSocket connections", lambda: gateway.connections)
    metrics.gauge(
        "cloison_broker_healthy", "1 while the broker is connected", lambda: broker.healthy
    )
    metrics.gauge(
        "cloison_broker_published", "Frames sent through the broker", lambda: broker.published
    )
    metrics.gauge(
        "cloison_broker_dropped", "Frames the broker could not send", lambda: broker.dropped
    )
    metrics.gauge(
        "cloison_broker_resets", "Broker reconnects followed by a catch-up", lambda: broker.resets
    )
    metrics.gauge(
        "cloison_broker_resent",
        "Dropped frames sent again so that other nodes see the gap",
        lambda: broker.resent,
    )
    if guard is not None:
        _redis_gauges(metrics, guard)
    if hasattr(store, "writer_stats"):  # both SQL stores count their group commits
        metrics.gauge(
            "cloison_store_failed_commits",
            "Group commits that failed (rolled back, or with an unknown outcome)",
            lambda: store.writer_stats.failed_groups,
        )
        metrics.gauge(
            "cloison_store_unknown_commits",
            "Group commits whose outcome is unknown (the connection broke during COMMIT)",
            lambda: store.writer_stats.unknown_groups,
        )
    _erasure_gauges(metrics, store)
    metrics.gauge(
        "cloison_session_changes", "Session changes read from the store", lambda: watcher.applied
    )
    metrics.gauge(
        "cloison_sessions_ended", "Sessions those changes ended on this node", lambda: watcher.ended
    )
    deletions = DeletionRunner(store, config, owner=node, publish=hub.publish)
    await deletions.start()  # resumes every unfinished job
    deletion = AccountDeletion(store, config, registry, wake=deletions.wake)
    org_deletions = OrgDeletionRunner(
        store, config, owner=node, publish=hub.publish, accounts=deletions.wake
    )
    await org_deletions.start()  # resumes every unfinished job
    lifecycle = OrgLifecycleService(store, config, end_org=hub.end_org, wake=org_deletions.wake)
    compactor = Compactor(store, config.pg_compact_interval_h * 3600 if _postgres(config) else 0)
    compactor.start()
    exports = Exports(store, member_exports=config.member_exports)
    sessions = Sessions(store, config, registry)
    signin_limits = SignInLimits.build(config, guard)
    signin = SignIn(store, sessions, Passwords(), signin_limits)
    oidc = Oidc(store, sessions, public_url=config.public_url)
    accounts = Accounts(store, config, registry)
    api = HttpApi(config, store, operations, accounts, deletion, exports, signin, oidc, lifecycle)
    return Runtime(
        store=store,
        broker=broker,
        presence=presence,
        limits=limits,
        redis=redis,
        guard=guard,
        hub=hub,
        tasks=tasks,
        gateway=gateway,
        api=Router(routes=api.routes()),
        metrics=metrics,
        sessions=watcher,
        deletions=deletions,
        org_deletions=org_deletions,
        retention=retention,
        compactor=compactor,
        signin_limits=signin_limits,
        oidc=oidc,
    )


def _postgres(config: Config) -> bool:
    """Whether the store is PostgreSQL (SQLite scrubs at each erasure, nothing to schedule)."""
    return config.resolved_store_url.startswith(("postgresql:", "postgres:"))


def _erasure_gauges(metrics: Metrics, store: Store) -> None:
    stats = store.erasure_stats  # one object, updated in place by the store
    metrics.gauge(
        "cloison_erasure_scrub_pending",
        "1 while erased bytes may remain in the SQLite write-ahead log (retried every second)",
        lambda: stats.scrub_pending,
    )
    metrics.gauge("cloison_erasure_scrubs", "Completed scrubs after erasures", lambda: stats.scrubs)
    metrics.gauge(
        "cloison_erasure_last_scrub_seconds",
        "Duration of the last completed scrub",
        lambda: stats.last_scrub_s,
    )
    metrics.gauge(
        "cloison_erasure_compactions",
        "Completed compactions (PostgreSQL: rewrites of every table)",
        lambda: stats.compactions,
    )
    metrics.gauge(
        "cloison_erasure_last_compaction_seconds",
        "Duration of the last completed compaction",
        lambda: stats.last_compaction_s,
    )
    metrics.gauge(
        "cloison_erasure_skipped_tables",
        "Tables the last compaction left as they were (locked, or too long to rewrite)",
        lambda: stats.skipped_tables,
    )


def _redis_gauges(metrics: Metrics, guard: RedisGuard) -> None:
    metrics.gauge(
        "cloison_redis_healthy",
        "1 while presence and the write rate limit reach Redis",
        lambda: guard.healthy,
    )
    metrics.gauge(
        "cloison_redis_outages",
        "Times presence and the rate limit lost Redis",
        lambda: guard.outages,
    )
    metrics.gauge(
        "cloison_redis_skipped",
        "Redis calls answered locally at once while Redis was away",
        lambda: guard.skipped,
    )


def _public_pages(config: Config, built: Callable[[], Runtime]) -> list[Route]:
    """The read-only pages of public spheres, when the operator enables them."""
    if not config.public_pages:
        return []

    pages = PublicPages(lambda: built().store)
    return [Route("/public/{sphere_id}", pages.page, methods=["GET"])]


def _web_client() -> list[Mount]:
    """The browser client, served from the ``clients`` package's ``web`` folder when present.

    Located without importing ``clients`` (the server does not depend on client code); the
    files are static, and nothing on the page is loaded from anywhere else.
    """
    spec = importlib.util.find_spec("clients")
    if spec is None or not spec.submodule_search_locations:
        return []
    root = Path(next(iter(spec.submodule_search_locations))) / "web"
    if not (root / "index.html").is_file():
        return []
    assets = _WebAssets(directory=root, html=True)
    return [Mount("/", app=_Headers(assets, WEB_HEADERS), name="web")]


class _WebAssets(StaticFiles):
    """The web client's folder, serving only the kinds of file a page loads.

    The folder also holds the client's README and may hold an editor's backup or a stray
    file; none of those is part of the page, so none is served.
    """

    SUFFIXES = frozenset({".html", ".js", ".css", ".svg", ".png", ".ico", ".webmanifest"})

    async def get_response(self, path: str, scope: Scope) -> Response:
        asset = PurePosixPath(path)
        if path not in ("", ".") and asset.suffix.lower() not in self.SUFFIXES:
            raise HTTPException(status_code=404)
        return await super().get_response(path, scope)


# The page loads nothing from elsewhere, submits no form anywhere and may not be framed.
WEB_HEADERS = (
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; "
        b"form-action 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)
# Every answer outside the web page (API, probes, metrics, and Starlette's own 404 and 405
# for those paths) carries these, like the API's JSON answers.
API_DEFAULT_HEADERS = tuple((k.lower().encode(), v.encode()) for k, v in API_HEADERS.items())
# Paths served by the web client's folder: the rest is API-like.
_NOT_THE_PAGE = ("/api/", "/healthz", "/readyz", "/metrics")


def _adding(send: Send, headers: tuple[tuple[bytes, bytes], ...]) -> Send:
    """``send``, adding ``headers`` to a response start that does not set them itself."""

    async def with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            present = {name.lower() for name, _ in message.get("headers", [])}
            extra = [(k, v) for k, v in headers if k not in present]
            message["headers"] = [*message.get("headers", []), *extra]
        await send(message)

    return with_headers


class _Headers:
    """Add ``headers`` to every HTTP response of ``app`` that does not set them itself."""

    def __init__(self, app: ASGIApp, headers: tuple[tuple[bytes, bytes], ...]) -> None:
        self._app = app
        self._headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, _adding(send, self._headers))


class _Deferred:
    """An ASGI app that forwards to one the lifespan builds: the routes are fixed up front."""

    def __init__(self, resolve: Callable[[], ASGIApp]) -> None:
        self._resolve = resolve

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._resolve()(scope, receive, send)


class CloisonApp(Starlette):
    """Starlette, with a direct path for the WebSocket gateway.

    Every ``send`` through Starlette's middleware stack goes through a wrapper per layer; the
    gateway sends a frame per delivery, so ``/ws`` skips the stack (it handles its own errors).
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == GATEWAY_PATH:
            scope["app"] = self
            await self.state.runtime.gateway(scope, receive, send)
            return
        if scope["type"] == "http" and str(scope["path"]).startswith(_NOT_THE_PAGE):
            send = _adding(send, API_DEFAULT_HEADERS)  # also covers Starlette's own errors
        await super().__call__(scope, receive, send)


def create_app(config: Config) -> CloisonApp:
    runtime: Runtime | None = None

    def built() -> Runtime:
        assert runtime is not None, "the lifespan has not run"
        return runtime

    async def healthz(request: Request) -> Response:
        """Liveness: the process serves requests."""
        connections = built().gateway.connections
        return json_response({"status": "ok", "connections": connections})

    async def readyz(request: Request) -> Response:
        """Readiness: the store takes writes and the broker is connected."""
        rt = built()
        reasons: list[str] = []
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                await rt.store.check_writable()
        except StoreError as exc:
            reasons.append(f"store: {exc.message}")
        except TimeoutError:
            reasons.append(f"store: no answer within {READY_TIMEOUT_S:g} s")
        store_ok = not reasons
        if not rt.broker.healthy:
            reasons.append("broker: Redis is unreachable")
        ready = not reasons
        body: dict[str, object] = {"ready": ready, "store": store_ok, "broker": rt.broker.healthy}
        if reasons:
            body["reasons"] = reasons
        return json_response(body, 200 if ready else 503)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        nonlocal runtime
        runtime = await _build(config)
        app.state.runtime = runtime
        try:
            yield
        finally:
            await runtime.gateway.aclose()
            await runtime.hub.aclose()
            await runtime.sessions.aclose()
            await runtime.deletions.aclose()
            await runtime.org_deletions.aclose()
            await runtime.retention.aclose()
            await runtime.tasks.wait(config.shutdown_timeout_s)
            await runtime.tasks.aclose()
            for limiter in runtime.limits.values():
                await limiter.aclose()
            await runtime.signin_limits.aclose()
            await runtime.oidc.aclose()
            await runtime.presence.aclose()
            await runtime.broker.aclose()
            if runtime.guard is not None:
                await runtime.guard.aclose()
            if runtime.redis is not None:
                await runtime.redis.aclose()
            await runtime.compactor.aclose()
            await runtime.store.aclose()
            logger.info("stopped")

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(built().metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return CloisonApp(
        routes=[
            Route("/metrics", metrics, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Mount("/api/v1", app=_Deferred(lambda: built().api)),
            *_public_pages(config, built),
            *_web_client(),
        ],
        lifespan=lifespan,
    )
