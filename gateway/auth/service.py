"""Users, groups, sessions and API tokens: the one place that reads and writes them."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.auth import audit, passwords, tokens
from gateway.auth.audit import Entry
from gateway.auth.epoch import SharedEpoch
from gateway.auth.oidc import OidcVerifier, looks_like_jwt
from gateway.auth.policy import sees_identity
from gateway.auth.principal import Principal
from gateway.core.enums import Role
from gateway.core.errors import Forbidden, InvalidInput, Unauthenticated, shown
from gateway.core.settings import AuthConfig
from gateway.core.timing import as_utc
from gateway.db.models import Credential, Group, User, utcnow

LOGIN_REFUSED = "invalid username or password"
FAILED_LOGIN_DELAY_S = 0.5  # every refused login waits this long: guessing is slow
RECENT_LOGIN_S = 900.0  # changing one's own password needs a password login this recent


@dataclass(frozen=True, slots=True)
class NewSecret:
    """A token as created: the secret (shown once) and its stored row."""

    token: str
    credential: Credential


def principal_of(user: User, via: str = "session", token_id: str | None = None) -> Principal:
    """A user's effective rights: own roles and sources united with their groups'."""
    roles = {Role(r) for r in user.roles}
    limits: list[list[str] | None] = [user.sources]
    for group in user.groups:
        roles |= {Role(r) for r in group.roles}
        limits.append(group.sources)
    sources = None
    if all(limit is not None for limit in limits):
        sources = frozenset(s for limit in limits for s in limit or ())
    return Principal(user.id, user.username, frozenset(roles), sources, via, token_id)


class AuthService:
    """Authentication and the administration of who may come in."""

    def __init__(
        self, sessions: async_sessionmaker, config: AuthConfig, epoch: SharedEpoch | None = None
    ) -> None:
        self.sessions = sessions
        self.config = config
        self.epoch = epoch  # how other processes hear of a revocation (None: this one only)
        self._cache: dict[str, tuple[Principal, float]] = {}
        self.oidc: OidcVerifier | None = None
        if config.oidc_issuer and config.oidc_audience:
            self.oidc = OidcVerifier(config.oidc_issuer, config.oidc_audience, config.roles_claim)

    # -- authentication -------------------------------------------------------------------

    async def authenticate(self, token: str) -> Principal | None:
        """The caller a bearer token stands for, or None (unknown, expired, revoked, inactive).

        A verified token is trusted for `token_cache_s` without the database; revoking
        one clears it here at once, in the other gateway processes within about a second
        (`SharedEpoch`), or within `token_cache_s` without one.
        """
        if self.epoch is not None and await self.epoch.moved():
            self._cache.clear()
        key = tokens.digest(token)
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None and hit[1] > now:
            return hit[0]
        if self.oidc is not None and looks_like_jwt(token):  # an OIDC JWT: no database row
            verified = await self.oidc.verify(token)
            if verified is None:
                return None
            left = verified.expires_at - time.time()  # never trusted past its `exp`
            self._cache[key] = (verified.principal, now + min(self.config.token_cache_s, left))
            return verified.principal
        async with self.sessions() as session, session.begin():
            cred = await session.scalar(select(Credential).where(Credential.digest == key))
            if cred is None or cred.revoked_at is not None or _expired(cred.expires_at):
                self._cache.pop(key, None)
                return None
            user = await session.get(User, cred.user_id)
            if user is None or not user.active:
                return None
            cred.last_used_at = utcnow()
            principal = principal_of(user, cred.kind, cred.id)
        until = now + self.config.token_cache_s
        if cred.expires_at is not None:  # never trusted past its expiry
            left = (as_utc(cred.expires_at) - utcnow()).total_seconds()
            until = min(until, now + max(left, 0.0))
        self._cache[key] = (principal, until)
        return principal

    async def changed(self, user_id: str | None = None) -> None:
        """Who may come in changed (for one user, or anyone): forget here, tell the others."""
        self.forget(user_id)
        if self.epoch is not None:
            await self.epoch.bump()

    def forget(self, user_id: str | None = None) -> None:
        """Drop this process's cached verifications (of one user, or all)."""
        if user_id is None:
            self._cache.clear()
            return
        for key, (p, _) in list(self._cache.items()):
            if p.user_id == user_id:
                del self._cache[key]

    async def login(
        self, username: str, password: str, address: str | None = None
    ) -> tuple[str, Credential, User]:
        """A new session for a local user; `Unauthenticated` (always the same words) if not.

        After `lockout_failures` failures in a row the account refuses every password for
        `lockout_s`; each refusal waits a little, success or not is audited.
        """
        async with self.sessions() as session, session.begin():
            user = await _by_name(session, username)
            locked = (
                user is not None
                and user.locked_until is not None
                and not _expired(user.locked_until)
            )
            # argon2 takes a CPU for a good while: off the event loop, so other requests go on
            ok = await asyncio.to_thread(
                passwords.verify_password, user.password_hash if user else None, password
            )
            if user is None or not user.active or locked or not ok:
                if user is not None and not locked:
                    user.failed_logins = (user.failed_logins or 0) + 1
                    if user.failed_logins >= self.config.lockout_failures:
                        user.locked_until = utcnow() + timedelta(seconds=self.config.lockout_s)
                        user.failed_logins = 0
                await audit.append(
                    session,
                    Entry(
                        actor=f"user:{user.id}" if user is not None else None,
                        action="login-failed",
                        outcome="refused",
                        object_type="user",
                        address=address,
                        details={"locked": locked},
                    ),
                )
                refused = True
            else:
                refused = False
                user.failed_logins = 0
                user.locked_until = None
                user.last_login_at = utcnow()
                if passwords.needs_rehash(user.password_hash or ""):
                    user.password_hash = await asyncio.to_thread(passwords.hash_password, password)
                secret = tokens.new_token(tokens.SESSION_PREFIX)
                expires = utcnow() + timedelta(seconds=self.config.session_ttl_s)
                cred = _credential("session", secret, user.id, expires)
                session.add(cred)
                await audit.append(
                    session,
                    Entry(
                        actor=f"user:{user.id}",
                        action="login",
                        object_type="user",
                        object_ref=user.id,
                        address=address,
                    ),
                )
        if refused:
            await asyncio.sleep(FAILED_LOGIN_DELAY_S)
            raise Unauthenticated(LOGIN_REFUSED)
        assert user is not None
        return secret, cred, user

    async def logout(self, caller: Principal) -> bool:
        """Revoke the session the caller came in with; False when it was not a session."""
        if caller.via != "session" or caller.token_id is None:
            return False
        await self._revoke(caller.token_id)
        await audit.record(
            self.sessions,
            Entry(
                actor=caller.actor,
                action="logout",
                object_type="session",
                object_ref=caller.token_id,
            ),
        )
        return True

    # -- API tokens -----------------------------------------------------------------------

    async def create_api_token(
        self, user_id: str, name: str, expires_in_days: int | None, actor: str
    ) -> NewSecret:
        """A new API token for `user_id`; the secret is in the answer only."""
        if not name.strip() or len(name) > 128:
            raise InvalidInput("name: 1 to 128 characters")
        if expires_in_days is not None and not 0 < expires_in_days <= 3650:
            raise InvalidInput("expiresInDays: between 1 and 3650")
        secret = tokens.new_token(tokens.API_PREFIX)
        expires = utcnow() + timedelta(days=expires_in_days) if expires_in_days else None
        cred = _credential("api", secret, user_id, expires, name.strip())
        async with self.sessions() as session, session.begin():
            if await session.get(User, user_id) is None:
                raise InvalidInput("user: no such user")
            session.add(cred)
            await audit.append(
                session,
                Entry(
                    actor=actor,
                    action="token-create",
                    object_type="token",
                    object_ref=cred.id,
                    details={"user": user_id},
                ),
            )
        return NewSecret(secret, cred)

    async def api_tokens(self, user_id: str | None) -> list[Credential]:
        """Live API tokens of one user (or everyone's), newest first."""
        query = select(Credential).where(Credential.kind == "api", Credential.revoked_at.is_(None))
        if user_id is not None:
            query = query.where(Credential.user_id == user_id)
        async with self.sessions() as session:
            return list((await session.scalars(query.order_by(Credential.created_at.desc()))).all())

    async def revoke_api_token(self, caller: Principal, token_id: str) -> bool:
        """Revoke an API token of the caller's own (any, for an admin)."""
        async with self.sessions() as session:
            cred = await session.get(Credential, token_id)
        if cred is None or cred.kind != "api" or cred.revoked_at is not None:
            return False
        if cred.user_id != caller.user_id and not caller.is_admin:
            raise Forbidden("revokeApiToken: not your token")
        await self._revoke(token_id)
        await audit.record(
            self.sessions,
            Entry(
                actor=caller.actor, action="token-revoke", object_type="token", object_ref=token_id
            ),
        )
        return True

    async def _revoke(self, cred_id: str) -> None:
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(Credential).where(Credential.id == cred_id).values(revoked_at=utcnow())
            )
            cred = await session.get(Credential, cred_id)
        self._cache = {k: v for k, v in self._cache.items() if v[0].token_id != cred_id}
        del cred
        if self.epoch is not None:
            await self.epoch.bump()

    # -- users and groups -----------------------------------------------------------------

    async def users(self) -> list[User]:
        """Every user, by name."""
        async with self.sessions() as session:
            return list((await session.scalars(select(User).order_by(User.username_key))).all())

    async def user(self, user_id: str) -> User | None:
        """One user, with their groups."""
        async with self.sessions() as session:
            return await session.get(User, user_id)

    async def user_by_name(self, username: str) -> User | None:
        """One user by name (case-insensitive)."""
        async with self.sessions() as session:
            return await _by_name(session, username)

    async def recipients(self, usernames: Iterable[str]) -> list[str]:
        """The user ids of `usernames`, each an active user who may not see identity (a
        recipient of pseudonymised data); INVALID_INPUT naming the first that is not."""
        ids: list[str] = []
        async with self.sessions() as session:
            for name in usernames:
                user = await _by_name(session, name)
                if user is None or not user.active:
                    raise InvalidInput(f"recipients: no active user {shown(name)}")
                if sees_identity(principal_of(user)):
                    raise InvalidInput(
                        f"recipients: {shown(name)} sees identity; recipients are researchers"
                    )
                ids.append(user.id)
        return ids

    async def create_user(
        self,
        username: str,
        roles: Iterable[Role],
        actor: str,
        password: str | None = None,
        display_name: str | None = None,
        groups: Iterable[str] = (),
        sources: Iterable[str] | None = None,
    ) -> User:
        """A new active user; usernames are unique whatever their case."""
        name = username.strip()
        if not name or len(name) > 128 or any(c.isspace() for c in name):
            raise InvalidInput("username: 1 to 128 characters, no spaces")
        if password is not None and (why := passwords.check_strength(password)):
            raise InvalidInput(why)
        user = User(
            id=str(uuid.uuid4()),
            username=name,
            username_key=name.lower(),
            display_name=display_name,
            password_hash=await asyncio.to_thread(passwords.hash_password, password)
            if password
            else None,
            roles=sorted({Role(r).value for r in roles}),
            sources=sorted(set(sources)) if sources is not None else None,
            active=True,
            failed_logins=0,
        )
        async with self.sessions() as session, session.begin():
            if await _by_name(session, name) is not None:
                raise InvalidInput("username: already taken")
            user.groups = await _groups(session, groups)
            session.add(user)
            await audit.append(
                session,
                Entry(
                    actor=actor,
                    action="user-create",
                    object_type="user",
                    object_ref=user.id,
                    details={"roles": user.roles, "groups": [g.id for g in user.groups]},
                ),
            )
        return user

    async def update_user(
        self,
        user_id: str,
        actor: str,
        *,
        display_name: str | None = None,
        roles: Iterable[Role] | None = None,
        groups: Iterable[str] | None = None,
        sources: Iterable[str] | None = None,
        clear_sources: bool = False,
        active: bool | None = None,
    ) -> User:
        """Change what is given; an admin cannot remove the last active admin."""
        async with self.sessions() as session, session.begin():
            had = await _has_admin(session)
            user = await session.get(User, user_id)
            if user is None:
                raise InvalidInput("id: no such user")
            changed: list[str] = []
            if display_name is not None:
                user.display_name, changed = display_name, [*changed, "displayName"]
            if roles is not None:
                user.roles, changed = sorted({Role(r).value for r in roles}), [*changed, "roles"]
            if groups is not None:
                user.groups, changed = await _groups(session, groups), [*changed, "groups"]
            if sources is not None or clear_sources:
                user.sources = sorted(set(sources)) if sources is not None else None
                changed.append("sources")
            if active is not None:
                user.active, changed = active, [*changed, "active"]
            await _keep_an_admin(session, had)
            await audit.append(
                session,
                Entry(
                    actor=actor,
                    action="user-update",
                    object_type="user",
                    object_ref=user_id,
                    details={"changed": changed},
                ),
            )
        if active is False:
            await self._revoke_all(user_id)  # and forget them everywhere
        else:
            await self.changed(user_id)
        return user

    async def logged_in_recently(self, caller: Principal, within_s: float = RECENT_LOGIN_S) -> bool:
        """Whether `caller` holds a session from a password login within `within_s` (a
        stolen older session, an API token or an OIDC token does not count)."""
        if caller.via != "session" or caller.token_id is None:
            return False
        async with self.sessions() as session:
            cred = await session.get(Credential, caller.token_id)
        if cred is None or cred.kind != "session" or cred.revoked_at is not None:
            return False
        return (utcnow() - as_utc(cred.created_at)).total_seconds() <= within_s

    async def set_password(self, user_id: str, password: str, actor: str) -> None:
        """A new password; the user's sessions end."""
        if why := passwords.check_strength(password):
            raise InvalidInput(why)
        hashed = await asyncio.to_thread(passwords.hash_password, password)
        async with self.sessions() as session, session.begin():
            user = await session.get(User, user_id)
            if user is None:
                raise InvalidInput("id: no such user")
            user.password_hash = hashed
            user.failed_logins, user.locked_until = 0, None
            await audit.append(
                session,
                Entry(actor=actor, action="password-set", object_type="user", object_ref=user_id),
            )
        await self._revoke_all(user_id, kind="session")

    async def _revoke_all(self, user_id: str, kind: str | None = None) -> None:
        async with self.sessions() as session, session.begin():
            query = update(Credential).where(
                Credential.user_id == user_id, Credential.revoked_at.is_(None)
            )
            if kind is not None:
                query = query.where(Credential.kind == kind)
            await session.execute(query.values(revoked_at=utcnow()))
        await self.changed(user_id)

    async def group(self, group_id: str) -> Group | None:
        """One group, with its members."""
        async with self.sessions() as session:
            return await session.get(Group, group_id)

    async def groups(self) -> list[Group]:
        """Every group, by name."""
        async with self.sessions() as session:
            return list((await session.scalars(select(Group).order_by(Group.name))).all())

    async def save_group(
        self,
        group_id: str | None,
        name: str,
        roles: Iterable[Role],
        sources: Iterable[str] | None,
        actor: str,
    ) -> Group:
        """Create (no id) or replace a group."""
        if not name.strip() or len(name) > 128:
            raise InvalidInput("name: 1 to 128 characters")
        async with self.sessions() as session, session.begin():
            had = await _has_admin(session)
            same = await session.scalar(select(Group).where(func.lower(Group.name) == name.lower()))
            if same is not None and same.id != group_id:
                raise InvalidInput("name: already taken")
            group = await session.get(Group, group_id) if group_id else Group(id=str(uuid.uuid4()))
            if group is None:
                raise InvalidInput("id: no such group")
            group.name = name.strip()
            group.roles = sorted({Role(r).value for r in roles})
            group.sources = sorted(set(sources)) if sources is not None else None
            session.add(group)
            await _keep_an_admin(session, had)
            await audit.append(
                session,
                Entry(
                    actor=actor,
                    action="group-create" if group_id is None else "group-update",
                    object_type="group",
                    object_ref=group.id,
                    details={"roles": group.roles},
                ),
            )
        await self.changed()
        saved = await self.group(group.id)  # with its members: the new row has none loaded
        assert saved is not None
        return saved

    async def delete_group(self, group_id: str, actor: str) -> bool:
        """Remove a group (its members keep their own rights)."""
        async with self.sessions() as session, session.begin():
            had = await _has_admin(session)
            group = await session.get(Group, group_id)
            if group is None:
                return False
            await session.delete(group)
            await _keep_an_admin(session, had)
            await audit.append(
                session,
                Entry(actor=actor, action="group-delete", object_type="group", object_ref=group_id),
            )
        await self.changed()
        return True


