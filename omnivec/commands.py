"""What each `omnivec` subcommand does; heavy imports happen inside each command.

Every command that needs settings gets the one `Settings` that `cli.main` built from the
environment and the command's flags (validated once); a command that must change it (the
default-model rule of `serve`) makes a validated copy with `overridden`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

if TYPE_CHECKING:  # pragma: no cover
    from omnivec_client import Client

    from omnivec.server.settings import Settings


def _merge(base: dict, changes: dict) -> dict:
    out = dict(base)
    for key, value in changes.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def overridden(settings: "Settings", changes: dict[str, Any]) -> "Settings":
    """A copy of `settings` with nested `changes`, validated again (attribute assignment would skip the validators)."""
    return type(settings).model_validate(_merge(settings.model_dump(), changes))


def cmd_export(args: argparse.Namespace, settings: None = None) -> int:
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


def with_default_model(settings: "Settings") -> "Settings | None":
    """`omnivec serve` without a bundle serves the default model omnivec-mini with its demo collection,
    building it once first (in a child process, so the server process never imports torch); None if that fails."""
    from omnivec.finetune.bootstrap import BUILD_TIME, BootstrapConfig, cached

    out = default_model_dir(settings)
    result = cached(BootstrapConfig(out=out))
    if result is None:
        print(f"no --bundle given: building the default model omnivec-mini in {out} (first run only, {BUILD_TIME})", file=sys.stderr)
        build = subprocess.run([sys.executable, "-m", "omnivec", "bootstrap", "--out", str(out)])
        result = cached(BootstrapConfig(out=out))
        if build.returncode != 0 or result is None:
            return None
    demo = settings.demo_items if settings.demo_items is not None else result.demo / "items.jsonl"
    return overridden(settings, {"model": {"bundle": result.bundle}, "demo_items": demo})


def cmd_serve(args: argparse.Namespace, settings: "Settings") -> int:
    from omnivec.server.api.app import run_server
    from omnivec.server.bundle import BundleError

    if settings.model.bundle is None:
        default = with_default_model(settings)
        if default is None:
            print("omnivec serve: error: building the default model failed (see above); or serve a bundle you exported: omnivec serve --bundle DIR", file=sys.stderr)
            return 2
        settings = default
    try:
        run_server(settings)
    except BundleError as exc:
        print(f"omnivec serve: error: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_embed(args: argparse.Namespace, settings: "Settings") -> int:
    import asyncio

    from omnivec.server.bundle import BundleError, ModelBundle
    from omnivec.server.errors import OmnivecError
    from omnivec.server.services.embedding import EmbeddingService

    if not args.text and not args.image and not args.audio:
        print("omnivec embed: error: give at least one --text, --image or --audio", file=sys.stderr)
        return 2
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
def _api(args: argparse.Namespace, settings: "Settings") -> Iterator["Client"]:
    """The SDK client on a running server, or on the app in this process with --bundle (see CLIENT_NOTE)."""
    from omnivec_client import Client, OmnivecError
    from omnivec_client.settings import ClientSettings

    batch_size = max(1, getattr(args, "batch_size", 64))
    if args.bundle is None:
        url = (args.server or ClientSettings().base_url).rstrip("/")  # the SDK's default: $OMNIVEC_SERVER_URL, else localhost
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

    ModelBundle.load(args.bundle)  # BundleError with a clear message before anything starts
    with TestClient(create_app(settings), base_url="http://omnivec.local", raise_server_exceptions=False) as http:
        yield Client(http_client=http, timeout_s=args.timeout, batch_size=batch_size)


def _run_client(name: str, args: argparse.Namespace, settings: "Settings", body: Callable[["Client"], int]) -> int:
    from omnivec_client import OmnivecError

    from omnivec.server.bundle import BundleError
    from omnivec.server.index.errors import IndexStoreError

    try:
        with _api(args, settings) as client:
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


def cmd_index(args: argparse.Namespace, settings: "Settings") -> int:
    import time

    from omnivec_client import Item

    from omnivec.server.sources import SourceError, SourceItem, scan_source

    if args.concurrency < 1:
        print("omnivec index: error: --concurrency must be at least 1", file=sys.stderr)
        return 2
    try:
        total, read = scan_source(args.source)  # checked (and counted) up front, then streamed: never a list of all items
    except (SourceError, OSError, UnicodeDecodeError) as exc:
        print(f"omnivec index: error: {exc}", file=sys.stderr)
        return 2

    def item(s: SourceItem) -> Item:
        return Item(text=s.text, id=s.id, payload=s.payload) if s.text is not None else Item(**{s.modality: s.path}, id=s.id, payload=s.payload)

    def run(client: "Client") -> int:
        _ensure_collection(client, args.collection, not args.no_create)
        started = time.perf_counter()
        result = client.add(
            args.collection, (item(s) for s in read()), skip_existing=True, progress=not args.no_progress, concurrency=args.concurrency, total=total
        )
        seconds = time.perf_counter() - started
        if result.errors:  # name the failed items by their source line or path: read the source again for their labels
            failed = {e.index: e for e in result.errors}
            for position, s in enumerate(read()):
                if position in failed:
                    print(f"error: {s.label}: {failed[position].message}", file=sys.stderr)
        counts = {"indexed": result.indexed, "skipped": result.skipped, "errors": len(result.errors)}
        rate = (result.indexed + result.skipped) / max(seconds, 1e-9)
        print(json.dumps({"collection": args.collection, **counts, "seconds": round(seconds, 2), "items_per_s": round(rate, 1)}))
        return 1 if result.errors else 0

    return _run_client("index", args, settings, run)


def cmd_search(args: argparse.Namespace, settings: "Settings") -> int:
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

    return _run_client("search", args, settings, run)


def cmd_classify(args: argparse.Namespace, settings: "Settings") -> int:
    from omnivec.server.media import suffix_modality

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

    return _run_client("classify", args, settings, run)


def cmd_finetune(args: argparse.Namespace, settings: None = None) -> int:
    from omnivec.model_export.loader import ExportError, require_torch

    try:
        require_torch()
        from omnivec.finetune.config import config_from_args
        from omnivec.finetune.train import dist_info, finetune

        config = config_from_args(args)
        result = finetune(config, log=lambda message: print(message, file=sys.stderr))
    except (ExportError, ValueError, FileNotFoundError) as exc:
        print(f"omnivec finetune: error: {exc}", file=sys.stderr)
        return 2
    if dist_info()[0] != 0:
        return 0  # under torchrun, rank 0 reports
    last = result.history[-1]["metrics"] if result.history else {}
    summary = {"out": str(result.out), "bundle": str(result.bundle) if result.bundle else None, "steps": result.steps, "final": last}
    if config.publish:
        if result.bundle is None:
            print("omnivec finetune: error: --publish needs the exported bundle; drop --no-export", file=sys.stderr)
            return 2
        try:
            summary["published"] = publish_bundle(config.publish, Path(result.bundle), config.publish_name, config.publish_reembed or [])
        except Exception as exc:  # noqa: BLE001 - the training result stands; say why the server did not take it
            print(f"omnivec finetune: error: the bundle is at {result.bundle} but publishing it to {config.publish} failed: {exc}", file=sys.stderr)
            print(json.dumps(summary))
            return 1
    print(json.dumps(summary))
    return 0


def publish_bundle(url: str, bundle: Path, name: str | None, reembed: list[str]) -> dict:
    """Load a freshly exported bundle into a running server and (optionally) re-embed collections into its space."""
    from omnivec_client import Client
    from omnivec.server.bundle import ModelBundle

    manifest = ModelBundle.load(bundle).manifest
    name = name or f"{manifest.model_name}-{manifest.space_id.rpartition('@')[2][:8]}"
    with Client(url) as client:
        info = client.load_model(str(bundle.resolve()), name, on_progress=lambda s: print(f"loading {name}: {s['state']} ({s['progress']})", file=sys.stderr))
        print(f"model {name!r} serves at {url} (space {info['space_id']}, loaded in {info['load_s']} s)", file=sys.stderr)
        done = {}
        for collection in reembed:
            status = client.reembed(
                collection, name, on_progress=lambda s, c=collection: print(f"re-embedding {c}: {s['done']}/{s['total']} ({len(s['errors'])} errors)", file=sys.stderr)
            )
            done[collection] = {"total": status["total"], "errors": len(status["errors"]), "previous": status["previous"]}
    return {"model": name, "space_id": info["space_id"], "reembedded": done}


def default_model_dir(settings: "Settings") -> Path:
    """Where `omnivec bootstrap` builds the default model unless told otherwise."""
    return Path(settings.data_dir) / "omnivec-mini"


def cmd_bootstrap(args: argparse.Namespace, settings: "Settings") -> int:
    from omnivec.finetune.bootstrap import BootstrapConfig, bootstrap
    from omnivec.model_export.loader import ExportError, require_torch

    config = BootstrapConfig(out=args.out or default_model_dir(settings), seed=args.seed, image_steps=args.image_steps, audio_steps=args.audio_steps, threads=args.threads)
    try:
        require_torch()
        result = bootstrap(config)
    except (ExportError, RuntimeError) as exc:
        print(f"omnivec bootstrap: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"bundle": str(result.bundle), "demo": str(result.demo), "cached": result.cached, "metrics": result.metrics}))
    return 0


def cmd_triton_repo(args: argparse.Namespace, settings: None = None) -> int:
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
