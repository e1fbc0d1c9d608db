"""Tiled CLIP/SigLIP losses vs the full-matrix references and open_clip."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss, SigLipLoss

from omnivec.finetune.losses import full_clip_loss, full_siglip_loss, tiled_clip_loss, tiled_siglip_loss

torch.set_num_threads(1)

TOL = {torch.float64: dict(rtol=1e-10, atol=1e-10), torch.float32: dict(rtol=1e-5, atol=1e-6)}
D = 16
HEADROOM = 8  # a few roundings per term, for both the implementation and the reference


def error_bounds(leaves, dtype: torch.dtype, tile: int, labels: torch.Tensor | None = None) -> list[float]:
    """Absolute error bounds for (loss, d_image, d_text, d_scale, d_bias), from dtype and problem size.

    Why this form: a logit of size M carries an error of M * eps, which exp/log-sum-exp pass on
    to every softmax (or sigmoid) entry; the log-sum-exp over B terms adds log2(B) roundings and
    the sequential accumulation over ceil(B / tile) tiles adds one rounding per tile (worst case).
    Gradients are those relative errors times the size of their terms: d_image_i =
    scale / B * sum_j G_ij text_j with sum_j |G_ij| = O(1), d_scale = sum G_ij <i, t> / B.
    With labels a row has |P(i)| positives, each contributing a gradient term of size up to 1
    (sigmoid), so row gradients scale with max |P(i)| and scalar ones with sum |P(i)| / B.
    The loss also sums one partial per tile, ceil(B / tile)^2 of them, in an fp64 running total.
    Nothing here depends on the machine (AVX2 and AVX-512 sum in different orders).
    """
    img, txt, scale = (x.detach().double() for x in leaves[:3])
    bias = abs(leaves[3].item()) if len(leaves) > 3 else 0.0
    b = img.shape[0]
    qn, kn = img.norm(dim=1).max().item(), txt.norm(dim=1).max().item()
    s = abs(scale.item())
    logit = s * qn * kn + bias
    rel = HEADROOM * torch.finfo(dtype).eps * (logit + math.log2(b) + 1 + math.ceil(b / tile))
    per_row = (labels[:, None] == labels[None, :]).sum(dim=1).double() if labels is not None else torch.ones(b)
    row, mean = per_row.max().item(), per_row.mean().item()
    tiles = math.ceil(b / tile) ** 2
    loss = rel * max(1.0, logit) + HEADROOM * torch.finfo(torch.float64).eps * tiles * logit
    return [loss, rel * row * s * kn / b, rel * row * s * qn / b, rel * mean * qn * kn, rel * mean]


def assert_within(got, want, bounds) -> None:
    """``got`` (any dtype) against ``want`` (fp64 ground truth), tensor by tensor."""
    (gl, gg), (wl, wg) = got, want
    for name, a, w, bound in zip(("loss", "d_image", "d_text", "d_scale", "d_bias"), [gl, *gg], [wl, *wg], bounds):
        err = (a.double() - w.double()).abs().max().item()
        assert err <= bound, f"{name}: max error {err:.3g} > bound {bound:.3g}"


def fp64_truth(full, leaves, **kw):
    """The reference loss and gradients in fp64 on exactly the (possibly rounded) input values."""
    up = [x.detach().double().requires_grad_() for x in leaves]
    return run(lambda *a: full(*a, **kw), up)


def make_inputs(b: int, dtype: torch.dtype, seed: int = 0, scale: float = 1 / 0.07, bias: float = -10.0, norm: bool = True):
    g = torch.Generator().manual_seed(seed)
    img = torch.randn(b, D, generator=g, dtype=torch.float64)
    txt = 0.6 * img + 0.8 * torch.randn(b, D, generator=g, dtype=torch.float64)  # correlated pairs
    if norm:
        img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
    leaves = [
        img.to(dtype).requires_grad_(),
        txt.to(dtype).requires_grad_(),
        torch.tensor(scale, dtype=dtype, requires_grad=True),
        torch.tensor(bias, dtype=dtype, requires_grad=True),
    ]
    return leaves


def run(fn, leaves):
    loss = fn(*leaves)
    grads = torch.autograd.grad(loss, leaves)
    return loss.detach(), grads


def assert_close(got, want, **tol):
    (gl, gg), (wl, wg) = got, want
    torch.testing.assert_close(gl, wl, **tol, msg=lambda m: f"loss: {m}")
    for name, a, b in zip(("image", "text", "scale", "bias"), gg, wg):
        torch.testing.assert_close(a, b, **tol, msg=lambda m, n=name: f"d_{n}: {m}")


def _tile_cases():
    cases = []
    for b in (1, 2, 7, 257, 1000):
        for t in sorted({1, 3, 64, b - 1, b, b + 5, 2 * b + 1}):
            if t < 1 or (b == 1000 and t == 1):  # 10^6 Python-level tiles: too slow for the suite
                continue
            cases.append((b, t))
    return cases


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("b,tile", _tile_cases(), ids=lambda v: str(v))
def test_clip_matches_full_reference(b, tile, dtype):
    leaves = make_inputs(b, dtype, seed=b)[:3]
    got = run(lambda i, t, s: tiled_clip_loss(i, t, s, tile_size=tile), leaves)
    assert_within(got, fp64_truth(full_clip_loss, leaves), error_bounds(leaves, dtype, tile))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("b,tile", _tile_cases(), ids=lambda v: str(v))
def test_siglip_matches_full_reference(b, tile, dtype):
    leaves = make_inputs(b, dtype, seed=b + 1)
    got = run(lambda i, t, s, c: tiled_siglip_loss(i, t, s, c, tile_size=tile), leaves)
    assert_within(got, fp64_truth(full_siglip_loss, leaves), error_bounds(leaves, dtype, tile))


def _label_cases():
    # every tile shape on small batches; a few on larger ones (tile 1 at B=257 is 66k Python-level tiles)
    return [(b, t) for b, t in _tile_cases() if b in (1, 2, 7) or (b == 257 and t in (3, 64, 257)) or (b == 1000 and t == 64)]


def _labels(b: int, pattern: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(b)
    if pattern == "repeats":  # classes of uneven size, shuffled, with gaps and negative ids
        return torch.randint(-3, max(2, b // 4), (b,), generator=g) * 7
    if pattern == "one_class":
        return torch.full((b,), 5)
    return torch.randperm(b, generator=g)  # all distinct


@pytest.mark.parametrize("pattern", ["repeats", "one_class", "distinct"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("b,tile", _label_cases(), ids=lambda v: str(v))
def test_labels_match_full_reference(b, tile, dtype, pattern):
    """Labels as positives: the tiled kernels (tile-wise masks, never B x B) equal the
    definition written out on the full matrix, for both losses."""
    labels = _labels(b, pattern)
    leaves = make_inputs(b, dtype, seed=b + 2)
    got = run(lambda i, t, s: tiled_clip_loss(i, t, s, tile_size=tile, labels=labels), leaves[:3])
    assert_within(got, fp64_truth(full_clip_loss, leaves[:3], labels=labels), error_bounds(leaves[:3], dtype, tile, labels))
    got = run(lambda i, t, s, c: tiled_siglip_loss(i, t, s, c, tile_size=tile, labels=labels), leaves)
    assert_within(got, fp64_truth(full_siglip_loss, leaves, labels=labels), error_bounds(leaves, dtype, tile, labels))


def test_label_reference_follows_the_definition():
    """The reference itself, term by term as the issue defines it, on a tiny batch."""
    leaves = make_inputs(5, torch.float64, seed=21)
    img, txt, s, c = (x.detach() for x in leaves)
    labels = torch.tensor([3, 1, 3, 3, 9])
    logits = s * img @ txt.T
    rows = [-sum(torch.log_softmax(logits[i], 0)[j] for j in range(5) if labels[j] == labels[i]) / int((labels == labels[i]).sum()) for i in range(5)]
    cols = [-sum(torch.log_softmax(logits[:, j], 0)[i] for i in range(5) if labels[i] == labels[j]) / int((labels == labels[j]).sum()) for j in range(5)]
    want = (torch.stack(rows).mean() + torch.stack(cols).mean()) / 2
    torch.testing.assert_close(full_clip_loss(img, txt, s, labels=labels), want, **TOL[torch.float64])
    z = torch.tensor([[1.0 if labels[i] == labels[j] else -1.0 for j in range(5)] for i in range(5)], dtype=torch.float64)
    want = -F.logsigmoid(z * (logits + c)).sum() / 5
    torch.testing.assert_close(full_siglip_loss(img, txt, s, c, labels=labels), want, **TOL[torch.float64])
    # all labels distinct: exactly the one-positive-per-row losses
    distinct = torch.tensor([4, 0, 2, 1, 3])
    torch.testing.assert_close(tiled_clip_loss(img, txt, s, tile_size=2, labels=distinct), full_clip_loss(img, txt, s), **TOL[torch.float64])
    torch.testing.assert_close(tiled_siglip_loss(img, txt, s, c, tile_size=2, labels=distinct), full_siglip_loss(img, txt, s, c), **TOL[torch.float64])


def test_gradcheck_with_labels():
    leaves = make_inputs(6, torch.float64, seed=13, scale=2.5, bias=-1.0)
    labels = torch.tensor([0, 1, 0, 2, 1, 0])
    assert torch.autograd.gradcheck(lambda i, t, s: tiled_clip_loss(i, t, s, tile_size=4, labels=labels), leaves[:3])
    assert torch.autograd.gradcheck(lambda i, t, s, c: tiled_siglip_loss(i, t, s, c, tile_size=4, labels=labels), leaves)


def test_rejects_bad_labels():
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match="length 4"):
        tiled_clip_loss(x, x, 1.0, labels=torch.zeros(3, dtype=torch.long))
    with pytest.raises(TypeError, match="integer"):
        tiled_siglip_loss(x, x, 1.0, 0.0, labels=torch.zeros(4))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_matches_open_clip(dtype):
    leaves = make_inputs(257, dtype, seed=3)
    got = run(lambda i, t, s: tiled_clip_loss(i, t, s, tile_size=50), leaves[:3])
    want = run(lambda i, t, s: ClipLoss()(i, t, s), [x.detach().double().requires_grad_() for x in leaves[:3]])
    assert_within(got, want, error_bounds(leaves[:3], dtype, 50))
    got = run(lambda i, t, s, c: tiled_siglip_loss(i, t, s, c, tile_size=50), leaves)
    want = run(lambda i, t, s, c: SigLipLoss()(i, t, s, c), [x.detach().double().requires_grad_() for x in leaves])
    assert_within(got, want, error_bounds(leaves, dtype, 50))


def test_gradcheck_clip():
    leaves = make_inputs(5, torch.float64, seed=11, scale=2.5)[:3]
    assert torch.autograd.gradcheck(lambda i, t, s: tiled_clip_loss(i, t, s, tile_size=2), leaves)


def test_gradcheck_siglip():
    leaves = make_inputs(5, torch.float64, seed=12, scale=2.5, bias=-1.0)
    assert torch.autograd.gradcheck(lambda i, t, s, c: tiled_siglip_loss(i, t, s, c, tile_size=2), leaves)


@pytest.mark.parametrize("norm", [True, False], ids=["normalised", "unnormalised"])
def test_stable_at_large_logits(norm):
    # scale 100: a naive exp(logits) overflows fp32 (exp(100) > 3.4e38). Unnormalised
    # rows have norms ~4 here, so logits reach ~1e3.
    b = 300
    leaves = make_inputs(b, torch.float32, seed=5, scale=100.0, bias=-10.0, norm=norm)
    img, txt, s = (x.detach() for x in leaves[:3])
    # fp32 cannot hold a logit of size M better than M * eps, so no fp32 implementation
    # (the full-matrix one included) is more accurate than that relative to the result.
    max_logit = s.item() * img.norm(dim=1).max().item() * txt.norm(dim=1).max().item()
    rel = 2 * torch.finfo(torch.float32).eps * max_logit
    ref64 = [x.detach().double().requires_grad_() for x in leaves]
    for tiled, full, k in ((tiled_clip_loss, full_clip_loss, 3), (tiled_siglip_loss, full_siglip_loss, 4)):
        loss, grads = run(lambda *a: tiled(*a, tile_size=64), leaves[:k])
        assert torch.isfinite(loss) and all(torch.isfinite(g).all() for g in grads)
        # float64 ground truth on the same (fp32) inputs, relative to each tensor's magnitude
        wl, wg = run(full, ref64[:k])
        assert abs(loss.double() - wl) <= rel * max(1.0, abs(wl.item()))
        for g, w in zip(grads, wg):
            assert (g.double() - w).abs().max() <= rel * max(1.0, w.abs().max().item())


def test_bf16_inputs_fp32_accumulation():
    b = 300
    leaves32 = make_inputs(b, torch.float32, seed=6)
    bf = [x.detach().to(torch.bfloat16).requires_grad_() for x in leaves32[:2]] + leaves32[2:]
    # reference: fp32 full loss on exactly the bf16-rounded values
    up = [x.detach().float().requires_grad_() for x in bf]
    for tiled, full, k in ((tiled_clip_loss, full_clip_loss, 3), (tiled_siglip_loss, full_siglip_loss, 4)):
        loss, grads = run(lambda *a: tiled(*a, tile_size=64), bf[:k])
        wl, wg = run(full, up[:k])
        assert loss.dtype == torch.float32
        assert grads[0].dtype == grads[1].dtype == torch.bfloat16
        torch.testing.assert_close(loss, wl, rtol=1e-5, atol=1e-6)  # fp32 accumulation: fp32-exact
        for g, w in zip(grads[:2], wg[:2]):
            torch.testing.assert_close(g.float(), w, rtol=1e-2, atol=1e-5)  # bf16 output rounding
        for g, w in zip(grads[2:], wg[2:]):
            torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)
        # and close to the loss on the original fp32 inputs (input rounding only)
        l32 = full(*[x.detach() for x in leaves32[:k]])
        assert abs(loss.item() - l32.item()) <= 2e-2 * abs(l32.item())


@pytest.mark.parametrize("which", ["image", "text", "scale_only"])
def test_partial_requires_grad(which):
    leaves = make_inputs(37, torch.float64, seed=7)
    img, txt, s, bias = (x.detach() for x in leaves)
    want = {
        "clip": run(full_clip_loss, leaves[:3])[1],
        "siglip": run(full_siglip_loss, leaves)[1],
    }
    img.requires_grad_(which == "image")
    txt.requires_grad_(which == "text")
    s.requires_grad_(which == "scale_only")
    for name, loss in (
        ("clip", tiled_clip_loss(img, txt, s, tile_size=8)),
        ("siglip", tiled_siglip_loss(img, txt, s, bias, tile_size=8)),
    ):
        loss.backward()
        exp_i, exp_t, exp_s = want[name][:3]
        for x, w, on in ((img, exp_i, "image"), (txt, exp_t, "text"), (s, exp_s, "scale_only")):
            if which == on:
                torch.testing.assert_close(x.grad, w, **TOL[torch.float64])
                x.grad = None
            else:
                assert x.grad is None
        assert bias.grad is None


def test_float_scale_and_shape_one_params():
    leaves = make_inputs(20, torch.float64, seed=8)
    img, txt = leaves[:2]
    s1 = torch.tensor([14.0], dtype=torch.float64, requires_grad=True)
    b1 = torch.tensor([-3.0], dtype=torch.float64, requires_grad=True)
    loss = tiled_siglip_loss(img, txt, s1, b1, tile_size=6)
    loss.backward()
    assert s1.grad.shape == (1,) and b1.grad.shape == (1,)
    # a Python float keeps full fp64 precision (1/0.07 is not representable in fp32)
    torch.testing.assert_close(
        tiled_clip_loss(img, txt, 1 / 0.07, tile_size=6), full_clip_loss(img, txt, 1 / 0.07), **TOL[torch.float64]
    )
    torch.testing.assert_close(
        tiled_siglip_loss(img, txt, 1 / 0.07, -10.0, tile_size=6),
        full_siglip_loss(img, txt, 1 / 0.07, -10.0),
        **TOL[torch.float64],
    )


def test_autocast_keeps_fp32_accumulation():
    """Inside torch.autocast the tile matmuls must not drop to bf16."""
    leaves = make_inputs(130, torch.float32, seed=10, scale=100.0)
    for tiled, full, k in ((tiled_clip_loss, full_clip_loss, 3), (tiled_siglip_loss, full_siglip_loss, 4)):
        plain = run(lambda *a: tiled(*a, tile_size=32), leaves[:k])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = run(lambda *a: tiled(*a, tile_size=32), leaves[:k])
            assert (leaves[0] @ leaves[1].T).dtype == torch.bfloat16  # autocast is really active
        assert_close(got, plain, rtol=0, atol=0)


def test_no_grad_forward_and_default_tile():
    leaves = make_inputs(50, torch.float32, seed=9)
    with torch.no_grad():
        got = tiled_clip_loss(*leaves[:3])
        want = full_clip_loss(*[x.double() for x in leaves[:3]])
    assert abs(got.item() - want.item()) <= error_bounds(leaves[:3], torch.float32, 50)[0]
    assert math.isfinite(got.item())


def test_rejects_bad_input():
    x = torch.randn(4, 3)
    with pytest.raises(ValueError):
        tiled_clip_loss(x, torch.randn(5, 3), 1.0)
    with pytest.raises(ValueError):
        tiled_clip_loss(x, x, 1.0, tile_size=0)
    with pytest.raises(ValueError):
        tiled_siglip_loss(x, x, torch.ones(2), 0.0)
