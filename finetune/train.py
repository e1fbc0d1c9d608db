"""The fine-tune loop: tiled contrastive loss over the whole batch, chunked encoder passes,
AdamW with warmup + cosine, checkpoints and resume, per-epoch evaluation, export to a bundle.

Several processes (`torchrun --nproc-per-node N -m omnivec finetune ...`): each rank takes
its share of every global batch, the ring loss sees all ranks' pairs, and gradients are
averaged across ranks after each step (the ring loss's `grad_reduction="mean"` convention).
"""

from __future__ import annotations

import json
import math
import os
import random
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .config import FinetuneConfig

CHECKPOINT_MARKER = "omnivec_finetune"


@dataclass
class FinetuneResult:
    out: Path
    history: list[dict[str, Any]]
    bundle: Path | None
    steps: int


def _dist_info() -> tuple[int, int]:
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def warmup_cosine(warmup: int, total: int) -> Callable[[int], float]:
    """LR factor per step: linear warmup over `warmup` steps, then cosine decay to 0 at `total`."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def finetune(config: FinetuneConfig, *, progress: bool = True, log: Callable[[str], None] = print) -> FinetuneResult:
    """Train per `config`; returns the evaluation history and the exported bundle path."""
    import torch
    import torch.distributed as dist
    from open_clip.transform import PreprocessCfg, image_transform_v2
    from tqdm import tqdm

    from omnivec.model_export.loader import LoadedModel, load_model

    from .data import PairDataset, audio_loader, image_loader, read_pairs, split_pairs
    from .evaluate import evaluate, markdown_report
    from .losses import ring_clip_loss, ring_siglip_loss

    rank, world = _dist_info()
    own_group = world > 1 and not dist.is_initialized()
    if own_group:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    is_main = rank == 0
    out = Path(config.out)
    if is_main:
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)

    # Checkpoints this module wrote keep the weights under "state_dict", which the loader reads too.
    loaded = load_model(config.model, config.pretrained, seed=config.seed)
    model = loaded.model
    if config.loss == "siglip" and getattr(model, "logit_bias", None) is None:
        model.logit_bias = torch.nn.Parameter(torch.tensor(-10.0))
        model.logit_scale.data.fill_(math.log(10.0))
    if config.lock_image:
        model.lock_image_tower(unlocked_groups=config.lock_image_unlocked_groups)
    if config.lock_text:
        model.lock_text_tower(unlocked_layers=config.lock_text_unlocked_layers)
    model.to(device)

    if config.modality == "audio":
        if not hasattr(model, "audio_tower"):
            raise ValueError(f"{loaded.name} has no audio tower: use a config with an audio_cfg section (e.g. omnivec-tiny-audio)")
        from omnivec.model_export.export import audio_spec

        spec = audio_spec(loaded)
        train_load, eval_load = audio_loader(spec, random_crop=config.augment, seed=config.seed), audio_loader(spec, random_crop=False)
        encode_media = model.encode_audio
    else:
        cfg = PreprocessCfg(**loaded.preprocess_cfg)
        train_load = image_loader(image_transform_v2(cfg, is_train=config.augment))
        eval_load = image_loader(image_transform_v2(cfg, is_train=False))
        encode_media = model.encode_image
    pairs = read_pairs(config.train_data, config.templates, config.modality)
    if config.val_data:
        train_pairs, val_pairs = pairs, read_pairs(config.val_data, config.templates, config.modality)
    else:
        train_pairs, val_pairs = split_pairs(pairs, config.val_fraction, config.seed)
    train_set = PairDataset(train_pairs, train_load, loaded.tokenizer)
    val_set = PairDataset(val_pairs, eval_load, loaded.tokenizer) if val_pairs else None
    if config.batch_size % world:
        raise ValueError(f"batch_size {config.batch_size} must divide evenly over {world} processes")
    local_batch = config.batch_size // world
    sampler = torch.utils.data.DistributedSampler(train_set, world, rank, shuffle=True, seed=config.seed, drop_last=True) if world > 1 else None
    loader = torch.utils.data.DataLoader(
        train_set, batch_size=local_batch, shuffle=sampler is None, sampler=sampler, drop_last=True,
        num_workers=config.workers, generator=torch.Generator().manual_seed(config.seed),
    )
    if len(loader) == 0:
        raise ValueError(f"{len(train_set)} training pairs is fewer than one batch of {config.batch_size}; lower --batch-size")

    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=config.lr)
    total_steps = min(config.epochs * len(loader), config.max_steps or 10**12)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(config.warmup_steps, total_steps))

    step, start_epoch, history = 0, 0, []
    if config.resume:
        state = torch.load(config.resume, map_location="cpu", weights_only=False)
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, start_epoch, history = state["step"], state["epoch"], state.get("history", [])
        log(f"resumed from {config.resume} at epoch {start_epoch}, step {step}")

    def run_eval(epoch: int) -> None:
        if val_set is None or not is_main:
            return
        metrics = evaluate(model, val_set, config.templates, loaded.tokenizer, config.modality)
        model.train()
        history.append({"epoch": epoch, "step": step, "metrics": metrics})
        (out / "report.json").write_text(json.dumps({"config": json.loads(config.model_dump_json()), "history": history}, indent=2))
        (out / "report.md").write_text(markdown_report(history))
        log(f"epoch {epoch}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if "r@" in k or "zero" in k))

    if not history:
        run_eval(0)

    def encode(fn: Callable) -> Callable:
        def run(x: Any) -> Any:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16"):
                return fn(x.to(device)).float()
        return run

    def loss_fn(img: Any, txt: Any) -> Any:
        img = torch.nn.functional.normalize(img, dim=-1)
        txt = torch.nn.functional.normalize(txt, dim=-1)
        scale = model.logit_scale.exp()
        if config.loss == "siglip":
            return ring_siglip_loss(img, txt, scale, model.logit_bias, tile_size=config.tile_size)
        return ring_clip_loss(img, txt, scale, tile_size=config.tile_size)

    from .chunked import chunked_backward

    model.train()
    done = step >= total_steps
    for epoch in range(start_epoch + 1, config.epochs + 1):
        if done:
            break
        if sampler is not None:
            sampler.set_epoch(epoch)
        bar = tqdm(loader, desc=f"epoch {epoch}/{config.epochs}", unit="batch", disable=not (progress and is_main))
        for media, tokens in bar:
            started = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            chunk = config.chunk_size or len(media)
            loss = chunked_backward((encode(encode_media), encode(model.encode_text)), (media, tokens), loss_fn, chunk)
            if world > 1:
                for p in params:
                    if p.grad is not None:
                        dist.all_reduce(p.grad)
                        p.grad.div_(world)
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            optimizer.step()
            scheduler.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            step += 1
            pairs_per_s = config.batch_size / (time.perf_counter() - started)
            bar.set_postfix(loss=f"{loss.item():.4f}", pairs_s=f"{pairs_per_s:.0f}", rss_mib=f"{_peak_rss_mib():.0f}")
            if step >= total_steps:
                done = True
                break
        run_eval(epoch)
        if is_main:
            _save_checkpoint(out / "checkpoints" / "last.pt", model, optimizer, scheduler, step, epoch, history, config)

    bundle = None
    if is_main and config.export:
        from omnivec.model_export.export import export_bundle

        model.to("cpu").eval()
        for p in model.parameters():
            p.requires_grad_(False)
        source = {**loaded.source, "finetuned_from": config.pretrained, "finetune_steps": step, "checkpoint": str(out / "checkpoints" / "last.pt")}
        exported = LoadedModel(model, loaded.name, str(out / "checkpoints" / "last.pt"), loaded.tokenizer, loaded.preprocess_cfg, source)
        bundle = export_bundle(config.model, "none", out / "bundle", loaded=exported, int8=config.int8, progress=log).out
        log(f"exported bundle {bundle}: serve it with `omnivec serve --bundle {bundle}`")
    if world > 1:
        dist.barrier()
        if own_group:
            dist.destroy_process_group()
    return FinetuneResult(out, history, bundle, step)


def _save_checkpoint(path: Path, model: Any, optimizer: Any, scheduler: Any, step: int, epoch: int, history: list, config: FinetuneConfig) -> None:
    import torch

    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            CHECKPOINT_MARKER: True,
            "state_dict": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "step": step,
            "epoch": epoch,
            "history": history,
            "config": json.loads(config.model_dump_json()),
        },
        tmp,
    )
    tmp.replace(path)
