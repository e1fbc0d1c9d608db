"""The `omnivec` command: export bundles, serve them, embed from the shell."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from omnivec_client import Client

EPILOG = """examples:
  omnivec serve                                              # the default model omnivec-mini (built on first run) + demo collection
  omnivec bootstrap --out data/omnivec-mini                  # build the default model only
  omnivec export --model omnivec-tiny --pretrained none --out data/bundles/tiny
  omnivec export --model ViT-B-32 --pretrained /models/vit-b-32.safetensors --out data/bundles/vit-b-32
  omnivec serve --bundle data/bundles/tiny --port 8000
  omnivec embed --bundle data/bundles/tiny --text "a photo of a dog" --image cat.jpg
  omnivec index photos/ --collection photos                  # through the server on 127.0.0.1:8000
  omnivec index captions.csv --collection photos --server http://gpu-box:8000
  omnivec search "a red bike" --collection photos --top-k 5
  omnivec search --image query.jpg --collection photos --modality image
  omnivec search --audio bark.wav --collection sounds --modality audio
  omnivec classify cat.jpg dog.jpg --labels "cat,dog,car"
  omnivec classify bark.wav --labels "dog,rain,siren"
"""

CLIENT_NOTE = """
Where it runs: by default this command talks to a running `omnivec serve` over HTTP
(--server, or $OMNIVEC_SERVER_URL, default http://127.0.0.1:8000). That is the preferred way:
the server process owns the embedded index (one process per data directory), so indexing through
it is safe while it keeps serving searches. With --bundle DIR the same API runs in this process
instead (no server needed); it then opens the data directory's index itself (--data-dir, or
$OMNIVEC_DATA_DIR, default ./data) and fails if a running server already holds it.
"""


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export an open_clip model to a servable bundle (needs omnivec[export])",
        description="Build an open_clip model, export each tower to ONNX with a dynamic batch axis, write the tokenizer, "
        "manifest.json and a parity report (ONNX vs PyTorch). Refuses to write a tower whose cosine parity is below 0.99999.",
    )
    p.add_argument("--model", required=True, help="open_clip architecture (ViT-B-32), a config shipped with omnivec (omnivec-tiny), or a path to a config .json")
    p.add_argument("--pretrained", default="none", help="pretrained tag (e.g. laion2b_s34b_b79k; needs internet or a warm cache), a local .pt/.safetensors checkpoint, or 'none' for random init (default)")
    p.add_argument("--out", required=True, type=Path, help="bundle directory to write (replaced if it already holds a bundle)")
    p.add_argument("--towers", default="", help="comma-separated towers to export: image, text, audio (default: every tower the model has)")
    p.add_argument("--seed", type=int, default=0, help="seed for random init (default 0)")
    p.add_argument("--int8", action="store_true", help="also write per-channel int8 towers (served with --precision int8); a tower whose int8 cosine to PyTorch is below 0.99 keeps fp32 only")


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="run the HTTP API on a bundle",
        description="Serve /v1/embed, /v1/models, /healthz, /readyz and /docs with uvicorn, plus collections, search "
        "and zero-shot classification (/v1/collections, /v1/classify, /v1/labelsets; index under --data-dir, or a Qdrant "
        "server with OMNIVEC_QDRANT_URL). Every flag can also be set "
        "through the environment (OMNIVEC_MODEL__BUNDLE, OMNIVEC_SERVER__PORT, ...); flags win.",
    )
    p.add_argument("--bundle", type=Path, help="bundle directory (env OMNIVEC_MODEL__BUNDLE); without one, the default model omnivec-mini is built on first run (`omnivec bootstrap`, needs omnivec[export] and espeak-ng) and served with its demo collection")
    p.add_argument("--host", help="bind address (default 127.0.0.1; use 0.0.0.0 in containers)")
    p.add_argument("--port", type=int, help="port (default 8000)")
    p.add_argument("--precision", choices=["fp32", "int8"], help="tower variant to load (default fp32)")
    p.add_argument("--threads", type=int, help="onnxruntime intra-op threads per model call (default: cores / inference threads)")
    p.add_argument("--data-dir", type=Path, help="data directory (env OMNIVEC_DATA_DIR, default ./data)")


def _add_embed(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "embed",
        help="embed texts, image and audio files from the shell (loads the bundle in-process)",
        description="Print one JSON line per input: modality, index, and the L2-normalised embedding.",
    )
    p.add_argument("--bundle", type=Path, required=True, help="bundle directory")
    p.add_argument("--text", action="append", default=[], help="text to embed (repeatable)")
    p.add_argument("--image", action="append", default=[], type=Path, help="image file to embed (repeatable)")
    p.add_argument("--audio", action="append", default=[], type=Path, help="audio file to embed (repeatable; needs a bundle with an audio tower)")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime threads (default 1)")


def _add_target(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group()
    where.add_argument("--server", help="URL of a running omnivec server (default $OMNIVEC_SERVER_URL or http://127.0.0.1:8000)")
    where.add_argument("--bundle", type=Path, help="run the API in-process on this bundle instead of using a server")
    p.add_argument("--data-dir", type=Path, help="with --bundle: data directory holding the index (default $OMNIVEC_DATA_DIR or ./data)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for one request (default 300)")
    p.add_argument("--api-key", help="API key of a server started with OMNIVEC_SERVER__API_KEYS (default $OMNIVEC_API_KEY)")


def _add_index(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "index",
        help="embed and store images/audio/texts from files, a folder, a glob, or a CSV/JSONL manifest",
        description="Index SOURCE into a collection (created in the model's space if missing), with a progress bar "
        "(items/s, errors). SOURCE is an image or audio file (.wav .flac .ogg .opus .mp3), a directory (searched recursively), "
        "a quoted glob ('photos/**/*.jpg'), or a .csv/.jsonl manifest whose rows have `path` (image or audio, relative to the "
        "manifest) or `text`, an optional `id`, "
        "and other columns that become the payload. Resumable: ids (given, or sha256 of the content, as the server "
        "computes them) already in the collection are skipped, so re-running after an interruption only sends the rest. "
        "Failed items are printed and the command exits 1 after indexing everything else.\n" + CLIENT_NOTE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", metavar="PATH|GLOB|CSV|JSONL")
    p.add_argument("--collection", required=True, help="collection name")
    p.add_argument("--batch-size", type=int, default=32, help="items per request (default 32)")
    p.add_argument("--no-create", action="store_true", help="fail instead of creating a missing collection")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_target(p)


def _add_search(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search",
        help="search a collection by text, image or audio file, URL or item id",
        description="Print one JSON line per result (rank, id, score, modality, payload), best first.\n" + CLIENT_NOTE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("query", nargs="?", help="query text (or use --image / --audio / --url / --id)")
    p.add_argument("--collection", required=True, help="collection name")
    p.add_argument("--image", type=Path, help="query image file")
    p.add_argument("--audio", type=Path, help="query audio file (WAV, FLAC, OGG, Opus, MP3)")
    p.add_argument("--url", help="query image or audio URL (fetched by the server)")
    p.add_argument("--id", dest="item_id", help="find items like this stored item")
    p.add_argument("--top-k", type=int, default=10, help="results to return (default 10)")
    p.add_argument("--offset", type=int, default=0, help="skip this many results (pagination)")
    p.add_argument("--modality", choices=["text", "image", "audio"], help="only results of this modality")
    p.add_argument("--filter", help='Qdrant filter JSON, e.g. \'{"must": [{"key": "year", "range": {"gte": 2020}}]}\'')
    _add_target(p)


def _add_classify(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "classify",
        help="zero-shot classify image or audio files (or --text) against labels",
        description="Print one JSON line per input with its top labels and scores (softmax over the labels for "
        "CLIP-style models).\n" + CLIENT_NOTE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("files", nargs="*", type=Path, metavar="FILE", help="image or audio files (audio by extension: .wav .flac .ogg .opus .mp3)")
    p.add_argument("--text", action="append", default=[], help="a text to classify (repeatable)")
    p.add_argument("--labels", help='comma-separated labels, e.g. "cat,dog,car"')
    p.add_argument("--labelset", help="name of a stored label set instead of --labels")
    p.add_argument("--template", action="append", default=[], help='prompt template with {} for the label (repeatable; default: a photo-template ensemble for images, a sound-template one for audio)')
    p.add_argument("--top-k", type=int, default=5, help="labels per input (default 5)")
    p.add_argument("--multi-label", action="store_true", help="independent per-label scores instead of a softmax")
    _add_target(p)


def _add_finetune(sub: argparse._SubParsersAction) -> None:
    from omnivec.finetune.config import add_config_flags

    p = sub.add_parser(
        "finetune",
        help="retrain towers on your (image or audio, caption) pairs with the exact tiled contrastive loss (needs omnivec[train])",
        description="Fine-tune an open_clip model (optionally with an audio tower) on a CSV/JSONL manifest or class-folder tree, "
        "evaluating recall@k, zero-shot accuracy and alignment/uniformity before training and after each epoch, then export "
        "a servable bundle to OUT/bundle. Settings come from --config FILE.yaml; every field is also a flag (flags win). "
        "Several processes: torchrun --nproc-per-node N -m omnivec finetune ...",
    )
    p.add_argument("--config", type=Path, help="YAML file of fine-tune settings (the flags below)")
    add_config_flags(p)


def _add_bootstrap(sub: argparse._SubParsersAction) -> None:
    from omnivec.finetune.bootstrap import BootstrapConfig

    defaults = BootstrapConfig(out=Path("."))
    p = sub.add_parser(
        "bootstrap",
        help="build the default model, omnivec-mini, offline (about 5 minutes on 2 quiet cores; needs omnivec[export] and espeak-ng)",
        description="Generate synthetic corpora (coloured shapes, rendered words and digits; words spoken by espeak-ng; tones, "
        "chords, noises, sirens, rhythms), train a small image tower and audio tower into the space of the locked "
        "all-MiniLM-L6-v2 text tower with the tiled contrastive loss, evaluate on held-out colour-shape pairs, voices and "
        "wordings, and on pictures and recordings from a second, independent generator (styles, noises, voices "
        "never trained on), export the bundle with its parity report, and write a demo collection. Results are cached: a second run "
        "with the same settings returns at once; the same seed gives the same bundle. `omnivec serve` without --bundle runs "
        "this first if needed.",
    )
    p.add_argument("--out", type=Path, help="output directory (default: DATA_DIR/omnivec-mini, DATA_DIR from --data-dir or $OMNIVEC_DATA_DIR, default ./data)")
    p.add_argument("--data-dir", type=Path, help="data directory (default $OMNIVEC_DATA_DIR or ./data)")
    p.add_argument("--seed", type=int, default=defaults.seed, help=f"seed for corpora, initialisation and batches (default {defaults.seed})")
    p.add_argument("--image-steps", type=int, default=defaults.image_steps, help=f"image tower training steps (default {defaults.image_steps})")
    p.add_argument("--audio-steps", type=int, default=defaults.audio_steps, help=f"audio tower training steps (default {defaults.audio_steps})")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: all cores)")


def _add_triton_repo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "triton-repo",
        help="write a Triton Inference Server model repository from a bundle (no torch needed)",
        description="One Triton model per tower (<prefix><tower>/config.pbtxt + 1/model.onnx, onnxruntime backend, dynamic "
        "batching). Start tritonserver on the repository, then serve the same bundle with OMNIVEC_MODEL__BACKEND=triton and "
        "OMNIVEC_MODEL__TRITON_URL=host:8001: omnivec keeps preprocessing, the index and the API, Triton runs the towers.",
    )
    p.add_argument("--bundle", type=Path, required=True, help="bundle directory (from `omnivec export` or `omnivec bootstrap`)")
    p.add_argument("--out", type=Path, required=True, help="model repository directory (other models in it are kept)")
    p.add_argument("--prefix", default="omnivec_", help="model name prefix: models are PREFIX<tower> (default omnivec_)")
    p.add_argument("--precision", choices=["fp32", "int8"], default="fp32", help="tower variant to ship (int8 falls back to fp32 per tower)")
    p.add_argument("--max-batch", type=int, default=32, help="Triton max_batch_size (default 32)")
    p.add_argument("--gpu", action="store_true", help="KIND_GPU instances (default KIND_CPU)")
    p.add_argument("--tensorrt", action="store_true", help="with --gpu: TensorRT acceleration (FP16) of the onnxruntime backend")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="omnivec",
        description="omnivec: self-hosted multimodal embedding inference and retrieval.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_export(sub)
    _add_serve(sub)
    _add_embed(sub)
    _add_index(sub)
    _add_search(sub)
    _add_classify(sub)
    _add_finetune(sub)
    _add_bootstrap(sub)
    _add_triton_repo(sub)
    return parser


def cmd_export(args: argparse.Namespace) -> int:
    from omnivec.model_export.loader import ExportError

    try:
        from omnivec.model_export.export import export_bundle
        from tqdm import tqdm

        towers = [t.strip() for t in args.towers.split(",") if t.strip()] or None
        steps = 3 + (3 if args.int8 else 2) * len(towers or ["image", "text"])  # load, hash, (export, parity[, int8]) per tower, write
        with tqdm(total=steps, desc="export", unit="step", file=sys.stderr) as bar:
            def progress(message: str) -> None:
                bar.set_postfix_str(message)
                bar.update(1)

            result = export_bundle(args.model, args.pretrained, args.out, towers=towers, progress=progress, seed=args.seed, int8=args.int8)
    except ExportError as exc:
        print(f"omnivec export: error: {exc}", file=sys.stderr)
        return 2
    summary = {m: r for m, r in result.parity.items() if isinstance(r, dict)}
    print(json.dumps({"bundle": str(result.out), "space_id": result.manifest.space_id, "parity": summary}))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from omnivec.server.api.app import run_server
    from omnivec.server.bundle import BundleError
    from omnivec.server.settings import Settings

    settings = Settings()
    if args.bundle:
        settings.model.bundle = args.bundle
    if args.host:
        settings.server.host = args.host
    if args.port is not None:
        settings.server.port = args.port
    if args.precision:
        settings.model.precision = args.precision
    if args.threads:
        settings.model.intra_op_threads = args.threads
    if args.data_dir:
        settings.data_dir = args.data_dir
    if settings.model.bundle is None:  # the default model: build it once, then serve it with its demo
        from omnivec.finetune.bootstrap import BootstrapConfig, cached

        out = default_model_dir(settings.data_dir)
        result = cached(BootstrapConfig(out=out))
        if result is None:
            # In a child process, so this server process never imports torch.
            print(f"no --bundle given: building the default model omnivec-mini in {out} (first run only, about 3-5 minutes on 2 cores)", file=sys.stderr)
            build = subprocess.run([sys.executable, "-m", "omnivec", "bootstrap", "--out", str(out)])
            result = cached(BootstrapConfig(out=out))
            if build.returncode != 0 or result is None:
                print("omnivec serve: error: building the default model failed (see above); or serve a bundle you exported: omnivec serve --bundle DIR", file=sys.stderr)
                return 2
        settings.model.bundle = result.bundle
        if settings.demo_items is None:
            settings.demo_items = result.demo / "items.jsonl"
    try:
        run_server(settings)
    except BundleError as exc:
        print(f"omnivec serve: error: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    import asyncio

    from omnivec.server.bundle import BundleError, ModelBundle
    from omnivec.server.errors import OmnivecError
    from omnivec.server.services.embedding import EmbeddingService
    from omnivec.server.settings import Settings

    if not args.text and not args.image and not args.audio:
        print("omnivec embed: error: give at least one --text, --image or --audio", file=sys.stderr)
        return 2
    settings = Settings()
    settings.model.intra_op_threads = args.threads
    try:
        service = EmbeddingService(ModelBundle.load(args.bundle), settings)
    except BundleError as exc:
        print(f"omnivec embed: error: {exc}", file=sys.stderr)
        return 2

    async def run() -> None:
        try:
            if args.text:
                result = await service.embed_texts(args.text)
                for i, vec in enumerate(result.vectors):
                    print(json.dumps({"modality": "text", "index": i, "input": args.text[i], "truncated": result.truncated[i], "embedding": vec.round(6).tolist()}))
            if args.image:
                data = [p.read_bytes() for p in args.image]
                vectors = await service.embed_images(data, labels=[str(p) for p in args.image])
                for i, vec in enumerate(vectors):
                    print(json.dumps({"modality": "image", "index": i, "input": str(args.image[i]), "embedding": vec.round(6).tolist()}))
            if args.audio:
                data = [p.read_bytes() for p in args.audio]
                audio = await service.embed_audios(data, labels=[str(p) for p in args.audio])
                for i, vec in enumerate(audio.vectors):
                    line = {"modality": "audio", "index": i, "input": str(args.audio[i]), "duration_s": audio.durations[i]}
                    print(json.dumps({**line, "embedding": vec.round(6).tolist()}))
        finally:
            await service.close()

    try:
        asyncio.run(run())
    except (OmnivecError, OSError) as exc:
        print(f"omnivec embed: error: {exc}", file=sys.stderr)
        return 2
    return 0


class ClientError(Exception):
    """A request-level failure: printed as `omnivec <command>: error: <message>`, exit 2."""


@contextlib.contextmanager
def _api(args: argparse.Namespace) -> Iterator["Client"]:
    """The SDK client on a running server, or on the app in this process with --bundle (see CLIENT_NOTE)."""
    from omnivec_client import Client, OmnivecError

    batch_size = max(1, getattr(args, "batch_size", 64))
    if args.bundle is None:
        url = (args.server or os.environ.get("OMNIVEC_SERVER_URL") or "http://127.0.0.1:8000").rstrip("/")
        with Client(url, timeout_s=args.timeout, batch_size=batch_size, api_key=args.api_key) as client:
            try:
                client.health()
            except OmnivecError as exc:
                raise ClientError(
                    f"no omnivec server answers at {url} ({exc.message}); start one with `omnivec serve --bundle DIR`, "
                    "pass --server URL, or run in-process with --bundle DIR"
                ) from exc
            yield client
        return
    from starlette.testclient import TestClient  # the app in this process, behind the same httpx API

    from omnivec.server.api.app import create_app
    from omnivec.server.bundle import ModelBundle
    from omnivec.server.settings import Settings

    settings = Settings()
    settings.model.bundle = args.bundle
    if args.data_dir:
        settings.data_dir = args.data_dir
    ModelBundle.load(args.bundle)  # BundleError with a clear message before anything starts
    with TestClient(create_app(settings), base_url="http://omnivec.local", raise_server_exceptions=False) as http:
        yield Client(http_client=http, timeout_s=args.timeout, batch_size=batch_size)


def _run_client(name: str, args: argparse.Namespace, body: Callable[["Client"], int]) -> int:
    from omnivec_client import OmnivecError

    from omnivec.server.bundle import BundleError
    from omnivec.server.index.store import IndexStoreError

    try:
        with _api(args) as client:
            return body(client)
    except (ClientError, BundleError, IndexStoreError, OmnivecError, OSError) as exc:
        print(f"omnivec {name}: error: {exc}", file=sys.stderr)
    return 2


def _ensure_collection(client: "Client", name: str, create: bool) -> None:
    from omnivec_client import OmnivecError

    try:
        info = client.get_collection(name)
    except OmnivecError as exc:
        if exc.code != "collection_not_found" or not create:
            raise
        client.create_collection(name, exist_ok=True)
        print(f"created collection {name!r}", file=sys.stderr)
        return
    if not info.matches_model:
        raise ClientError(f"collection {name!r} is in space {info.space_id!r}, not the served model's; use a new collection")


def cmd_index(args: argparse.Namespace) -> int:
    import time

    from omnivec_client import Item

    from omnivec.sources import SourceError, read_source

    try:
        sources = read_source(args.source)
    except (SourceError, OSError, UnicodeDecodeError) as exc:
        print(f"omnivec index: error: {exc}", file=sys.stderr)
        return 2
    items = [
        Item(text=s.text, id=s.id, payload=s.payload) if s.text is not None else Item(**{s.modality: s.path}, id=s.id, payload=s.payload)
        for s in sources
    ]

    def run(client: "Client") -> int:
        _ensure_collection(client, args.collection, not args.no_create)
        started = time.perf_counter()
        result = client.add(args.collection, items, skip_existing=True, progress=not args.no_progress)
        seconds = time.perf_counter() - started
        for error in result.errors:
            print(f"error: {sources[error.index].label}: {error.message}", file=sys.stderr)
        counts = {"indexed": result.indexed, "skipped": result.skipped, "errors": len(result.errors)}
        rate = (result.indexed + result.skipped) / max(seconds, 1e-9)
        print(json.dumps({"collection": args.collection, **counts, "seconds": round(seconds, 2), "items_per_s": round(rate, 1)}))
        return 1 if result.errors else 0

    return _run_client("index", args, run)


def cmd_search(args: argparse.Namespace) -> int:
    given = [q for q in (args.query, args.image, args.audio, args.url, args.item_id) if q]
    if len(given) != 1:
        print("omnivec search: error: give exactly one query: TEXT, --image FILE, --audio FILE, --url URL or --id ID", file=sys.stderr)
        return 2
    query_filter = None
    if args.filter:
        try:
            query_filter = json.loads(args.filter)
        except json.JSONDecodeError as exc:
            print(f"omnivec search: error: --filter is not valid JSON ({exc})", file=sys.stderr)
            return 2

    def run(client: "Client") -> int:
        hits = client.search(
            args.collection, args.query, image=args.image, audio=args.audio, url=args.url, id=args.item_id,
            top_k=args.top_k, offset=args.offset, filter=query_filter, modality=args.modality,
        )
        for rank, hit in enumerate(hits, start=args.offset + 1):
            print(json.dumps({"rank": rank, "id": hit.id, "score": hit.score, "modality": hit.modality, "payload": hit.payload}, ensure_ascii=False))
        return 0

    return _run_client("search", args, run)


def cmd_classify(args: argparse.Namespace) -> int:
    from omnivec.server.mediatype import suffix_modality

    if not args.files and not args.text:
        print("omnivec classify: error: give image or audio FILEs and/or --text", file=sys.stderr)
        return 2
    if bool(args.labels) == bool(args.labelset):
        print('omnivec classify: error: give --labels "a,b,c" or --labelset NAME', file=sys.stderr)
        return 2
    labels = [label.strip() for label in args.labels.split(",") if label.strip()] if args.labels else None
    is_audio = [suffix_modality(p.name) == "audio" for p in args.files]
    images = [p for p, audio in zip(args.files, is_audio) if not audio]
    audios = [p for p, audio in zip(args.files, is_audio) if audio]
    names = list(args.text) + [str(p) for p in args.files]
    # the SDK answers texts, then images, then audios: where each answer goes in the order given
    n = len(args.text)
    positions = list(range(n)) + [n + i for i, a in enumerate(is_audio) if not a] + [n + i for i, a in enumerate(is_audio) if a]

    def run(client: "Client") -> int:
        results = client.classify(
            args.text, images, audios, labels=labels, labelset=args.labelset, templates=args.template or None,
            top_k=args.top_k, multi_label=args.multi_label,
        )
        for position, row in sorted(zip(positions, results), key=lambda pair: pair[0]):
            labels_out = [{"label": s.label, "score": s.score, "cosine": s.cosine} for s in row.labels]
            print(json.dumps({"input": names[position], "labels": labels_out}, ensure_ascii=False))
        return 0

    return _run_client("classify", args, run)


def cmd_finetune(args: argparse.Namespace) -> int:
    from omnivec.model_export.loader import ExportError, require_torch

    try:
        require_torch()
        from omnivec.finetune.config import config_from_args
        from omnivec.finetune.train import finetune

        config = config_from_args(args)
        result = finetune(config, log=lambda message: print(message, file=sys.stderr))
    except (ExportError, ValueError, FileNotFoundError) as exc:
        print(f"omnivec finetune: error: {exc}", file=sys.stderr)
        return 2
    if os.environ.get("RANK", "0") != "0":
        return 0  # under torchrun, rank 0 reports
    last = result.history[-1]["metrics"] if result.history else {}
    print(json.dumps({"out": str(result.out), "bundle": str(result.bundle) if result.bundle else None, "steps": result.steps, "final": last}))
    return 0


def default_model_dir(data_dir: Path | None = None) -> Path:
    """Where `omnivec bootstrap` builds the default model unless told otherwise."""
    from omnivec.server.settings import Settings

    return Path(data_dir or Settings().data_dir) / "omnivec-mini"


def cmd_bootstrap(args: argparse.Namespace) -> int:
    from omnivec.finetune.bootstrap import BootstrapConfig, bootstrap
    from omnivec.model_export.loader import ExportError, require_torch

    config = BootstrapConfig(out=args.out or default_model_dir(args.data_dir), seed=args.seed, image_steps=args.image_steps, audio_steps=args.audio_steps, threads=args.threads)
    try:
        require_torch()
        result = bootstrap(config)
    except (ExportError, RuntimeError) as exc:
        print(f"omnivec bootstrap: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"bundle": str(result.bundle), "demo": str(result.demo), "cached": result.cached, "metrics": result.metrics}))
    return 0


def cmd_triton_repo(args: argparse.Namespace) -> int:
    from omnivec.model_export.triton_repo import write_repository
    from omnivec.server.bundle import BundleError

    try:
        written = write_repository(
            args.bundle, args.out, prefix=args.prefix, precision=args.precision, max_batch_size=args.max_batch, gpu=args.gpu, tensorrt=args.tensorrt
        )
    except (BundleError, ValueError, OSError) as exc:
        print(f"omnivec triton-repo: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"repository": str(args.out), "models": [p.name for p in written]}))
    return 0


COMMANDS = {"bootstrap": cmd_bootstrap, "export": cmd_export, "serve": cmd_serve, "embed": cmd_embed, "index": cmd_index, "search": cmd_search, "classify": cmd_classify, "finetune": cmd_finetune, "triton-repo": cmd_triton_repo}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 1
    return COMMANDS[args.command](args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
