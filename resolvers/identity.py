"""Identity and audit in the API: login, tokens, users, groups, the audit log, reidentify."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from sqlalchemy import func, select
from strawberry.scalars import JSON

from gateway.auth import policy
from gateway.auth.audit import Entry
from gateway.auth.principal import Principal
from gateway.auth.service import RECENT_LOGIN_S
from gateway.core.enums import Role
from gateway.core.errors import Forbidden, InvalidInput, shown
from gateway.db.models import AuditEvent as AuditRow
from gateway.db.models import Credential, utcnow
from gateway.db.models import Group as GroupRow
from gateway.db.models import User as UserRow
from gateway.deid import reidentify as deid_reidentify
from resolvers.common import PageInfo, check_first
from resolvers.context import Context, Info
from resolvers.cursors import decode_cursor, encode_cursor

strawberry.enum(Role)


@strawberry.type
class User:
    row: strawberry.Private[UserRow]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(self.row.id)

    @strawberry.field
    def username(self) -> str:
        return self.row.username

    @strawberry.field
    def display_name(self) -> str | None:
        return self.row.display_name

    @strawberry.field
    def roles(self) -> list[Role]:
        """Own roles; effective rights add the groups' roles."""
        return [Role(r) for r in self.row.roles]

    @strawberry.field
    def groups(self) -> list[Group]:
        return [Group(row=g) for g in self.row.groups]

    @strawberry.field
    def sources(self) -> list[strawberry.ID] | None:
        """None: every source; else only these."""
        return None if self.row.sources is None else [strawberry.ID(s) for s in self.row.sources]

    @strawberry.field
    def active(self) -> bool:
        return self.row.active

    @strawberry.field
    def created_at(self) -> datetime:
        return self.row.created_at

    @strawberry.field
    def last_login_at(self) -> datetime | None:
        return self.row.last_login_at


@strawberry.type
class Group:
    row: strawberry.Private[GroupRow]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(self.row.id)

    @strawberry.field
    def name(self) -> str:
        return self.row.name

    @strawberry.field
    def roles(self) -> list[Role]:
        return [Role(r) for r in self.row.roles]

    @strawberry.field
    def sources(self) -> list[strawberry.ID] | None:
        return None if self.row.sources is None else [strawberry.ID(s) for s in self.row.sources]

    @strawberry.field
    def members(self) -> list[User]:
        return [User(row=u) for u in self.row.members]


@strawberry.type
class Session:
    token: str
    expires_at: datetime
    user: User


@strawberry.type
class ApiToken:
    row: strawberry.Private[Credential]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(self.row.id)

    @strawberry.field
    def name(self) -> str:
        return self.row.name or ""

    @strawberry.field
    def prefix(self) -> str:
        """The first characters, to recognise it; the secret is shown once."""
        return self.row.prefix or ""

    @strawberry.field
    def created_at(self) -> datetime:
        return self.row.created_at

    @strawberry.field
    def expires_at(self) -> datetime | None:
        return self.row.expires_at

    @strawberry.field
    def last_used_at(self) -> datetime | None:
        return self.row.last_used_at


@strawberry.type
class NewApiToken:
    token: str
    api_token: ApiToken


@strawberry.type
class AuditEvent:
    row: strawberry.Private[AuditRow]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(str(self.row.id))

    @strawberry.field
    def at(self) -> datetime:
        return self.row.at

    @strawberry.field
    def actor(self) -> str | None:
        """User id or token id; null for failed anonymous logins."""
        return self.row.actor

    @strawberry.field
    def action(self) -> str:
        return self.row.action

    @strawberry.field
    def object_type(self) -> str | None:
        return self.row.object_type

    @strawberry.field
    def object_ref(self) -> str | None:
        """An opaque reference, never a name or a UID of a patient."""
        return self.row.object_ref

    @strawberry.field
    def outcome(self) -> str:
        return self.row.outcome or "ok"

    @strawberry.field
    def address(self) -> str | None:
        return self.row.address

    @strawberry.field
    def details(self) -> JSON | None:
        return JSON(self.row.detail) if self.row.detail is not None else None


@strawberry.type
class AuditEventEdge:
    node: AuditEvent
    cursor: str


@strawberry.type
class AuditEventConnection:
    edges: list[AuditEventEdge]
    page_info: PageInfo
    total_count: int


@strawberry.input
class AuditFilter:
    actor: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@strawberry.input
class UserInput:
    username: str
    roles: list[Role]
    display_name: str | None = None
    password: str | None = None
    groups: list[strawberry.ID] | None = None
    sources: list[strawberry.ID] | None = None


