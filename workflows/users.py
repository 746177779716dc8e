"""Users and roles. Role checks happen on the server for every command and click."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from sqlmodel import Session

from models import AuditEvent, Role, User, UserRole
from workflows import audit, validation
from workflows.errors import PermissionDenied, ValidationFailed
from workflows.validation import SLACK_USER_ID

_ROLES = UserRole.__table__  # a Core read: no ORM entities to build for a set of strings
ROLES_READ = sa.select(_ROLES.c.role).where(_ROLES.c.user_id == sa.bindparam("user_id"))


def roles_of(session: Session, user_id: str) -> set[str]:
    """The user's roles, read on every check (the statement is built once: only the id binds)."""
    return set(session.execute(ROLES_READ, {"user_id": user_id}).scalars())


def has_role(session: Session, user_id: str, *roles: str) -> bool:
    """True if the user holds any of `roles`; admins hold every role."""
    held = roles_of(session, user_id)
    return Role.ADMIN in held or bool(held.intersection(roles))


def require_role(session: Session, *, user_id: str, roles: tuple[str, ...], action: str,
                 entity_type: str = "command", entity_id: object = "-") -> None:
    """Raise PermissionDenied (audited by the caller's transaction helper) unless the user
    holds one of `roles`."""
    if has_role(session, user_id, *roles):
        return
    raise PermissionDenied(only_for(roles), actor=user_id, action=action,
                           entity_type=entity_type, entity_id=entity_id)


ROLE_WORDS = {Role.SALES: "sales rep", Role.CREDIT_APPROVER: "credit approver",
              Role.DISCOUNT_APPROVER: "discount approver", Role.COLLECTOR: "collector",
              Role.ADMIN: "admin"}


def role_words(role: str) -> str:
    """A role as people say it: "credit approver", not "credit_approver"."""
    return ROLE_WORDS.get(role, str(role).replace("_", " "))


def only_for(roles: tuple[str, ...] | list[str]) -> str:
    """The one wording of a role refusal: who may do it, in words ("Only a collector or an
    admin can do this."). Admins hold every role, so they are named once, last."""
    names = [role_words(r) for r in roles if r != Role.ADMIN] + [role_words(Role.ADMIN)]
    names = [f"{'an' if n[0] in 'aeiou' else 'a'} {n}" for n in dict.fromkeys(names)]
    if len(names) == 1:
        return "Only an admin can do this; nothing was changed."
    who = ", ".join(names[:-1]) + f" or {names[-1]}"
    return (f"Only {who} can do this. Ask an admin for the role if you need it; nothing was "
            "changed.")


def check_timezone(tz: str) -> str:
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationFailed.of("timezone", f"unknown time zone {tz!r}") from None
    return tz


def ensure_user(session: Session, user_id: str, *, name: str | None = None) -> User:
    """The user row for a Slack user we just heard from, created on first contact."""
    user = session.get(User, user_id)
    if user is None:
        user = User(slack_user_id=user_id, name=name or user_id)
        session.add(user)
        session.flush()
    return user


def upsert_user(session: Session, *, user_id: str, name: str, roles: list[str],
                email: str | None = None, timezone: str | None = None,
                actor: str = "api") -> tuple[User, bool]:
    """`PUT /users/{id}`: create or replace a user and its exact set of roles (audited)."""
    if not SLACK_USER_ID.match(user_id):
        raise ValidationFailed.of("slack_user_id", "must be a Slack user id such as U012AB3CD")
    unknown = [r for r in roles if r not in Role.__members__.values()]
    if unknown:
        raise ValidationFailed.of("roles", f"unknown role(s): {', '.join(unknown)}; "
                                  f"use {', '.join(r.value for r in Role)}")
    user = session.get(User, user_id)
    created = user is None
    if user is None:
        user = User(slack_user_id=user_id)
    user.name = validation.text("name", name)
    user.email = validation.email("email", email)
    if timezone:
        user.timezone = check_timezone(timezone)
    session.add(user)
    session.flush()
    set_roles(session, user_id=user_id, roles=set(roles), actor=actor)
    return user, created


