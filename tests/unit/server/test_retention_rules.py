"""A sphere's retention period and its legal hold: pure decisions of ``server.access``."""

from __future__ import annotations

import dataclasses

import pytest

from protocol import ErrorCode, Privacy, Role
from server import access
from storage import AuditAction, LegalHoldRecord
from tests.unit.server.test_sphere_rules import code_of, sphere, update


def test_a_period_is_set_audited_and_returned_to_the_default() -> None:
    change = update(sphere(), retention_days=7)
    assert change is not None and change.settings.retention_days == 7
    assert change.audits == ((AuditAction.RETENTION_CHANGED, "7"),)
    seven = sphere(retention_days=7)
    assert update(seven, retention_days=7) is None  # no change, no event
    back = update(seven, retention_days=0)
    assert back is not None and back.settings.retention_days is None
    assert back.audits == ((AuditAction.RETENTION_CHANGED, "default"),)
    kept = update(seven, name="renamed")
    assert kept is not None and kept.settings.retention_days == 7


def test_the_server_period_is_a_ceiling_and_the_settings_right_is_needed() -> None:
    assert update(sphere(), retention_days=30, retention_ceiling_days=30) is not None
    refused = code_of(update, sphere(), retention_days=31, retention_ceiling_days=30)
    assert refused is ErrorCode.CONFLICT
    assert update(sphere(), retention_days=36_500, retention_ceiling_days=0) is not None
    assert code_of(update, sphere(), Role.MEMBER, retention_days=7) is ErrorCode.FORBIDDEN
    assert update(sphere(Privacy.OPEN), Role.ADMIN, retention_days=7) is not None


@pytest.mark.parametrize(("until_ms", "held_at_150"), [(None, True), (200, True), (150, False)])
def test_a_hold_refuses_deletion_while_it_lasts(until_ms: int | None, held_at_150: bool) -> None:
    held = dataclasses.replace(sphere(), hold=LegalHoldRecord(100, until_ms, "case", "u_admin"))
    assert held.held(150) is held_at_150
    if held_at_150:
        assert code_of(access.require_no_hold, held, 150) is ErrorCode.LEGAL_HOLD
    else:
        access.require_no_hold(held, 150)
    access.require_no_hold(sphere(), 150)
