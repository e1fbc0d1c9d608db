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
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from .corpora import pictures, sounds, speech
from .data import read_manifest
from .train import warmup_cosine
from .corpora.shapes import COLORS, SHAPES

MODEL = "omnivec-mini"
FORMAT_VERSION = 2  # bump when the same settings would build a different model


@dataclass
class BootstrapConfig:
    """How much to generate and train; the defaults fit in about 10 minutes on 2 CPU cores."""

    out: Path
    seed: int = 0
    image_steps: int = 500
    audio_steps: int = 600
    batch_size: int = 64
    lr: float = 2e-3
    per_combo: int = 30  # training pictures per colour-shape pair
    per_word_picture: int = 30  # training pictures per rendered word or digit
    per_word_speech: int = 20  # utterances per spoken word (some in held-out voices)
    per_sound: int = 24  # training clips per sound class
    eval_per_class: int = 6  # evaluation pictures/sounds per class (another seed)
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


# Queries whose key word appears in no caption of any corpus (checked by the tests), with the
# labels that count as right. Measures what the locked sentence encoder brings to search.
PARAPHRASE_QUERIES: list[tuple[str, str, tuple[str, ...]]] = [
    ("image", "a crimson heart", ("red heart",)),
    ("image", "a scarlet star", ("red star",)),
    ("image", "an emerald circle", ("green circle",)),
    ("image", "a violet square", ("purple square",)),
    ("image", "a navy triangle", ("blue triangle",)),
    ("image", "a golden cross", ("yellow cross",)),
    ("image", "a tangerine diamond", ("orange diamond",)),
    ("image", "an ebony star", ("black star",)),
    ("image", "a snowy circle", ("white circle",)),
    ("image", "a kitten", ("the word cat",)),
    ("image", "a puppy", ("the word dog",)),
    ("image", "an automobile", ("the word car",)),
    ("image", "a sailing ship", ("the word boat",)),
    ("image", "seven items", ("the number seven",)),
    ("audio", "feline", ("cat",)),
    ("audio", "a stallion", ("horse",)),
    ("audio", "a blossom", ("flower",)),
    ("audio", "an espresso", ("coffee",)),
    ("audio", "a loaf", ("bread",)),
    ("audio", "a doorbell", ("bell", "ringing phone")),
    ("audio", "an ambulance", ("siren",)),
    ("audio", "static hiss", ("white noise", "pink noise")),
    ("audio", "a cellphone", ("ringing phone", "phone")),
    ("audio", "a wristwatch", ("ticking clock",)),
]


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
    started = time.perf_counter()
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

    corpora = timed("corpora", lambda: _generate_corpora(config, out / "corpora", progress))
    from omnivec.model_export.loader import load_model

    say(f"loading {MODEL} (locked text tower: all-MiniLM-L6-v2)")
    torch.manual_seed(config.seed)
    with _quiet_model_loading():
        loaded = load_model(MODEL, "none", seed=config.seed)
    model = loaded.model
    for p in model.parameters():
        p.requires_grad_(False)
    texts = TextCache(model, loaded.tokenizer)
    data = timed("decode", lambda: _decode(corpora, loaded, say))
    untrained = timed("evaluate_untrained", lambda: evaluate(model, data, texts))  # the baseline: where training starts
    timed("train_image", lambda: train_tower(model.visual, model, data["train_image"], texts, config.image_steps, config, "image", progress))
    timed("train_audio", lambda: train_tower(model.audio_tower, model, data["train_audio"], texts, config.audio_steps, config, "audio", progress))
    model.eval()
    details: dict[str, Any] = {}
    metrics = timed("evaluate", lambda: evaluate(model, data, texts, details))
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
    report = {"cache_key": config.cache_key(), "config": {k: str(v) for k, v in asdict(config).items()}, "metrics": metrics, "untrained": untrained, "timings": timings, **details}
    (out / "report.md").write_text(markdown_report(metrics, untrained, timings, details.get("paraphrases", [])))
    (out / "bootstrap.json").write_text(json.dumps(report, indent=2))
    seconds = time.perf_counter() - started
    say(f"omnivec-mini built in {seconds:.0f} s: bundle {bundle}, demo collection {demo}")
    return BootstrapResult(out, bundle, demo, metrics, untrained, cached=False, seconds=seconds, timings=timings)


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


# --- corpora -------------------------------------------------------------------------------


def _bar(progress: bool, desc: str) -> Callable[[int, int], None]:
    from tqdm import tqdm

    state: dict[str, Any] = {}

    def update(done: int, total: int) -> None:
        if not progress:
            return
        if "bar" not in state:
            state["bar"] = tqdm(total=total, desc=desc, unit="item")
        state["bar"].update(done - state["bar"].n)
        if done >= total:
            state["bar"].close()

    return update


