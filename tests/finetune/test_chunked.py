"""GradCache-style chunked step == full-batch step (dropout replayed identically)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import omnivec.finetune.chunked as chunked
from omnivec.finetune.chunked import chunked_backward, split_batch
from omnivec.finetune.losses import tiled_clip_loss, tiled_siglip_loss

torch.set_num_threads(1)
TOL = dict(rtol=1e-10, atol=1e-12)
B, CHUNK = 10, 3  # ragged last chunk


class Tower(nn.Module):
    def __init__(self, d_in: int, p: float = 0.3) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_in, 16), nn.GELU(), nn.Dropout(p), nn.Linear(16, 8), nn.Dropout(p))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is not None:
            x = x * mask
        return self.net(x)


class DualEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.img = Tower(12)
        self.txt = Tower(9)
        self.logit_scale = nn.Parameter(torch.tensor(2.3))
        self.logit_bias = nn.Parameter(torch.tensor(-1.0))


def _setup():
    torch.manual_seed(0)
    model = DualEncoder().double()
    x_img = torch.randn(B, 12, dtype=torch.float64)
    x_txt = torch.randn(B, 9, dtype=torch.float64)
    return model, x_img, x_txt


def _loss_fn(model):
    def loss_fn(i, t):
        i, t = F.normalize(i, dim=-1), F.normalize(t, dim=-1)
        s = model.logit_scale.exp()
        return tiled_clip_loss(i, t, s, tile_size=4) + tiled_siglip_loss(i, t, s, model.logit_bias, tile_size=4)

    return loss_fn


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def _direct_step(model, x_img, x_txt, seed):
    """Plain autograd over the whole batch, drawing dropout masks chunk by chunk in the
    same order as the chunked step (so both see identical masks)."""
    model.zero_grad()
    torch.manual_seed(seed)
    ei = torch.cat([model.img(c) for c in x_img.split(CHUNK)])
    et = torch.cat([model.txt(c) for c in x_txt.split(CHUNK)])
    loss = _loss_fn(model)(ei, et)
    loss.backward()
    return loss.detach(), _grads(model)


def _chunked_step(model, x_img, x_txt, seed):
    model.zero_grad()
    torch.manual_seed(seed)
    loss = chunked_backward((model.img, model.txt), (x_img, x_txt), _loss_fn(model), CHUNK)
    return loss, _grads(model)


def test_chunked_equals_direct_with_dropout():
    model, x_img, x_txt = _setup()
    model.train()
    loss_d, g_d = _direct_step(model, x_img, x_txt, seed=42)
    loss_c, g_c = _chunked_step(model, x_img, x_txt, seed=42)
    torch.testing.assert_close(loss_c, loss_d, **TOL)
    assert g_c.keys() == g_d.keys()
    for name in g_d:
        torch.testing.assert_close(g_c[name], g_d[name], **TOL, msg=lambda m, n=name: f"{n}: {m}")
    # dropout really is active: another seed gives other gradients
    _, g_other = _direct_step(model, x_img, x_txt, seed=43)
    assert not torch.allclose(g_other["img.net.0.weight"], g_d["img.net.0.weight"])


def test_without_rng_replay_gradients_differ(monkeypatch):
    """The replay is what makes the second pass match: disable it and the test above would fail."""

    class NoReplay:
        def __init__(self, *tensors, devices=()):
            pass

        def __enter__(self):
            return None

        def __exit__(self, *exc):
            return None

    model, x_img, x_txt = _setup()
    _, g_d = _direct_step(model, x_img, x_txt, seed=42)
    monkeypatch.setattr(chunked, "RandContext", NoReplay)
    _, g_c = _chunked_step(model, x_img, x_txt, seed=42)
    assert not torch.allclose(g_c["img.net.0.weight"], g_d["img.net.0.weight"])


def test_chunked_equals_single_call_full_batch_in_eval():
    model, x_img, x_txt = _setup()
    model.eval()  # no dropout: the direct step is one full-batch call per tower
    model.zero_grad()
    loss_d = _loss_fn(model)(model.img(x_img), model.txt(x_txt))
    loss_d.backward()
    g_d = _grads(model)
    loss_c, g_c = _chunked_step(model, x_img, x_txt, seed=0)
    torch.testing.assert_close(loss_c, loss_d.detach(), **TOL)
    for name in g_d:
        torch.testing.assert_close(g_c[name], g_d[name], **TOL)


def test_shared_encoder_with_mapping_batches():
    torch.manual_seed(1)
    enc = Tower(9).double().train()
    scale = torch.tensor(5.0, dtype=torch.float64, requires_grad=True)
    q = {"x": torch.randn(B, 9, dtype=torch.float64), "mask": (torch.rand(B, 9) > 0.2).double()}
    d = {"x": torch.randn(B, 9, dtype=torch.float64), "mask": torch.ones(B, 9, dtype=torch.float64)}

    def loss_fn(a, b):
        return tiled_clip_loss(F.normalize(a, dim=-1), F.normalize(b, dim=-1), scale, tile_size=4)

    torch.manual_seed(7)
    emb = [torch.cat([enc(**c) for c in split_batch(batch, CHUNK)]) for batch in (q, d)]
    loss_fn(*emb).backward()
    want = {n: p.grad.clone() for n, p in enc.named_parameters()}
    want_scale = scale.grad.clone()
    enc.zero_grad()
    scale.grad = None

    torch.manual_seed(7)
    chunked_backward(enc, [q, d], loss_fn, CHUNK)
    for n, p in enc.named_parameters():
        torch.testing.assert_close(p.grad, want[n], **TOL)
    torch.testing.assert_close(scale.grad, want_scale, **TOL)


def test_rng_stream_not_rewound():
    model, x_img, x_txt = _setup()
    torch.manual_seed(5)
    chunked_backward((model.img, model.txt), (x_img, x_txt), _loss_fn(model), CHUNK)
    after_chunked = torch.rand(3)
    torch.manual_seed(5)
    with torch.no_grad():
        for c in x_img.split(CHUNK):
            model.img(c)
        for c in x_txt.split(CHUNK):
            model.txt(c)
    assert torch.equal(after_chunked, torch.rand(3))


def test_bad_chunk_size():
    model, x_img, x_txt = _setup()
    with pytest.raises(ValueError):
        chunked_backward((model.img, model.txt), (x_img, x_txt), _loss_fn(model), 0)


def _no_dropout(model: nn.Module) -> None:
    """Dropout off (its replay is tested above) so that one full-batch call is the reference."""
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
        if hasattr(m, "dropout_prob"):
            m.dropout_prob = 0.0
        if hasattr(m, "config") and hasattr(m.config, "attention_probs_dropout_prob"):
            m.config.attention_probs_dropout_prob = 0.0
            m.config.hidden_dropout_prob = 0.0


def _shipped_towers():
    from omnivec.model_export.loader import load_model

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(3)
    b = 5
    for name in ("omnivec-mini", "omnivec-tiny-audio"):
        loaded = load_model(name, "none")
        model = loaded.model.double()
        _no_dropout(model)
        size = loaded.preprocess_cfg["size"]
        yield f"{name}:image", model, model.encode_image, torch.randn(b, 3, *size, generator=g, dtype=torch.float64)
        yield f"{name}:text", model, model.encode_text, loaded.tokenizer(["a red circle", "a blue square on grey", "two", "a dog barks", "a siren"])
        if hasattr(model, "audio_tower"):
            samples = model.audio_tower.cfg.clip_samples
            yield f"{name}:audio", model, model.encode_audio, 3000 * torch.randn(b, samples, generator=g, dtype=torch.float64)


def test_chunked_equals_full_batch_for_every_shipped_tower():
    """Item 5: with the towers' norm layers (GroupNorm/LayerNorm) a chunked step equals one
    full-batch call in training mode, to fp64 tolerance; BatchNorm made them differ."""
    for name, model, encode, inputs in _shipped_towers():
        model.train()  # plain training mode: the norm layers themselves must be batch-independent
        g = torch.Generator().manual_seed(4)
        with torch.no_grad():
            dim = encode(inputs[:1]).shape[1]
        targets = F.normalize(torch.randn(inputs.shape[0], dim, generator=g, dtype=torch.float64), dim=-1)

        def loss_fn(e):
            return tiled_clip_loss(F.normalize(e, dim=-1), targets, 10.0, tile_size=2)

        model.zero_grad()
        loss_fn(encode(inputs)).backward()
        want = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        model.zero_grad()
        chunked_backward(encode, [inputs], loss_fn, 2)
        got = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        assert got.keys() == want.keys() and want, name
        for n in want:
            torch.testing.assert_close(got[n], want[n], rtol=1e-9, atol=1e-11, msg=lambda m, n=n: f"{name} {n}: {m}")
