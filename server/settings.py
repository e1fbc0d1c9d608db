"""One Settings object for the whole server, read from OMNIVEC_* environment variables.

Nested groups use a double underscore: `OMNIVEC_MODEL__BUNDLE=/models/clip`,
`OMNIVEC_LIMITS__MAX_IMAGE_BYTES=8000000`. CLI flags override the environment. The plain
`OMNIVEC_QDRANT_URL` is accepted too and selects the Qdrant engine.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_threads() -> int:
    """Cores this process may use: onnxruntime's default of 'all logical cores' oversubscribes shared hosts."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


class ModelSettings(BaseModel):
    bundle: Path | None = Field(None, description="Model bundle directory (manifest.json + ONNX towers): the default model.")
    name: str | None = Field(None, description="Name the default model is served under (default: its manifest's model name).")
    bundles: list[str] = Field(
        default_factory=list,
        description='More bundles served next to the default one, each "DIR" or "NAME=DIR" (a name is needed when two '
        'share a manifest model name); `omnivec serve --bundle A --bundle B` puts B here. Env: OMNIVEC_MODEL__BUNDLES=\'["/m/b"]\'.',
    )
    models_dir: Path | None = Field(
        None, description="A directory of bundles: each subdirectory holding a manifest.json is served too, named after the subdirectory (`--models-dir`)."
    )

    def extra_bundles(self) -> list[str]:
        """`bundles`, then every bundle under `models_dir` as NAME=DIR (sorted), except the default's own directory."""
        found = []
        if self.models_dir is not None and Path(self.models_dir).is_dir():
            default = Path(self.bundle).resolve() if self.bundle else None
            for sub in sorted(Path(self.models_dir).iterdir()):
                if (sub / "manifest.json").is_file() and sub.resolve() != default:
                    found.append(f"{sub.name}={sub}")
        return [*self.bundles, *found]
    precision: Literal["fp32", "int8"] = Field("fp32", description="Tower variant to load; int8 falls back to fp32 per tower when the bundle has none.")
    providers: list[str] = Field(default_factory=lambda: ["CPUExecutionProvider"], description="onnxruntime execution providers, in preference order.")
    provider_options: dict[str, dict[str, str | int | float | bool]] = Field(
        default_factory=dict,
        description='Options per execution provider, e.g. {"TensorrtExecutionProvider": {"trt_fp16_enable": "True"}, '
        '"CUDAExecutionProvider": {"device_id": "1"}}. TensorRT also gets an engine and timing cache under '
        "data_dir/tensorrt-cache unless these options set trt_engine_cache_path.",
    )

    @model_validator(mode="after")
    def _triton_needs_a_url(self) -> "ModelSettings":
        if self.backend == "triton" and not self.triton_url:
            raise ValueError("model.backend is 'triton' but no Triton address is set: set OMNIVEC_MODEL__TRITON_URL=host:8001")
        return self

    @field_validator("provider_options")
    @classmethod
    def _options_as_strings(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, str]]:
        """onnxruntime takes option values as strings: 1 -> "1", true -> "True"."""
        return {provider: {k: str(v) for k, v in options.items()} for provider, options in value.items()}
    backend: Literal["onnxruntime", "triton"] = Field(
        "onnxruntime", description="What runs the towers: onnxruntime in this process, or a Triton server (see triton_url)."
    )
    triton_url: str | None = Field(None, description="Triton server address, host:port (gRPC 8001 or HTTP 8000 by Triton's defaults).")
    triton_protocol: Literal["grpc", "http"] = Field("grpc", description="How to talk to Triton.")
    triton_model_prefix: str = Field("omnivec_", description="Triton model names are <prefix><tower>, as written by `omnivec triton-repo`.")
    triton_timeout_s: float = Field(30.0, gt=0, description="Longest wait for one Triton call.")
    intra_op_threads: int | None = Field(
        None, ge=1, description="Threads inside one model call; default: cores / server.inference_threads, so concurrent calls do not oversubscribe the CPU."
    )
    inter_op_threads: int = Field(1, ge=1, description="Threads across independent graph nodes (1 is best for these models).")


class BatchingSettings(BaseModel):
    enabled: bool = Field(True, description="Merge rows from concurrent requests into one model call per tower.")
    max_batch: int = Field(32, ge=1, description="Most rows per model call.")
    max_queue: int = Field(1024, ge=1, description="Most rows waiting per tower; beyond it requests get 429 + Retry-After.")
    max_wait_ms: float = Field(5.0, ge=0, description="Longest extra wait for concurrent clients; never spent by a lone client.")
    workers: int = Field(1, ge=1, description="Concurrent model calls per tower.")


