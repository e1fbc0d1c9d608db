"""Ring losses on 1-3 gloo processes equal the single-process loss over the concatenated batch."""

from __future__ import annotations

import datetime
import os
import socket
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F

from omnivec.finetune.losses import (
    full_clip_loss,
    full_siglip_loss,
    ring_clip_loss,
    ring_siglip_loss,
)

torch.set_num_threads(1)

D_IN_IMG, D_IN_TXT, D = 6, 5, 4
TOL = dict(rtol=1e-10, atol=1e-10)
DEADLINE_S = 120  # a hung ring fails the test instead of blocking the suite
LOCAL_SIZES = {1: [7], 2: [4, 3], 3: [3, 5, 2]}  # uneven on purpose


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Towers(nn.Module):
    """Two linear 'encoders' plus CLIP/SigLIP temperature and bias, as in open_clip."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.img = nn.Linear(D_IN_IMG, D, dtype=torch.float64)
        self.txt = nn.Linear(D_IN_TXT, D, dtype=torch.float64)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
        self.logit_scale = nn.Parameter(torch.tensor(2.0, dtype=torch.float64))
        self.logit_bias = nn.Parameter(torch.tensor(-1.5, dtype=torch.float64))

    def forward(self, x_img, x_txt):
        return F.normalize(self.img(x_img), dim=-1), F.normalize(self.txt(x_txt), dim=-1)


def _data(n: int):
    g = torch.Generator().manual_seed(123)
    img = F.normalize(torch.randn(n, D, generator=g, dtype=torch.float64), dim=-1)
    txt = F.normalize(img + torch.randn(n, D, generator=g, dtype=torch.float64), dim=-1)
    x_img = torch.randn(n, D_IN_IMG, generator=g, dtype=torch.float64)
    x_txt = torch.randn(n, D_IN_TXT, generator=g, dtype=torch.float64)
    return img, txt, x_img, x_txt


def _labels(n: int) -> torch.Tensor:
    return torch.tensor([3, 1, 3, 0, 1, 3, 2, 0, 5, 1])[:n]


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        sizes = LOCAL_SIZES[world]
        lo, hi = sum(sizes[:rank]), sum(sizes[: rank + 1])
        img_all, txt_all, ximg_all, xtxt_all = _data(sum(sizes))
        res: dict = {}
        for conv in ("mean", "sum"):
            for kind in ("clip", "siglip"):
                img = img_all[lo:hi].clone().requires_grad_()
                txt = txt_all[lo:hi].clone().requires_grad_()
                s = torch.tensor(7.0, dtype=torch.float64, requires_grad=True)
                b = torch.tensor(-2.0, dtype=torch.float64, requires_grad=True)
                if kind == "clip":
                    loss = ring_clip_loss(img, txt, s, tile_size=2, grad_reduction=conv)
                else:
                    loss = ring_siglip_loss(img, txt, s, b, tile_size=2, grad_reduction=conv)
                loss.backward()
                res[(kind, conv)] = dict(loss=loss.detach(), img=img.grad, txt=txt.grad, scale=s.grad, bias=b.grad)
        # labels as positives: each rank passes its rows' labels; positives span ranks
        lab = _labels(sum(sizes))[lo:hi]
        for kind in ("clip", "siglip"):
            img = img_all[lo:hi].clone().requires_grad_()
            txt = txt_all[lo:hi].clone().requires_grad_()
            s = torch.tensor(7.0, dtype=torch.float64, requires_grad=True)
            b = torch.tensor(-2.0, dtype=torch.float64, requires_grad=True)
            if kind == "clip":
                loss = ring_clip_loss(img, txt, s, tile_size=2, grad_reduction="sum", labels=lab)
            else:
                loss = ring_siglip_loss(img, txt, s, b, tile_size=2, grad_reduction="sum", labels=lab)
            loss.backward()
            res[(kind, "labels")] = dict(loss=loss.detach(), img=img.grad, txt=txt.grad, scale=s.grad, bias=b.grad)
        # only the text tower requires grad: the gradient accumulators still travel home
        txt = txt_all[lo:hi].clone().requires_grad_()
        ring_clip_loss(img_all[lo:hi], txt, 7.0, tile_size=3, grad_reduction="sum").backward()
        res["clip_text_only"] = txt.grad
        # end to end under DDP (gradient averaging) with the default "mean" convention
        model = nn.parallel.DistributedDataParallel(Towers())
        ei, et = model(ximg_all[lo:hi], xtxt_all[lo:hi])
        m = model.module
        loss = ring_clip_loss(ei, et, m.logit_scale.exp(), tile_size=2) + ring_siglip_loss(
            ei, et, m.logit_scale.exp(), m.logit_bias, tile_size=2
        )
        loss.backward()
        res["ddp"] = dict(loss=loss.detach(), grads={n: p.grad.clone() for n, p in m.named_parameters()})
        torch.save(res, os.path.join(out_dir, f"rank{rank}.pt"))
        del model
        dist.barrier()  # nobody tears down (rank 0 hosts the store) while others still talk
    finally:
        dist.destroy_process_group()


def _spawn(world: int, out_dir: str) -> None:
    ctx = mp.start_processes(
        _worker, args=(world, _free_port(), out_dir), nprocs=world, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + DEADLINE_S
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                if p.is_alive():
                    p.kill()
            pytest.fail(f"ring with {world} processes did not finish within {DEADLINE_S}s")


def _reference(kind: str, img, txt, labels=None):
    leaves = [img.clone().requires_grad_(), txt.clone().requires_grad_()]
    s = torch.tensor(7.0, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(-2.0, dtype=torch.float64, requires_grad=True)
    loss = full_clip_loss(*leaves, s, labels=labels) if kind == "clip" else full_siglip_loss(*leaves, s, b, labels=labels)
    loss.backward()
    return dict(loss=loss.detach(), img=leaves[0].grad, txt=leaves[1].grad, scale=s.grad, bias=b.grad)


@pytest.mark.parametrize("world", [1, 2, 3])
def test_ring_equals_single_process(world, tmp_path):
    _spawn(world, str(tmp_path))
    res = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]
    sizes = LOCAL_SIZES[world]
    offs = [sum(sizes[:r]) for r in range(world + 1)]
    img, txt, x_img, x_txt = _data(offs[-1])

    for kind in ("clip", "siglip"):
        ref = _reference(kind, img, txt)
        for conv, factor in (("mean", world), ("sum", 1)):
            per_rank = [r[(kind, conv)] for r in res]
            for r, got in enumerate(per_rank):
                torch.testing.assert_close(got["loss"], ref["loss"], **TOL)  # global loss on every rank
                sl = slice(offs[r], offs[r + 1])
                torch.testing.assert_close(got["img"], factor * ref["img"][sl], **TOL)
                torch.testing.assert_close(got["txt"], factor * ref["txt"][sl], **TOL)
            # scale/bias: each rank holds factor * its share; the DDP reduction recovers dL/ds
            reduce = (lambda xs: sum(xs) / world) if conv == "mean" else (lambda xs: sum(xs))
            torch.testing.assert_close(reduce([g["scale"] for g in per_rank]), ref["scale"], **TOL)
            if kind == "siglip":
                torch.testing.assert_close(reduce([g["bias"] for g in per_rank]), ref["bias"], **TOL)
            else:
                assert all(g["bias"] is None for g in per_rank)

        ref = _reference(kind, img, txt, _labels(offs[-1]))
        per_rank = [r[(kind, "labels")] for r in res]
        for r, got in enumerate(per_rank):
            torch.testing.assert_close(got["loss"], ref["loss"], **TOL)
            sl = slice(offs[r], offs[r + 1])
            torch.testing.assert_close(got["img"], ref["img"][sl], **TOL)
            torch.testing.assert_close(got["txt"], ref["txt"][sl], **TOL)
        torch.testing.assert_close(sum(g["scale"] for g in per_rank), ref["scale"], **TOL)
        if kind == "siglip":
            torch.testing.assert_close(sum(g["bias"] for g in per_rank), ref["bias"], **TOL)

    t = txt.clone().requires_grad_()
    full_clip_loss(img, t, 7.0).backward()
    for r in range(world):
        torch.testing.assert_close(res[r]["clip_text_only"], t.grad[offs[r] : offs[r + 1]], **TOL)

    # DDP end to end: averaged parameter gradients == single-process gradients of the global loss
    model = Towers()
    ei, et = model(x_img, x_txt)
    loss = full_clip_loss(ei, et, model.logit_scale.exp()) + full_siglip_loss(
        ei, et, model.logit_scale.exp(), model.logit_bias
    )
    loss.backward()
    for r in range(world):
        torch.testing.assert_close(res[r]["ddp"]["loss"], loss.detach(), **TOL)
        for name, p in model.named_parameters():
            torch.testing.assert_close(res[r]["ddp"]["grads"][name], p.grad, **TOL, msg=lambda m, n=name: f"{n}: {m}")
