"""Reading conversations: the pinned posts, a thread, a sphere's threads, one's mentions.

Each read shows only posts at or above the reader's floor (the store filters them), so a
newcomer to a sphere that keeps its history from newcomers learns nothing older from here.
"""

from __future__ import annotations

from typing import cast

from protocol import (
    MAX_HISTORY_LIMIT,
    CloisonError,
    ErrorCode,
    Frame,
    GetThread,
    HistoryPage,
    ListMentions,
    ListPins,
    ListThreads,
    MentionList,
    Message,
    ThreadList,
    ThreadPage,
    ThreadSummary,
)
from server import paging
from server.access import Granted
from server.operations.context import Caller, Deps, Handler
from storage import MentionKey

# Why: a thread page, like a history page, is what a client shows at once.
DEFAULT_THREAD_LIMIT = 50
# Why: a list of threads or mentions shows this many at once; more is a page away.
DEFAULT_LIST_LIMIT = 50
# Why: pins are a sphere's few standing notices; past this many only the newest are listed.
MAX_PINS_LISTED = MAX_HISTORY_LIMIT
# The paging cursors: the latest reply's offset; (ts_ms, sphere_id, offset) of a post.
THREAD_CURSOR = (int,)
MENTION_CURSOR = (int, str, int)


def mention_key(message: Message) -> MentionKey:
    return (message.ts_ms, message.sphere_id, message.offset)


class ConversationReads:
    def __init__(self, deps: Deps) -> None:
        self._deps = deps
        self._store = deps.store

    def handlers(self) -> dict[type[Frame], Handler]:
        return {
            ListPins: self._list_pins,
            GetThread: self._get_thread,
            ListThreads: self._list_threads,
            ListMentions: self._list_mentions,
        }

    async def _list_pins(self, caller: Caller, frame: ListPins, grant: Granted | None) -> Frame:
        posts, more = await self._store.list_pins(
            frame.sphere_id, caller.user.user_id, limit=MAX_PINS_LISTED
        )
        posts, trimmed = paging.fit_page(
            posts, newest=True, budget=self._deps.page_bytes, codec=self._deps.codec(caller)
        )
        return HistoryPage(
            sphere_id=frame.sphere_id, messages=posts, has_more=more or trimmed, ref=frame.ref
        )

    async def _get_thread(self, caller: Caller, frame: GetThread, grant: Granted | None) -> Frame:
        thread = await self._store.get_thread(
            frame.sphere_id,
            frame.root,
            caller.user.user_id,
            after=frame.after or 0,
            limit=frame.limit or DEFAULT_THREAD_LIMIT,
        )
        if thread is None:
            raise CloisonError("no such message", code=ErrorCode.NOT_FOUND)
        root, replies, more = thread
        codec = self._deps.codec(caller)
        replies, trimmed = paging.fit_page(
            replies,
            newest=False,
            budget=self._deps.page_bytes - paging.encoded_size(codec, root),
            codec=codec,
        )
        return ThreadPage(
            sphere_id=frame.sphere_id,
            root=root,
            replies=replies,
            has_more=more or trimmed,
            ref=frame.ref,
        )

    async def _list_threads(
        self, caller: Caller, frame: ListThreads, grant: Granted | None
    ) -> Frame:
        limit = frame.limit or DEFAULT_LIST_LIMIT
        before = paging.read_cursor(frame.after, THREAD_CURSOR)[0] if frame.after else None
        found = await self._store.list_threads(
            frame.sphere_id, caller.user.user_id, before=cast("int | None", before), limit=limit + 1
        )
        codec = self._deps.codec(caller)
        summaries = [
            ThreadSummary(
                root=t.root, replies=t.replies, last_offset=t.last_offset, last_ts_ms=t.last_ts_ms
            )
            for t in found
        ]
        threads, cursor = paging.fit_listing(
            summaries,
            limit,
            budget=self._deps.page_bytes,
            size=lambda t: paging.encoded_size(
                codec, ThreadList(sphere_id=frame.sphere_id, threads=[t])
            ),
            key=lambda t: (t.last_offset,),
        )
        return ThreadList(sphere_id=frame.sphere_id, threads=threads, next=cursor, ref=frame.ref)

    async def _list_mentions(
        self, caller: Caller, frame: ListMentions, grant: Granted | None
    ) -> Frame:
        limit = frame.limit or DEFAULT_LIST_LIMIT
        after = paging.read_cursor(frame.after, MENTION_CURSOR) if frame.after else None
        found = await self._store.list_mentions(
            caller.user.user_id, after=cast("MentionKey | None", after), limit=limit + 1
        )
        codec = self._deps.codec(caller)
        messages, cursor = paging.fit_listing(
            found,
            limit,
            budget=self._deps.page_bytes,
            size=lambda m: paging.encoded_size(codec, m),
            key=mention_key,
        )
        return MentionList(messages=messages, next=cursor, ref=frame.ref)