class LimitsSettings(BaseModel):
    max_request_bytes: int = Field(64 * 1024 * 1024, ge=1024, description="Largest request body accepted (413 above).")
    max_image_bytes: int = Field(20 * 1024 * 1024, ge=1024, description="Largest single encoded image (413 above).")
    max_image_pixels: int = Field(50_000_000, ge=1, description="Largest decoded image (width*height); guards against decompression bombs.")
    max_audio_bytes: int = Field(20 * 1024 * 1024, ge=1024, description="Largest single encoded audio file (413 above); its duration limit comes from the bundle.")
    max_inputs_per_request: int = Field(1024, ge=1, description="Most inputs one /v1/embed call may carry.")
    max_text_chars: int = Field(100_000, ge=1, description="Longest text accepted before tokenisation.")
    max_bundle_upload_bytes: int = Field(
        2 * 1024**3, ge=1024, description="Largest bundle archive POST /v1/models/upload accepts (413 above); the only route over max_request_bytes."
    )
    max_concurrent_requests: int = Field(
        256, ge=1, description="Model requests (embed, search, add items, classify) in progress at once; beyond it 429 + Retry-After before the body is read."
    )

    def max_bytes(self, modality: str) -> int:
        """The per-item size limit of an encoded media file of this modality."""
        return self.max_audio_bytes if modality == "audio" else self.max_image_bytes


class ServerSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    preprocess_threads: int = Field(default_factory=default_threads, ge=1, description="Threads decoding and resizing media.")
    inference_threads: int = Field(2, ge=1, description="Threads running model calls (shared by all towers).")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    api_keys: str | None = Field(
        None,
        repr=False,
        description="Comma-separated API keys; when set, every request except the probes, /metrics and the docs needs "
        "`Authorization: Bearer KEY` or `X-API-Key: KEY` (401 otherwise). Several keys allow rotation.",
    )
    admin_keys: str | None = Field(
        None,
        repr=False,
        description="Comma-separated admin keys: with API keys set, loading/unloading models (POST/DELETE /v1/models) and "
        "re-embedding collections need one of these (403 with another valid key). Admin keys are valid API keys too.",
    )


class IndexSettings(BaseModel):
    engine: Literal["edge", "qdrant"] = Field(
        "edge",
        description="edge: embedded Qdrant Edge under data_dir/index, owned by the server process; qdrant: a Qdrant server at "
        "qdrant_url. Left unset, it becomes qdrant as soon as a Qdrant URL is configured.",
    )
    qdrant_url: str | None = Field(None, description="Qdrant server URL (http://host:6333), or ':memory:' for a throwaway local store. Also read from the plain env var OMNIVEC_QDRANT_URL.")
    qdrant_api_key: str | None = Field(None, repr=False, description="API key of the Qdrant server, if it requires one.")
    prefer_grpc: bool = Field(False, description="Talk gRPC (port 6334) to the Qdrant server instead of REST.")
    timeout_s: float = Field(10.0, gt=0, description="Timeout of one call to the Qdrant server.")
    search_threads: int = Field(default_factory=default_threads, ge=1, description="Edge: search threads per collection.")
    optimize_after_points: int = Field(
        20_000, ge=0, description="Build a collection's ANN index in the background once this many points were added since the last build (0: only on POST .../optimize)."
    )
    hnsw_ef: int = Field(
        256,
        ge=4,
        le=4096,
        description="Search beam width (HNSW ef) of collections created without hnsw.ef, on both engines. Qdrant's own default "
        "(the build's ef_construct, 100) found 0.944 of the true top 10 at 1M int8 items, 256 found 0.990-0.994 at p50 4.5-7.4 ms "
        "(bench/RESULTS.md); lower it for latency on small collections, raise it for recall on larger ones.",
    )
    reembed_page: int = Field(64, ge=1, le=1000, description="Items a re-embed reads, embeds and writes per step; its progress is saved after each.")
    shards: int | None = Field(
        None, ge=1, description="Qdrant cluster: shards of each new collection (shard_number; null: the server's default, 1). Spread a collection over nodes."
    )
    replication_factor: int | None = Field(
        None, ge=1, description="Qdrant cluster: copies of each shard of a new collection (null: the server's default, 1). 2 survives losing a node."
    )


