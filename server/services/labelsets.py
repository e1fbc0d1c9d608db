"""Named label sets for zero-shot classification, kept where the index keeps its documents.

`LabelSetStore` checks and names the sets; storage is the index's own `DocumentStore`
(`IndexStore.documents("labelsets")`): JSON files under `data_dir/labelsets/` with the embedded Edge
engine (whose single server process owns the data dir anyway), points of the Qdrant collection
`_omnivec_labelsets` with the qdrant engine (so every replica behind the same Qdrant server sees
the same sets). One contract suite covers both (`tests/server/test_labelset_stores.py`).

Names follow the collection-name rules, which also keeps them safe as file names.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..errors import ErrorCode, OmnivecError
from ..index.errors import InvalidRequest
from ..index.store import DocumentStore, utc_now_iso, validate_collection_name
from .zero_shot import check_labels, check_templates

@dataclass
class LabelSet:
    name: str
    labels: list[str]
    templates: list[str] | None = None
    description: str = ""
    updated_at: str = field(default_factory=utc_now_iso)

    @classmethod
    def checked(cls, name: str, labels: list[str], templates: list[str] | None, description: str) -> "LabelSet":
        """A new set, refused with a 4xx when its name, labels or templates are unusable."""
        return cls(name=_check_name(name), labels=check_labels(labels), templates=check_templates(templates), description=description)

    @classmethod
    def from_dict(cls, raw: dict) -> "LabelSet":
        return cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})


def _check_name(name: str) -> str:
    try:
        return validate_collection_name(name)
    except InvalidRequest as exc:
        raise OmnivecError(ErrorCode.INVALID_REQUEST, str(exc).replace("collection name", "label set name")) from exc


def _not_found(name: str) -> OmnivecError:
    return OmnivecError(ErrorCode.LABELSET_NOT_FOUND, f"label set {name!r} does not exist; create it with PUT /v1/labelsets/{name}")


class LabelSetStore:
    """Create-or-replace, read, delete and list named label sets (404 labelset_not_found when missing)."""

    def __init__(self, documents: DocumentStore) -> None:
        self.documents = documents

    def put(self, name: str, labels: list[str], templates: list[str] | None = None, description: str = "") -> LabelSet:
        labelset = LabelSet.checked(name, labels, templates, description)
        self.documents.put(labelset.name, asdict(labelset))
        return labelset

    def get(self, name: str) -> LabelSet:
        document = self.documents.get(_check_name(name))
        if document is None:
            raise _not_found(name)
        return LabelSet.from_dict(document)

    def delete(self, name: str) -> None:
        if not self.documents.delete(_check_name(name)):
            raise _not_found(name)

    def list(self) -> list[LabelSet]:
        return sorted((LabelSet.from_dict(d) for d in self.documents.list()), key=lambda s: s.name)
