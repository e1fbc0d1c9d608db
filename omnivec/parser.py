"""The `omnivec` command line: every subcommand's flags and help (no command bodies: see commands.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

INDEX_CONCURRENCY = 4  # = omnivec_client.bulk.DEFAULT_CONCURRENCY (tested), not imported: building the parser stays light

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
    p.add_argument(
        "--bundle",
        action="append",
        metavar="[NAME=]DIR",
        help="bundle directory (env OMNIVEC_MODEL__BUNDLE); repeat it to serve several models at once, the first being the default "
        "(requests without \"model\" use it), each under its manifest's model name or NAME; more can be loaded while running "
        "(POST /v1/models). Without one, the default model omnivec-mini is built on first run (`omnivec bootstrap`, needs "
        "omnivec[export] and espeak-ng) and served with its demo collection",
    )
    p.add_argument("--models-dir", type=Path, help="also serve every bundle in this directory's subdirectories, named after them (env OMNIVEC_MODEL__MODELS_DIR)")
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
        "Failed items are printed and the command exits 1 after indexing everything else. A manifest is checked "
        "row by row first, then streamed (a million rows are never held in memory), with --concurrency requests in flight.\n" + CLIENT_NOTE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", metavar="PATH|GLOB|CSV|JSONL")
    p.add_argument("--collection", required=True, help="collection name")
    p.add_argument("--batch-size", type=int, default=32, help="items per request (default 32)")
    p.add_argument(
        "--concurrency", type=int, default=INDEX_CONCURRENCY,
        help=f"requests in flight at once, so the server's model never waits for the next batch (default {INDEX_CONCURRENCY}; 1: one at a time)",
    )
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
    from omnivec.finetune.bootstrap import BUILD_TIME, BootstrapConfig

    defaults = BootstrapConfig(out=Path("."))
    p = sub.add_parser(
        "bootstrap",
        help=f"build the default model, omnivec-mini, offline ({BUILD_TIME}; needs omnivec[export] and espeak-ng)",
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
