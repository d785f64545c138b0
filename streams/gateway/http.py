"""HTTP helpers shared by the API modules: bodies, keys, JSON responses."""

from __future__ import annotations

import base64
import binascii
import logging
import zlib
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from aiohttp import web

from streams.gateway.core import Checked, Gateway
from streams.gateway.mapping import Item
from streams.gateway.producer import Unavailable
from streams.validate import utc_now

log = logging.getLogger(__name__)

GATEWAY = web.AppKey("gateway", Gateway)
GZIP_MAGIC = b"\x1f\x8b"


class BodyError(Exception):
    """A body that cannot be read: `reason` is a metrics code, `detail` words for the client."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def respond(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), headers=headers,
                        content_type="application/json")


async def read_body(request: web.Request) -> bytes:
    """The body, decompressed by aiohttp when Content-Encoding says so, within the size limit."""
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise BodyError("too_large", f"request body larger than {request.client_max_size} "
                        "bytes") from None
    except Exception as err:  # a broken gzip/deflate stream or a truncated body
        raise BodyError("invalid_body", f"body could not be read: {str(err)[:120]}") from None


def gunzip(data: bytes, limit: int) -> bytes:
    """Decompress a gzip body ourselves (PostHog's `compression=gzip-js` sends no
    Content-Encoding), never beyond `limit` bytes."""
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = decompressor.decompress(data, limit + 1)
    except zlib.error as err:
        raise BodyError("invalid_body", f"gzip body could not be decompressed: {err}") from None
    if len(out) > limit or decompressor.unconsumed_tail:
        raise BodyError("too_large", f"decompressed body larger than {limit} bytes")
    if not decompressor.eof:
        raise BodyError("invalid_body", "gzip body is truncated")
    return out


def b64decode(data: bytes) -> bytes:
    try:
        padded = data.strip() + b"=" * (-len(data.strip()) % 4)
        return base64.b64decode(padded, altchars=b"-_" if b"-" in data or b"_" in data else None,
                                validate=False)
    except (binascii.Error, ValueError) as err:
        raise BodyError("invalid_body", f"data is not base64: {err}") from None


def loads(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as err:
        raise BodyError("invalid_json", f"body is not valid JSON: {str(err)[:120]}") from None


def basic_user(request: web.Request) -> str | None:
    """The user part of `Authorization: Basic base64(user:password)` (Segment's write key)."""
    header = request.headers.get("Authorization", "")
    if header[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, ValueError):
        return None
    return decoded.split(":", 1)[0] or None


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return None


@dataclass
class Result:
    """How a request's items ended: `ok` (delivered and acknowledged), `rejected` (refused by
    the API's convention, nothing produced), `rate_limited` or `unavailable` (retry later)."""

    kind: Literal["ok", "rejected", "rate_limited", "unavailable"]
    checked: Checked | None = None
    retry_after: float = 0.0


UNAVAILABLE_RETRY_SECONDS = 2.0


async def process(gw: Gateway, api: str, app: str, digest: str, items: list[Item], *,
                  reject_invalid: bool) -> Result:
    """Rate-limit, validate and deliver one authenticated request's items.

    With `reject_invalid` (the seed-001 batch API) any invalid item refuses the whole request
    and nothing is produced, so the client can fix and resend it; otherwise accepted events go
    to the ingest topic and invalid ones to the dead-letter topic, all acknowledged before the
    answer."""
    wait = gw.limiter.take(digest, len(items))
    if wait:
        gw.refuse(api, app, "rate_limited")
        return Result("rate_limited", retry_after=wait)
    checked = gw.check(app, items, utc_now())
    if reject_invalid and checked.rejected:
        gw.count(api, app, Checked(rejected=checked.rejected), "rejected")
        refused = len({i.index for i in items} - {r.index for r in checked.rejected})
        if refused:
            gw.metrics.gateway_events.labels(api, app, "rejected").inc(refused)
        return Result("rejected", checked)
    if not gw.ready:
        gw.refuse(api, app, "unavailable")
        return Result("unavailable", retry_after=UNAVAILABLE_RETRY_SECONDS)
    try:
        await gw.deliver(api, app, checked)
    except Unavailable as err:
        log.warning("gateway: broker unavailable (%s); answering 503", err)
        gw.ready = False
        gw.refuse(api, app, "unavailable")
        return Result("unavailable", retry_after=UNAVAILABLE_RETRY_SECONDS)
    return Result("ok", checked)
