"""COCO-format detection data: a validating reader, attribute splits and a torch wrapper.

Labels are contiguous ``1..K`` in category-id order (``0`` is the background, as
torchvision detection models expect); ``category_of`` maps them back to COCO ids. A view
``with_labels("category_id")`` gives training targets in COCO category ids instead
(``label_space`` says which; see ``robustness_harness.data.labels``).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from robustness_harness.data import decoded
from robustness_harness.data.labels import LabelKind, LabelSpace
from robustness_harness.errors import DataError
from robustness_harness.store.json_files import parse_json

_FIX_JSON = "fix the JSON syntax at that position (a COCO file is one JSON object)"


DECODED_KEY = "decoded_images"
"""The ``derived`` key of a dataset's decoded-image memory."""


class CocoDetectionData:
    """A COCO detection dataset: images on disk, annotations in memory (validated).

    Instances are immutable views: ``subset``, ``select`` and ``limit`` return new
    objects over the same files.
    """

    task = "detection"

    def __init__(
        self,
        *,
        images_dir: Path,
        annotations_file: Path,
        images: list[dict[str, Any]],
        annotations_by_image: dict[int, list[dict[str, Any]]],
        categories: list[dict[str, Any]],
        sidecar: dict[str, dict[str, Any]],
        image_index: dict[int, int],
        labels: LabelKind = "index",
        derived: dict[str, Any] | None = None,
    ) -> None:
        self.images_dir = images_dir
        self.annotations_file = annotations_file
        self.categories = categories
        self.category_names = [str(c["name"]) for c in categories]
        self.image_ids = [int(img["id"]) for img in images]
        self._images = {int(img["id"]): img for img in images}
        self._anns = annotations_by_image
        self._sidecar = sidecar
        self._image_index = image_index  # image id -> position in the original json
        self._label_of = {int(c["id"]): i + 1 for i, c in enumerate(categories)}
        self.label_space = LabelSpace.of(labels, self._label_of)
        """The labels of ``target`` and of the model's outputs (``model.labels``)."""
        self._fingerprint: str | None = None
        self.derived: dict[str, Any] = {} if derived is None else derived
        """What other layers compute from these images and annotations and keep (decoded
        training items, COCO indexes and evaluations), shared by this dataset's views and
        subsets and dropped with them; keys say what and include content fingerprints."""

    # -- loading --------------------------------------------------------------------
    @classmethod
    def load(cls, images_dir: str | Path, annotations: str | Path) -> CocoDetectionData:
        """Read and validate ``annotations`` (COCO json); images stay on disk until used."""
        images_dir, annotations = Path(images_dir), Path(annotations)
        doc = _read_json(annotations)
        images, image_index = _check_images(doc, annotations)
        if not images:
            raise DataError(
                "there are no images",
                file=annotations,
                field="images",
                hint='list the images: [{"id": 1, "file_name": "000001.png"}, ...]',
            )
        categories = _check_categories(doc, annotations)
        by_image = _check_annotations(doc, annotations, image_index, categories)
        if not images_dir.is_dir():
            raise DataError(
                f"image directory '{images_dir}' does not exist",
                file=images_dir,
                field="images",
                hint="point the images path at the folder that holds the files named "
                "by images[].file_name",
            )
        sidecar = _read_sidecar(annotations)
        return cls(
            images_dir=images_dir,
            annotations_file=annotations,
            images=images,
            annotations_by_image=by_image,
            categories=sorted(categories.values(), key=lambda c: int(c["id"])),
            sidecar=sidecar,
            image_index=image_index,
        )

    def _view(self, image_ids: Sequence[int], labels: LabelKind | None = None) -> CocoDetectionData:
        keep = set(image_ids)
        images = [self._images[i] for i in self.image_ids if i in keep]
        return CocoDetectionData(
            images_dir=self.images_dir,
            annotations_file=self.annotations_file,
            images=images,
            annotations_by_image={i: self._anns.get(i, []) for i in keep},
            categories=self.categories,
            sidecar=self._sidecar,
            image_index=self._image_index,
            labels=labels or self.label_space.kind,
            derived=self.derived,
        )

    # -- labels ---------------------------------------------------------------------
    def label_of(self, category_id: int) -> int:
        """The contiguous label (1..K) of a COCO category id."""
        try:
            return self._label_of[int(category_id)]
        except KeyError:
            raise DataError(
                f"category id {category_id} is not in the categories of this dataset",
                file=self.annotations_file,
                field="categories",
                hint=f"use one of the ids {sorted(self._label_of)}",
            ) from None

    def with_labels(self, kind: LabelKind) -> CocoDetectionData:
        """This view with ``target`` labels (and model outputs) in label space ``kind``."""
        if kind == self.label_space.kind:
            return self
        view = self._view(self.image_ids, kind)
        view._fingerprint = self._fingerprint
        return view

    def category_of(self, label: int) -> int:
        """The COCO category id of a contiguous label (1..K)."""
        label = int(label)
        if not 1 <= label <= len(self.categories):
            raise DataError(
                f"label {label} is outside 1..{len(self.categories)} (0 is the background)",
                file=self.annotations_file,
                field="categories",
                hint="build the model with num_classes = number of categories + 1",
            )
        return int(self.categories[label - 1]["id"])

    # -- images and annotations -----------------------------------------------------
    def __len__(self) -> int:
        return len(self.image_ids)

    def __repr__(self) -> str:
        return (
            f"CocoDetectionData({self.annotations_file.name}: {len(self)} images, "
            f"{len(self.categories)} categories)"
        )

    def image_info(self, image_id: int) -> dict[str, Any]:
        """The ``images`` entry of ``image_id`` (do not modify it)."""
        try:
            return self._images[int(image_id)]
        except KeyError:
            raise DataError(
                f"image id {image_id} is not in this dataset ({len(self)} images)",
                file=self.annotations_file,
                field="images",
                hint="use an id from data.image_ids",
            ) from None

    def image_path(self, image_id: int) -> Path:
        """Where the image file of ``image_id`` is (``images_dir / file_name``)."""
        return self.images_dir / str(self.image_info(image_id)["file_name"])

    def decoded_images(self) -> decoded.DecodedImages:
        """The memory of decoded images this dataset and its views read through: the one
        ``keep_decoded_in`` gave (a session gives all its datasets one), else their own."""
        if DECODED_KEY not in self.derived:  # not setdefault: it would build one per image
            self.derived[DECODED_KEY] = decoded.DecodedImages()
        return cast(decoded.DecodedImages, self.derived[DECODED_KEY])

    def keep_decoded_in(self, memory: decoded.DecodedImages) -> None:
        """Decode into ``memory`` from now on (this dataset and its views)."""
        self.derived[DECODED_KEY] = memory

    def load_image(self, image_id: int) -> np.ndarray:
        """The image as a uint8 ``H x W x 3`` RGB array."""
        path = self.image_path(image_id)
        field = f"images[{self._image_index[int(image_id)]}].file_name"
        try:
            return self.decoded_images().get(path, _decode_rgb)  # a writable copy
        except FileNotFoundError:
            raise DataError(
                f"image file of image id {image_id} is missing",
                file=path,
                field=field,
                hint=f"restore the file or correct file_name in {self.annotations_file.name}",
            ) from None
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(
                f"image file of image id {image_id} cannot be read ({exc})",
                file=path,
                field=field,
                hint="replace it with a valid PNG/JPEG image",
            ) from None

    def annotations(self, image_id: int) -> list[dict[str, Any]]:
        """The annotation dicts of ``image_id`` (crowd ones included)."""
        self.image_info(image_id)
        return list(self._anns.get(int(image_id), []))

    def target(self, image_id: int) -> dict[str, torch.Tensor]:
        """``{"boxes": float32 (N, 4) xyxy, "labels": int64 (N,)}`` for training, labels
        in ``label_space``.

        Crowd annotations and boxes narrower or shorter than 1 px are left out.
        """
        boxes, labels = [], []
        for ann in self.annotations(image_id):
            x, y, w, h = ann["bbox"]
            if ann.get("iscrowd", 0) or w < 1 or h < 1:
                continue
            boxes.append((x, y, x + w, y + h))
            labels.append(self.label_space.label_of(ann["category_id"]))
        return {
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64),
        }

    # -- attributes and splits ------------------------------------------------------
    def attribute(self, image_id: int, key: str, default: Any = None) -> Any:
        """An image attribute: ``images[i].attributes[key]``, else ``images[i][key]``,
        else the sidecar ``<stem>.attributes.json``; ``default`` when none has it."""
        info = self.image_info(image_id)
        attrs = info.get("attributes")
        if isinstance(attrs, Mapping) and key in attrs:
            return attrs[key]
        if key in info and key != "attributes":
            return info[key]
        return self._sidecar.get(str(image_id), {}).get(key, default)

    def attribute_values(self, key: str) -> list[Any]:
        """The distinct values of attribute ``key`` over the images, sorted by text."""
        values = {_hashable(self.attribute(i, key, _MISSING)) for i in self.image_ids}
        values.discard(_MISSING)
        return sorted(values, key=str)

    def attribute_keys(self) -> list[str]:
        """Attribute names present on any image (``attributes``, sidecar), sorted."""
        keys: set[str] = set()
        for image_id in self.image_ids:
            attrs = self._images[image_id].get("attributes")
            if isinstance(attrs, Mapping):
                keys.update(map(str, attrs))
            keys.update(self._sidecar.get(str(image_id), {}))
        return sorted(keys)

    def select(
        self,
        attributes: Mapping[str, Any],
        *,
        field: str = "split",
        file: str | Path | None = None,
    ) -> CocoDetectionData:
        """The images whose attributes equal every given value (a list means any of).

        An empty result is a ``DataError`` naming the values that do exist; ``field``
        and ``file`` locate the request in errors (default: the annotation file).
        """
        wanted = {str(k): v for k, v in attributes.items()}
        ids = [
            i
            for i in self.image_ids
            if all(_matches(self.attribute(i, k, _MISSING), v) for k, v in wanted.items())
        ]
        if not ids:
            raise self._empty_split(wanted, field=field, file=file)
        return self._view(ids)

    def _empty_split(
        self, wanted: dict[str, Any], *, field: str, file: str | Path | None
    ) -> DataError:
        shown = ", ".join(f"{k}: {v}" for k, v in wanted.items())
        present = []
        for key in wanted:
            values = self.attribute_values(key)
            if values:
                present.append(f"{key} has values: {', '.join(map(str, values))}")
            else:
                known = ", ".join(self.attribute_keys()) or "none"
                present.append(f"no image has attribute '{key}' (attributes: {known})")
        return DataError(
            f"split {{{shown}}} selects none of the {len(self)} images; " + "; ".join(present),
            file=file if file is not None else self.annotations_file,
            field=field,
            hint="use an attribute value that exists in the data",
        )

    def subset(self, image_ids: Iterable[int]) -> CocoDetectionData:
        """The given images (in dataset order) with their annotations."""
        ids = [int(i) for i in image_ids]
        for i in ids:
            self.image_info(i)
        return self._view(ids)

    def limit(self, n: int | None) -> CocoDetectionData:
        """The first ``n`` images (all of them when ``n`` is None or large)."""
        if n is None or n >= len(self):
            return self
        if n < 0:
            raise DataError(
                f"image limit {n} is negative",
                file=self.annotations_file,
                field="limit",
                hint="pass a positive number of images, or none for all",
            )
        return self._view(self.image_ids[:n])

    # -- evaluation -----------------------------------------------------------------
    def coco_gt(self) -> dict[str, Any]:
        """The COCO dict (images, annotations, categories) of these images, for
        ``pycocotools.coco.COCO``; the dicts are shared, do not modify them."""
        return {
            "images": [self._images[i] for i in self.image_ids],
            "annotations": [a for i in self.image_ids for a in self._anns.get(i, [])],
            "categories": self.categories,
        }

    @property
    def fingerprint(self) -> str:
        """sha256 over the canonical COCO json of these images and each image file's
        name and content digest, so an image edited in place (same name, same size)
        gives a new fingerprint."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            canon = json.dumps(self.coco_gt(), sort_keys=True, separators=(",", ":"))
            h.update(canon.encode())
            for image_id in self.image_ids:
                path = self.image_path(image_id)
                try:
                    content = hashlib.sha256(path.read_bytes()).hexdigest()
                except OSError:
                    self.load_image(image_id)  # raises the DataError naming the file
                    raise
                h.update(f"\n{self._images[image_id]['file_name']}\t{content}".encode())
            self._fingerprint = h.hexdigest()
        return self._fingerprint


def _decode_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.array(img.convert("RGB"))


class DetectionTorchDataset(torch.utils.data.Dataset):
    """``(image float32 3xHxW in [0, 1], target)`` pairs; the target has ``boxes``,
    ``labels`` and ``image_id``."""

    def __init__(self, data: CocoDetectionData, image_ids: Sequence[int] | None = None) -> None:
        self.data = data
        self.image_ids = list(data.image_ids if image_ids is None else image_ids)

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        image_id = self.image_ids[index]
        array = np.ascontiguousarray(self.data.load_image(image_id))
        image = torch.from_numpy(array).permute(2, 0, 1).to(torch.float32).div_(255.0)
        target = self.data.target(image_id)
        target["image_id"] = torch.tensor(image_id, dtype=torch.int64)
        return image, target


def collate_detection(
    batch: Sequence[tuple[torch.Tensor, dict[str, torch.Tensor]]],
) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Lists of images and targets, as torchvision detection models take them."""
    return [b[0] for b in batch], [b[1] for b in batch]


