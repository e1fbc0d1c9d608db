"""`omnivec bootstrap`: build the default model, omnivec-mini, from nothing but this package.

Generates the synthetic corpora (pictures, spoken words, sounds), trains the image and audio
towers into the space of the locked all-MiniLM-L6-v2 text tower with the tiled contrastive loss,
evaluates generalisation on held-out parts, exports the bundle (with its parity report) and writes
a demo collection. Everything lands under `out`; a second run with the same settings returns at
once from the cache, and the same seed gives the same bundle.

Speed on 2 cores comes from three choices: the locked text tower runs once per distinct caption
(cached), media are decoded once into tensors, and each batch holds one pair per class, so no
batch contains two positives for the same caption (the contrastive loss would push them apart).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from .bootstrap_data import FORMAT_VERSION, TextCache, decode, generate_corpora
from .bootstrap_eval import PARAPHRASE_QUERIES, bootstrap_report, evaluate_bootstrap
from .bootstrap_train import train_tower
from .data import read_manifest

__all__ = ["BUILD_TIME", "MODEL", "PARAPHRASE_QUERIES", "BootstrapConfig", "BootstrapResult", "bootstrap", "cached"]

MODEL = "omnivec-mini"


# What the default build costs, measured by bench/bench_bootstrap.py (bench/RESULTS.md); the CLI's
# help and first-run message quote it, so a new measurement is written here once.
BUILD_TIME = "about 10 minutes on 2 quiet CPU cores"


@dataclass
class BootstrapConfig:
    """How much to generate and train; the defaults take `BUILD_TIME`."""

    out: Path
    seed: int = 0
    image_steps: int = 1500  # many picture styles need more steps than one renderer's did (500)
    audio_steps: int = 800
    batch_size: int = 64
    lr: float = 2e-3
    # training pictures per colour-shape pair, each in its own random style: at 40 the tower
    # memorised them (0.98 of its training pictures, 0.75 of new ones from the same renderer)
    per_combo: int = 320
    per_word_picture: int = 30  # training pictures per rendered word or digit
    per_word_speech: int = 20  # utterances per spoken word (some in held-out voices)
    per_sound: int = 24  # training clips per sound class
    eval_per_class: int = 6  # evaluation pictures/sounds per class (another seed)
    style_per_class: int = 4  # held-out-style pictures per colour-shape class (second generator): 256, so one standard error is ~0.026
    conditions_per_word: int = 4  # held-out-condition recordings per word (second generator): 172, so one standard error is ~0.03
    demo_per_class: int = 3  # demo collection items per class
    threads: int | None = None

    def cache_key(self) -> str:
        fields = {k: v for k, v in asdict(self).items() if k not in ("out", "threads")}
        return hashlib.sha256(json.dumps({"v": FORMAT_VERSION, **fields}, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class BootstrapResult:
    out: Path
    bundle: Path
    demo: Path
    metrics: dict[str, float]
    untrained: dict[str, float]  # the same evaluation before training: the baseline
    cached: bool
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)


def _say(progress: bool) -> Callable[[str], None]:
    return (lambda msg: print(msg, flush=True)) if progress else (lambda _msg: None)


def cached(config: BootstrapConfig) -> BootstrapResult | None:
    """The finished build under `config.out` if it was made with these settings (no torch needed)."""
    out = Path(config.out)
    stamp = out / "bootstrap.json"
    if not stamp.is_file() or not (out / "bundle" / "manifest.json").is_file():
        return None
    try:
        done = json.loads(stamp.read_text())
    except json.JSONDecodeError:
        return None
    if done.get("cache_key") != config.cache_key():
        return None
    return BootstrapResult(out, out / "bundle", out / "demo", done["metrics"], done.get("untrained", {}), cached=True, timings=done.get("timings", {}))


def bootstrap(config: BootstrapConfig, *, progress: bool = True) -> BootstrapResult:
    """Build (or reuse) the default model under `config.out`; see the module docstring."""
    started, cpu_started = time.perf_counter(), cpu_seconds()
    say = _say(progress)
    out = Path(config.out)
    previous = cached(config)
    if previous is not None:
        say(f"omnivec-mini already built in {out} (delete it to rebuild)")
        return previous
    from omnivec.model_export.loader import require_torch

    require_torch()
    import torch

    if config.threads:
        torch.set_num_threads(config.threads)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bootstrap.json").unlink(missing_ok=True)  # an older build's stamp must not outlive it
    timings: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        value = fn()
        timings[name] = round(time.perf_counter() - t0, 1)
        return value

    corpora = timed("corpora", lambda: generate_corpora(config, out / "corpora", progress))
    from omnivec.model_export.loader import load_model

    say(f"loading {MODEL} (locked text tower: all-MiniLM-L6-v2)")
    torch.manual_seed(config.seed)
    with _quiet_model_loading():
        loaded = load_model(MODEL, "none", seed=config.seed)
    model = loaded.model
    for p in model.parameters():
        p.requires_grad_(False)
    texts = TextCache(model, loaded.tokenizer)
    data = timed("decode", lambda: decode(corpora, loaded, say))
    untrained = timed("evaluate_untrained", lambda: evaluate_bootstrap(model, data, texts))  # the baseline: where training starts
    # The towers share one logit_scale: each run starts from the initial temperature, and the
    # bundle keeps the image run's (the audio run must not change the image tower's calibration).
    initial_scale = model.logit_scale.detach().clone()
    timed("train_image", lambda: train_tower(model.visual, model, data["train_image"], texts, config.image_steps, config, "image", progress))
    image_scale = model.logit_scale.detach().clone()
    with torch.no_grad():
        model.logit_scale.copy_(initial_scale)
    timed("train_audio", lambda: train_tower(model.audio_tower, model, data["train_audio"], texts, config.audio_steps, config, "audio", progress))
    with torch.no_grad():
        model.logit_scale.copy_(image_scale)
    model.eval()
    details: dict[str, Any] = {}
    metrics = timed("evaluate", lambda: evaluate_bootstrap(model, data, texts, details))
    say("evaluation: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))

    from omnivec.model_export.export import export_bundle
    from omnivec.model_export.loader import LoadedModel

    bundle = out / "bundle"
    if bundle.exists():
        shutil.rmtree(bundle)
    source = {**loaded.source, "trained_by": "omnivec bootstrap", "seed": config.seed, "cache_key": config.cache_key()}
    exported = LoadedModel(model, loaded.name, "omnivec-bootstrap", loaded.tokenizer, loaded.preprocess_cfg, source)
    timed("export", lambda: export_bundle(MODEL, "none", bundle, loaded=exported, progress=say))
    demo = timed("demo", lambda: write_demo(corpora, out / "demo", config))
    timings["cpu_total"] = round(cpu_seconds() - cpu_started, 1)  # all cores, espeak-ng included: the cost on a shared machine
    report = {"cache_key": config.cache_key(), "config": {k: str(v) for k, v in asdict(config).items()}, "metrics": metrics, "untrained": untrained, "timings": timings, **details}
    (out / "report.md").write_text(bootstrap_report(metrics, untrained, timings, details))
    (out / "bootstrap.json").write_text(json.dumps(report, indent=2))
    seconds = time.perf_counter() - started
    say(f"omnivec-mini built in {seconds:.0f} s: bundle {bundle}, demo collection {demo}")
    return BootstrapResult(out, bundle, demo, metrics, untrained, cached=False, seconds=seconds, timings=timings)


def cpu_seconds() -> float:
    """User and system CPU time of this process and its finished children (espeak-ng)."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


