"""Moderating a sphere's members: bans, mutes, the transfer of ownership, deleting a sphere.

A ban removes the user (a member or not) and keeps them out of every way in (join, request,
invitation, being added) until it is lifted. A mute keeps a member reading but not speaking
(the rights that speak: post, reply, react, edit, type) until it ends by itself or is lifted;
the store refuses a muted author's writes where they commit, whichever node the mute came
through. Each act is a ``member`` event in the sphere's stream and an entry of its audit log,
written in one transaction.

Deleting a sphere deletes every row of it in one transaction; its last event (a ``sphere``
event with ``deleted`` true, never stored) then tells every node, which ends its
subscriptions with the reason ``deleted``. The server's audit log keeps that it was deleted.
"""

from __future__ import annotations

from protocol import (
    Ban,
    BanInfo,
    BanList,
    DeleteSphere,
    Frame,
    ListBans,
    Message,
    Mute,
    Ok,
    TransferOwnership,
    Unban,
    Unmute,
)
from server.access import Granted
from server.governance import decisions
from server.governance.entry import DEFAULT_ENTRY_LIMIT, fit_page, read_after
from server.operations.context import Caller, Deps, Handler, now_ms
from storage import EntryKey


def _ban_key(ban: BanInfo) -> EntryKey:
    return (ban.ts_ms, ban.user_id)


class ModerationHandlers:
    def __init__(self, deps: Deps) -> None:
        self._deps = deps
        self._store = deps.store
        self._hub = deps.hub

    def handlers(self) -> dict[type[Frame], Handler]:
        return {
            Ban: self._ban,
            Unban: self._unban,
            ListBans: self._list_bans,
            Mute: self._mute,
            Unmute: self._unmute,
            TransferOwnership: self._transfer,
            DeleteSphere: self._delete_sphere,
        }

    async def _publish(self, event: Message | None) -> None:
        if event is not None:
            await self._hub.publish(event)

    async def _ban(self, caller: Caller, frame: Ban, grant: Granted | None) -> Frame:
        event = await self._store.ban(
            frame.sphere_id,
            caller.user.user_id,
            frame.user_id,
            frame.reason,
            decisions.deciding_ban(frame.reason),
            now_ms=now_ms(),
        )
        await self._publish(event)
        return Ok(ref=frame.ref)

    async def _unban(self, caller: Caller, frame: Unban, grant: Granted | None) -> Frame:
        event = await self._store.unban(
            frame.sphere_id,
            caller.user.user_id,
            frame.user_id,
            decisions.decide_unban,
            now_ms=now_ms(),
        )
        await self._publish(event)
        return Ok(ref=frame.ref)

    async def _list_bans(self, caller: Caller, frame: ListBans, grant: Granted | None) -> Frame:
        limit = frame.limit or DEFAULT_ENTRY_LIMIT
        page = await self._store.list_bans(
            frame.sphere_id, limit=limit + 1, after=read_after(frame.after)
        )
        bans, cursor = fit_page(
            self._deps,
            caller,
            page,
            limit,
            lambda items: BanList(sphere_id=frame.sphere_id, bans=items),
            _ban_key,
        )
        return BanList(sphere_id=frame.sphere_id, bans=bans, next=cursor, ref=frame.ref)

    async def _mute(self, caller: Caller, frame: Mute, grant: Granted | None) -> Frame:
        now = now_ms()
        event = await self._store.set_muted(
            frame.sphere_id,
            caller.user.user_id,
            frame.user_id,
            decisions.deciding_mute(now + frame.duration_s * 1000),
            now_ms=now,
        )
        await self._publish(event)
        return Ok(ref=frame.ref)

    async def _unmute(self, caller: Caller, frame: Unmute, grant: Granted | None) -> Frame:
        now = now_ms()
        event = await self._store.set_muted(
            frame.sphere_id,
            caller.user.user_id,
            frame.user_id,
            decisions.deciding_unmute(now),
            now_ms=now,
        )
        await self._publish(event)
        return Ok(ref=frame.ref)

    async def _transfer(
        self, caller: Caller, frame: TransferOwnership, grant: Granted | None
    ) -> Frame:
        owner = caller.user.user_id
        events = await self._store.change_members(
            frame.sphere_id,
            owner,
            [(frame.user_id, decisions.decide_new_owner), (owner, decisions.decide_former_owner)],
            now_ms=now_ms(),
        )
        for event in events:
            await self._hub.publish(event)
        return Ok(ref=frame.ref)

    async def _delete_sphere(
        self, caller: Caller, frame: DeleteSphere, grant: Granted | None
    ) -> Frame:
        last = await self._store.delete_sphere(
            frame.sphere_id, caller.user.user_id, decisions.check_delete, now_ms=now_ms()
        )
        await self._hub.publish(last)
        return Ok(ref=frame.ref)