def _credential(
    kind: str, secret: str, user_id: str, expires: datetime | None, name: str | None = None
) -> Credential:
    return Credential(
        id=str(uuid.uuid4()),
        kind=kind,
        digest=tokens.digest(secret),
        user_id=user_id,
        name=name,
        prefix=tokens.shown_prefix(secret) if kind == "api" else None,
        created_at=utcnow(),
        expires_at=expires,
    )


async def _by_name(session: AsyncSession, username: str) -> User | None:
    return await session.scalar(select(User).where(User.username_key == username.strip().lower()))


async def _groups(session: AsyncSession, ids: Iterable[str]) -> list[Group]:
    wanted = set(ids)
    found = list((await session.scalars(select(Group).where(Group.id.in_(wanted)))).all())
    if len(found) != len(wanted):
        raise InvalidInput("groups: no such group")
    return found


async def _has_admin(session: AsyncSession) -> bool:
    users = (await session.scalars(select(User).where(User.active.is_(True)))).all()
    return any(principal_of(u).is_admin for u in users)


async def _keep_an_admin(session: AsyncSession, had: bool) -> None:
    await session.flush()
    if had and not await _has_admin(session):
        raise InvalidInput("the last active admin cannot lose the ADMIN role or be deactivated")


def _expired(at: datetime | None) -> bool:
    return at is not None and as_utc(at) <= utcnow()
