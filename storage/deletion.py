"""Account deletion: the job that removes an account and what it left, one small step at a time.

A request (``request_account_deletion``) is one transaction: the job's row, the account
disabled, every token revoked (with their session changes, so every node closes the sockets)
and the audit entry. The job then runs in steps that each commit on their own and are safe to
run twice, so a crash halfway loses nothing and repeats nothing:

1. ``scan_deletion_spheres``: find, a page of spheres at a time, every sphere in which the
   account left something (``account_deletion_spheres``, step ``membership``);
2. ``remove_deleted_member``: end its membership there with a ``deleted`` member event; a
   sphere whose only owner it was gets a new owner (the longest-standing member of the highest
   role, by a ``role_changed`` event without author), or is deleted if nobody else is left;
3. ``erase_deleted_content``: rewrite a batch of the events it wrote (erase: posts become
   tombstones and edits lose their bodies; anonymise: bodies stay); either way every one of
   them loses its author and its client-chosen ``message_id``. A batch that finds nothing left
   removes the account's other rows of the sphere (reactions, mentions, invitations, join
   requests, bans, reports, a departed mute) and the names in its past member events;
4. ``remove_deleted_user``: delete the user's row (its name, its tokens) once no sphere is
   left; then (the store's files scrubbed) ``finish_account_deletion`` marks the job done. The
   row of a done job stays: the user id is never reused and a second request answers it.

Each step finds its work in the rows themselves (an event still carrying the author, a member
row still there), so running one twice finds nothing the second time. ``claim_account_deletion``
gives a process a lease on the job so two gateways do not run it at once; the steps being
idempotent, a lease that ran out while its holder still worked costs time, never correctness.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from protocol import Message, SphereId, UserId

if TYPE_CHECKING:  # storage.base composes the Store of this protocol
    from storage.base import AuditEntry


class DeletionMode(StrEnum):
    """What becomes of what a deleted account wrote (the server's ``account_deletion``)."""

    ERASE = "erase"  # posts stay in place as tombstones: no body, no author
    ANONYMISE = "anonymise"  # posts keep their place and body, with no author


class DeletionState(StrEnum):
    PENDING = "pending"  # work is left
    HELD = "held"  # the only work left is in spheres under a legal hold
    DONE = "done"  # the account and everything it left are gone


class SphereStep(StrEnum):
    """Where the job is in one sphere."""

    MEMBERSHIP = "membership"  # the membership is to be ended
    CONTENT = "content"  # what the account wrote there is to be rewritten
    DONE = "done"


# Server audit log actions (``AuditEntry.action``).
DELETION_REQUESTED = "account_deletion_requested"  # detail: the mode
ACCOUNT_DELETED = "account_deleted"  # detail: how many events were rewritten


@dataclass(frozen=True, slots=True)
class DeletionJob:
    user_id: UserId
    requested_ms: int
    requested_by: str  # the user themselves, an administrator's user id, or OPERATOR
    mode: DeletionMode
    state: DeletionState
    done_ms: int | None
    scanned: bool  # every sphere was looked at
    spheres_left: int  # spheres found so far where work is left
    rewritten: int  # events rewritten so far


@dataclass(frozen=True, slots=True)
class DeletionRequest:
    """What ``request_account_deletion`` did."""

    job: DeletionJob
    created: bool  # False: the job existed already (nothing was written)
    revoked: list[str]  # the token ids revoked now


class AccountDeletions(Protocol):
    async def request_account_deletion(
        self, user_id: UserId, *, requested_by: str, mode: DeletionMode, now_ms: int
    ) -> DeletionRequest | None:
        """Record the job, disable the user, revoke every live token (a session change each,
        and one USER_DISABLED) and write the server audit entry, in one transaction.

        A job that exists already (running or done) is returned as it is, and nothing is
        written. Returns None for a user that never existed.
        """
        ...

    async def get_account_deletion(self, user_id: UserId) -> DeletionJob | None: ...

    async def open_account_deletions(self, limit: int) -> list[UserId]:
        """Users whose job is not done, oldest request first."""
        ...

    async def claim_account_deletion(
        self, user_id: UserId, *, owner: str, now_ms: int, lease_ms: int
    ) -> DeletionJob | None:
        """Take or renew the lease on an unfinished job: None if it is done, or if another
        owner's lease runs past ``now_ms``."""
        ...

    async def scan_deletion_spheres(self, user_id: UserId, limit: int) -> bool:
        """Look at the next ``limit`` spheres by id and record those where the account left
        anything; True once every sphere was looked at."""
        ...

    async def deletion_spheres(
        self, user_id: UserId, step: SphereStep, limit: int, *, after: str = ""
    ) -> list[SphereId]:
        """Spheres of the job at ``step``, by id, after ``after``."""
        ...

    async def remove_deleted_member(
        self,
        user_id: UserId,
        sphere_id: SphereId,
        *,
        actor: str,
        now_ms: int,
        keep_empty: bool = False,
    ) -> list[Message]:
        """End the account's membership of the sphere (see the module's docstring) and move
        the sphere to the content step, in one transaction, under the sphere's lock.

        A direct conversation the account was the last participant of goes like a sphere
        whose last owner has no successor. With ``keep_empty`` (the sphere is under a legal
        hold) a sphere the account was the last member of is kept, without members; the
        content step deletes it once it runs.

        Returns:
            The events to publish, in order: a ``role_changed`` event for a new owner, then
            the ``deleted`` member event; or the deleted sphere's closing ``sphere`` event.
            Empty when the account was no longer a member (or the sphere is gone).
        """
        ...

    async def erase_deleted_content(
        self, user_id: UserId, sphere_id: SphereId, mode: DeletionMode, limit: int, *, now_ms: int
    ) -> int:
        """Rewrite up to ``limit`` events the account wrote in the sphere, in one transaction.

        Returns:
            How many were rewritten; 0 when none was left, in which case the account's other
            rows of the sphere were removed (the whole sphere, if it has no member left) and
            the sphere's step is done.
        """
        ...

    async def remove_deleted_user(self, user_id: UserId) -> bool:
        """Delete the user's row (its name), its tokens and the mentions of it, if no sphere of
        the job is left (True). A membership made since the scan sends its sphere back to the
        membership step instead (False)."""
        ...

    async def finish_account_deletion(
        self, user_id: UserId, *, now_ms: int, audit: AuditEntry
    ) -> None:
        """Mark the job done and write ``audit`` (once: a done job stays as it is)."""
        ...

    async def set_deletion_state(self, user_id: UserId, state: DeletionState) -> None:
        """Mark an unfinished job pending or held (what is left waits on a legal hold)."""
        ...
