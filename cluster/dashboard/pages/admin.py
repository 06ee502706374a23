"""The administration page (admins only): accounts and the import allowlist of untrusted scripts.

The view only checks the caller and hands the page its first data (the same the API answers); every
change is made by ``static/admin.js`` through the API (``/api/users``, ``/api/admin/allowlist``),
whose rules live in ``services/users.py`` and ``services/allowlist.py``.
"""

from __future__ import annotations

from flask import Blueprint, render_template

from cluster.dashboard.auth import current_user, login_required
from cluster.dashboard.clients import clients
from cluster.errors import Forbidden
from cluster.services.allowlist import listing
from cluster.services.users import list_users

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.get("/")
@login_required
def index():
    user = current_user()
    if not user.admin:
        raise Forbidden("the administration page is for admins; ask one to make you an admin")
    c = clients()
    return render_template("admin.html", user=user,
                           page={"me": user.name, "users": list_users(c.store, by=user),
                                 "allowlist": listing(c.store, c.settings)})
