"""Scoring rules of zero-shot classification, the label cache, and the index/fetch settings."""

from __future__ import annotations

import numpy as np
import pytest

from omnivec.server.bundle import Scoring
from omnivec.server.index import open_store
from omnivec.server.services.zero_shot import LabelEmbeddingCache, check_templates, scores_from_cosine
from omnivec.server.settings import Settings

COS = np.array([[0.30, 0.25, 0.10], [0.05, 0.06, 0.07]])


def test_softmax_rows_sum_to_one():
    scores, rule = scores_from_cosine(COS, Scoring(kind="softmax", logit_scale=100.0), multi_label=False)
    assert rule == "softmax" and np.allclose(scores.sum(axis=1), 1) and scores[0].argmax() == 0
    logits = 100 * COS[1]
    assert np.allclose(scores[1], np.exp(logits) / np.exp(logits).sum())


def test_sigmoid_is_per_label_with_bias():
    scoring = Scoring(kind="sigmoid", logit_scale=10.0, logit_bias=-2.0)
    for multi in (False, True):
        scores, rule = scores_from_cosine(COS, scoring, multi_label=multi)
        assert rule == "sigmoid" and np.allclose(scores, 1 / (1 + np.exp(-(10 * COS - 2))))


def test_multi_label_on_softmax_compares_with_the_other_labels():
    scores, rule = scores_from_cosine(COS, Scoring(kind="softmax", logit_scale=100.0), multi_label=True)
    others = (0.25 + 0.10) / 2
    assert rule == "softmax-pairwise" and np.isclose(scores[0, 0], 1 / (1 + np.exp(-100 * (0.30 - others))))
    single, _ = scores_from_cosine(COS[:, :1], Scoring(kind="softmax", logit_scale=100.0), multi_label=True)
    assert np.allclose(single[:, 0], 1 / (1 + np.exp(-100 * COS[:, 0])))


def test_label_cache_is_lru():
    cache = LabelEmbeddingCache(max_entries=2)
    cache.put(("s", "{}", "a"), np.ones(2))
    cache.put(("s", "{}", "b"), np.ones(2))
    assert cache.get(("s", "{}", "a")) is not None  # a is now the most recent
    cache.put(("s", "{}", "c"), np.ones(2))
    assert cache.get(("s", "{}", "b")) is None and len(cache) == 2


def test_templates_are_checked_and_deduplicated():
    assert check_templates(None) is None and check_templates([]) is None
    assert check_templates(["a {}", "a {}", "b {}"]) == ["a {}", "b {}"]


def test_plain_qdrant_url_env_selects_qdrant(monkeypatch, tmp_path):
    monkeypatch.setenv("OMNIVEC_QDRANT_URL", ":memory:")
    settings = Settings()
    assert (settings.index.engine, settings.index.qdrant_url) == ("qdrant", ":memory:")
    store = open_store(settings)
    assert type(store).__name__ == "QdrantIndexStore"
    store.close()
    monkeypatch.setenv("OMNIVEC_INDEX__ENGINE", "edge")
    assert Settings().index.engine == "edge", "an explicit engine wins"
    monkeypatch.delenv("OMNIVEC_QDRANT_URL")
    monkeypatch.delenv("OMNIVEC_INDEX__ENGINE")
    monkeypatch.setenv("OMNIVEC_INDEX__QDRANT_URL", "http://qdrant:6333")
    assert Settings().index.engine == "qdrant"


def test_default_edge_store_lives_under_the_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("OMNIVEC_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("OMNIVEC_FETCH__ALLOW_PRIVATE", '["10.0.0.0/8", "images.internal"]')
    settings = Settings()
    assert settings.index.engine == "edge" and settings.index_dir == tmp_path / "index"
    assert settings.fetch.allow_private == ["10.0.0.0/8", "images.internal"]
    store = open_store(settings)
    try:
        assert (tmp_path / "index").is_dir()
    finally:
        store.close()


def test_qdrant_without_url_is_explained(monkeypatch):
    from omnivec.server.index import IndexStoreError

    monkeypatch.setenv("OMNIVEC_INDEX__ENGINE", "qdrant")
    with pytest.raises(IndexStoreError, match="OMNIVEC_QDRANT_URL"):
        open_store(Settings())
