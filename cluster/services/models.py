"""Registering a model: read, preprocess, compile and run it with its script on a real image
before anything is stored, so a model that is registered is a model that works.

Every model is stored as OpenVINO IR (ONNX and TFLite are converted here, once), so workers
only ever read IR.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from cluster.config import Settings
from cluster.errors import Conflict, Forbidden, InvalidInput, ModelError, PrelabelError, ScriptError
from cluster.jobs.thresholds import DEFAULT_THRESHOLD, check_threshold
from cluster.models.engine import InferenceEngine
from cluster.models.labels import parse_label_map
from cluster.models.preprocessing import Preprocessing, apply_preprocessing
from cluster.models.reading import read_model, save_ir
from cluster.objectstore import Keys, ObjectStore
from cluster.scripts import FrameInput, ScriptLimits, ScriptPool
from cluster.store import Store
from cluster.store.base import new_id
from cluster.store.users import User

#: OpenVINO's Python binding initialises C++ statics on first tensor access; two threads doing that
#: at once deadlock against the GIL. Registrations run in the dashboard's request threads, so their
#: test inference is serialised (registration is rare; the workers warm each engine up instead).
_OPENVINO_FIRST_USE = threading.Lock()


@dataclass
class Upload:
    filename: str
    data: bytes


def sample_image() -> np.ndarray:
    """A real photograph for the registration test run when scikit-image (the `local` extra) is
    installed; the container image has none and checks scripts on fixed noise instead."""
    try:
        from skimage import data

        return np.ascontiguousarray(data.astronaut())
    except Exception:
        rng = np.random.default_rng(0)
        return rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)


def register_model(
    store: Store,
    objects: ObjectStore,
    user: User,
    *,
    name: str,
    model: Upload,
    weights: Upload | None,
    labels: Upload,
    script: Upload,
    preprocessing: dict[str, Any] | None,
    trusted: bool = False,
    threshold: float | str | None = None,  # a number, or its text from a form: checked here
    settings: Settings,
) -> dict[str, Any]:
    """Check and store a model. ``threshold``: what jobs of this model pass their script as
    ``context["threshold"]`` unless the job sets one (``DEFAULT_THRESHOLD`` when None)."""
    threshold = check_threshold(DEFAULT_THRESHOLD if threshold is None else threshold)
    if trusted and not user.admin:
        raise InvalidInput("only an admin can mark a script trusted")
    if store.models.name_taken(user, name):
        raise Conflict(f"you already have a model named {name!r}")
    label_map = parse_label_map(labels.data)
    try:
        source = script.data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScriptError(f"the script is not UTF-8 text: {exc}") from exc
    prep = Preprocessing.from_dict(preprocessing or {})

    core = ov.Core()
    with tempfile.TemporaryDirectory(prefix="prelabel-register-") as tmp:
        tmpdir = Path(tmp)
        model_path = tmpdir / Path(model.filename).name
        model_path.write_bytes(model.data)
        weights_path = None
        if weights is not None:
            weights_path = tmpdir / Path(weights.filename).name
            weights_path.write_bytes(weights.data)
        ov_model = read_model(core, model_path, weights_path)
        prep = prep.resolved(ov_model)
        outputs, shapes, style = _test_run(store, core, ov_model, prep, source, label_map, trusted=trusted,
                                           threshold=threshold, settings=settings)

        xml_path, bin_path = save_ir(ov_model, tmpdir / "ir")
        model_id = new_id()
        files = {name: Keys.model_file(model_id, name) for name in ("model.xml", "model.bin")}
        objects.put_file(files["model.xml"], str(xml_path))
        objects.put_file(files["model.bin"], str(bin_path))
    script_key = Keys.model_file(model_id, "script.py")
    objects.put_bytes(script_key, script.data, "text/x-python")
    objects.put_bytes(Keys.model_file(model_id, "labels.json"), json.dumps({"label_map": label_map}).encode())
    record = store.models.create(
        user,
        name,
        {
            "files": files,
            "script_key": script_key,
            "script_sha256": hashlib.sha256(script.data).hexdigest(),
            "script_style": style,
            "labels": label_map,
            "preprocessing": prep.to_dict(),
            "trusted": trusted,
            "threshold": threshold,
            "source_format": model_path.suffix.lstrip(".").lower(),
            "outputs": {k: list(v.shape) for k, v in outputs.items()},
            "test_shapes": len(shapes),
            "version": 1,
        },
        record_id=model_id,
    )
    return record


def _script_pool(store: Store, settings: Settings) -> ScriptPool:
    """The script runtime the registration check uses: the workers' (the same allowlist, the admins'
    additions to it included, and the same sandbox)."""
    return ScriptPool.from_settings(settings, ScriptLimits(timeout=60), extra_allowed=store.allowlist.modules)


def _test_run(store: Store, core: ov.Core, ov_model: ov.Model, prep: Preprocessing, source: str,
              label_map: dict[str, str], *, trusted: bool, threshold: float, settings: Settings,
              ) -> tuple[dict[str, np.ndarray], list[Any], str]:
    """Run the model on the sample image and its script on the outputs, in the isolated runtime the
    workers use at this trust level: the outputs, the shapes and the script's style.

    A script refused or failing raises ScriptError with the runtime's details (``line`` among them,
    when it points at one), so a form can show the error at its line."""
    image = sample_image()
    try:
        with _OPENVINO_FIRST_USE:  # see _OPENVINO_FIRST_USE: dashboard threads register concurrently
            engine = InferenceEngine(apply_preprocessing(ov_model, prep), "CPU", cache_dir=None, core=core)
            outputs = engine.infer(image)
    except PrelabelError:
        raise
    except Exception as exc:
        raise ModelError(f"the model does not run: {exc}") from exc
    # The same isolated runtime the workers use: it refuses a script whose imports are not
    # allowed or cannot be found, and validates what the script returns.
    pool = _script_pool(store, settings)
    try:
        runner = pool.get(source, labels=label_map, trusted=trusted)
        frame = FrameInput(id=0, name="astronaut.png", width=int(image.shape[1]), height=int(image.shape[0]),
                           outputs=outputs)
        shapes = runner.run([frame], {"threshold": threshold})[0]
        style = runner.style
    finally:
        pool.close()
    if isinstance(shapes, Exception):
        details = dict(shapes.details) if isinstance(shapes, PrelabelError) else {}
        details.pop("frame", None)  # the test image's index: no use to the reader
        raise ScriptError(f"the script failed on a test image (astronaut.png): {shapes}", **details)
    return outputs, shapes, style


def set_trusted(store: Store, objects: ObjectStore, user: User, ref: str, trusted: bool, *,
                settings: Settings) -> dict[str, Any]:
    """Admins: run model ``ref``'s script as full Python (``trusted``) or in the OS sandbox.

    The script is checked again under the new policy before the record changes, as at registration:
    its imports against that level's allowlist, then a real run on the sample image in that level's
    runtime (a script that only worked trusted fails here when made untrusted: 400 at its line).
    Workers read the flag with each chunk and keep one script process group per (script, trust
    level), so the change applies from the next chunk on."""
    if not user.admin:
        raise Forbidden("only an admin can mark a model's script trusted or untrusted")
    model = store.models.get(user, ref)
    if bool(model.get("trusted")) == trusted:
        return model
    try:
        source = objects.get_bytes(model["script_key"]).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScriptError(f"the stored script is not UTF-8 text: {exc}") from exc
    core = ov.Core()
    with tempfile.TemporaryDirectory(prefix="prelabel-trust-") as tmp:
        paths = {}
        for name in ("model.xml", "model.bin"):
            paths[name] = Path(tmp) / name
            objects.get_file(model["files"][name], str(paths[name]))
        ov_model = read_model(core, paths["model.xml"], paths["model.bin"])
        prep = Preprocessing.from_dict(model.get("preprocessing") or {}).resolved(ov_model)
        threshold = model.get("threshold")
        _test_run(store, core, ov_model, prep, source, model.get("labels") or {}, trusted=trusted,
                  threshold=check_threshold(DEFAULT_THRESHOLD if threshold is None else threshold), settings=settings)
    store.models.update(model["id"], trusted=trusted)
    return {**model, "trusted": trusted}


def delete_model(store: Store, objects: ObjectStore, user: User, ref: str) -> dict[str, Any]:
    """Delete a model (its owner or an admin) with its files, unless an unfinished job uses it (409).

    Finished jobs keep its label map (copied into each of them first), so their exports and viewer
    still name their labels. The record goes before the files: a job submitted from now on finds
    no model, rather than a model without files."""
    model = store.models.get(user, ref)
    store.models.require_owner(user, model)
    job = store.jobs.unfinished_with("model", model["id"])
    if job:
        raise Conflict(f"model {model['name']!r} is used by unfinished job {job}; cancel the job (or let it "
                       "finish) first")
    store.jobs.keep_model_labels(model["id"], model.get("labels") or {})
    store.models.delete(model)
    objects.delete_prefix(Keys.model_file(model["id"], ""))  # models/<id>/
    return model