def _generate_corpora(config: BootstrapConfig, root: Path, progress: bool) -> dict[str, Path]:
    """Training and evaluation corpora; each is reused if a previous run wrote it with the same key."""
    seed, eval_seed = config.seed, config.seed + 1000
    jobs: dict[str, Callable[[Path], Path]] = {
        "pictures": lambda d: pictures.generate(d, per_combo=config.per_combo, per_word=config.per_word_picture, seed=seed, progress=_bar(progress, "pictures")).manifest,
        "pictures_eval": lambda d: pictures.generate(d, per_combo=config.eval_per_class, per_word=config.eval_per_class, seed=eval_seed, progress=_bar(progress, "eval pictures")).manifest,
        "speech": lambda d: speech.generate(d, per_word=config.per_word_speech, seed=seed, split_seed=seed, progress=_bar(progress, "spoken words")),
        "sounds": lambda d: sounds.generate(d, per_class=config.per_sound, seed=seed, classes=sounds.kinds(extended=True)),
        "sounds_eval": lambda d: sounds.generate(d, per_class=config.eval_per_class, seed=eval_seed, classes=sounds.kinds(extended=True)),
    }
    manifests = {}
    for name, make in jobs.items():
        folder = root / name
        # corpora depend on the seed and sizes only: changing step counts reuses them
        key = json.dumps({"v": FORMAT_VERSION, "corpus": name, "seed": config.seed, "sizes": [config.per_combo, config.per_word_picture, config.per_word_speech, config.per_sound, config.eval_per_class]})
        if (folder / "manifest.csv").is_file() and (folder / ".key").is_file() and (folder / ".key").read_text() == key:
            manifests[name] = folder / "manifest.csv"
            continue
        if folder.exists():
            shutil.rmtree(folder)
        manifests[name] = make(folder)
        (folder / ".key").write_text(key)
    return manifests



# --- data ----------------------------------------------------------------------------------


@dataclass
class Items:
    """Decoded media of one modality with their labels and captions."""

    inputs: Any  # torch.Tensor (N, ...)
    labels: list[str]
    captions: list[str]
    kinds: list[str]


def _decode(corpora: dict[str, Path], loaded: Any, say: Callable[[str], None]) -> dict[str, Items]:
    """Decode every picture and clip once, through the server's own preprocessing."""
    import numpy as np
    import torch

    from omnivec.model_export.export import audio_spec, image_spec
    from omnivec.server.preprocess.image import preprocess_image

    from .data import audio_loader

    say("decoding media")
    spec = image_spec(loaded)
    load_audio = audio_loader(audio_spec(loaded), random_crop=False)

    def images(rows: list[dict[str, str]], root: Path) -> Items:
        arrays = [preprocess_image((root / r["image"]).read_bytes(), spec, max_pixels=1 << 20) for r in rows]
        return Items(torch.from_numpy(np.stack(arrays)), [r["label"] for r in rows], [r["caption"] for r in rows], [r.get("kind", "shape") for r in rows])

    def audio(rows: list[dict[str, str]], root: Path, kind: str) -> Items:
        return Items(torch.stack([load_audio(root / r["audio"]) for r in rows]), [r["label"] for r in rows], [r["caption"] for r in rows], [kind] * len(rows))

    def join(a: Items, b: Items) -> Items:
        return Items(torch.cat([a.inputs, b.inputs]), a.labels + b.labels, a.captions + b.captions, a.kinds + b.kinds)

    pics = read_manifest(corpora["pictures"])
    speech_rows = read_manifest(corpora["speech"])
    root = {k: v.parent for k, v in corpora.items()}
    return {
        "train_image": images([r for r in pics if r["split"] == "train"], root["pictures"]),
        "heldout_image": images([r for r in pics if r["split"] != "train"], root["pictures"]),
        "eval_image": images(read_manifest(corpora["pictures_eval"]), root["pictures_eval"]),
        "train_audio": join(
            audio([r for r in speech_rows if r["split"] == "train"], root["speech"], "speech"),
            audio(read_manifest(corpora["sounds"]), root["sounds"], "sound"),
        ),
        "heldout_speech": audio([r for r in speech_rows if r["split"] != "train"], root["speech"], "speech"),
        "eval_sound": audio(read_manifest(corpora["sounds_eval"]), root["sounds_eval"], "sound"),
    }


