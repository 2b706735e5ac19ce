"""The governance and conversation commands of ``cloison chat``.

``GovernanceCommands`` is the part of the chat session that speaks for sphere governance:
invitations, join requests, moderation, the charter, the audit log, settings, replies,
reactions, pins, threads, mentions and reports. Users are named by their name as the chat
knows it (from member lists and events) or by their user id; posts by their ``#OFFSET``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from clients import _chat_format as fmt
from clients._terminal import Terminal, clean
from clients.client import Client
from protocol import (
    HistoryMode,
    Invitation,
    JoinPolicy,
    Message,
    Privacy,
    ReportReason,
    Role,
    SphereId,
    SphereSummary,
    UserId,
)

GOVERNANCE_HELP = """Entering and leaving:
  /invites          invitations made to you (numbered)
  /accept N|ID      accept invitation N of /invites (or by id); /decline N|ID
  /request [NOTE]   ask to join the sphere /join said needs approval
  /invite USER [ROLE]  invite a user (by name or id) to the open sphere
  /requests         pending join requests; /approve USER, /refuse USER
  /leave            leave the open sphere
  /members          the open sphere's members and roles (when you may see them)
Moderation (administrators):
  /ban USER [REASON], /unban USER, /bans
  /mute USER MINUTES, /unmute USER
  /transfer USER    make USER the owner (you become an administrator)
  /delete-sphere    delete the open sphere and all its messages (asks to confirm)
  /audit            the open sphere's audit log; /reports: reported posts
  /settings [type private|open|public|restricted] [listed yes|no]
            [join free|approval|invitation] [history since_joining|full]
  /charter [TEXT]   show the charter, or set it to TEXT; /accept-charter to accept it
