#!/usr/bin/env python
"""Device check for the fine-tune paths CPU-only tests cannot see: CUDA dropout replay in the
chunked (GradCache) step, and the ring loss over NCCL with each rank bound to its own GPU.

Run on a machine with GPUs (one process per GPU, up to --world):

    python bench/device_check_finetune.py              # CUDA + NCCL when available
    python bench/device_check_finetune.py --cpu        # the same code path with gloo on CPU

Checks, each in every rank (processes are started like torchrun: RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR/PORT, and the process group is made by `finetune.train.init_distributed`, the training
loop's own function):
1. replay: a dropout model on the training device; `chunked_backward(..., device=dev)` equals a
   direct step that draws the same per-chunk masks (fp64), and the old capture (inputs still on
   the CPU, moved inside the encoder) does NOT on CUDA (shows the check can fail);
2. ring: `ring_clip_loss`/`ring_siglip_loss` with and without labels equal the full-matrix
   reference over the global batch (fp64), on NCCL when CUDA is used;
3. tile: the loss's default tile on this device (4096 on CUDA now that the config no longer
   forces 1024).
Needs W distinct GPUs for a W-rank NCCL ring (NCCL refuses two ranks on one GPU); with one GPU
the ring runs with W=1 (no exchange) and only gloo/CPU exercises the exchanges.

Ends with one JSON line: {"device": ..., "world": W, "replay_ok": ..., "ring_ok": ..., ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _replay(device) -> dict:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    from omnivec.finetune.chunked import chunked_backward
    from omnivec.finetune.losses import tiled_clip_loss

    torch.manual_seed(0)
    img = nn.Sequential(nn.Linear(12, 32), nn.GELU(), nn.Dropout(0.3), nn.Linear(32, 8)).double().to(device).train()
    txt = nn.Sequential(nn.Linear(9, 32), nn.Dropout(0.3), nn.Linear(32, 8)).double().to(device).train()
    x_img, x_txt = torch.randn(10, 12, dtype=torch.float64), torch.randn(10, 9, dtype=torch.float64)

    def loss_fn(i, t):
        return tiled_clip_loss(F.normalize(i, dim=-1), F.normalize(t, dim=-1), 5.0, tile_size=4)

    def grads():
        out = [p.grad.clone() for p in [*img.parameters(), *txt.parameters()]]
        img.zero_grad()
        txt.zero_grad()
        return out

    torch.manual_seed(42)  # direct: same chunk order, masks drawn once, on the device
    ei = torch.cat([img(c.to(device)) for c in x_img.split(3)])
    et = torch.cat([txt(c.to(device)) for c in x_txt.split(3)])
    loss_fn(ei, et).backward()
    want = grads()
    torch.manual_seed(42)
    chunked_backward((img, txt), (x_img, x_txt), loss_fn, 3, device=device)
    got = grads()
    torch.manual_seed(42)  # the pre-fix capture: CPU inputs, moved inside the encoder
    chunked_backward((lambda x: img(x.to(device)), lambda x: txt(x.to(device))), (x_img, x_txt), loss_fn, 3)
    old = grads()
    ok = all(torch.allclose(a, b, rtol=1e-10, atol=1e-12) for a, b in zip(got, want))
    old_ok = all(torch.allclose(a, b, rtol=1e-10, atol=1e-12) for a, b in zip(old, want))
    return {"replay_ok": ok, "old_capture_matches": old_ok}


def _ring(device, rank: int, world: int) -> dict:
    import torch
    import torch.nn.functional as F

    from omnivec.finetune.losses import full_clip_loss, full_siglip_loss, ring_clip_loss, ring_siglip_loss

    sizes = [5 + r for r in range(world)]
    n = sum(sizes)
    lo, hi = sum(sizes[:rank]), sum(sizes[: rank + 1])
    g = torch.Generator().manual_seed(7)
    img = F.normalize(torch.randn(n, 16, generator=g, dtype=torch.float64), dim=-1)
    txt = F.normalize(img + torch.randn(n, 16, generator=g, dtype=torch.float64), dim=-1)
    labels = torch.randint(0, 4, (n,), generator=g)
    worst = 0.0
    for lab in (None, labels):
        for kind in ("clip", "siglip"):
            i = img[lo:hi].clone().to(device).requires_grad_()
            t = txt[lo:hi].clone().to(device).requires_grad_()
            local = None if lab is None else lab[lo:hi].to(device)
            if kind == "clip":
                loss = ring_clip_loss(i, t, 7.0, tile_size=3, grad_reduction="sum", labels=local)
            else:
                loss = ring_siglip_loss(i, t, 7.0, -2.0, tile_size=3, grad_reduction="sum", labels=local)
            loss.backward()
            ri, rt = img.clone().requires_grad_(), txt.clone().requires_grad_()
            ref = full_clip_loss(ri, rt, 7.0, labels=lab) if kind == "clip" else full_siglip_loss(ri, rt, 7.0, -2.0, labels=lab)
            ref.backward()
            for a, b in ((loss.detach().cpu(), ref.detach()), (i.grad.cpu(), ri.grad[lo:hi]), (t.grad.cpu(), rt.grad[lo:hi])):
                worst = max(worst, float((a - b).abs().max()))
    return {"ring_ok": worst < 1e-10, "ring_max_error": worst}


def _worker(rank: int, world: int, port: int, use_cuda: bool, out_dir: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    import torch
    import torch.distributed as dist

    if not use_cuda:
        torch.cuda.is_available = lambda: False  # force the CPU/gloo branch of init_distributed
    from omnivec.finetune.losses._kernels import resolve_tile_size
    from omnivec.finetune.train import init_distributed

    device, own = init_distributed(world)
    result = {"rank": rank, "device": str(device), "backend": dist.get_backend() if dist.is_initialized() else "none"}
    result.update(_replay(device))
    result.update(_ring(device, rank, world))
    result["default_tile"] = resolve_tile_size(None, device)
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(result, f)
    if own:
        dist.barrier()
        dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu", action="store_true", help="gloo on CPU even when CUDA is present")
    parser.add_argument("--world", type=int, default=2, help="processes (capped at the GPU count on CUDA)")
    parser.add_argument("--quick", action="store_true", help="accepted for symmetry with the benchmarks; the check is always short")
    args = parser.parse_args()
    import torch
    import torch.multiprocessing as mp

    use_cuda = torch.cuda.is_available() and not args.cpu
    world = min(args.world, torch.cuda.device_count()) if use_cuda else args.world
    with tempfile.TemporaryDirectory() as tmp:
        mp.start_processes(_worker, args=(world, _free_port(), use_cuda, tmp), nprocs=world, start_method="spawn")
        ranks = [json.load(open(os.path.join(tmp, f"rank{r}.json"))) for r in range(world)]
    for r in ranks:
        print(r, file=sys.stderr)
    figures = {
        "device": "cuda" if use_cuda else "cpu",
        "backend": ranks[0]["backend"],
        "world": world,
        "replay_ok": all(r["replay_ok"] for r in ranks),
        # on CUDA the pre-fix capture must differ (CUDA masks not replayed); on CPU it matches
        "old_capture_differs": not all(r["old_capture_matches"] for r in ranks),
        "ring_ok": all(r["ring_ok"] for r in ranks),
        "ring_max_error": max(r["ring_max_error"] for r in ranks),
        "default_tile": ranks[0]["default_tile"],
    }
    print(json.dumps(figures))
    sys.exit(0 if figures["replay_ok"] and figures["ring_ok"] else 1)


if __name__ == "__main__":
    main()
