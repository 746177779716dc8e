"""Roles: the last admin stays, even when two admins remove each other at the same time."""

from __future__ import annotations

import threading

import pytest
from sqlmodel import select

from models import UserRole
from tests.support import factories as f
from workflows import users
from workflows.errors import PermissionDenied, ValidationFailed


def admins(db) -> set[str]:
    with db.read_session() as s:
        return set(s.exec(select(UserRole.user_id).where(UserRole.role == "admin")))


def test_the_last_admin_cannot_be_removed(session) -> None:
    f.user(session, "UADMIN01", "admin")
    with pytest.raises(ValidationFailed, match="last admin"):
        users.revoke_role(session, user_id="UADMIN01", role="admin", actor="UADMIN01")
    assert users.revoke_role(session, user_id="UNOBODY1", role="admin", actor="x") is False


def test_two_admins_removing_each_other_at_once_leave_one(db) -> None:
    # given two admins
    with db.transaction() as s:
        f.user(s, "UADMIN01", "admin")
        f.user(s, "UADMIN02", "admin")
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def remove(actor: str, target: str) -> None:
        barrier.wait()
        try:
            with db.transaction() as s:
                users.change_role(s, actor=actor, user_id=target, role="admin", add=False)
            outcomes.append("removed")
        except (ValidationFailed, PermissionDenied):  # last admin, or no longer an admin
            outcomes.append("refused")

    # when each removes the other concurrently
    threads = [threading.Thread(target=remove, args=("UADMIN01", "UADMIN02")),
               threading.Thread(target=remove, args=("UADMIN02", "UADMIN01"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then exactly one succeeded and one admin is left
    assert sorted(outcomes) == ["refused", "removed"]
    assert len(admins(db)) == 1


def test_put_user_names_the_roles_field(session) -> None:
    f.user(session, "UADMIN01", "admin")
    with pytest.raises(ValidationFailed) as caught:
        users.upsert_user(session, user_id="UADMIN01", name="Ada", roles=[], actor="api")
    assert caught.value.errors[0].field == "roles"


def test_a_restart_does_not_give_back_an_admin_role_an_admin_removed(session) -> None:
    from models import AuditEvent

    # given O2C_ADMINS=UADMIN01,UADMIN02 at the first start
    users.bootstrap_admins(session, ["UADMIN01", "UADMIN02"])
    # when UADMIN01 removes UADMIN02 (who left the finance team)
    users.change_role(session, actor="UADMIN01", user_id="UADMIN02", role="admin", add=False)
    # and the server restarts with the same O2C_ADMINS, plus a new name
    users.bootstrap_admins(session, ["UADMIN01", "UADMIN02", "UADMIN03"])
    # then the removal stands, and the new name is an admin
    held = set(session.exec(select(UserRole.user_id).where(UserRole.role == "admin")))
    assert held == {"UADMIN01", "UADMIN03"}
    grants = session.exec(select(AuditEvent.entity_id).where(
        AuditEvent.action == "role.granted").order_by(AuditEvent.id)).all()
    assert grants == ["UADMIN01", "UADMIN02", "UADMIN03"]
    # and an admin can still give it back on purpose
    users.change_role(session, actor="UADMIN01", user_id="UADMIN02", role="admin", add=True)
    users.bootstrap_admins(session, ["UADMIN01", "UADMIN02", "UADMIN03"])
    assert users.has_role(session, "UADMIN02", "admin")
