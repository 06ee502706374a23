"""The HTML pages, one blueprint per area. They are thin views over the services and store queries
the API uses; live figures on a page come from the API."""

from __future__ import annotations

from flask import Flask, current_app

from cluster.dashboard.pages import admin, cluster, datasets, filters, jobs, models, session
from cluster.dashboard.pages.errors import error_page, http_error_page

#: The header's links: (endpoint, text, admins only). A link shows once its area's page exists.
NAV: tuple[tuple[str, str, bool], ...] = (
    ("jobs.list_jobs_page", "Jobs", False),
    ("datasets_pages.index", "Datasets", False),
    ("models_pages.index", "Models", False),
    ("cluster_pages.index", "Cluster", False),
    ("admin.index", "Admin", True),
)


def nav_links(user) -> list[tuple[str, str]]:
    """The header's links this user may follow."""
    views = current_app.view_functions
    return [(endpoint, text) for endpoint, text, admin_only in NAV
            if endpoint in views and (not admin_only or (user is not None and user.admin))]


def register(app: Flask) -> None:
    filters.init_app(app)
    for module in (session, jobs, admin, datasets, models, cluster):
        app.register_blueprint(module.bp)
    app.jinja_env.globals["nav_links"] = nav_links


__all__ = ["register", "error_page", "http_error_page", "NAV"]