# -- validation helpers -----------------------------------------------------------------

_MISSING: Any = type("_Missing", (), {"__repr__": lambda self: "<missing>"})()


def _hashable(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, list | dict) else value


def _matches(actual: Any, wanted: Any) -> bool:
    if actual is _MISSING:
        return False
    if isinstance(wanted, list | tuple | set | frozenset):
        return any(_matches(actual, w) for w in wanted)
    return actual == wanted or str(actual) == str(wanted)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(
            "annotation file does not exist",
            file=path,
            field="annotations",
            hint="check the annotations path (relative paths are resolved from the suite file)",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(
            f"annotation file cannot be read ({exc})",
            file=path,
            field="annotations",
            hint="make it a readable UTF-8 JSON file",
        ) from None
    doc = _parse_json(text, path)
    if not isinstance(doc, dict):
        raise DataError(
            f"the top level is a {type(doc).__name__}, not a mapping",
            file=path,
            field="(top level)",
            hint='write a COCO object {"images": [...], "annotations": [...], "categories": [...]}',
        )
    for key in ("images", "annotations", "categories"):
        if key not in doc:
            raise DataError(
                f"the required key '{key}' is missing",
                file=path,
                field=key,
                hint=f'add "{key}": [...] (a list, possibly empty for annotations)',
            )
        if not isinstance(doc[key], list):
            raise DataError(
                f"'{key}' is a {type(doc[key]).__name__}, not a list",
                file=path,
                field=key,
                hint=f'write "{key}": [ ... ]',
            )
    return doc


def _entry(doc: dict[str, Any], key: str, i: int, path: Path) -> dict[str, Any]:
    item = doc[key][i]
    if not isinstance(item, dict):
        raise DataError(
            f"entry is a {type(item).__name__}, not a mapping",
            file=path,
            field=f"{key}[{i}]",
            hint=f"make every element of '{key}' a JSON object",
        )
    return item


def _int_field(item: dict[str, Any], name: str, where: str, path: Path) -> int:
    value = item.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        what = "missing" if name not in item else f"{value!r} is not an integer"
        raise DataError(
            f"'{name}' is {what}",
            file=path,
            field=f"{where}.{name}",
            hint=f"give every entry an integer '{name}'",
        )
    return value


_ENTRY_NOUNS = {"images": "image", "categories": "category", "annotations": "annotation"}


def _unique_id(item: dict[str, Any], key: str, i: int, seen: dict[int, int], path: Path) -> int:
    """The integer ``id`` of ``doc[key][i]``; raises if an earlier entry has it, else
    records it in ``seen`` (id → position)."""
    where, noun = f"{key}[{i}]", _ENTRY_NOUNS[key]
    item_id = _int_field(item, "id", where, path)
    if item_id in seen:
        raise DataError(
            f"duplicate {noun} id {item_id} (also {key}[{seen[item_id]}])",
            file=path,
            field=f"{where}.id",
            hint=f"give every {noun} a unique id",
        )
    seen[item_id] = i
    return item_id


def _check_images(doc: dict[str, Any], path: Path) -> tuple[list[dict[str, Any]], dict[int, int]]:
    index: dict[int, int] = {}
    images = []
    for i in range(len(doc["images"])):
        img = _entry(doc, "images", i, path)
        _unique_id(img, "images", i, index, path)
        name = img.get("file_name")
        if not isinstance(name, str) or not name:
            raise DataError(
                "'file_name' is missing or not a string",
                file=path,
                field=f"images[{i}].file_name",
                hint="give the image path relative to the images directory",
            )
        images.append(img)
    return images, index


def _check_categories(doc: dict[str, Any], path: Path) -> dict[int, dict[str, Any]]:
    categories: dict[int, dict[str, Any]] = {}
    positions: dict[int, int] = {}
    for i in range(len(doc["categories"])):
        cat = _entry(doc, "categories", i, path)
        cat_id = _unique_id(cat, "categories", i, positions, path)
        if not isinstance(cat.get("name"), str):
            raise DataError(
                "'name' is missing or not a string",
                file=path,
                field=f"categories[{i}].name",
                hint="give every category a name",
            )
        categories[cat_id] = cat
    if not categories:
        raise DataError(
            "there are no categories",
            file=path,
            field="categories",
            hint='list the classes: [{"id": 1, "name": "car"}, ...]',
        )
    return categories


def _check_bbox(ann: dict[str, Any], where: str, path: Path) -> None:
    bbox = ann.get("bbox")
    ok = (
        isinstance(bbox, list)
        and len(bbox) == 4
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in bbox)
        and all(math.isfinite(v) for v in bbox)
    )
    if not ok:
        raise DataError(
            f"bbox {bbox!r} is not a list of 4 finite numbers",
            file=path,
            field=f"{where}.bbox",
            hint="write bbox as [x, y, width, height] in pixels",
        )
    if bbox[2] < 0 or bbox[3] < 0:
        raise DataError(
            f"bbox {bbox} has a negative width or height",
            file=path,
            field=f"{where}.bbox",
            hint="COCO boxes are [x, y, width, height], not [x1, y1, x2, y2]",
        )
    crowd, area = ann.get("iscrowd", 0), ann.get("area", 0.0)
    if crowd not in (0, 1) or isinstance(crowd, float):
        raise DataError(
            f"iscrowd {crowd!r} is not 0 or 1",
            file=path,
            field=f"{where}.iscrowd",
            hint="write iscrowd: 0 (an object) or 1 (a crowd region)",
        )
    if isinstance(area, bool) or not isinstance(area, int | float) or not area >= 0:
        raise DataError(
            f"area {area!r} is not a non-negative number",
            file=path,
            field=f"{where}.area",
            hint="give the object area in square pixels, or leave it out (width * height)",
        )