@strawberry.input
class UserPatch:
    display_name: str | None = None
    roles: list[Role] | None = None
    groups: list[strawberry.ID] | None = None
    # absent: unchanged; null: no limit (every source the roles allow); a list: those only
    sources: list[strawberry.ID] | None = strawberry.UNSET
    active: bool | None = None


@strawberry.input
class GroupInput:
    name: str
    roles: list[Role]
    sources: list[strawberry.ID] | None = None


@strawberry.type
class Reidentification:
    project: str
    pseudonym: str
    patient_id: str
    patient_name: str | None


def _admin(ctx: Context, what: str) -> Principal:
    caller = ctx.require_caller()
    policy.require_admin(caller, what)
    return caller


def _known_sources(ctx: Context, ids: list[strawberry.ID] | None) -> list[str] | None:
    if ids is None:
        return None
    known = {s.id for s in ctx.runtime.settings.sources}
    for i in ids:
        if i not in known:
            raise InvalidInput(f"sources: unknown source id {shown(str(i))}")
    return [str(i) for i in ids]


@strawberry.type
class IdentityQuery:
    @strawberry.field
    async def me(self, info: Info) -> User | None:
        """The caller (null in open mode)."""
        caller = info.context.require_caller()
        row = await info.context.runtime.auth.user(caller.user_id)
        if row is None and caller.via == "oidc":  # known from the token alone, no local row
            row = UserRow(
                id=caller.user_id,
                username=caller.username,
                roles=sorted(caller.roles),
                sources=None,
                active=True,
                created_at=utcnow(),
            )
            row.groups = []
        return User(row=row) if row is not None else None

    @strawberry.field
    async def users(self, info: Info) -> list[User]:
        _admin(info.context, "users")
        return [User(row=u) for u in await info.context.runtime.auth.users()]

    @strawberry.field
    async def groups(self, info: Info) -> list[Group]:
        _admin(info.context, "groups")
        return [Group(row=g) for g in await info.context.runtime.auth.groups()]

    @strawberry.field(description="The caller's own API tokens (an admin may name a user).")
    async def api_tokens(self, info: Info, user_id: strawberry.ID | None = None) -> list[ApiToken]:
        caller = info.context.require_caller()
        if user_id is not None and str(user_id) != caller.user_id:
            policy.require_admin(caller, "apiTokens of another user")
        whose = str(user_id) if user_id is not None else caller.user_id
        return [ApiToken(row=t) for t in await info.context.runtime.auth.api_tokens(whose)]

    @strawberry.field
    async def audit_events(
        self,
        info: Info,
        filter: AuditFilter | None = None,
        first: int | None = 50,
        after: str | None = None,
    ) -> AuditEventConnection:
        _admin(info.context, "auditEvents")
        first = 50 if first is None else first
        check_first(first)
        f = filter or AuditFilter()
        conditions: list[Any] = []
        if f.actor is not None:
            conditions.append(AuditRow.actor == f.actor)
        if f.action is not None:
            conditions.append(AuditRow.action == f.action)
        if f.since is not None:
            conditions.append(AuditRow.at >= f.since)
        if f.until is not None:
            conditions.append(AuditRow.at < f.until)
        page = select(AuditRow).where(*conditions)
        if after is not None:
            try:
                last = int(decode_cursor(after, "a"))
            except ValueError:
                raise InvalidInput("invalid cursor") from None
            page = page.where(AuditRow.id < last)
        async with info.context.runtime.sessions() as session:
            total = int(
                await session.scalar(select(func.count()).select_from(AuditRow).where(*conditions))
                or 0
            )
            rows = list(
                (await session.scalars(page.order_by(AuditRow.id.desc()).limit(first + 1))).all()
            )
        edges = [
            AuditEventEdge(node=AuditEvent(row=r), cursor=encode_cursor(str(r.id), "a"))
            for r in rows[:first]
        ]
        return AuditEventConnection(
            edges=edges,
            page_info=PageInfo(
                has_next_page=len(rows) > first, end_cursor=edges[-1].cursor if edges else None
            ),
            total_count=total,
        )