Conversations (#OFFSET: the number before each message):
  /reply OFFSET TEXT, /thread OFFSET, /threads
  /react OFFSET EMOJI, /unreact OFFSET EMOJI
  /pin OFFSET, /unpin OFFSET, /pins
  /mentions         posts that mention you, in all your spheres
  /report OFFSET spam|abusive|other [COMMENT]"""

_YES = {"yes", "y", "on", "true", "1"}
_NO = {"no", "n", "off", "false", "0"}
_AUDIT_LINES = 30


class UsageError(Exception):
    """A command typed wrongly; the message says how to type it."""


class GovernanceCommands:
    """Governance commands; the chat session (``clients.chat.Chat``) provides the state."""

    _client: Client
    _term: Terminal
    _current: SphereId | None
    _spheres: dict[SphereId, SphereSummary]
    _names: dict[UserId, str]
    _asking: SphereId | None  # the sphere /join found needs approval, for /request
    _charter_due: SphereId | None  # the sphere whose charter must be accepted
    _invitations: list[Invitation]
    _deleting: SphereId | None

    def _name(self, user_id: UserId) -> str:
        return clean(self._names.get(user_id, user_id))

    async def _open_sphere(self, sphere_id: SphereId) -> None:
        raise NotImplementedError

    async def _follow(self, sphere_id: SphereId) -> bool:
        raise NotImplementedError

    def _governance_commands(self) -> dict[str, Callable[[str], Awaitable[None]]]:
        return {
            "/invites": self._cmd_invites,
            "/accept": self._cmd_accept,
            "/decline": self._cmd_decline,
            "/request": self._cmd_request,
            "/invite": self._cmd_invite,
            "/requests": self._cmd_requests,
            "/approve": lambda arg: self._answer(arg, accept=True),
            "/refuse": lambda arg: self._answer(arg, accept=False),
            "/leave": self._cmd_leave,
            "/members": self._cmd_members,
            "/ban": self._cmd_ban,
            "/unban": self._cmd_unban,
            "/bans": self._cmd_bans,
            "/mute": self._cmd_mute,
            "/unmute": self._cmd_unmute,
            "/transfer": self._cmd_transfer,
            "/delete-sphere": self._cmd_delete_sphere,
            "/audit": self._cmd_audit,
            "/reports": self._cmd_reports,
            "/settings": self._cmd_settings,
            "/charter": self._cmd_charter,
            "/accept-charter": self._cmd_accept_charter,
            "/reply": self._cmd_reply,
            "/thread": self._cmd_thread,
            "/threads": self._cmd_threads,
            "/react": lambda arg: self._reaction(arg, add=True),
            "/unreact": lambda arg: self._reaction(arg, add=False),
            "/pin": lambda arg: self._pinning(arg, pin=True),
            "/unpin": lambda arg: self._pinning(arg, pin=False),
            "/pins": self._cmd_pins,
            "/mentions": self._cmd_mentions,
            "/report": self._cmd_report,
        }

    # -- helpers --------------------------------------------------------------------------

    def _open_id(self) -> SphereId:
        if self._current is None:
            raise UsageError("no sphere is open: /spheres, then /join N")
        return self._current

    def _user(self, arg: str) -> UserId:
        """The user ``arg`` names: a known name (any case), else a user id as typed."""
        if not arg:
            raise UsageError("name a user (their name or user id)")
        wanted = arg.casefold()
        for user_id, name in self._names.items():
            if name.casefold() == wanted:
                return user_id
        return UserId(arg)

    @staticmethod
    def _offset(arg: str, usage: str) -> tuple[int, str]:
        first, _, rest = arg.partition(" ")
        number = first.removeprefix("#")
        if not number.isdecimal() or int(number) < 1:
            raise UsageError(usage)
        return int(number), rest.strip()

    def _show_posts(self, messages: list[Message]) -> None:
        for message in messages:
            self._term.show(fmt.event(message, self._name))

    # -- entering and leaving ---------------------------------------------------------------

    async def _cmd_invites(self, _: str) -> None:
        self._invitations = await self._client.invitations()
        if not self._invitations:
            self._term.show("No pending invitations.")
            return
        for n, inv in enumerate(self._invitations, 1):
            self._term.show(
                f"{n:>3}. {clean(inv.sphere_name)} as {inv.role}, from {clean(inv.inviter_name)}"
                f" (expires {fmt.stamp(inv.expires_ms)})  [{inv.invitation_id}]"
            )
        self._term.show("/accept N or /decline N")

    def _invitation_id(self, arg: str) -> str:
        if arg.isdecimal() and 1 <= int(arg) <= len(self._invitations):
            return self._invitations[int(arg) - 1].invitation_id
        if not arg or arg.isdecimal():
            raise UsageError("/accept N (a number from /invites) or /accept INVITATION_ID")
        return arg

    async def _cmd_accept(self, arg: str) -> None:
        sphere = await self._client.accept_invitation(self._invitation_id(arg))
        self._spheres[sphere.sphere_id] = sphere
        self._term.show(f"* you entered {clean(sphere.name)} as {sphere.role}")
        if await self._follow(sphere.sphere_id):
            await self._open_sphere(sphere.sphere_id)

    async def _cmd_decline(self, arg: str) -> None:
        await self._client.decline_invitation(self._invitation_id(arg))
        self._term.show("* invitation declined")

    async def _cmd_request(self, arg: str) -> None:
        if self._asking is None:
            raise UsageError("/join SPHERE_ID first; it tells you when a sphere needs approval")
        await self._client.request_join(self._asking, arg or None)
        self._term.show("* request sent; an administrator will answer it")

    async def _cmd_invite(self, arg: str) -> None:
        who, _, role_text = arg.partition(" ")
        role_text = role_text.strip().lower() or Role.MEMBER
        if role_text not in set(Role):
            raise UsageError("/invite USER [owner|admin|publisher|member|visitor]")
        invitation = await self._client.invite(self._open_id(), self._user(who), Role(role_text))
        self._term.show(
            f"* invited {clean(invitation.invitee_name)} as {invitation.role}"
            f" (until {fmt.stamp(invitation.expires_ms)})"
        )

    async def _cmd_requests(self, _: str) -> None:
        requests = await self._client.join_requests(self._open_id())
        if not requests:
            self._term.show("No pending join requests.")
        for request in requests:
            self._names.setdefault(request.user_id, request.name)
            note = f": {clean(request.comment)}" if request.comment else ""
            self._term.show(f"  {clean(request.name)} [{request.user_id}]{note}")
        if requests:
            self._term.show("/approve USER or /refuse USER")

    async def _answer(self, arg: str, *, accept: bool) -> None:
        user_id = self._user(arg)
        await self._client.answer_request(self._open_id(), user_id, accept=accept)
        self._term.show(f"* {'admitted' if accept else 'refused'} {self._name(user_id)}")

    async def _cmd_leave(self, _: str) -> None:
        sphere_id = self._open_id()
        await self._client.leave(sphere_id)
        self._spheres.pop(sphere_id, None)
        self._current = None
        self._term.prompt = "> "
        self._term.show("* you left the sphere")

    async def _cmd_members(self, _: str) -> None:
        members = await self._client.list_members(self._open_id())
        for member in members:
            self._names[member.user_id] = member.name
            self._term.show(f"  {clean(member.name)} [{member.user_id}] {member.role}")

    # -- moderation -----------------------------------------------------------------------

    async def _cmd_ban(self, arg: str) -> None:
        who, _, reason = arg.partition(" ")
        await self._client.ban(self._open_id(), self._user(who), reason.strip() or None)

    async def _cmd_unban(self, arg: str) -> None:
        await self._client.unban(self._open_id(), self._user(arg))

    async def _cmd_bans(self, _: str) -> None:
        bans = await self._client.bans(self._open_id())
        if not bans:
            self._term.show("Nobody is banned.")
        for ban in bans:
            why = f": {clean(ban.reason)}" if ban.reason else ""
            self._term.show(
                f"  {clean(ban.name)} [{ban.user_id}] by {self._name(ban.banned_by)}"
                f" on {fmt.stamp(ban.ts_ms)}{why}"
            )

    async def _cmd_mute(self, arg: str) -> None:
        who, _, minutes = arg.partition(" ")
        if not minutes.strip().isdecimal() or int(minutes) < 1:
            raise UsageError("/mute USER MINUTES")
        await self._client.mute(self._open_id(), self._user(who), int(minutes) * 60)

    async def _cmd_unmute(self, arg: str) -> None:
        await self._client.unmute(self._open_id(), self._user(arg))

    async def _cmd_transfer(self, arg: str) -> None:
        user_id = self._user(arg)
        await self._client.transfer_ownership(self._open_id(), user_id)
        self._term.show(f"* {self._name(user_id)} is now the owner; you are an administrator")

    async def _cmd_delete_sphere(self, arg: str) -> None:
        sphere_id = self._open_id()
        if arg != "yes" or self._deleting != sphere_id:
            self._deleting = sphere_id
            name = clean(self._spheres[sphere_id].name) if sphere_id in self._spheres else ""
            self._term.show(
                f"! this deletes {name or sphere_id} and all its messages for everyone;"
                " type /delete-sphere yes to go ahead"
            )
            return
        self._deleting = None
        await self._client.delete_sphere(sphere_id)
        self._spheres.pop(sphere_id, None)
        self._current = None
        self._term.prompt = "> "
        self._term.show("* sphere deleted")

    async def _cmd_audit(self, _: str) -> None:
        page = await self._client.audit(self._open_id(), limit=_AUDIT_LINES)
        self._term.show("-- audit log, newest first --")
        for entry in page.entries:
            self._term.show(fmt.audit(entry, self._name))
        if page.has_more:
            self._term.show(f"  (older entries not shown; the newest {_AUDIT_LINES} are)")

    async def _cmd_reports(self, _: str) -> None:
        page = await self._client.reports(self._open_id())
        if not page.reports:
            self._term.show("No reports.")
        for report in page.reports:
            note = f": {clean(report.comment)}" if report.comment else ""
            self._term.show(
                f"  #{report.target} {report.reason} by {self._name(report.reporter_id)}"
                f" on {fmt.stamp(report.ts_ms)}{note}"
            )

    async def _cmd_settings(self, arg: str) -> None:
        sphere_id = self._open_id()
        words = arg.lower().split()
        if not words:
            self._term.show(f"settings: {fmt.settings(self._spheres[sphere_id])}")
            return
        if len(words) % 2:
            raise UsageError("/settings NAME VALUE ...; /help shows the names")
        change = _Settings()
        for key, value in zip(words[::2], words[1::2], strict=True):
            change.set(key, value)
        sphere = await self._client.update_sphere(
            sphere_id,
            privacy=change.privacy,
            listed=change.listed,
            join_policy=change.join_policy,
            history=change.history,
        )
        self._spheres[sphere_id] = sphere
        self._term.show(f"settings: {fmt.settings(sphere)}")

    async def _cmd_charter(self, arg: str) -> None:
        sphere_id = self._charter_due or self._open_id()
        if arg:
            await self._client.set_charter(self._open_id(), arg)
            self._term.show("* charter set; members accept it before reading on")
            return
        charter = await self._client.charter(sphere_id)
        if not charter.version:
            self._term.show("This sphere has no charter.")
            return
        self._term.show(f"-- charter, version {charter.version} --")
        for line in clean(charter.text).splitlines():
            self._term.show(f"  {line}")
        if charter.accepted != charter.version:
            self._term.show("/accept-charter to accept it")

    async def _cmd_accept_charter(self, _: str) -> None:
        sphere_id = self._charter_due or self._open_id()
        charter = await self._client.charter(sphere_id)
        await self._client.accept_charter(sphere_id, charter.version)
        self._charter_due = None
        self._term.show(f"* you accepted version {charter.version} of the charter")
        if sphere_id in self._client.subscriptions or await self._follow(sphere_id):
            await self._open_sphere(sphere_id)

    def charter_prompt(self, sphere_id: SphereId) -> None:
        """Say that ``sphere_id`` has a charter to accept before it can be read."""
        self._charter_due = sphere_id
        sphere = self._spheres.get(sphere_id)
        name = clean(sphere.name) if sphere else sphere_id
        self._term.show(
            f"! {name} has a charter to accept: /charter to read it, /accept-charter to accept"
        )

    # -- conversations --------------------------------------------------------------------

    async def _cmd_reply(self, arg: str) -> None:
        target, text = self._offset(arg, "/reply OFFSET TEXT")
        if not text:
            raise UsageError("/reply OFFSET TEXT")
        await self._client.reply(self._open_id(), target, fmt.with_mentions(text, self._names))

    async def _cmd_thread(self, arg: str) -> None:
        root, _ = self._offset(arg, "/thread OFFSET")
        page = await self._client.thread(self._open_id(), root)
        self._term.show(f"-- thread of #{root}: {len(page.replies)} replies --")
        self._show_posts([page.root, *page.replies])
        if page.has_more:
            self._term.show("  (more replies follow)")

    async def _cmd_threads(self, _: str) -> None:
        page = await self._client.threads(self._open_id())
        if not page.threads:
            self._term.show("No threads yet: /reply OFFSET TEXT starts one.")
        for thread in page.threads:
            root = thread.root
            text = fmt.shown(root.body or "(deleted)", self._name).replace("\n", " ")[:60]
            self._term.show(
                f"  #{root.offset} {fmt.author(root, self._name)}: {text}"
                f"  ({thread.replies} replies, last {fmt.clock(thread.last_ts_ms)})"
            )

    async def _reaction(self, arg: str, *, add: bool) -> None:
        usage = "/react OFFSET EMOJI" if add else "/unreact OFFSET EMOJI"
        target, emoji = self._offset(arg, usage)
        if not emoji:
            raise UsageError(usage)
        if add:
            await self._client.react(self._open_id(), target, emoji)
        else:
            await self._client.unreact(self._open_id(), target, emoji)

    async def _pinning(self, arg: str, *, pin: bool) -> None:
        target, _ = self._offset(arg, "/pin OFFSET" if pin else "/unpin OFFSET")
        if pin:
            await self._client.pin(self._open_id(), target)
        else:
            await self._client.unpin(self._open_id(), target)

    async def _cmd_pins(self, _: str) -> None:
        pins = await self._client.pins(self._open_id())
        self._term.show(f"-- {len(pins)} pinned --")
        self._show_posts(pins)

    async def _cmd_mentions(self, _: str) -> None:
        page = await self._client.mentions()
        if not page.messages:
            self._term.show("Nobody mentioned you yet.")
        for message in page.messages:
            sphere = self._spheres.get(message.sphere_id)
            where = clean(sphere.name) if sphere else message.sphere_id
            self._term.show(f"[{where}] {fmt.event(message, self._name)}")

    async def _cmd_report(self, arg: str) -> None:
        usage = "/report OFFSET spam|abusive|other [COMMENT]"
        target, rest = self._offset(arg, usage)
        reason, _, comment = rest.partition(" ")
        if reason.lower() not in set(ReportReason):
            raise UsageError(usage)
        await self._client.report(
            self._open_id(), target, ReportReason(reason.lower()), comment.strip() or None
        )
        self._term.show(f"* #{target} reported to the administrators")


@dataclass(slots=True)
class _Settings:
    """The settings a ``/settings`` line changes (None: left as they are)."""

    privacy: Privacy | None = None
    listed: bool | None = None
    join_policy: JoinPolicy | None = None
    history: HistoryMode | None = None

    def set(self, key: str, value: str) -> None:
        if key == "type" and value in set(Privacy):
            self.privacy = Privacy(value)
        elif key == "listed" and value in _YES | _NO:
            self.listed = value in _YES
        elif key == "join" and value in set(JoinPolicy):
            self.join_policy = JoinPolicy(value)
        elif key == "history" and value in set(HistoryMode):
            self.history = HistoryMode(value)
        else:
            raise UsageError(f"unknown setting {key} {value}; /help shows the settings")
