"""Label maps: the one parser of every form a user may hand Prelabel, to ``{"<id>": "<name>"}``.

Accepted, told apart by their shape (the file name is not needed):

* CVAT's ``{"label_map": {"1": "person"}}`` as is, or the bare ``{"1": "person"}``;
* the ``spec`` of CVAT's serverless functions, the JSON list a nuclio ``function.yaml`` carries in its
  ``metadata.annotations.spec``: ``[{"id": 1, "name": "person"}, ...]`` (other keys of an entry, such
  as ``type`` or ``attributes``, are ignored);
* that whole ``function.yaml`` (YAML), whose ``spec`` string is read as above.

Label ids are integers 0-255 (a mask export writes the id as a pixel value), names are non-empty,
and an id appears once; every refusal is an :class:`InvalidInput` naming the entry at fault.
"""

from __future__ import annotations

import json
from typing import Any

from cluster.errors import InvalidInput

EXAMPLE = '{"label_map": {"1": "person"}}, [{"id": 1, "name": "person"}] or a CVAT function.yaml'


def parse_label_map(data: bytes) -> dict[str, str]:
    """The label map in ``data`` (any accepted form) as ``{"<id>": "<name>"}``."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"the label map is not UTF-8 text: {exc}") from exc
    try:
        raw: Any = json.loads(text)
    except ValueError as exc:
        raw = _from_function_yaml(text, exc)
    if isinstance(raw, dict) and "label_map" in raw:
        raw = raw["label_map"]
    if isinstance(raw, list):
        return _checked(_from_spec(raw))
    if not isinstance(raw, dict) or not raw:
        raise InvalidInput(f"the label map must be one of {EXAMPLE}")
    return _checked(list(raw.items()))


def _from_function_yaml(text: str, json_error: ValueError) -> Any:
    """The ``spec`` list of a nuclio ``function.yaml``; text that is neither JSON nor such a file is
    refused with the JSON error (what most label maps are)."""
    if "metadata" not in text:
        raise InvalidInput(f"the label map is not valid JSON ({json_error}) nor a CVAT function.yaml")
    try:
        import yaml
    except ImportError:  # a runtime dependency: only a broken install lacks it
        raise InvalidInput("reading a function.yaml needs PyYAML (pip install pyyaml); "
                           "or pass its spec list as JSON") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"the function.yaml is not valid YAML: {exc}") from None
    annotations = doc.get("metadata", {}).get("annotations") if isinstance(doc, dict) else None
    if not isinstance(annotations, dict) or "spec" not in annotations:
        raise InvalidInput("the function.yaml has no metadata.annotations.spec (the list of labels)")
    spec = annotations["spec"]
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except ValueError as exc:
            raise InvalidInput(f"metadata.annotations.spec of the function.yaml is not valid JSON: {exc}") from None
    if not isinstance(spec, list):
        raise InvalidInput("metadata.annotations.spec of the function.yaml must be a list like "
                           '[{"id": 1, "name": "person"}]')
    return spec


def _from_spec(spec: list[Any]) -> list[tuple[Any, Any]]:
    if not spec:
        raise InvalidInput("the label list is empty")
    pairs = []
    for position, entry in enumerate(spec, 1):
        if not isinstance(entry, dict):
            raise InvalidInput(f'label entry {position} must be an object like {{"id": 1, "name": "person"}}, '
                               f"got {entry!r:.60}")
        if "id" not in entry:
            raise InvalidInput(f"label entry {position} ({entry.get('name', '?')!r:.60}) has no id")
        if "name" not in entry:
            raise InvalidInput(f"label entry {position} (id {entry['id']!r:.20}) has no name")
        ident = entry["id"]
        if isinstance(ident, bool) or not isinstance(ident, int | str):
            raise InvalidInput(f"label id {ident!r:.20} (entry {position}) is not an integer")
        pairs.append((ident, entry["name"]))
    return pairs


def _checked(pairs: list[tuple[Any, Any]]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for key, name in pairs:
        try:
            number = int(str(key))
        except ValueError:
            raise InvalidInput(f"label id {key!r:.20} is not an integer") from None
        if number < 0 or number > 255:
            raise InvalidInput(f"label id {key!r} must be between 0 and 255 (a mask pixel is one byte)")
        if not isinstance(name, str) or not name.strip():
            raise InvalidInput(f"label {key!r} needs a non-empty name")
        if str(number) in labels:
            raise InvalidInput(f"label id {key!r} appears twice in the label map")
        labels[str(number)] = name.strip()
    if "0" in labels and "255" in labels:
        raise InvalidInput("label ids 0 and 255 cannot both be used: mask exports need one byte "
                           "value for the background (it is 255 when a label has id 0)")
    return labels
