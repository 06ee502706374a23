"""COCO instances JSON and CVAT XML (CVAT for images 1.1) read into one form for the metrics.

Every instance becomes a COCO box ``[x, y, w, h]`` and a COCO segmentation (polygons, or an RLE for
a mask; a rectangle's segmentation is its box), labelled by *name*: the ground truth's category ids
mean nothing to the job. COCO's ``iscrowd`` is not read: CVAT's and Prelabel's exports both write
every mask as an RLE with ``iscrowd = 1``, so in a ground truth taken from them it marks a mask, not a
crowd; every ground-truth shape counts as one instance. Polylines, points and tags have no area to
match and are counted as skipped.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cluster.config import Settings
from cluster.errors import InvalidInput
from cluster.export.cvat import cvat_decode
from cluster.quality.pycoco import mask_utils

#: The largest ground-truth image: as the largest frame a dataset takes (PRELABEL_MAX_FRAME_PIXELS'
#: default); a mask is painted at the image's size.
MAX_PIXELS = Settings.max_frame_pixels


@dataclass
class Instance:
    label: str
    bbox: list[float]  # x, y, w, h
    segmentation: Any  # [[x, y, ...], ...] or {"size": [h, w], "counts": ...}
    score: float | None = None


@dataclass
class Image:
    name: str
    width: int
    height: int
    instances: list[Instance] = field(default_factory=list)
    ident: int | None = None  # the COCO image id (the job's frame + 1 in a Prelabel export)


@dataclass
class Annotations:
    format: str  # "coco" or "cvat"
    images: list[Image]
    labels: list[str]  # every label the file declares (its categories, or CVAT's meta labels)
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


def read_annotations(data: bytes) -> Annotations:
    """A COCO JSON or CVAT XML document, told apart by its first character; anything else is refused."""
    text = data.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"{"):
        try:
            doc = json.loads(text.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise InvalidInput(f"the ground truth is not valid JSON: {exc}") from None
        return read_coco(doc)
    if text.startswith(b"<"):
        return read_cvat(text)
    raise InvalidInput("the ground truth must be a COCO instances JSON or a CVAT XML (CVAT for images) file")


# -- COCO -----------------------------------------------------------------------------------------

def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput(f"{what} must be a number, got {value!r:.40}")
    return float(value)


def _image(name: str, width: Any, height: Any, where: str, ident: Any = None) -> Image:
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (width, height)):
        raise InvalidInput(f"{where} needs a positive width and height")
    if width * height > MAX_PIXELS:
        raise InvalidInput(f"{where} is {width}x{height}: larger than any frame ({MAX_PIXELS} pixels)")
    return Image(name, width, height, ident=ident)


def _inside(xs: list[float], ys: list[float], image: Image, where: str) -> None:
    """Coordinates at most one image size outside the image: pycocotools paints polygons at their size."""
    if not all(-image.width <= x <= 2 * image.width for x in xs) or \
            not all(-image.height <= y <= 2 * image.height for y in ys):
        raise InvalidInput(f"{where}: a coordinate lies more than the image's size outside it")


def _compressed_counts(text: str) -> list[int]:
    """COCO's compressed RLE string as run lengths (pycocotools' rleFrString, read here so that a bad
    string is refused before pycocotools paints it)."""
    counts: list[int] = []
    p = 0
    while p < len(text):
        x = k = 0
        more = True
        while more:
            if p >= len(text):
                raise ValueError("the string ends inside a number")
            c = ord(text[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def _check_rle(counts: Any, image: Image, where: str) -> None:
    try:
        runs = _compressed_counts(counts) if isinstance(counts, str) else counts
    except ValueError as exc:
        raise InvalidInput(f"{where}: its RLE cannot be read: {exc}") from None
    if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in runs) or \
            sum(runs) != image.width * image.height:
        raise InvalidInput(f"{where}: its RLE counts must be non-negative and cover the image's "
                           f"{image.width}x{image.height} pixels")


def _ident(value: Any, what: str) -> int | str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidInput(f"{what} must be an integer or a string, got {value!r:.40}")
    return value


def _coco_segmentation(seg: Any, bbox: list[float] | None, image: Image, where: str) -> tuple[list[float], Any]:
    """The instance's box and segmentation; an RLE's and a polygon's box from pycocotools when the
    file gives none."""
    if bbox is not None:
        _inside([bbox[0], bbox[0] + bbox[2]], [bbox[1], bbox[1] + bbox[3]], image, where)
    if isinstance(seg, dict):
        counts, size = seg.get("counts"), seg.get("size")
        if not (isinstance(size, list) and len(size) == 2 and isinstance(counts, list | str)):
            raise InvalidInput(f"{where}: an RLE segmentation needs 'size' [h, w] and 'counts'")
        if size != [image.height, image.width]:
            raise InvalidInput(f"{where}: its RLE size {size} is not the image's {image.height}x{image.width}")
        _check_rle(counts, image, where)
        try:
            rle = mask_utils().frPyObjects(seg, image.height, image.width) if isinstance(counts, list) else seg
            box = [float(v) for v in mask_utils().toBbox(rle)]
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidInput(f"{where}: its RLE cannot be read: {exc}") from None
        return (bbox or box), seg
    if isinstance(seg, list) and seg and all(isinstance(p, list) for p in seg):
        polygons = [[_number(v, f"{where}: a polygon coordinate") for v in p] for p in seg if len(p) >= 6]
        if not polygons:
            raise InvalidInput(f"{where}: its polygons have fewer than 3 points")
        xs = [v for p in polygons for v in p[0::2]]
        ys = [v for p in polygons for v in p[1::2]]
        _inside(xs, ys, image, where)
        return (bbox or [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]), polygons
    if bbox is None:
        raise InvalidInput(f"{where}: it has neither a bbox nor a segmentation")
    x, y, w, h = bbox
    return bbox, [[x, y, x + w, y, x + w, y + h, x, y + h]]


def read_coco(doc: Any) -> Annotations:
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), list) for k in ("images", "categories")):
        raise InvalidInput("a COCO ground truth needs 'images' and 'categories' lists (and 'annotations')")
    categories: dict[Any, str] = {}
    for cat in doc["categories"]:
        if not isinstance(cat, dict) or "id" not in cat or not isinstance(cat.get("name"), str) or not cat["name"]:
            raise InvalidInput(f"a COCO category needs an id and a name: {cat!r:.80}")
        categories[_ident(cat["id"], "a category id")] = cat["name"].strip()
    images: dict[Any, Image] = {}
    for img in doc["images"]:
        if not isinstance(img, dict) or not isinstance(img.get("file_name"), str) or "id" not in img:
            raise InvalidInput(f"a COCO image needs an id and a file_name: {img!r:.80}")
        ident = _ident(img["id"], "an image id")
        images[ident] = _image(img["file_name"], img.get("width"), img.get("height"),
                               f"COCO image {img['file_name']!r:.80}", ident if isinstance(ident, int) else None)
    out = Annotations("coco", list(images.values()), list(dict.fromkeys(categories.values())))
    anns = doc.get("annotations") or []
    if not isinstance(anns, list):
        raise InvalidInput("'annotations' must be a list")
    for n, ann in enumerate(anns, 1):
        where = f"annotation {ann.get('id', n) if isinstance(ann, dict) else n}"
        if not isinstance(ann, dict):
            raise InvalidInput(f"{where} is not an object")
        image = images.get(_ident(ann.get("image_id"), f"{where}: image_id"))
        if image is None:
            raise InvalidInput(f"{where}: image_id {ann.get('image_id')!r:.20} is not one of the images")
        label = categories.get(_ident(ann.get("category_id"), f"{where}: category_id"))
        if label is None:
            raise InvalidInput(f"{where}: category_id {ann.get('category_id')!r:.20} is not one of the categories")
        bbox = ann.get("bbox")
        if bbox is not None:
            if not isinstance(bbox, list) or len(bbox) != 4:
                raise InvalidInput(f"{where}: bbox must be [x, y, width, height]")
            bbox = [_number(v, f"{where}: bbox") for v in bbox]
            if bbox[2] < 0 or bbox[3] < 0:
                raise InvalidInput(f"{where}: bbox has a negative size")
        seg = ann.get("segmentation")
        box, segmentation = _coco_segmentation(seg if seg else None, bbox, image, where) if seg or bbox else (
            None, None)
        if box is None:
            raise InvalidInput(f"{where}: it has neither a bbox nor a segmentation")
        score = ann.get("score")
        image.instances.append(Instance(label, box, segmentation,
                                        None if score is None else _number(score, f"{where}: score")))
    return out


# -- CVAT XML -------------------------------------------------------------------------------------

def _floats(element: ET.Element, names: tuple[str, ...], where: str) -> list[float]:
    try:
        values = [float(element.attrib[n]) for n in names]
    except (KeyError, ValueError):
        raise InvalidInput(f"{where}: <{element.tag}> needs numeric {', '.join(names)}") from None
    if not all(math.isfinite(v) for v in values):
        raise InvalidInput(f"{where}: <{element.tag}> has a non-finite coordinate")
    return values


def _cvat_instance(el: ET.Element, image: Image, where: str) -> Instance | None:
    label = (el.get("label") or "").strip()
    if not label:
        raise InvalidInput(f"{where}: <{el.tag}> has no label")
    if el.tag == "box":
        x1, y1, x2, y2 = _floats(el, ("xtl", "ytl", "xbr", "ybr"), where)
        _inside([x1, x2], [y1, y2], image, where)
        return Instance(label, [x1, y1, x2 - x1, y2 - y1], [[x1, y1, x2, y1, x2, y2, x1, y2]])
    if el.tag == "polygon":
        try:
            points = [float(v) for pair in (el.get("points") or "").split(";") for v in pair.split(",")]
        except ValueError:
            raise InvalidInput(f"{where}: <polygon> points must be 'x,y;x,y;...'") from None
        if len(points) < 6 or len(points) % 2 or not all(math.isfinite(v) for v in points):
            raise InvalidInput(f"{where}: a <polygon> needs at least 3 finite points")
        xs, ys = points[0::2], points[1::2]
        _inside(xs, ys, image, where)
        return Instance(label, [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)], [points])
    if el.tag == "mask":
        left, top, width, height = (int(v) for v in _floats(el, ("left", "top", "width", "height"), where))
        try:
            runs = [int(v) for v in (el.get("rle") or "").split(",")]
        except ValueError:
            raise InvalidInput(f"{where}: a <mask>'s rle must be comma-separated integers") from None
        if left < 0 or top < 0 or width < 1 or height < 1 or left + width > image.width or \
                top + height > image.height:
            raise InvalidInput(f"{where}: a <mask>'s box is not inside the image")
        mask = cvat_decode(runs, left, top, width, height, image.width, image.height)
        rle = mask_utils().encode(np.asfortranarray(mask.astype(np.uint8)))
        box = [float(v) for v in mask_utils().toBbox(rle)]
        return Instance(label, box, {"size": [image.height, image.width], "counts": rle["counts"].decode("ascii")})
    return None


def read_cvat(data: bytes) -> Annotations:
    try:
        root = ET.fromstring(data)  # expat refuses entity expansion bombs; no external entities are read
    except ET.ParseError as exc:
        raise InvalidInput(f"the ground truth is not valid XML: {exc}") from None
    if root.tag != "annotations":
        raise InvalidInput(f"a CVAT XML ground truth has <annotations> at its root, not <{root.tag}>")
    labels = [(el.text or "").strip() for el in root.iterfind("./meta//labels/label/name")]
    out = Annotations("cvat", [], [name for name in dict.fromkeys(labels) if name])
    for img in root.iter("image"):
        where = f"image {img.get('name')!r:.80}"
        try:
            image = _image(img.attrib["name"], int(img.attrib["width"]), int(img.attrib["height"]), where)
        except (KeyError, ValueError):
            raise InvalidInput(f"{where}: <image> needs a name, a width and a height") from None
        for el in img:
            instance = _cvat_instance(el, image, where)
            if instance is None:
                out.skip(f"{el.tag} (no area to match)")
            else:
                image.instances.append(instance)
        out.images.append(image)
    if not out.images:
        if root.find("track") is not None:
            raise InvalidInput("the CVAT XML has tracks and no <image>: export it as 'CVAT for images 1.1'")
        raise InvalidInput("the CVAT XML has no <image> element")
    return out
