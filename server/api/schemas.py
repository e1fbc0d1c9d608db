"""Request and response models of the HTTP API (also the OpenAPI documentation).

Over 400 lines on purpose: these are declarations only (no logic), one per JSON shape of the native
/v1 API, and keeping them together keeps the names the OpenAPI document shows in one place. The
OpenAI-compatible route's models are in `schemas_openai.py`, the kept-media ones in `schemas_media.py`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StringConstraints, model_validator

from ..index.filters import PAYLOAD_PATH_PATTERN
from ..index.store import _NAME_RE
from .schemas_vectors import ENCODING_DOC, CollectionVectorsOut, Encoding

INPUT_MODALITIES = ("text", "image", "audio")
NAME_PATTERN = _NAME_RE.pattern  # the index's one rule for collection names; label set names follow it too
NAME_RULE = "1-128 characters from letters, digits, '_', '-', '.', starting with a letter or digit"
LIMIT = "x-omnivec-limit"  # replaced by maxItems/maxLength/maximum/enum from the settings and the model (app._openapi)
NonEmpty = Annotated[str, StringConstraints(min_length=1)]
# Documented here, checked by services.zero_shot (its codes and messages: labels_empty for blank labels).
Label = Annotated[str, Field(json_schema_extra={"pattern": r"\S"})]  # not blank
Template = Annotated[str, Field(json_schema_extra={"pattern": r"\{\}"})]  # has the label slot
MAX_LABELS = 1000  # as services.zero_shot enforces
MAX_TEMPLATES = 100


def exactly_one_of(**types: str) -> dict:
    """JSON schema: exactly one of the fields is given and not null (what the `_exactly_one` validators check);
    media, URLs and ids are non-empty (texts may be empty in /v1/embed)."""
    return {"oneOf": [{"required": [f], "properties": {f: {"type": t, **({"minLength": 1} if f in ("image", "audio", "url", "id") else {})}}} for f, t in types.items()]}


def non_empty_one_of(*fields: str) -> dict:
    """JSON schema: at least one of the list `fields` is given and non-empty (what the server checks by hand)."""
    return {"anyOf": [{"required": [f], "properties": {f: {"type": "array", "minItems": 1}}} for f in fields]}


CollectionName = Annotated[str, Path(pattern=NAME_PATTERN, description=f"the collection: {NAME_RULE}")]
LabelSetName = Annotated[str, Path(pattern=NAME_PATTERN, description=f"the label set: {NAME_RULE}")]
ModelName = Annotated[str, Path(pattern=NAME_PATTERN, description="a model's name, as GET /v1/models lists it")]
AUDIO_FORMATS = "WAV/FLAC/OGG (Vorbis)/Opus/MP3"


class EmbedInput(BaseModel):
    """One input of a mixed, ordered list: exactly one of `text`, `image` or `audio`."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=exactly_one_of(text="string", image="string", audio="string"))
    text: str | None = None
    image: str | None = Field(None, description="base64 or data: URI")
    audio: str | None = Field(None, description=f"base64 or data: URI (audio/*) of a {AUDIO_FORMATS} file")

    @model_validator(mode="after")
    def _exactly_one(self) -> "EmbedInput":
        given = [m for m in INPUT_MODALITIES if getattr(self, m) is not None]
        if len(given) != 1:
            raise ValueError(f"each input needs exactly one of {', '.join(INPUT_MODALITIES)} (got {given or 'none'})")
        return self

    @property
    def modality(self) -> str:
        return next(m for m in INPUT_MODALITIES if getattr(self, m) is not None)

    @property
    def value(self) -> str:
        return getattr(self, self.modality)


