"""`omnivec bootstrap`'s data: the synthetic corpora on disk, decoded once into tensors, and
the locked text tower's caption embeddings, computed once per distinct text."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from . import corpora as _corpora
from .corpora import pictures, sounds, speech
from .data import read_manifest

if TYPE_CHECKING:
    from .bootstrap import BootstrapConfig

# bump when the same settings would build a different model: another design, corpus or training
# recipe. Not for float rounding alone (another CPU, or the channels-last kernels): a cached build
# is then as good as a new one, and a rebuild costs the user ~10 minutes for nothing.
FORMAT_VERSION = 6


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


def training_voices(seed: int) -> tuple[str, ...]:
    """The espeak-ng voices the speech corpus trains on for `seed` (its held-out voices are the rest)."""
    return tuple(speech.split_voices(seed)[0])


TRAINING_VOICES = training_voices(0)  # the default build's; held-out audio conditions never use them


def _records_manifest(folder: Path, records: list[dict], media: str, caption: Callable[[dict], str], label: str) -> Path:
    """A manifest.csv for an independent generator's records (paths relative to `folder`)."""
    extra = sorted({k for r in records for k in r} - {"path"})
    rows = [{media: r["path"], "caption": caption(r), "label": r[label], **{k: str(r.get(k, "")) for k in extra}} for r in records]
    return _corpora.write_manifest(folder, rows, [media, "caption", "label", *[k for k in extra if k not in ("caption", "label")]])


def _heldout_jobs(config: BootstrapConfig) -> dict[str, Callable[[Path], Path]]:
    """Evaluation sets from an independently written second generator (`heldout_style`,
    `heldout_audio`): drawing code, backgrounds, sizes, noises and voices the training corpora never use."""
    from .corpora import heldout_audio, heldout_style

    seed = config.seed + 2000
    shape_caption = lambda r: f"a {r['label']}"  # noqa: E731
    return {
        "style_pictures": lambda d: _records_manifest(d, heldout_style.render_style_set(d, seed, per_class=config.style_per_class), "image", shape_caption, "label"),
        "plain_white_pictures": lambda d: _records_manifest(d, heldout_style.render_plain_white_set(d, seed, per_class=1), "image", shape_caption, "label"),
        "speech_conditions": lambda d: _records_manifest(
            d, heldout_audio.render_audio_conditions(d, seed, exclude_voices=list(training_voices(config.seed)), per_word=config.conditions_per_word),
            "audio", lambda r: f"someone saying {r['word']}", "word",
        ),
    }


def generate_corpora(config: BootstrapConfig, root: Path, progress: bool) -> dict[str, Path]:
    """Training and evaluation corpora; each is reused if a previous run wrote it with the same key."""
    seed, eval_seed = config.seed, config.seed + 1000
    jobs: dict[str, Callable[[Path], Path]] = {
        "pictures": lambda d: pictures.generate(d, per_combo=config.per_combo, per_word=config.per_word_picture, seed=seed, progress=_bar(progress, "pictures")).manifest,
        "pictures_eval": lambda d: pictures.generate(d, per_combo=config.eval_per_class, per_word=config.eval_per_class, seed=eval_seed, progress=_bar(progress, "eval pictures")).manifest,
        "speech": lambda d: speech.generate(d, per_word=config.per_word_speech, seed=seed, split_seed=seed, progress=_bar(progress, "spoken words")),
        "sounds": lambda d: sounds.generate(d, per_class=config.per_sound, seed=seed, classes=sounds.kinds(extended=True)),
        "sounds_eval": lambda d: sounds.generate(d, per_class=config.eval_per_class, seed=eval_seed, classes=sounds.kinds(extended=True)),
        **_heldout_jobs(config),
    }
    sizes = [config.per_combo, config.per_word_picture, config.per_word_speech, config.per_sound, config.eval_per_class, config.style_per_class, config.conditions_per_word]
    manifests = {}
    for name, make in jobs.items():
        folder = root / name
        # corpora depend on the seed and sizes only: changing step counts reuses them
        key = json.dumps({"v": FORMAT_VERSION, "corpus": name, "seed": config.seed, "sizes": sizes})
        if (folder / "manifest.csv").is_file() and (folder / ".key").is_file() and (folder / ".key").read_text() == key:
            manifests[name] = folder / "manifest.csv"
            continue
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        manifests[name] = make(folder)
        (folder / ".key").write_text(key)
    return manifests


