"""Accounts: who may use Prelabel, and with which token.

The API, the dashboard and the CLI's operator commands (`prelabel users`, `prelabel admin
bootstrap`, which talk to Redis directly) all come here, so the rule on who may reissue a token is
written once.
"""

from __future__ import annotations

from cluster.errors import Forbidden
from cluster.store import Store
from cluster.store.users import User


def add_user(store: Store, name: str, *, admin: bool = False) -> tuple[User, str]:
    """Create the account; its API token is returned this once (only its hash is kept)."""
    return store.users.add(name, admin=admin)


def reset_token(store: Store, name: str, *, by: User | None) -> str:
    """A new API token for ``name``; the old one and the user's dashboard sessions stop working.

    ``by`` is the user asking through the API, who must be an admin; ``None`` is an operator with
    access to Redis (the CLI), who needs no account."""
    if by is not None and not by.admin:
        raise Forbidden("only an admin can reissue API tokens")
    store.users.get(name)  # NotFound for an unknown user, before anything changes
    return store.users.new_token(name)


def bootstrap_admin(store: Store, name: str, token: str) -> bool:
    """Create the first admin with a token the operator already keeps (a Kubernetes Secret); true if
    it was created, false if it exists with this token (a Job run twice)."""
    return store.users.bootstrap_admin(name, token)


def create_user(store: Store, name: str, *, admin: bool = False, by: User) -> tuple[User, str]:
    """An admin creates an account; its API token is returned this once."""
    if not by.admin:
        raise Forbidden("only an admin can create users")
    return store.users.add(name, admin=admin)


def update_user(store: Store, name: str, *, by: User | None, admin: bool | None = None,
                disabled: bool | None = None) -> User:
    """An admin makes ``name`` an admin or not, and disables or enables it. A disabled account's
    token is refused and its sessions end (401); enabling it makes its token work again. No change
    may leave the cluster without an enabled admin (409), so an admin cannot lock everyone out,
    themselves included. ``by=None`` is an operator with access to Redis (the same rules hold)."""
    if by is not None and not by.admin:
        raise Forbidden("only an admin can change users")
    return store.users.update(name, admin=admin, disabled=disabled)


def list_users(store: Store, *, by: User) -> list[dict]:
    """Every account (admins only): name, admin, disabled, when created, how many jobs it has; never
    a token or its hash."""
    if not by.admin:
        raise Forbidden("only an admin can list users")
    users = store.users.list()
    jobs = store.jobs.owner_counts([u.name for u in users])
    return [user.to_dict() | {"jobs": jobs.get(user.name, 0)} for user in users]