class EmbedRequest(BaseModel):
    """Texts, images and audio to embed. Output order: `inputs` in order if given, else texts, images, audios."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=non_empty_one_of("texts", "images", "audios", "inputs"))
    texts: list[Annotated[str, Field(json_schema_extra={LIMIT: "max_text_chars"})]] = Field(
        default_factory=list, examples=[["a photo of a dog"]], json_schema_extra={LIMIT: "max_inputs_per_request"}
    )
    images: list[Annotated[str, Field(json_schema_extra={"minLength": 1})]] = Field(
        default_factory=list, description="base64 or data: URIs of JPEG/PNG/WebP/GIF/BMP files", json_schema_extra={LIMIT: "max_inputs_per_request"}
    )
    audios: list[Annotated[str, Field(json_schema_extra={"minLength": 1})]] = Field(
        default_factory=list,
        description=f"base64 or data: URIs (audio/*) of {AUDIO_FORMATS} files; each is embedded as the renormalised mean of its windows",
        json_schema_extra={LIMIT: "max_inputs_per_request"},
    )
    inputs: list[EmbedInput] = Field(
        default_factory=list, description="mixed inputs whose order the response keeps", json_schema_extra={LIMIT: "max_inputs_per_request"}
    )
    encoding: Encoding = Field("float", description=ENCODING_DOC)
    dimensions: StrictInt | None = Field(
        None, ge=1, json_schema_extra={LIMIT: "embed_dim"}, description="keep the first `dimensions` components, renormalised (lossless only at the manifest's nested_dims; else a warning)"
    )
    truncate: StrictBool = Field(True, description="cut texts longer than the model's context (reported per item); false: 422 instead")
    audio_windows: StrictBool = Field(False, description="also return each audio item's per-window embeddings and their time spans")
    model: str | None = Field(None, description="a loaded model's name (GET /v1/models); default: the server's default model")


class AudioWindowOut(BaseModel):
    start_s: float = Field(description="where the window starts in the audio, seconds")
    end_s: float = Field(description="where it ends (the audio's end for the last, padded, window)")
    embedding: list[int] | list[float] | str = Field(description="unit vector, in the request's `encoding`")


class EmbeddingItem(BaseModel):
    index: int = Field(description="position in `data`")
    input_index: int = Field(description="position within its source list (texts, images, audios or inputs)")
    modality: Literal["text", "image", "audio"]
    embedding: list[int] | list[float] | str = Field(description="in the request's `encoding`: floats, a base64 string, or integers (int8, uint8, binary, ubinary)")
    truncated: bool | None = Field(None, description="text only: whether it was cut to the context length")
    duration_s: float | None = Field(None, description="audio only: length of the decoded audio in seconds")
    windows: list[AudioWindowOut] | None = Field(None, description="audio only, with audio_windows: the window embeddings the item's embedding pools")


class Usage(BaseModel):
    texts: int = 0
    images: int = 0
    audios: int = 0
    text_tokens: int = 0
    audio_seconds: float = 0.0


class EmbedResponse(BaseModel):
    model: str
    space_id: str
    dim: int = Field(description="length of each float vector (the request's `dimensions`, else the model's)")
    encoding: Encoding
    data: list[EmbeddingItem]
    usage: Usage
    warnings: list[str] = Field(default_factory=list)


class TowerInfo(BaseModel):
    modality: str
    precision: str
    file: str
    providers: list[str]
    probe: dict | None = Field(
        None,
        description="Load-time parity probe measured on this host: arithmetic (fp32|fp16|int8), n, cos_min, cos_mean, "
        "threshold, passed. Null for bundles without probes (format_version 1).",
    )


class ModelInfo(BaseModel):
    name: str = Field(description="what `model` names in requests")
    space_id: str
    dim: int
    modalities: list[str]
    scoring: dict
    towers: list[TowerInfo]
    parity: dict
    source: dict
    default: bool = Field(True, description="requests without `model` use this one; it cannot be unloaded")
    state: Literal["loading", "ready", "failed", "unloading"] = "ready"
    progress: str = Field("ready", description="while loading: which tower is being opened and probed")
    error: str | None = Field(None, description="why a load failed")
    bundle: str | None = Field(None, description="the bundle directory on the server")
    load_s: float | None = Field(None, description="seconds the load took (towers opened and probed on this host)")
    loaded_at: str | None = Field(None, description="when the load started (UTC)")


class ModelsResponse(BaseModel):
    data: list[ModelInfo] = Field(description="the ready models, the default first")
    pending: list[ModelInfo] = Field(default_factory=list, description="models loading, unloading, or whose load failed")


class LoadModelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bundle: str = Field(min_length=1, description="a bundle directory on the server (as written by `omnivec export` / `omnivec finetune`)")
    name: str | None = Field(None, pattern=NAME_PATTERN, description="name to serve it under; default: the manifest's model name")


class DeletedOut(BaseModel):
    name: str
    deleted: bool


class HealthOut(BaseModel):
    status: Literal["ok"]


class ReadyOut(BaseModel):
    status: str = Field(description="ready; else loading, or indexing the demo collection (with 503)")
    model: str | None = None
    demo: str | None = Field(None, description="the demo collection's item count, or that indexing it failed")


class ErrorBody(BaseModel):
    code: str
    status: int
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


# --- collections, items, search, classification ----------------------------------------------

REF_MODALITIES = ("text", "image", "audio", "url")
FILTER_DOC = (
    "Qdrant filter JSON, e.g. {\"must\": [{\"key\": \"modality\", \"match\": {\"value\": \"image\"}}, "
    "{\"key\": \"year\", \"range\": {\"gte\": 2020}}]}. Keys are the fields of your payload; `modality` is the "
    "API's own field (text | image | audio)."
)


def _exactly_one(model: BaseModel, fields: tuple[str, ...]) -> None:
    given = [f for f in fields if getattr(model, f) is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one of {', '.join(fields)} (got {given or 'none'})")


class InputRef(BaseModel):
    """One input by value or by reference: exactly one of `text`, `image`, `audio`, `url`."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=exactly_one_of(text="string", image="string", audio="string", url="string"))
    text: str | None = None
    image: str | None = Field(None, description="base64 or data: URI of a JPEG/PNG/WebP/GIF/BMP file")
    audio: str | None = Field(None, description=f"base64 or data: URI (audio/*) of a {AUDIO_FORMATS} file")
    url: str | None = Field(
        None,
        description="http(s) URL of an image or audio file, downloaded by the server (public hosts only, size/time limited); "
        "the served content type (or, for untyped binary, the extension or magic bytes) picks the tower",
    )

    @model_validator(mode="after")
    def _one(self) -> "InputRef":
        _exactly_one(self, REF_MODALITIES)
        return self

    @property
    def kind(self) -> str:
        return next(f for f in REF_MODALITIES if getattr(self, f) is not None)

    @property
    def value(self) -> str:
        return getattr(self, self.kind)


