"""The read-only web page of a public sphere, for people without an account (off by default).

``--public-pages`` serves ``GET /public/{sphere_id}``: the sphere's latest posts as plain HTML,
rendered on the server (no script, no style, nothing loaded from elsewhere), within what the
history promise lets outsiders read (``SphereRecord.public_from``). Any other sphere — private,
open, restricted, deleted or never created — answers the same 404 page, so the page is no
oracle of which ids exist. Deleted posts are tombstones on the page too; nothing is cached.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Sequence

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from protocol import EventKind, Message, Privacy, SphereId, UserId
from server.ratelimit import RateLimiter
from storage import Store

# Why: a page is what a visitor reads at once; the SDK or an account reads further.
PAGE_POSTS = 50
# Why: each page costs a history read and a name lookup per author; an address that asks more
# than this is a crawler or worse.
PAGE_RATE_PER_S = 2.0
PAGE_BURST = 20
# Why: the page is rendered on the server, so nothing needs to run or be fetched in it.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'; base-uri 'none'",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
NOT_FOUND_PAGE = (
    "<!doctype html><html lang=en><meta charset=utf-8><title>Not found</title>"
    "<h1>Not found</h1><p>There is no public sphere at this address.</p></html>"
)
TOO_MANY_PAGE = (
    "<!doctype html><html lang=en><meta charset=utf-8><title>Slow down</title>"
    "<h1>Too many requests</h1><p>Try again in a moment.</p></html>"
)


# A user id no user has: the page is read by nobody in particular.
ANONYMOUS = UserId("")


class PublicPages:
    def __init__(self, store: Callable[[], Store]) -> None:
        self._store = store  # built by the lifespan, after the routes
        self._limiter = RateLimiter(PAGE_RATE_PER_S, PAGE_BURST)

    async def page(self, request: Request) -> Response:
        address = request.client.host if request.client is not None else ""
        if self._limiter.take(address, time.monotonic()):
            return HTMLResponse(TOO_MANY_PAGE, 429, {**PAGE_HEADERS, "Retry-After": "1"})
        # Read as nobody: the sphere, and whether its organisation is suspended (then it is
        # no page at all), in one read.
        standing = await self._store().sphere_standing(
            SphereId(request.path_params["sphere_id"]), ANONYMOUS
        )
        sphere = standing.sphere
        if sphere is None or sphere.privacy is not Privacy.PUBLIC or standing.org_suspended:
            return HTMLResponse(NOT_FOUND_PAGE, 404, PAGE_HEADERS)
        events, _ = await self._store().history(
            sphere.sphere_id, before=None, after=None, limit=PAGE_POSTS, floor=sphere.public_from
        )
        posts = [e for e in events if e.kind is EventKind.POST]
        names = await self._names({p.author_id for p in posts if p.author_id is not None})
        return HTMLResponse(render(sphere.name, posts, names), 200, PAGE_HEADERS)

    async def _names(self, user_ids: set[UserId]) -> dict[UserId, str]:
        names = {}
        for user_id in user_ids:
            user = await self._store().get_user(user_id)
            names[user_id] = user.name if user is not None else "someone"
        return names


def render(title: str, posts: Sequence[Message], names: dict[UserId, str]) -> str:
    """The page: every value escaped, posts oldest first, times in UTC."""
    items = []
    for post in posts:
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(post.ts_ms / 1000))
        author = html.escape(
            names.get(post.author_id, "someone") if post.author_id else "deleted user"
        )
        if post.deleted or post.body is None:
            text = "<em>deleted</em>"
        else:
            text = html.escape(post.body).replace("\n", "<br>")
        edited = " (edited)" if post.edited_ms is not None and not post.deleted else ""
        items.append(
            f"<article><p><strong>{author}</strong> <time>{when}</time>{edited}</p>"
            f"<p>{text}</p></article>"
        )
    body = "\n".join(items) or "<p>Nothing has been posted yet.</p>"
    name = html.escape(title)
    return (
        f"<!doctype html><html lang=en><meta charset=utf-8>"
        f'<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{name}</title><h1>{name}</h1>"
        f"<p>A public sphere, read-only. Sign in to take part.</p>\n{body}\n</html>"
    )
