"""The datasets pages: the list with the form that creates one, and one dataset's page where files,
folders, zips and videos are uploaded (by the browser, straight to ``POST /api/datasets/<ref>/files``,
in batches under the upload limit; ``static/datasets.js``)."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for

from cluster.dashboard.auth import current_user, login_required
from cluster.dashboard.clients import clients
from cluster.errors import Conflict, InvalidInput
from cluster.services.datasets import create_dataset

bp = Blueprint("datasets_pages", __name__)

#: What one upload request carries at most (the browser splits a selection into batches): the
#: deployment's limit, or less, so the report of a large selection comes a batch at a time.
BATCH_BYTES = 32 << 20
BATCH_FILES = 100
FRAMES_SHOWN = 24  # thumbnails of a dataset's first frames on its page


def _index(form_error: str | None = None, name: str = "", status: int = 200):
    c = clients()
    user = current_user()
    return render_template("datasets.html", user=user, datasets=c.store.datasets.list(user),
                           form_error=form_error, name=name), status


@bp.get("/datasets")
@login_required
def index():
    return _index()


@bp.post("/datasets")
@login_required
def create():
    """The list's form: make the dataset and go to its page, where its files are uploaded."""
    name = request.form.get("name", "").strip()
    try:
        dataset = create_dataset(clients().store, current_user(), name)
    except (InvalidInput, Conflict) as exc:
        return _index(form_error=exc.message, name=name, status=exc.status)
    return redirect(url_for("datasets_pages.show", ref=dataset["id"]))


@bp.get("/datasets/<ref>")
@login_required
def show(ref: str):
    c = clients()
    user = current_user()
    dataset = c.store.datasets.get(user, ref)
    frames = c.store.datasets.frames(dataset["id"], 0, FRAMES_SHOWN)
    return render_template(
        "dataset.html", user=user, dataset=dataset, frames=frames, frames_limit=FRAMES_SHOWN,
        upload={"max_bytes": int(c.settings.max_upload_bytes),
                "batch_bytes": min(BATCH_BYTES, int(c.settings.max_upload_bytes)), "batch_files": BATCH_FILES},
    )