def set_roles(session: Session, *, user_id: str, roles: set[str], actor: str,
              field: str = "roles") -> None:
    held = roles_of(session, user_id)
    for role in sorted(roles - held):
        grant_role(session, user_id=user_id, role=role, actor=actor)
    for role in sorted(held - roles):
        revoke_role(session, user_id=user_id, role=role, actor=actor, field=field)


def grant_role(session: Session, *, user_id: str, role: str, actor: str) -> bool:
    """Give a role; False if already held. Audited."""
    if role not in Role.__members__.values():
        raise ValidationFailed.of("role", f"unknown role {role!r}")
    if session.get(UserRole, (user_id, role)) is not None:
        return False
    ensure_user(session, user_id)
    session.add(UserRole(user_id=user_id, role=role, granted_by=actor))
    audit.role_changed(session, actor=actor, user_id=user_id, role=role, granted=True)
    session.flush()
    return True


def revoke_role(session: Session, *, user_id: str, role: str, actor: str,
                field: str = "role") -> bool:
    """Take a role away; False if not held. The last admin can never be removed: the delete
    itself is conditional on another admin remaining, so two concurrent revocations cannot
    both succeed (on PostgreSQL the admin rows are locked first)."""
    held = session.get(UserRole, (user_id, role))
    if held is None:
        return False
    table = UserRole.__table__
    condition = [table.c.user_id == user_id, table.c.role == role]
    if role == Role.ADMIN:
        admins = sa.select(table.c.user_id).where(table.c.role == Role.ADMIN)
        if session.get_bind().dialect.name == "postgresql":
            session.execute(admins.with_for_update()).all()  # SQLite writers are serialised
        condition.append(sa.select(sa.func.count()).select_from(table)
                         .where(table.c.role == Role.ADMIN, table.c.user_id != user_id)
                         .scalar_subquery() > 0)
    if session.execute(sa.delete(table).where(*condition)).rowcount == 0:
        raise ValidationFailed.of(field, "cannot remove the last admin")
    session.expunge(held)
    audit.role_changed(session, actor=actor, user_id=user_id, role=role, granted=False)
    session.flush()
    return True


def change_role(session: Session, *, actor: str, user_id: str, role: str, add: bool) -> bool:
    """`/o2c role add|remove`: admins only; the refusal is audited too."""
    require_role(session, user_id=actor, roles=(Role.ADMIN,), action="role.change",
                 entity_type="user", entity_id=user_id)
    if add:
        return grant_role(session, user_id=user_id, role=role, actor=actor)
    return revoke_role(session, user_id=user_id, role=role, actor=actor)


def bootstrap_admins(session: Session, admin_ids: list[str]) -> None:
    """O2C_ADMINS: make sure each listed user is an admin (idempotent) — unless an admin
    removed that user's admin role since (in the audit log): a restart with the same setting
    must not give a removed admin their role back; an admin may grant it again."""
    for user_id in admin_ids:
        removed = session.execute(
            sa.select(AuditEvent.id).where(
                AuditEvent.entity_type == "user", AuditEvent.entity_id == user_id,
                AuditEvent.action == "role.revoked", AuditEvent.from_state == Role.ADMIN)
            .limit(1)).first()
        if removed is None:
            grant_role(session, user_id=user_id, role=Role.ADMIN, actor="bootstrap")


def install_admin(session: Session, *, user_id: str) -> bool:
    """Slack OAuth install: the installer becomes the first admin, when there is none yet
    (`O2C_ADMINS` may have named some). On PostgreSQL the check waits for any other install
    finishing at the same moment (a transaction-scoped advisory lock), so two installers
    never both become "the first"; SQLite serialises writers anyway."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('o2c.install_admin'))"))
    table = UserRole.__table__
    if session.execute(sa.select(table.c.user_id).where(
            table.c.role == Role.ADMIN).limit(1)).first() is not None:
        return False
    return grant_role(session, user_id=user_id, role=Role.ADMIN, actor="slack-install")
