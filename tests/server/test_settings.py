"""Thread defaults: concurrent model calls share the cores instead of oversubscribing them."""

from __future__ import annotations

from omnivec.server.settings import Settings, default_threads


def test_model_threads_default_is_a_fair_share(monkeypatch):
    monkeypatch.delenv("OMNIVEC_MODEL__INTRA_OP_THREADS", raising=False)
    settings = Settings()
    assert settings.model.intra_op_threads is None
    assert settings.model_threads() == max(1, default_threads() // settings.server.inference_threads)
    settings.server.inference_threads = 64
    assert settings.model_threads() == 1


def test_explicit_threads_win(monkeypatch):
    monkeypatch.setenv("OMNIVEC_MODEL__INTRA_OP_THREADS", "3")
    assert Settings().model_threads() == 3
