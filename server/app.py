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
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route, Router
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from protocol import SphereId
from server.broker import Broker, MemoryBroker
from server.broker.redis import RedisBroker
from server.broker.redis_cluster import RedisClusterBroker
from server.config import Config
from server.gateway import Gateway
from server.http_api import HttpApi, json_response
from server.hub import Hub
from server.metrics import Metrics
from server.operations import Operations
from server.presence import MemoryPresence, PresenceDirectory, RedisPresence
from server.ratelimit import LocalWriteLimiter, RedisWriteLimiter, WriteLimiter
from server.redisclient import RedisClient, redis_client
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
    writes: WriteLimiter
    redis: RedisClient | None
    hub: Hub
    tasks: TaskSupervisor
    gateway: Gateway
    api: Router
    metrics: Metrics


async def _build(config: Config) -> Runtime:
    store = await open_store(config.resolved_store_url)
    tasks = TaskSupervisor()
    metrics = Metrics()
    node = secrets.token_hex(6)  # names this process in broker envelopes and presence
    broker: Broker
    presence: PresenceDirectory
    writes: WriteLimiter
    redis: RedisClient | None = None
    shared_url = config.redis_cluster_url or config.redis_url
    if shared_url:
        redis = redis_client(shared_url, cluster=bool(config.redis_cluster_url))
        broker = (
            RedisClusterBroker(config.redis_cluster_url, prefix=config.redis_prefix)
            if config.redis_cluster_url
            else RedisBroker(config.redis_url, prefix=config.redis_prefix)
        )
        presence = RedisPresence(redis, prefix=config.redis_prefix, node=node)
        writes = RedisWriteLimiter(
            redis,
            prefix=config.redis_prefix,
            rate_per_s=config.publish_rate_per_s,
            burst=config.publish_burst,
        )
    else:
        broker = MemoryBroker()
        presence = MemoryPresence()
        writes = LocalWriteLimiter(config.publish_rate_per_s, config.publish_burst)
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
    operations = Operations(store, hub, writes, config)
    gateway = Gateway(config, store, hub, operations, metrics)
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
    api = HttpApi(config, store, operations, on_revoke=gateway.disconnect_token)
    return Runtime(
        store=store,
        broker=broker,
        presence=presence,
        writes=writes,
        redis=redis,
        hub=hub,
        tasks=tasks,
        gateway=gateway,
        api=Router(routes=api.routes()),
        metrics=metrics,
    )


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
    return [Mount("/", app=_SecurityHeaders(StaticFiles(directory=root, html=True)), name="web")]


class _SecurityHeaders:
    """The page loads nothing from elsewhere and may not be framed; say so to the browser."""

    HEADERS = (
        (
            b"content-security-policy",
            b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
        ),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
    )

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.HEADERS]
            await send(message)

        await self._app(scope, receive, with_headers)


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
        """Readiness: the store answers and the broker is connected."""
        rt = built()
        store_ok = True
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                await rt.store.get_sphere(SphereId("s_readiness_probe"))
        except (StoreError, TimeoutError):
            store_ok = False
        ready = store_ok and rt.broker.healthy
        body = {"ready": ready, "store": store_ok, "broker": rt.broker.healthy}
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
            await runtime.tasks.wait(config.shutdown_timeout_s)
            await runtime.tasks.aclose()
            await runtime.writes.aclose()
            await runtime.presence.aclose()
            await runtime.broker.aclose()
            if runtime.redis is not None:
                await runtime.redis.aclose()
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
            *_web_client(),
        ],
        lifespan=lifespan,
    )
