"""`prelabel users disable|enable|admin` and `prelabel allowlist list|add|remove`: an admin's commands,
through the API with the admin's own token (the API decides who may: 403 for others, 409 when the
last enabled admin would be lost, 400 with the reason for a module that may not be allowed).

`users add` and `users token --reset` stay operator commands on Redis (in ``main.py``): they are how
the first token is made and how a lost one is replaced, when nobody may have a working token.
"""

from __future__ import annotations

import argparse
from typing import Any

from cluster.cli.output import add_json_flag, print_json, print_table, when


def _client() -> Any:
    from cluster.client import ApiClient
    from cluster.config import Settings

    return ApiClient(Settings.from_env())


def _patch_user(name: str, change: dict[str, bool]) -> dict[str, Any]:
    from urllib.parse import quote

    return _client().request("PATCH", f"/api/users/{quote(name, safe='')}", json=change).json()


def _user_line(user: dict[str, Any]) -> str:
    role = "an admin" if user.get("admin") else "not an admin"
    access = "disabled (its token and sessions are refused)" if user.get("disabled") else "enabled"
    return f"user {user['name']}: {role}, {access}"


def cmd_users_disable(args: argparse.Namespace) -> int:
    return _print_user(args, _patch_user(args.name, {"disabled": True}))


def cmd_users_enable(args: argparse.Namespace) -> int:
    return _print_user(args, _patch_user(args.name, {"disabled": False}))


def cmd_users_admin(args: argparse.Namespace) -> int:
    return _print_user(args, _patch_user(args.name, {"admin": not args.revoke}))


def _print_user(args: argparse.Namespace, user: dict[str, Any]) -> int:
    if args.json:
        print_json(user)
    else:
        print(_user_line(user))
    return 0


# -- the import allowlist of untrusted scripts ----------------------------------------------------
def _print_allowlist(listing: dict[str, Any]) -> None:
    print_table(listing.get("modules") or [], [
        ("module", lambda m: m["module"]), ("source", lambda m: m.get("source")),
        ("added by", lambda m: m.get("added_by")),
        ("added", lambda m: when(m.get("added_at")) if m.get("added_at") else None),
    ], "no modules are allowed")
    if listing.get("denied"):
        print(f"denied: {', '.join(listing['denied'])}")


def cmd_allowlist_list(args: argparse.Namespace) -> int:
    listing = _client().get("/api/admin/allowlist")
    if args.json:
        print_json(listing)
    else:
        _print_allowlist(listing)
    return 0


def cmd_allowlist_add(args: argparse.Namespace) -> int:
    answer = _client().post("/api/admin/allowlist", json={"modules": args.modules})
    if args.json:
        print_json(answer)
        return 0
    added = answer.get("added") or []
    if added:
        print(f"allowed {', '.join(added)} for untrusted scripts (workers see it within seconds)")
    already = [m for m in dict.fromkeys(m.strip() for m in args.modules) if m not in added]
    if already:
        print(f"already allowed: {', '.join(already)}")
    return 0


def cmd_allowlist_remove(args: argparse.Namespace) -> int:
    from urllib.parse import quote

    client = _client()
    answer: dict[str, Any] = {}
    for module in dict.fromkeys(args.modules):
        answer = client.delete(f"/api/admin/allowlist/{quote(module, safe='')}")
        if not args.json:
            print(f"removed {module}: untrusted scripts importing it are refused from their next check")
    if args.json:
        print_json(answer)
    return 0


def add_user_admin_parsers(users: argparse._SubParsersAction) -> None:
    """``users disable|enable|admin NAME`` under ``prelabel users``."""
    s = users.add_parser("disable", help="refuse a user's token and end their dashboard sessions (admins, "
                         "through the API); their data stays")
    s.add_argument("name", help="the user name")
    add_json_flag(s)
    s.set_defaults(func=cmd_users_disable)
    s = users.add_parser("enable", help="let a disabled user in again with the same token (admins, through the API)")
    s.add_argument("name", help="the user name")
    add_json_flag(s)
    s.set_defaults(func=cmd_users_enable)
    s = users.add_parser("admin", help="make a user an admin, or with --revoke not (admins, through the API; the "
                         "last enabled admin cannot be revoked)")
    s.add_argument("name", help="the user name")
    s.add_argument("--revoke", action="store_true", help="take the admin role away instead of giving it")
    add_json_flag(s)
    s.set_defaults(func=cmd_users_admin)


def add_allowlist_parser(sub: argparse._SubParsersAction) -> None:
    """``prelabel allowlist list|add|remove``."""
    al = sub.add_parser("allowlist", help="the modules untrusted scripts may import (anyone lists, admins change)"
                        ).add_subparsers(dest="allowlist_command", required=True)
    s = al.add_parser("list", help="every allowed module and where it comes from (default, settings, admin)")
    add_json_flag(s)
    s.set_defaults(func=cmd_allowlist_list)
    s = al.add_parser("add", help="allow modules for untrusted scripts (admins); workers see it within seconds")
    s.add_argument("modules", nargs="+", metavar="MODULE", help="a dotted module name, e.g. colorsys or scipy.ndimage")
    add_json_flag(s)
    s.set_defaults(func=cmd_allowlist_add)
    s = al.add_parser("remove", help="take modules off the admins' additions (admins)")
    s.add_argument("modules", nargs="+", metavar="MODULE", help="a module an admin added")
    add_json_flag(s)
    s.set_defaults(func=cmd_allowlist_remove)
