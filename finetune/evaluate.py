"""Retrieval and zero-shot evaluation of a CLIP-style model on a validation split.

recall@k counts a hit when a retrieved item carries the same caption (media->text) or the
query's caption (text->media), so duplicate captions (class-folder data) are not penalised.
Media are images or audio clips; metric names carry the modality (image_to_text_r@1, ...).
Alignment and uniformity follow Wang & Isola (2020): lower is better for both.
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


def zero_shot_accuracy(encode_text: Callable, media_emb: np.ndarray, labels: list[str], templates: list[str], tokenizer: Callable) -> float:
    """Top-1 accuracy of classifying each item among all label names (prompt-ensembled)."""
    import torch

    classes = sorted(set(labels))
    with torch.no_grad():
        weights = []
        for name in classes:
            emb = torch.nn.functional.normalize(encode_text(tokenizer([t.format(name) for t in templates])).float(), dim=-1)
            weights.append(torch.nn.functional.normalize(emb.mean(0), dim=0).numpy())
    predicted = np.argmax(media_emb @ np.stack(weights).T, axis=1)
    truth = np.array([classes.index(label) for label in labels])
    return float(np.mean(predicted == truth))


def evaluate(model: Any, dataset: Any, templates: list[str], tokenizer: Callable, modality: str = "image") -> dict[str, float]:
    model.eval()
    encode_media = model.encode_image if modality == "image" else model.encode_audio
    media_emb, text_emb = embed_pairs(encode_media, model.encode_text, dataset)
    pairs = dataset.pairs
    metrics = recall_at_k(media_emb, text_emb, [p.caption for p in pairs], modality)
    metrics.update(alignment_uniformity(media_emb, text_emb, modality))
    labels = [p.label for p in pairs]
    if all(labels):
        metrics["zero_shot_top1"] = zero_shot_accuracy(model.encode_text, media_emb, labels, templates, tokenizer)  # type: ignore[arg-type]
    return metrics


def markdown_report(history: list[dict[str, Any]]) -> str:
    keys = [k for k in history[0]["metrics"]]
    lines = ["| epoch | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for row in history:
        lines.append(f"| {row['epoch']} | " + " | ".join(f"{row['metrics'][k]:.4f}" for k in keys) + " |")
    return "# Fine-tune evaluation\n\nEpoch 0 is the starting point, before training.\n\n" + "\n".join(lines) + "\n"