@dataclass
class Items:
    """Decoded media of one modality with their labels and captions. Audio longer than one tower
    window is split as the server splits it: `owner[k]` is the item that window k belongs to."""

    inputs: Any  # torch.Tensor (N, ...)
    labels: list[str]
    captions: list[str]
    kinds: list[str]
    rows: list[dict[str, str]] = field(default_factory=list)  # the manifest rows, for per-style figures
    owner: list[int] | None = None


def decode(corpora: dict[str, Path], loaded: Any, say: Callable[[str], None]) -> dict[str, Items]:
    """Decode every picture and clip once, through the server's own preprocessing."""
    import numpy as np
    import torch

    from omnivec.model_export.export import audio_spec, image_spec
    from omnivec.server.preprocess.audio import decode_audio, resample, split_windows
    from omnivec.server.preprocess.image import preprocess_image

    from .data import audio_loader

    say("decoding media")
    spec, sound_spec = image_spec(loaded), audio_spec(loaded)
    load_audio = audio_loader(sound_spec, random_crop=False)

    def images(rows: list[dict[str, str]], root: Path) -> Items:
        # decoded straight into one array: a list then np.stack would hold the ~1 GiB training set twice
        pixels = np.empty((len(rows), 3, *spec.size), np.float32)
        for i, r in enumerate(rows):
            pixels[i] = preprocess_image((root / r["image"]).read_bytes(), spec, max_pixels=1 << 22)
        return Items(torch.from_numpy(pixels), [r["label"] for r in rows], [r["caption"] for r in rows], [r.get("kind", "shape") for r in rows], rows)

    def audio(rows: list[dict[str, str]], root: Path, kind: str) -> Items:
        return Items(torch.stack([load_audio(root / r["audio"]) for r in rows]), [r["label"] for r in rows], [r["caption"] for r in rows], [kind] * len(rows), rows)

    def windowed(rows: list[dict[str, str]], root: Path) -> Items:
        """Every window of every clip, as the server embeds a long recording."""
        windows, owner = [], []
        for i, r in enumerate(rows):
            samples, rate = decode_audio((root / r["audio"]).read_bytes(), max_seconds=sound_spec.max_seconds, label=r["audio"])
            parts = split_windows(resample(samples, rate, sound_spec.sample_rate), sound_spec).windows
            windows.append(torch.from_numpy(parts.copy()))
            owner += [i] * len(parts)
        return Items(torch.cat(windows), [r["label"] for r in rows], [r["caption"] for r in rows], ["speech"] * len(rows), rows, owner)

    def join(a: Items, b: Items) -> Items:
        return Items(torch.cat([a.inputs, b.inputs]), a.labels + b.labels, a.captions + b.captions, a.kinds + b.kinds, a.rows + b.rows)

    pics = read_manifest(corpora["pictures"])
    speech_rows = read_manifest(corpora["speech"])
    root = {k: v.parent for k, v in corpora.items()}
    return {
        "train_image": images([r for r in pics if r["split"] == "train"], root["pictures"]),
        "heldout_image": images([r for r in pics if r["split"] != "train"], root["pictures"]),
        "eval_image": images(read_manifest(corpora["pictures_eval"]), root["pictures_eval"]),
        "style_image": images(read_manifest(corpora["style_pictures"]), root["style_pictures"]),
        "plain_white_image": images(read_manifest(corpora["plain_white_pictures"]), root["plain_white_pictures"]),
        "train_audio": join(
            audio([r for r in speech_rows if r["split"] == "train"], root["speech"], "speech"),
            audio(read_manifest(corpora["sounds"]), root["sounds"], "sound"),
        ),
        "heldout_speech": audio([r for r in speech_rows if r["split"] != "train"], root["speech"], "speech"),
        "speech_conditions": windowed(read_manifest(corpora["speech_conditions"]), root["speech_conditions"]),
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
