"""`omnivec bootstrap`'s evaluation: zero-shot classification and retrieval on media the
towers never trained on, run before training (the baseline) and after."""

from __future__ import annotations

from typing import Any, Callable

from .bootstrap_data import Items, TextCache
from .corpora import pictures, speech
from .corpora.shapes import COLORS, SHAPES

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


def _pair_auc(scores: Any, targets: list[set[str]], labels: list[str]) -> float:
    """Per query, the share of (right, wrong) item pairs scored in the right order (ties half), averaged (0.5 = chance).

    Unlike top-5 hits it uses every item's rank, so one near-tie flipped by another CPU's rounding
    moves it by a pair, not by a whole query."""
    aucs = []
    for row, want in zip(scores, targets):
        right = [j for j, label in enumerate(labels) if label in want]
        wrong = [j for j, label in enumerate(labels) if label not in want]
        if right and wrong:
            diff = row[right][:, None] - row[wrong][None, :]
            aucs.append(((diff > 0).float() + 0.5 * (diff == 0).float()).mean().item())
    return sum(aucs) / max(1, len(aucs))


def _pooled(tower: Any, items: Items) -> Any:
    """One vector per item: windows of a long clip are averaged and renormalised, as the server does."""
    import torch

    emb = _embed(tower, items.inputs)
    if items.owner is None:
        return emb
    owner = torch.tensor(items.owner)
    sums = torch.zeros(len(items.labels), emb.shape[1]).index_add_(0, owner, emb)
    return torch.nn.functional.normalize(sums, dim=-1)


def _predict(media: Any, classes: dict[str, list[str]], texts: TextCache) -> list[str]:
    names = list(classes)
    return [names[p] for p in (media @ _class_embeddings(texts, classes).T).argmax(1).tolist()]


def _accuracy_by(rows: list[dict[str, str]], groups_of: Callable[[dict[str, str]], list[str]], right: list[bool]) -> dict[str, float]:
    """Top-1 per group; `groups_of(row)` names the groups a row counts in."""
    groups: dict[str, list[bool]] = {}
    for row, ok in zip(rows, right):
        for g in groups_of(row):
            groups.setdefault(g, []).append(ok)
    return {g: round(sum(v) / len(v), 4) for g, v in sorted(groups.items())}


def _style_groups(row: dict[str, str]) -> list[str]:
    """"bg=white stroke=filled layout=centred size=..." -> its background, stroke and layout."""
    return [part for part in row.get("style", "").split() if part.split("=")[0] in ("bg", "stroke", "layout")]


def _condition_group(row: dict[str, str]) -> list[str]:
    """"tape_speed x0.89" -> "tape_speed"."""
    return [(row.get("condition") or "?").split()[0]]


# The issue-13 check: plain shapes on white, four colours x three shapes, twelve labels.
PLAIN_TWELVE = [f"{c} {s}" for c in ("red", "green", "blue", "yellow") for s in ("circle", "square", "triangle")]