@strawberry.type
class IdentityMutation:
    @strawberry.mutation
    async def login(self, info: Info, username: str, password: str) -> Session:
        """A session token for a local user."""
        ctx = info.context
        token, cred, user = await ctx.runtime.auth.login(username, password, ctx.address)
        assert cred.expires_at is not None
        return Session(token=token, expires_at=cred.expires_at, user=User(row=user))

    @strawberry.mutation
    async def logout(self, info: Info) -> bool:
        """End the caller's session."""
        return await info.context.runtime.auth.logout(info.context.require_caller())

    @strawberry.mutation
    async def create_api_token(
        self, info: Info, name: str, expires_in_days: int | None = None
    ) -> NewApiToken:
        """A token for scripts, for the caller; shown once."""
        caller = info.context.require_caller()
        made = await info.context.runtime.auth.create_api_token(
            caller.user_id, name, expires_in_days, caller.actor
        )
        return NewApiToken(token=made.token, api_token=ApiToken(row=made.credential))

    @strawberry.mutation
    async def revoke_api_token(self, info: Info, id: strawberry.ID) -> bool:
        caller = info.context.require_caller()
        return await info.context.runtime.auth.revoke_api_token(caller, str(id))

    @strawberry.mutation
    async def create_user(self, info: Info, input: UserInput) -> User:
        ctx = info.context
        caller = _admin(ctx, "createUser")
        row = await ctx.runtime.auth.create_user(
            input.username,
            input.roles,
            caller.actor,
            password=input.password,
            display_name=input.display_name,
            groups=[str(g) for g in input.groups or []],
            sources=_known_sources(ctx, input.sources),
        )
        return User(row=await ctx.runtime.auth.user(row.id) or row)

    @strawberry.mutation
    async def update_user(self, info: Info, id: strawberry.ID, patch: UserPatch) -> User:
        ctx = info.context
        caller = _admin(ctx, "updateUser")
        await ctx.runtime.auth.update_user(
            str(id),
            caller.actor,
            display_name=patch.display_name,
            roles=patch.roles,
            groups=[str(g) for g in patch.groups] if patch.groups is not None else None,
            sources=None
            if patch.sources is strawberry.UNSET
            else _known_sources(ctx, patch.sources),
            clear_sources=patch.sources is None,  # null given: no limit any more
            active=patch.active,
        )
        row = await ctx.runtime.auth.user(str(id))
        assert row is not None
        return User(row=row)

    @strawberry.mutation
    async def set_password(self, info: Info, id: strawberry.ID, password: str) -> bool:
        """Admins for anyone, a user for themself from a recent password login (a stolen
        session, or a token, cannot take the account over)."""
        ctx = info.context
        caller = ctx.require_caller()
        if str(id) != caller.user_id:
            policy.require_admin(caller, "setPassword of another user")
        elif not await ctx.runtime.auth.logged_in_recently(caller):
            minutes = round(RECENT_LOGIN_S / 60)
            raise Forbidden(
                f"setPassword: changing your own password needs a login within the last "
                f"{minutes} minutes; log in again"
            )
        await ctx.runtime.auth.set_password(str(id), password, caller.actor)
        return True

    @strawberry.mutation
    async def delete_user(self, info: Info, id: strawberry.ID) -> bool:
        """Deactivates the user; the audit trail keeps them."""
        caller = _admin(info.context, "deleteUser")
        await info.context.runtime.auth.update_user(str(id), caller.actor, active=False)
        return True

    @strawberry.mutation
    async def create_group(self, info: Info, input: GroupInput) -> Group:
        ctx = info.context
        caller = _admin(ctx, "createGroup")
        sources = _known_sources(ctx, input.sources)
        return Group(
            row=await ctx.runtime.auth.save_group(
                None, input.name, input.roles, sources, caller.actor
            )
        )

    @strawberry.mutation
    async def update_group(self, info: Info, id: strawberry.ID, input: GroupInput) -> Group:
        ctx = info.context
        caller = _admin(ctx, "updateGroup")
        sources = _known_sources(ctx, input.sources)
        return Group(
            row=await ctx.runtime.auth.save_group(
                str(id), input.name, input.roles, sources, caller.actor
            )
        )

    @strawberry.mutation
    async def delete_group(self, info: Info, id: strawberry.ID) -> bool:
        caller = _admin(info.context, "deleteGroup")
        return await info.context.runtime.auth.delete_group(str(id), caller.actor)

    @strawberry.mutation(description="Admins only, with a reason; every use is audited.")
    async def reidentify(
        self, info: Info, project: str, pseudonym: str, reason: str
    ) -> Reidentification:
        ctx = info.context
        caller = ctx.require_caller()
        if not caller.is_admin:
            refusal = Entry(
                actor=caller.actor, action="reidentify", outcome="refused", address=ctx.address
            )
            ctx.runtime.audit.submit(refusal)
            raise Forbidden("reidentify: admins only")
        if not reason.strip():
            raise InvalidInput("reason: say why the identity is needed")
        found = await deid_reidentify(
            ctx.runtime.sessions,
            ctx.runtime.settings.mapping_key,
            project,
            pseudonym,
            caller.actor,
            reason=reason,
            address=ctx.address,
        )
        original = found["studies"][0]["original"]
        return Reidentification(
            project=project,
            pseudonym=pseudonym,
            patient_id=str(original.get("PatientID") or ""),
            patient_name=original.get("PatientName"),
        )