class FetchSettings(BaseModel):
    """URL inputs are fetched by the server, so they are an SSRF surface: these settings bound it."""

    connect_timeout_s: float = Field(3.0, gt=0, description="Longest wait to connect to the host of a URL input.")
    read_timeout_s: float = Field(10.0, gt=0, description="Longest wait for the next bytes of a response.")
    total_timeout_s: float = Field(30.0, gt=0, description="Longest time one download may take in all (slow-drip servers).")
    max_bytes: int = Field(20 * 1024 * 1024, ge=1024, description="Largest download (413 above); the image limit applies too, the smaller wins.")
    max_redirects: int = Field(3, ge=0, description="Redirects followed per URL; every hop is checked again.")
    max_concurrent: int = Field(8, ge=1, description="Downloads in flight at once (all requests together).")
    allow_private: list[str] = Field(
        default_factory=list,
        description="Hosts (exact names) or CIDRs (10.0.0.0/8, 127.0.0.1/32) that URL inputs may reach even though they are "
        "loopback/private/link-local/reserved; everything non-public is refused otherwise.",
    )


class MediaSettings(BaseModel):
    """What the server keeps of each item it indexes from bytes, so results can be shown and re-embedded later."""

    thumbnail_px: int = Field(256, ge=32, le=1024, description="Longest side of an image item's kept thumbnail (WebP).")
    thumbnail_max_bytes: int = Field(48 * 1024, ge=4096, description="Most bytes of one thumbnail; quality is lowered (then size) until it fits.")
    audio_preview_s: float = Field(10.0, gt=0, le=120, description="Seconds of an audio item kept as its preview (OGG/Vorbis, mono, at most 22.05 kHz).")
    audio_preview_max_bytes: int = Field(128 * 1024, ge=4096, description="Most bytes of one audio preview; it is shortened until it fits.")
    original_max_bytes: int = Field(
        2 * 1024 * 1024,
        ge=0,
        description="Keep an item's original file too when it is at most this large (texts: always), so a collection can be "
        "re-embedded later without its sources; 0 keeps previews only.",
    )


class Settings(BaseSettings):
    """Everything configurable about a running omnivec server."""

    def model_threads(self) -> int:
        """onnxruntime intra-op threads per model call (explicit setting, or a fair share of the cores)."""
        return self.model.intra_op_threads or max(1, default_threads() // self.server.inference_threads)

    model_config = SettingsConfigDict(env_prefix="OMNIVEC_", env_nested_delimiter="__", extra="ignore")

    data_dir: Path = Field(Path("data"), description="Where indexes, caches and bootstrapped models live.")
    demo_items: Path | None = Field(
        None,
        description="A CSV/JSONL manifest in the format `omnivec index` reads (path or text, payload) indexed into the `demo` collection at startup when that "
        "collection is missing or incomplete; /readyz answers 503 until it is done. `omnivec serve` without --bundle "
        "sets it to the bootstrapped default model's demo.",
    )
    model: ModelSettings = Field(default_factory=ModelSettings)
    batching: BatchingSettings = Field(default_factory=BatchingSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    index: IndexSettings = Field(default_factory=IndexSettings)
    fetch: FetchSettings = Field(default_factory=FetchSettings)
    media: MediaSettings = Field(default_factory=MediaSettings)
    qdrant_url: str | None = Field(
        None,
        validation_alias=AliasChoices("OMNIVEC_QDRANT_URL"),
        exclude=True,
        description="The plain env var OMNIVEC_QDRANT_URL: shorthand for index.qdrant_url (which wins when both are set).",
    )

    @model_validator(mode="after")
    def _qdrant_url_selects_qdrant(self) -> "Settings":
        """A configured Qdrant URL means 'use Qdrant', unless the engine was chosen explicitly."""
        if self.qdrant_url and not self.index.qdrant_url:
            self.index.qdrant_url = self.qdrant_url
        if self.index.qdrant_url and "engine" not in self.index.model_fields_set:
            self.index.engine = "qdrant"
        return self

    @property
    def index_dir(self) -> Path:
        """Where the embedded Edge engine keeps its collections."""
        return Path(self.data_dir) / "index"

    @property
    def tensorrt_cache_dir(self) -> Path:
        """Where TensorRT keeps built engines, so a restart does not rebuild them (minutes per tower)."""
        return Path(self.data_dir) / "tensorrt-cache"
