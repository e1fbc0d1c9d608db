"""Request and response models of the OpenAI-compatible embeddings API (POST /v1/embeddings).

Field names, defaults and shapes follow OpenAI's embeddings API so its clients work unchanged;
the one extension is that `input` items may be objects carrying an image or audio file.
Fields marked with `LIMIT` get their bounds from the running server's settings and model when
the OpenAPI document is built (see `app._openapi`).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from .schemas import AUDIO_FORMATS, INPUT_MODALITIES, LIMIT, exactly_one_of
from .schemas_vectors import Encoding

# A real 1x1 PNG, so the documented example is a request the server accepts.
PNG_1X1 = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"

Text = Annotated[str, StringConstraints(min_length=1), Field(json_schema_extra={LIMIT: "max_text_chars"})]


class MediaInput(BaseModel):
    """omnivec extension: one `input` item that is an image, an audio file or a text, embedded in the shared space."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=exactly_one_of(text="string", image="string", audio="string"))
    text: Text | None = None
    image: str | None = Field(
        None, min_length=1, description="data: URI, base64 or http(s) URL (fetched by the server, public hosts only) of a JPEG/PNG/WebP/GIF/BMP file"
    )
    audio: str | None = Field(
        None, min_length=1, description=f"data: URI, base64 or http(s) URL (fetched by the server, public hosts only) of a {AUDIO_FORMATS} file"
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> "MediaInput":
        given = [m for m in INPUT_MODALITIES if getattr(self, m) is not None]
        if len(given) != 1:
            raise ValueError(f"each object item needs exactly one of {', '.join(INPUT_MODALITIES)} (got {', '.join(given) or 'none'})")
        return self

    @property
    def modality(self) -> str:
        return next(m for m in INPUT_MODALITIES if getattr(self, m) is not None)


class EmbeddingsRequest(BaseModel):
    """OpenAI's embeddings request. Token arrays (lists of integers) are refused: this model has its own tokenizer, send text."""

    model_config = ConfigDict(extra="forbid")
    input: Text | Annotated[list[Text | MediaInput], Field(min_length=1, json_schema_extra={LIMIT: "max_inputs_per_request"})] = Field(
        description="a string, or a list of strings and (omnivec extension) objects {\"image\": ...} / {\"audio\": ...} / "
        "{\"text\": ...}; all are embedded into the model's one shared space, in order",
        examples=["a photo of a dog", ["a photo of a dog", {"image": PNG_1X1}]],
    )
    model: str = Field(description="a served model name (GET /v1/models)", json_schema_extra={LIMIT: "served_models"})
    encoding_format: Encoding = Field(
        "float",
        description="base64: the little-endian float32 bytes of each vector, base64-encoded (what OpenAI clients ask for by default). "
        "omnivec extension: int8, uint8, binary, ubinary return integers (see /v1/embed `encoding` and the README's 'Compact encodings')",
    )
    dimensions: Annotated[int, Field(ge=1, json_schema_extra={LIMIT: "embed_dim"})] | None = Field(
        None, description="return only the first `dimensions` components, renormalised to unit length; at most the model's dimension"
    )
    user: str | None = Field(None, description="accepted for compatibility and ignored")


class EmbeddingData(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int = Field(description="position of the input in `input`")
    embedding: list[int] | list[float] | str = Field(description="unit vector; a base64 string with encoding_format=base64; integers with the compact encodings")


class EmbeddingsUsage(BaseModel):
    prompt_tokens: int = Field(description="tokens of the text inputs, counted by the model's own tokenizer (after truncation to its context)")
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingData]
    model: str
    usage: EmbeddingsUsage


class OpenAIErrorBody(BaseModel):
    message: str
    type: str = Field(description="invalid_request_error, authentication_error, rate_limit_error or server_error")
    param: str | None = Field(description="the request field at fault, when one is")
    code: str | None = Field(description="omnivec's error code (the README's error table)")


class OpenAIErrorResponse(BaseModel):
    """The OpenAI error shape, used on the OpenAI-compatible routes so OpenAI clients raise with its message."""

    error: OpenAIErrorBody