class ItemIn(InputRef):
    """An item to index."""

    id: str | None = Field(
        None, min_length=1, max_length=512, description="Your id; default: sha256 of modality + content (hex), so re-indexing the same content is idempotent"
    )
    payload: dict[str, Any] = Field(default_factory=dict, description="Your metadata, filterable; the key `modality` is reserved")


class AddItemsRequest(BaseModel):
    """Items to embed and upsert. Also accepted as multipart/form-data: `files` (or `images`, `audios`) file parts,
    each an image or audio file by its declared type, else its extension, else its magic bytes; an optional `items`
    field (JSON array; items[i] = {"id", "payload"} of the i-th file) and an optional `payload` field (JSON object
    shared by every file, under each file's own payload)."""

    model_config = ConfigDict(extra="forbid")
    items: list[ItemIn] = Field(min_length=1, json_schema_extra={LIMIT: "max_inputs_per_request"})


class ItemErrorOut(BaseModel):
    index: int = Field(description="position of the item in the request")
    code: str
    message: str


class AddItemsResponse(BaseModel):
    collection: str
    ids: list[str | None] = Field(description="per request item, in order; null where the item failed (see errors)")
    indexed: int
    errors: list[ItemErrorOut]


class CreateCollectionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(examples=["photos"], pattern=NAME_PATTERN, description=NAME_RULE)
    description: str = ""
    extra: dict[str, Any] = Field(default_factory=dict, description="free-form metadata kept with the collection")
    payload_indexes: dict[Annotated[str, StringConstraints(pattern=PAYLOAD_PATH_PATTERN)], Literal["keyword", "integer", "float", "bool"]] = Field(
        default_factory=dict,
        description="payload fields to index for fast filtering, e.g. {\"tags\": \"keyword\"} (`modality` always is); keys are payload paths",
        json_schema_extra={"additionalProperties": False},  # keys must match the path pattern
    )
    model: str | None = Field(None, description="the loaded model whose space the collection is in (GET /v1/models); default: the default model")


