"""Request and response models of the HTTP API (also the OpenAPI documentation)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

INPUT_MODALITIES = ("text", "image")


class EmbedInput(BaseModel):
    """One input of a mixed, ordered list: exactly one of `text` or `image`."""

    model_config = ConfigDict(extra="forbid")
    text: str | None = None
    image: str | None = Field(None, description="base64 or data: URI")

    @model_validator(mode="after")
    def _exactly_one(self) -> "EmbedInput":
        given = [m for m in INPUT_MODALITIES if getattr(self, m) is not None]
        if len(given) != 1:
            raise ValueError(f"each input needs exactly one of {', '.join(INPUT_MODALITIES)} (got {given or 'none'})")
        return self

    @property
    def modality(self) -> str:
        return "text" if self.text is not None else "image"


class EmbedRequest(BaseModel):
    """Texts and images to embed. Output order: `inputs` in order if given, else texts then images."""

    model_config = ConfigDict(extra="forbid")
    texts: list[str] = Field(default_factory=list, examples=[["a photo of a dog"]])
    images: list[str] = Field(default_factory=list, description="base64 or data: URIs of JPEG/PNG/WebP/GIF/BMP files")
    inputs: list[EmbedInput] = Field(default_factory=list, description="mixed inputs whose order the response keeps")
    encoding: Literal["float", "base64"] = Field("float", description="base64: little-endian float32 bytes, base64-encoded")
    truncate: bool = Field(True, description="cut texts longer than the model's context (reported per item); false: 422 instead")


class EmbeddingItem(BaseModel):
    index: int = Field(description="position in `data`")
    input_index: int = Field(description="position within its source list (texts, images or inputs)")
    modality: Literal["text", "image", "audio"]
    embedding: list[float] | str
    truncated: bool | None = Field(None, description="text only: whether it was cut to the context length")


class Usage(BaseModel):
    texts: int = 0
    images: int = 0
    text_tokens: int = 0


class EmbedResponse(BaseModel):
    model: str
    space_id: str
    dim: int
    encoding: Literal["float", "base64"]
    data: list[EmbeddingItem]
    usage: Usage
    warnings: list[str] = Field(default_factory=list)


class TowerInfo(BaseModel):
    modality: str
    precision: str
    file: str
    providers: list[str]


class ModelInfo(BaseModel):
    name: str
    space_id: str
    dim: int
    modalities: list[str]
    scoring: dict
    towers: list[TowerInfo]
    parity: dict
    source: dict


class ModelsResponse(BaseModel):
    data: list[ModelInfo]


class ErrorBody(BaseModel):
    code: str
    status: int
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody
