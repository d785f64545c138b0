"""`pulse gateway`: the aiohttp application, health and readiness, metrics, and the process.

One process, one event loop; run several behind a load balancer to scale (no shared state
except the broker; rate limits are per process). Readiness follows the broker: a background
task asks it for metadata every second and creates Pulse's topics when they are missing; while
it does not answer, /readyz and every ingest request answer 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sinks.metrics import Metrics
from streams.embedded import read_addresses
from streams.errors import ConfigError
from streams.gateway import amplitude, batch, posthog, segment
from streams.gateway.core import Gateway
from streams.gateway.http import GATEWAY, respond
from streams.gateway.openapi import document
from streams.gateway.producer import GatewayProducer
from streams.plan import load_plans
from streams.settings import Settings
from streams.topics import create_topics

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CORS_HEADERS = {
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, Content-Encoding, "
                                    "X-Pulse-Key, X-Pulse-User-Id, X-CSRFToken",
    "Access-Control-Max-Age": "86400",
}


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Latency and status of every API request; CORS for browsers (write keys of browser SDKs
    are public by design, so any origin may send); JSON for unknown paths."""
    started = time.perf_counter()
    if request.method == "OPTIONS":
        response: web.StreamResponse = web.Response(status=204, headers=CORS_HEADERS)
    else:
        try:
            response = await handler(request)
        except web.HTTPException as err:
            response = respond(err.status, {"error": err.reason,
                                            "detail": f"{request.method} {request.path}"})
    if "Origin" in request.headers:
        response.headers["Access-Control-Allow-Origin"] = request.headers["Origin"]
        response.headers["Vary"] = "Origin"
    api = request.get("api")
    if api is not None:
        gw = request.app[GATEWAY]
        gw.metrics.gateway_requests.labels(api, str(response.status)).inc()
        gw.metrics.gateway_request_seconds.labels(api).observe(time.perf_counter() - started)
    return response


async def healthz(request: web.Request) -> web.Response:
    return respond(200, {"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    if gw.ready:
        return respond(200, {"status": "ready"})
    return respond(503, {"status": "unavailable", "detail": "the broker does not answer or "
                                                            "Pulse's topics are missing"},
                   {"Retry-After": "2"})


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[GATEWAY].metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    return respond(200, document())


def build_app(gw: Gateway) -> web.Application:
    app = web.Application(middlewares=[observe],
                          client_max_size=gw.settings.gateway_max_body_bytes)
    app[GATEWAY] = gw
    app.add_routes([web.get("/healthz", healthz), web.get("/readyz", readyz),
                    web.get("/metrics", metrics), web.get("/openapi.json", openapi)])
    for module in (batch, segment, posthog, amplitude):
        app.add_routes(module.routes())
    return app


async def watch_broker(gw: Gateway, bootstrap: str, interval: float = 1.0) -> None:
    """Keep `gw.ready` true only while the broker answers and the topics exist."""
    assert gw.producer is not None
    s = gw.settings
    wanted = {s.ingest_topic, s.deadletter_topic, s.user_properties_topic}
    loop = asyncio.get_running_loop()
    while True:
        try:
            topics = await loop.run_in_executor(None, gw.producer.topics, 2.0)
            if not wanted <= topics:
                await create_topics(bootstrap, s, wait=10)
                topics = await loop.run_in_executor(None, gw.producer.topics, 2.0)
            ready = wanted <= topics
        except Exception as err:  # broker down, timeouts, admin errors: not ready
            log.debug("gateway: broker check failed: %s", err)
            ready = False
        if ready != gw.ready:
            (log.info if ready else log.warning)(
                "gateway: broker %s", "ready" if ready else "unavailable: answering 503")
        gw.ready = ready
        gw.metrics.gateway_broker_ready.set(1 if ready else 0)
        await asyncio.sleep(interval if ready else min(interval, 0.5))


def kafka_bootstrap(settings: Settings) -> str:
    if settings.kafka_bootstrap:
        return settings.kafka_bootstrap
    recorded = read_addresses(settings.state_dir)
    if recorded is None:
        raise ConfigError(f"PULSE_KAFKA_BOOTSTRAP is not set and no running `pulse dev` found "
                          f"under {settings.state_dir}/: set it, or start `pulse dev`")
    return recorded.kafka_bootstrap


def make_gateway(settings: Settings, bootstrap: str) -> Gateway:
    """Check the configuration first (keys, aliases, plans), then connect the producer."""
    plans = load_plans(directory=settings.plans_dir)
    gw = Gateway(settings, plans, Metrics(), None)
    if not len(gw.keys):
        log.warning("gateway: no write keys configured (PULSE_GATEWAY_KEYS): every request "
                    "will be refused")
    gw.producer = GatewayProducer(
        bootstrap, idempotent=settings.gateway_idempotent,
        timeout_seconds=settings.gateway_delivery_timeout_seconds,
        linger_ms=settings.gateway_linger_ms)
    return gw


async def serve(settings: Settings) -> None:
    bootstrap = kafka_bootstrap(settings)
    gw = make_gateway(settings, bootstrap)
    runner = web.AppRunner(build_app(gw), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, settings.gateway_host, settings.gateway_port, backlog=1024,
                       reuse_address=True)
    await site.start()
    port = runner.addresses[0][1]
    # Plans, settings and the application are long-lived: keep them out of the collector's
    # scans, and collect the young generation less often (requests allocate many short-lived
    # dicts), which trims the latency tail.
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    print(f"gateway: http://{settings.gateway_host}:{port} (broker {bootstrap})", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    watcher = asyncio.create_task(watch_broker(gw, bootstrap))
    try:
        await stop.wait()
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await runner.cleanup()  # stops accepting, finishes requests in flight
        assert gw.producer is not None
        await loop.run_in_executor(None, gw.producer.close)


def run_gateway(settings: Settings) -> None:
    asyncio.run(serve(settings))
