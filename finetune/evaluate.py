"""Retrieval and zero-shot evaluation of a CLIP-style model on a validation split.

recall@k counts a hit when a retrieved item carries the same caption (media->text) or the
query's caption (text->media), so duplicate captions (class-folder data) are not penalised.
Media are images or audio clips; metric names carry the modality (image_to_text_r@1, ...).
Alignment and uniformity follow Wang & Isola (2020): lower is better for both.
With nested dimensions (Matryoshka), recall@k and zero-shot accuracy are also reported for
each prefix length d, on the first d coordinates renormalised (keys prefixed ``d{d}/``), which
is what a server truncating vectors to d would compute.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

KS = (1, 5, 10)


def embed_pairs(encode_media: Callable, encode_text: Callable, dataset: Any, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    import torch

    media, texts = [], []
    with torch.no_grad():
        for start in range(0, len(dataset), batch_size):
            items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            m = torch.stack([it[0] for it in items])
            txt = torch.stack([it[1] for it in items])
            media.append(torch.nn.functional.normalize(encode_media(m).float(), dim=-1).numpy())
            texts.append(torch.nn.functional.normalize(encode_text(txt).float(), dim=-1).numpy())
    return np.concatenate(media), np.concatenate(texts)


def recall_at_k(media_emb: np.ndarray, text_emb: np.ndarray, captions: list[str], modality: str = "image") -> dict[str, float]:
    sims = media_emb @ text_emb.T
    caption_ids = np.unique(np.asarray(captions), return_inverse=True)[1]
    out: dict[str, float] = {}
    for k in KS:
        kk = min(k, sims.shape[1])
        top_texts = np.argsort(-sims, axis=1)[:, :kk]
        out[f"{modality}_to_text_r@{k}"] = float(np.mean([(caption_ids[row] == caption_ids[i]).any() for i, row in enumerate(top_texts)]))
        top_media = np.argsort(-sims.T, axis=1)[:, :kk]
        out[f"text_to_{modality}_r@{k}"] = float(np.mean([(caption_ids[row] == caption_ids[i]).any() for i, row in enumerate(top_media)]))
    return out


def alignment_uniformity(media_emb: np.ndarray, text_emb: np.ndarray, modality: str = "image", max_points: int = 2000) -> dict[str, float]:
    align = float(np.mean(np.sum((media_emb - text_emb) ** 2, axis=1)))

    def uniformity(x: np.ndarray) -> float:
        x = x[:max_points]
        sq = np.sum(x**2, 1)[:, None] + np.sum(x**2, 1)[None, :] - 2 * x @ x.T
        iu = np.triu_indices(len(x), k=1)
        return float(np.log(np.mean(np.exp(-2 * np.maximum(sq[iu], 0))))) if len(iu[0]) else 0.0

    return {"alignment": align, f"uniformity_{modality}": uniformity(media_emb), "uniformity_text": uniformity(text_emb)}


def truncate(emb: np.ndarray, dim: int) -> np.ndarray:
    """The first ``dim`` coordinates, renormalised to unit length."""
    head = emb[..., :dim]
    return head / np.maximum(np.linalg.norm(head, axis=-1, keepdims=True), 1e-12)


def zero_shot_accuracy(
    encode_text: Callable, media_emb: np.ndarray, labels: list[str], templates: list[str], tokenizer: Callable, dim: int | None = None
) -> float:
    """Top-1 accuracy of classifying each item among all label names (prompt-ensembled),
    on the first ``dim`` coordinates (all when None)."""
    import torch

    classes = sorted(set(labels))
    dim = dim or media_emb.shape[1]
    with torch.no_grad():
        weights = []
        for name in classes:
            emb = truncate(encode_text(tokenizer([t.format(name) for t in templates])).float().numpy(), dim)
            weights.append(truncate(emb.mean(0), dim))
    predicted = np.argmax(truncate(media_emb, dim) @ np.stack(weights).T, axis=1)
    truth = np.array([classes.index(label) for label in labels])
    return float(np.mean(predicted == truth))


def evaluate(
    model: Any, dataset: Any, templates: list[str], tokenizer: Callable, modality: str = "image", nested_dims: list[int] | None = None
) -> dict[str, float]:
    """Full-dimension metrics, plus ``d{d}/...`` recall@k and zero-shot for each nested dim below the full one."""
    model.eval()
    device = next(model.parameters()).device
    media_fn = model.encode_image if modality == "image" else model.encode_audio

    def on_device(fn: Callable) -> Callable:
        return lambda x: fn(x.to(device)).cpu()

    encode_media, encode_text = on_device(media_fn), on_device(model.encode_text)
    media_emb, text_emb = embed_pairs(encode_media, encode_text, dataset)
    pairs = dataset.pairs
    metrics = recall_at_k(media_emb, text_emb, [p.caption for p in pairs], modality)
    metrics.update(alignment_uniformity(media_emb, text_emb, modality))
    labels = [p.label for p in pairs]
    if all(labels):
        metrics["zero_shot_top1"] = zero_shot_accuracy(encode_text, media_emb, labels, templates, tokenizer)  # type: ignore[arg-type]
    for dim in nested_dims or []:
        if dim >= media_emb.shape[1]:
            continue
        head = recall_at_k(truncate(media_emb, dim), truncate(text_emb, dim), [p.caption for p in pairs], modality)
        if all(labels):
            head["zero_shot_top1"] = zero_shot_accuracy(encode_text, media_emb, labels, templates, tokenizer, dim)  # type: ignore[arg-type]
        metrics.update({f"d{dim}/{k}": v for k, v in head.items()})
    return metrics


def markdown_report(history: list[dict[str, Any]], choices: dict[str, Any] | None = None) -> str:
    """The report: the training choices, metrics per epoch, and per nested dimension (last epoch)."""
    keys = [k for k in history[0]["metrics"] if "/" not in k]
    lines = ["| epoch | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for row in history:
        lines.append(f"| {row['epoch']} | " + " | ".join(f"{row['metrics'][k]:.4f}" for k in keys) + " |")
    text = "# Fine-tune evaluation\n\n"
    if choices:
        text += "## Choices\n\n" + "\n".join(f"- **{k}**: {v}" for k, v in choices.items()) + "\n\n## Metrics\n\n"
    text += "Epoch 0 is the starting point, before training.\n\n" + "\n".join(lines) + "\n"
    last = history[-1]["metrics"]
    dims = sorted({int(k.split("/")[0][1:]) for k in last if "/" in k})
    if dims:
        cols = [k for k in keys if "r@" in k or k == "zero_shot_top1"]
        table = ["| dim | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
        for dim in dims:
            table.append(f"| {dim} | " + " | ".join(f"{last.get(f'd{dim}/{k}', float('nan')):.4f}" for k in cols) + " |")
        table.append("| full | " + " | ".join(f"{last[k]:.4f}" for k in cols) + " |")
        text += f"\n## Per dimension (epoch {history[-1]['epoch']})\n\nEach prefix renormalised, as a server truncating vectors would score it.\n\n" + "\n".join(table) + "\n"
    return text
