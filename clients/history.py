"""``HistoryIterator``: a sphere's posts from newest to oldest, one page per request."""

from __future__ import annotations

from typing import TYPE_CHECKING, Self

from protocol import Message, SphereId

if TYPE_CHECKING:
    from clients.client import Client


class HistoryIterator:
    """``async for message in client.history(sphere_id)``: posts from newest to oldest,
    fetched one page at a time as the iteration goes back in time.

    Once it ends, ``truncated_before`` says whether it ended at the sphere's retention horizon
    (the offset below which retention removed what the reader could have read) rather than
    at the beginning of the sphere."""

    def __init__(
        self, client: Client, sphere_id: SphereId, before: int | None, page_size: int
    ) -> None:
        self._client = client
        self._sphere_id = sphere_id
        self._before = before
        self._page_size = page_size
        self._page: list[Message] = []
        self._more = True
        self.truncated_before: int | None = None

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Message:
        if not self._page:
            if not self._more:
                raise StopAsyncIteration
            page = await self._client.history_page(
                self._sphere_id, before=self._before, limit=self._page_size
            )
            self._page = list(page.messages)  # ascending; popped from the end
            self._more = page.has_more and bool(page.messages)
            self.truncated_before = page.truncated_before
            if page.messages:
                self._before = page.messages[0].offset
            if not self._page:
                raise StopAsyncIteration
        return self._page.pop()