class CollectionOut(BaseModel):
    name: str
    dim: int
    space_id: str
    model: str
    count: int
    created_at: str
    description: str = ""
    extra: dict[str, Any] = Field(default_factory=dict)
    matches_model: bool = Field(description="whether a loaded model embeds into this collection's space (else adding and text/image/audio search are refused)")
    indexing: "IndexingOut | None" = Field(None, description="background ANN index builds of this collection (this server process)")
    vectors: CollectionVectorsOut | None = Field(None, description="how the collection keeps and searches its vectors")
    warnings: list[str] = Field(default_factory=list, description="e.g. a `dimensions` the model was not trained for (no nested_dims covering it)")


class IndexingOut(BaseModel):
    building: bool = Field(description="an index build is running (searches keep working meanwhile)")
    points_since_build: int = Field(description="points added since the last build started; searched by brute force until the next build")
    builds: int = Field(description="builds finished since the server started")
    last_build_s: float | None = None
    last_error: str | None = None


class OptimizeResponse(BaseModel):
    name: str
    started: bool = Field(description="false when a build was already running")
    indexing: IndexingOut


class CollectionsResponse(BaseModel):
    data: list[CollectionOut]


class DeleteItemsRequest(BaseModel):
    """`ids`, `filter`, or both (then: those ids that match the filter)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "anyOf": [
                {"required": ["ids"], "properties": {"ids": {"type": "array"}}},
                {"required": ["filter"], "properties": {"filter": {"type": "object", "minProperties": 1}}},
            ]
        },
    )
    ids: list[NonEmpty] | None = None
    filter: dict[str, Any] | None = Field(None, description=FILTER_DOC)


class DeleteItemsResponse(BaseModel):
    deleted: int


class ExistsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[NonEmpty] = Field(max_length=10_000)


class ExistsResponse(BaseModel):
    existing: list[str] = Field(description="the requested ids that are stored, in request order")


class ScrollRequest(BaseModel):
    """A page of a collection's items, in a stable order; pass back `next_cursor` for the next page."""

    model_config = ConfigDict(extra="forbid")
    limit: int = Field(100, ge=1, le=1000)
    cursor: str | None = Field(None, min_length=1, description="next_cursor of the previous page; omit for the first page")
    filter: dict[str, Any] | None = Field(None, description=FILTER_DOC)
    modality: Literal["text", "image", "audio"] | None = Field(None, description="shorthand for a filter on the item's modality")
    with_vectors: StrictBool = False


class ItemOut(BaseModel):
    id: str
    modality: str | None
    payload: dict[str, Any]
    vector: list[float] | None = None


class ScrollResponse(BaseModel):
    collection: str
    items: list[ItemOut]
    next_cursor: str | None = Field(description="cursor of the next page; null after the last")


QUERY_KINDS = ("text", "image", "audio", "url", "id", "vector")


