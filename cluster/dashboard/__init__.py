"""The Flask dashboard and JSON API."""

from cluster.dashboard.app import create_app

__all__ = ["create_app"]
