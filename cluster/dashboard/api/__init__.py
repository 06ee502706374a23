"""The JSON API, one blueprint per area, all under /api."""

from flask import Blueprint, Flask


def register(app: Flask) -> None:
    from cluster.dashboard.api import admin, annotations, cluster, datasets, jobs, models, openapi, users, zoo
    from cluster.dashboard.api import evaluation as quality_report

    api = Blueprint("api", __name__, url_prefix="/api")
    for module in (users, datasets, models, zoo, jobs, annotations, quality_report, cluster, admin, openapi):
        api.register_blueprint(module.bp)
    app.register_blueprint(api)


__all__ = ["register", "Blueprint"]