class SearchQueryIn(BaseModel):
    """Exactly one of: text, image or audio (base64/data URI), url, id (of a stored item), vector."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra=exactly_one_of(text="string", image="string", audio="string", url="string", id="string", vector="array")
    )
    text: str | None = None
    image: str | None = None
    audio: str | None = None
    url: str | None = None
    id: str | None = Field(None, description="a stored item's id: finds items like it (the item itself is left out)")
    vector: list[float] | None = Field(None, description="a raw vector of the collection's dim")

    @model_validator(mode="after")
    def _one(self) -> "SearchQueryIn":
        _exactly_one(self, QUERY_KINDS)
        return self

    @property
    def kind(self) -> str:
        return next(f for f in QUERY_KINDS if getattr(self, f) is not None)


class SearchOptionsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    top_k: int = Field(10, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=100_000, description="skip this many best results (pagination: offset=top_k gives page 2)")
    score_threshold: float | None = Field(None, description="keep results with cosine >= this")
    filter: dict[str, Any] | None = Field(None, description=FILTER_DOC)
    modality: Literal["text", "image", "audio"] | None = Field(None, description="shorthand for a filter on the item's modality")
    with_payload: StrictBool = True


class SearchRequest(SearchOptionsIn):
    """A search. Also accepted as multipart/form-data: an `image` or `audio` file part (the query; its modality is
    detected from its declared type, extension or magic bytes) plus an optional `params` field holding the other
    fields as JSON."""

    query: SearchQueryIn


class SearchHitOut(BaseModel):
    id: str
    score: float = Field(description="cosine similarity")
    modality: str | None
    payload: dict[str, Any] | None


class SearchResponse(BaseModel):
    collection: str
    results: list[SearchHitOut]


LABELS_OR_LABELSET = {  # one of them, given and non-empty
    "anyOf": [
        {"required": ["labels"], "properties": {"labels": {"type": "array", "minItems": 1}}},
        {"required": ["labelset"], "properties": {"labelset": {"type": "string"}}},
    ],
    "not": {"required": ["labels", "labelset"], "properties": {"labels": {"type": "array", "minItems": 1}, "labelset": {"type": "string"}}},
}


class ClassifyOptionsIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=LABELS_OR_LABELSET)
    labels: list[Label] | None = Field(None, examples=[["cat", "dog", "car"]], json_schema_extra={"maxItems": MAX_LABELS, "uniqueItems": True})
    labelset: str | None = Field(None, pattern=NAME_PATTERN, description="name of a stored label set (PUT /v1/labelsets/{name}); instead of labels")
    templates: list[Template] | None = Field(
        None,
        description="prompt templates with '{}' for the label; default: a photo-template ensemble for images, a sound-template "
        "ensemble for audio, the bare label for texts",
        json_schema_extra={"maxItems": MAX_TEMPLATES},
    )
    top_k: int = Field(5, ge=1, le=1000)
    multi_label: StrictBool = Field(False, description="independent per-label scores instead of a softmax over the labels (sigmoid models always are)")


class ClassifyRequest(ClassifyOptionsIn):
    """Zero-shot classification. Also accepted as multipart/form-data: `images` / `audios` (or `files`) file parts,
    each an image or audio file by its declared type, extension or magic bytes, plus an optional `params` field
    holding the other fields as JSON (inputs given there come first)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={**LABELS_OR_LABELSET, "required": ["inputs"]})
    inputs: list[InputRef] = Field(
        default_factory=list, json_schema_extra={"minItems": 1, LIMIT: "max_inputs_per_request"}, description="at least one in a JSON body"
    )
    model: str | None = Field(None, description="a loaded model's name (GET /v1/models); default: the server's default model")


class LabelScoreOut(BaseModel):
    label: str
    score: float
    cosine: float


class ClassifyResultOut(BaseModel):
    labels: list[LabelScoreOut]


class ClassifyResponse(BaseModel):
    model: str
    space_id: str
    scoring: str = Field(description="softmax (sums to 1), sigmoid (per label), or softmax-pairwise (multi_label on a softmax model)")
    multi_label: bool
    results: list[ClassifyResultOut]


class LabelSetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    labels: list[Label] = Field(json_schema_extra={"minItems": 1, "maxItems": MAX_LABELS, "uniqueItems": True})
    templates: list[Template] | None = Field(None, json_schema_extra={"maxItems": MAX_TEMPLATES})
    description: str = ""


class LabelSetOut(BaseModel):
    name: str
    labels: list[str]
    templates: list[str] | None
    description: str
    updated_at: str


class LabelSetsResponse(BaseModel):
    data: list[LabelSetOut]