@contextlib.contextmanager
def _quiet_model_loading() -> Iterator[None]:
    """transformers and open_clip report MiniLM's unused pooler weights and the replaced vision
    tower at length; both are expected here, so keep them out of the user's terminal."""
    import transformers

    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
        transformers.logging.set_verbosity(verbosity)
        transformers.logging.enable_progress_bar()

# --- demo collection -----------------------------------------------------------------------


def write_demo(corpora: dict[str, Path], out: Path, config: BootstrapConfig) -> Path:
    """A few hundred evaluation pictures and clips (never trained on) with payloads, as items.jsonl
    in the manifest format `omnivec index` reads (`path` relative to it, plus a `payload`)."""
    if out.exists():
        shutil.rmtree(out)
    (out / "media").mkdir(parents=True)
    rng = random.Random(config.seed)
    picked: list[tuple[Path, dict[str, str], str]] = []
    for name, modality in (("pictures_eval", "image"), ("speech", "audio"), ("sounds_eval", "audio")):
        rows = read_manifest(corpora[name])
        if name == "speech":
            rows = [r for r in rows if r["split"] != "train"]
        by_label: dict[str, list[dict[str, str]]] = {}
        for row in rows:
            by_label.setdefault(row["label"], []).append(row)
        for label in sorted(by_label):
            for row in rng.sample(by_label[label], min(config.demo_per_class, len(by_label[label]))):
                picked.append((corpora[name].parent / row[modality], row, modality))
    with (out / "items.jsonl").open("w") as f:
        for path, row, modality in picked:
            target = out / "media" / f"{path.parent.parent.name}_{path.name}"
            shutil.copyfile(path, target)
            payload = {"label": row["label"], "caption": row["caption"], "modality": modality}
            if "kind" in row:
                payload["kind"] = row["kind"]
            f.write(json.dumps({"path": f"media/{target.name}", "payload": payload}) + "\n")
    return out