def style_metrics(model: Any, data: dict[str, Items], texts: TextCache, details: dict | None = None) -> dict[str, float]:
    """Generalisation across style: pictures and recordings from a second, independently written
    generator (styles, sizes, noises and voices training never used), all 64 shape classes and 43 words."""
    shape_classes = {f"{c} {s}": [t.format(color=c, shape=s) for t in SHAPE_PROMPTS] for c in COLORS for s in SHAPES}
    words = sorted(set(data["heldout_speech"].labels))
    speech_classes = {w: [t.format(w=w) for t in SPEECH_PROMPTS] for w in words}
    out: dict[str, float] = {}
    style, plain, spoken = data["style_image"], data["plain_white_image"], data["speech_conditions"]
    right = [p == t for p, t in zip(_predict(_embed(model.visual, style.inputs), shape_classes, texts), style.labels)]
    out["image_style_top1"] = sum(right) / max(1, len(right))
    style_groups = _accuracy_by(style.rows, _style_groups, right)
    plain_emb = _embed(model.visual, plain.inputs)
    plain_pred = _predict(plain_emb, shape_classes, texts)
    out["image_plain_white_top1"] = sum(p == t for p, t in zip(plain_pred, plain.labels)) / max(1, len(plain.labels))
    twelve = [i for i, label in enumerate(plain.labels) if label in PLAIN_TWELVE]
    twelve_classes = {k: shape_classes[k] for k in PLAIN_TWELVE}
    twelve_pred = _predict(plain_emb[twelve], twelve_classes, texts) if twelve else []
    out["image_plain_white_top1_12_labels"] = sum(p == plain.labels[i] for p, i in zip(twelve_pred, twelve)) / max(1, len(twelve))
    spoken_right = [p == t for p, t in zip(_predict(_pooled(model.audio_tower, spoken), speech_classes, texts), spoken.labels)]
    out["speech_conditions_top1"] = sum(spoken_right) / max(1, len(spoken_right))
    noisy = [ok for row, ok in zip(spoken.rows, spoken_right) if row.get("snr_db") not in (None, "", "None", "nan")]
    out["speech_conditions_top1_noisy"] = sum(noisy) / max(1, len(noisy))
    if details is not None:
        details["style_top1"] = style_groups
        details["condition_top1"] = _accuracy_by(spoken.rows, _condition_group, spoken_right)
        details["plain_white_mistakes"] = [f"{t} -> {p}" for p, t in zip(plain_pred, plain.labels) if p != t]
    return out


def evaluate_bootstrap(model: Any, data: dict[str, Items], texts: TextCache, details: dict | None = None) -> dict[str, float]:
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
    # paraphrases: search the evaluation media of the query's modality. The picture pool is the
    # evaluation set alone (eval_per_class per class, held-out pairs included): adding the training
    # corpus's held-out split made the pool, and so the figure, depend on per_combo.
    pools = {
        "image": (eval_img, data["eval_image"].labels),
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
    spoken_targets = [{picture_label[data["heldout_speech"].labels[i]]} for i in spoken]
    spoken_scores = speech_emb[spoken] @ eval_img.T
    metrics["audio_to_image_r@5"] = _hit_at_5(spoken_scores, spoken_targets, img_items.labels)
    metrics["audio_to_image_auc"] = _pair_auc(spoken_scores, spoken_targets, img_items.labels)
    metrics.update(style_metrics(model, data, texts, details))
    return {k: round(float(v), 4) for k, v in metrics.items()}


def bootstrap_report(metrics: dict[str, float], untrained: dict[str, float], timings: dict[str, float], details: dict | None = None) -> str:
    details = details or {}
    lines = ["# omnivec-mini bootstrap report", "", "| metric | trained | untrained |", "|---|---|---|"]
    lines += [f"| {k} | {v:.3f} | {untrained.get(k, float('nan')):.3f} |" for k, v in metrics.items()]
    lines += ["", "| stage | seconds |", "|---|---|"] + [f"| {k} | {v:.1f} |" for k, v in timings.items()]
    for key, title in (("style_top1", "held-out picture style"), ("condition_top1", "held-out audio condition")):
        if details.get(key):
            lines += ["", f"| {title} | top-1 |", "|---|---|"] + [f"| {g} | {v:.3f} |" for g, v in details[key].items()]
    if details.get("plain_white_mistakes"):
        lines += ["", "Plain shapes on white, mistakes (truth -> answer): " + ", ".join(details["plain_white_mistakes"])]
    paraphrases = details.get("paraphrases", [])
    if paraphrases:
        lines += ["", "| paraphrase query | right class in top 5 | top 5 |", "|---|---|---|"]
        lines += [f"| {p['query']} | {'yes' if p['hit'] else 'no'} | {', '.join(p['top5'])} |" for p in paraphrases]
    return "\n".join(lines) + "\n"