class TextCache:
    """Locked-text-tower embeddings, computed once per distinct text."""

    def __init__(self, model: Any, tokenizer: Callable) -> None:
        self.model, self.tokenizer, self.cache = model, tokenizer, {}

    def __call__(self, texts: list[str]) -> Any:
        import torch

        missing = sorted({t for t in texts if t not in self.cache})
        with torch.no_grad():
            for i in range(0, len(missing), 256):
                chunk = missing[i : i + 256]
                emb = torch.nn.functional.normalize(self.model.encode_text(self.tokenizer(chunk)), dim=-1)
                self.cache.update(zip(chunk, emb))
        return torch.stack([self.cache[t] for t in texts])


# --- training ------------------------------------------------------------------------------


def train_tower(tower: Any, model: Any, items: Items, texts: TextCache, steps: int, config: BootstrapConfig, modality: str, progress: bool) -> None:
    """Train one tower against cached caption embeddings with the tiled CLIP loss.

    Each batch takes one random item (and its caption) from each of `batch_size` random classes.
    """
    import torch
    from tqdm import tqdm

    from .losses import tiled_clip_loss

    if steps <= 0:
        return
    texts(sorted(set(items.captions)))
    by_label: dict[str, list[int]] = {}
    for i, label in enumerate(items.labels):
        by_label.setdefault(label, []).append(i)
    labels = sorted(by_label)
    batch = min(config.batch_size, len(labels))
    rng = random.Random(f"{config.seed}:{modality}")
    gen = torch.Generator().manual_seed(config.seed)
    for p in tower.parameters():
        p.requires_grad_(True)
    model.logit_scale.requires_grad_(True)
    params = list(tower.parameters())
    optimizer = torch.optim.AdamW(
        [{"params": [p for p in params if p.ndim >= 2], "weight_decay": 0.05}, {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}, {"params": [model.logit_scale], "weight_decay": 0.0}],
        lr=config.lr,
    )
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(warmup, steps))
    tower.train()
    bar = tqdm(range(steps), desc=f"training {modality} tower", unit="step", disable=not progress)
    for _ in bar:
        idx = [rng.choice(by_label[label]) for label in rng.sample(labels, batch)]
        x = items.inputs[idx]
        if modality == "audio":  # level and timing vary in real recordings
            gain = torch.empty(len(idx), 1).uniform_(0.5, 1.5, generator=gen)
            shift = int(torch.randint(0, x.shape[1] // 8, (1,), generator=gen))
            x = torch.roll(x, shift, dims=1) * gain
        media = torch.nn.functional.normalize(tower(x), dim=-1)
        loss = tiled_clip_loss(media, texts([items.captions[i] for i in idx]), model.logit_scale.exp(), tile_size=32)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        bar.set_postfix(loss=f"{loss.item():.3f}")
    tower.eval()
    for p in list(tower.parameters()) + [model.logit_scale]:
        p.requires_grad_(False)


# --- evaluation ----------------------------------------------------------------------------

SHAPE_PROMPTS = ("a {color} {shape}", "a photo of a {color} {shape}", "a drawing of a {color} {shape}")
SPEECH_PROMPTS = ("someone saying {w}", "the spoken word {w}")


def _embed(tower: Any, inputs: Any) -> Any:
    import torch

    with torch.no_grad():
        return torch.cat([torch.nn.functional.normalize(tower(inputs[i : i + 256]), dim=-1) for i in range(0, len(inputs), 256)])


def _class_embeddings(texts: TextCache, prompts_by_class: dict[str, list[str]]) -> Any:
    import torch

    return torch.stack([torch.nn.functional.normalize(texts(p).mean(0), dim=0) for p in prompts_by_class.values()])


def _top1(media: Any, labels: list[str], classes: dict[str, list[str]], texts: TextCache) -> float:
    names = list(classes)
    pred = (media @ _class_embeddings(texts, classes).T).argmax(1).tolist()
    return sum(names[p] == label for p, label in zip(pred, labels)) / max(1, len(labels))


def _hit_at_5(scores: Any, targets: list[set[str]], labels: list[str]) -> float:
    top = scores.topk(min(5, scores.shape[1]), dim=1).indices.tolist()
    return sum(any(labels[j] in want for j in row) for row, want in zip(top, targets)) / max(1, len(targets))


def evaluate(model: Any, data: dict[str, Items], texts: TextCache, details: dict | None = None) -> dict[str, float]:
    """The quality bars: held-out colour-shape pairs, held-out voices, paraphrases, retrieval.

    `details`, if given, receives each paraphrase query's top-5 labels (written to the report)."""
    shape_classes = {f"{c} {s}": [t.format(color=c, shape=s) for t in SHAPE_PROMPTS] for c in COLORS for s in SHAPES}
    heldout_shape_classes = {f"{c} {s}": [t.format(color=c, shape=s) for t in pictures.HELD_OUT_TEMPLATES] for c in COLORS for s in SHAPES}
    words = sorted(set(data["heldout_speech"].labels))
    speech_classes = {w: [t.format(w=w) for t in SPEECH_PROMPTS] for w in words}
    speech_heldout_wording = {w: [t.format(w=w) for t in speech.HELDOUT_TEMPLATES] for w in words}
    sound_classes = {label: [label, f"the sound of {label}"] for label in sorted(set(data["eval_sound"].labels))}

    heldout_img = _embed(model.visual, data["heldout_image"].inputs)
    eval_img = _embed(model.visual, data["eval_image"].inputs)
    speech_emb = _embed(model.audio_tower, data["heldout_speech"].inputs)
    sound_emb = _embed(model.audio_tower, data["eval_sound"].inputs)
    import torch

    eval_shape_mask = [k == "shape" for k in data["eval_image"].kinds]
    seen_shapes = [i for i, (m, label) in enumerate(zip(eval_shape_mask, data["eval_image"].labels)) if m and label not in set(data["heldout_image"].labels)]
    metrics = {
        "image_heldout_combo_top1": _top1(heldout_img, data["heldout_image"].labels, shape_classes, texts),
        "image_heldout_combo_top1_heldout_wording": _top1(heldout_img, data["heldout_image"].labels, heldout_shape_classes, texts),
        "image_seen_combo_top1": _top1(eval_img[seen_shapes], [data["eval_image"].labels[i] for i in seen_shapes], shape_classes, texts),
        "image_classes": float(len(shape_classes)),
        "speech_heldout_voice_top1": _top1(speech_emb, data["heldout_speech"].labels, speech_classes, texts),
        "speech_heldout_voice_top1_heldout_wording": _top1(speech_emb, data["heldout_speech"].labels, speech_heldout_wording, texts),
        "speech_classes": float(len(speech_classes)),
        "sound_top1": _top1(sound_emb, data["eval_sound"].labels, sound_classes, texts),
    }
    # paraphrases: search the evaluation media of the query's modality
    pools = {
        "image": (torch.cat([eval_img, heldout_img]), data["eval_image"].labels + data["heldout_image"].labels),
        "audio": (torch.cat([speech_emb, sound_emb]), data["heldout_speech"].labels + data["eval_sound"].labels),
    }
    hits = []
    for modality, query, want in PARAPHRASE_QUERIES:
        emb, labels = pools[modality]
        scores = texts([query]) @ emb.T
        hits.append(_hit_at_5(scores, [set(want)], labels))
        if details is not None:
            top = [labels[j] for j in scores[0].topk(5).indices.tolist()]
            details.setdefault("paraphrases", []).append({"query": query, "want": list(want), "top5": top, "hit": bool(hits[-1])})
    metrics["paraphrase_top5"] = sum(hits) / len(hits)
    # cross-modal retrieval, class level: a hit when one of the top 5 items has the query's label
    img_items = data["eval_image"]
    metrics["text_to_image_r@5"] = _hit_at_5(texts(img_items.captions) @ eval_img.T, [{label} for label in img_items.labels], img_items.labels)
    audio_labels = data["heldout_speech"].labels + data["eval_sound"].labels
    audio_captions = data["heldout_speech"].captions + data["eval_sound"].captions
    audio_emb = torch.cat([speech_emb, sound_emb])
    metrics["text_to_audio_r@5"] = _hit_at_5(texts(audio_captions) @ audio_emb.T, [{label} for label in audio_labels], audio_labels)
    picture_label = {w: f"the word {w}" for w in pictures.WORDS} | {n: f"the number {n}" for n in pictures.DIGIT_NAMES}
    spoken = [i for i, w in enumerate(data["heldout_speech"].labels) if w in picture_label]
    metrics["audio_to_image_r@5"] = _hit_at_5(speech_emb[spoken] @ eval_img.T, [{picture_label[data["heldout_speech"].labels[i]]} for i in spoken], img_items.labels)
    return {k: round(float(v), 4) for k, v in metrics.items()}


def markdown_report(metrics: dict[str, float], untrained: dict[str, float], timings: dict[str, float], paraphrases: list[dict] | None = None) -> str:
    lines = ["# omnivec-mini bootstrap report", "", "| metric | trained | untrained |", "|---|---|---|"]
    lines += [f"| {k} | {v:.3f} | {untrained.get(k, float('nan')):.3f} |" for k, v in metrics.items()]
    lines += ["", "| stage | seconds |", "|---|---|"] + [f"| {k} | {v:.1f} |" for k, v in timings.items()]
    if paraphrases:
        lines += ["", "| paraphrase query | right class in top 5 | top 5 |", "|---|---|---|"]
        lines += [f"| {p['query']} | {'yes' if p['hit'] else 'no'} | {', '.join(p['top5'])} |" for p in paraphrases]
    return "\n".join(lines) + "\n"


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
