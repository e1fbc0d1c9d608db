"""The `omnivec` command: export bundles, serve them, embed from the shell."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

EPILOG = """examples:
  omnivec export --model omnivec-tiny --pretrained none --out data/bundles/tiny
  omnivec export --model ViT-B-32 --pretrained /models/vit-b-32.safetensors --out data/bundles/vit-b-32
  omnivec serve --bundle data/bundles/tiny --port 8000
  omnivec embed --bundle data/bundles/tiny --text "a photo of a dog" --image cat.jpg
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
    p.add_argument("--towers", default="image,text", help="comma-separated towers to export (default: image,text)")
    p.add_argument("--seed", type=int, default=0, help="seed for random init (default 0)")
    p.add_argument("--int8", action="store_true", help="also write per-channel int8 towers (served with --precision int8); a tower whose int8 cosine to PyTorch is below 0.99 keeps fp32 only")


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="run the HTTP API on a bundle",
        description="Serve /v1/embed, /v1/models, /healthz, /readyz and /docs with uvicorn. Every flag can also be set "
        "through the environment (OMNIVEC_MODEL__BUNDLE, OMNIVEC_SERVER__PORT, ...); flags win.",
    )
    p.add_argument("--bundle", type=Path, help="bundle directory (env OMNIVEC_MODEL__BUNDLE)")
    p.add_argument("--host", help="bind address (default 127.0.0.1; use 0.0.0.0 in containers)")
    p.add_argument("--port", type=int, help="port (default 8000)")
    p.add_argument("--precision", choices=["fp32", "int8"], help="tower variant to load (default fp32)")
    p.add_argument("--threads", type=int, help="onnxruntime intra-op threads per model call (default: cores available)")
    p.add_argument("--data-dir", type=Path, help="data directory (env OMNIVEC_DATA_DIR, default ./data)")


def _add_embed(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "embed",
        help="embed texts and image files from the shell (loads the bundle in-process)",
        description="Print one JSON line per input: modality, index, and the L2-normalised embedding.",
    )
    p.add_argument("--bundle", type=Path, required=True, help="bundle directory")
    p.add_argument("--text", action="append", default=[], help="text to embed (repeatable)")
    p.add_argument("--image", action="append", default=[], type=Path, help="image file to embed (repeatable)")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime threads (default 1)")


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
    return parser


def cmd_export(args: argparse.Namespace) -> int:
    from omnivec.model_export.loader import ExportError

    try:
        from omnivec.model_export.export import export_bundle
        from tqdm import tqdm

        towers = [t.strip() for t in args.towers.split(",") if t.strip()]
        steps = 3 + (3 if args.int8 else 2) * len(towers)  # load, hash, (export, parity[, int8]) per tower, write
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

    if not args.text and not args.image:
        print("omnivec embed: error: give at least one --text or --image", file=sys.stderr)
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
        finally:
            await service.close()

    try:
        asyncio.run(run())
    except (OmnivecError, OSError) as exc:
        print(f"omnivec embed: error: {exc}", file=sys.stderr)
        return 2
    return 0


COMMANDS = {"export": cmd_export, "serve": cmd_serve, "embed": cmd_embed}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 1
    return COMMANDS[args.command](args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