def _check_annotations(
    doc: dict[str, Any],
    path: Path,
    image_index: dict[int, int],
    categories: dict[int, dict[str, Any]],
) -> dict[int, list[dict[str, Any]]]:
    by_image: dict[int, list[dict[str, Any]]] = {i: [] for i in image_index}
    seen_ids: dict[int, int] = {}
    missing_id: list[dict[str, Any]] = []
    for i in range(len(doc["annotations"])):
        ann = _entry(doc, "annotations", i, path)
        where = f"annotations[{i}]"
        image_id = _int_field(ann, "image_id", where, path)
        if image_id not in image_index:
            raise DataError(
                f"image_id {image_id} is not in 'images'",
                file=path,
                field=f"{where}.image_id",
                hint="add the image to 'images' or remove the annotation",
            )
        cat_id = _int_field(ann, "category_id", where, path)
        if cat_id not in categories:
            raise DataError(
                f"category_id {cat_id} is not in 'categories' (ids {sorted(categories)})",
                file=path,
                field=f"{where}.category_id",
                hint="add the category to 'categories' or use an existing id",
            )
        _check_bbox(ann, where, path)
        if "id" in ann:
            _unique_id(ann, "annotations", i, seen_ids, path)
        else:
            missing_id.append(ann)
        ann.setdefault("iscrowd", 0)
        ann.setdefault("area", float(ann["bbox"][2] * ann["bbox"][3]))
        by_image[image_id].append(ann)
    next_id = max(seen_ids, default=0) + 1
    for offset, ann in enumerate(missing_id):  # pycocotools needs annotation ids
        ann["id"] = next_id + offset
    return by_image


def _read_sidecar(annotations: Path) -> dict[str, dict[str, Any]]:
    path = annotations.with_name(f"{annotations.stem}.attributes.json")
    if not path.exists():
        return {}
    doc = _read_json_any(path)
    if not isinstance(doc, dict):
        raise DataError(
            f"the top level is a {type(doc).__name__}, not a mapping",
            file=path,
            field="(top level)",
            hint='write {"<image id>": {"<attribute>": value, ...}, ...}',
        )
    for key, value in doc.items():
        if not isinstance(value, dict):
            raise DataError(
                f"attributes of image {key} are a {type(value).__name__}, not a mapping",
                file=path,
                field=str(key),
                hint='write {"<attribute>": value, ...} for each image id',
            )
    return doc


def _read_json_any(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(
            f"file cannot be read ({exc})", file=path, field="(file)", hint="make it readable JSON"
        ) from None
    return _parse_json(text, path)


def _parse_json(text: str, path: Path) -> Any:
    return parse_json(text, path, DataError, invalid="not valid JSON", hint=_FIX_JSON)
