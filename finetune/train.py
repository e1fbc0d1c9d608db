"""The fine-tune loop: tiled contrastive loss over the whole batch, chunked encoder passes,
AdamW with warmup + cosine, checkpoints and resume, per-epoch evaluation, export to a bundle.

Several processes (`torchrun --nproc-per-node N -m omnivec finetune ...`): each rank takes
its share of every global batch, the ring loss sees all ranks' pairs, and gradients are
averaged across ranks after each step (the ring loss's `grad_reduction="mean"` convention).

A little over 400 lines because the loop, its checkpoint/resume and the per-epoch evaluation share
the loop's state; the losses, data, batching and export live in their own modules.
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


def dist_info() -> tuple[int, int]:
    """(rank, world size) under torchrun; (0, 1) alone. The one place that reads them."""
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


def init_distributed(world: int) -> tuple[Any, bool]:
    """The training device, and whether this call created the process group.

    On CUDA the rank's device is made current *before* the NCCL group exists: NCCL's
    communicators and `batch_isend_irecv` (the ring loss) bind to the current device, and
    with every rank on cuda:0 the ring's first exchange can hang.
    """
    import torch
    import torch.distributed as dist

    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    own_group = world > 1 and not dist.is_initialized()
    if own_group:
        if cuda:
            dist.init_process_group("nccl", device_id=device)
        else:
            dist.init_process_group("gloo")
    return device, own_group


def set_train_mode(model: Any) -> dict[str, int]:
    """`model.train()`, except what must not change during a step. Returns what was held in eval.

    * Every maximal submodule whose parameters are all frozen (a locked tower, or the locked
      layers of a partly unlocked one) runs in eval mode: no dropout noise in features that
      cannot learn, as in LiT, and no BatchNorm statistics drifting in a frozen tower.
    * Every BatchNorm keeps its running statistics (eval mode; its affine weights still
      train): batch statistics would make a chunked or multi-process step differ from a
      full-batch one, and GradCache's two passes would update them twice per step.
    """
    import torch

    model.train()
    held = {"frozen_modules": 0, "batchnorm_layers": 0}

    def visit(module: Any) -> None:
        params = list(module.parameters())
        if params and not any(p.requires_grad for p in params):
            module.eval()
            held["frozen_modules"] += 1
            return
        for child in module.children():
            visit(child)

    for child in model.children():
        visit(child)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training:
            m.eval()
            held["batchnorm_layers"] += 1
    return held


def nested_dims_for(config: FinetuneConfig, embed_dim: int) -> list[int] | None:
    """The prefixes the loss is summed over (always ending with the full dim), or None."""
    if not config.nested_dims:
        return None
    too_big = [d for d in config.nested_dims if d > embed_dim]
    if too_big:
        raise ValueError(f"--nested-dims {','.join(map(str, too_big))} exceed the model's embedding dim {embed_dim}")
    return sorted(set(config.nested_dims) | {embed_dim})


def finetune(config: FinetuneConfig, *, progress: bool = True, log: Callable[[str], None] = print) -> FinetuneResult:
    """Train per `config`; returns the evaluation history and the exported bundle path."""
    import numpy as np
    import torch
    import torch.distributed as dist
    from open_clip.transform import PreprocessCfg, image_transform_v2
    from tqdm import tqdm

    from omnivec.model_export.loader import LoadedModel, load_model

    from .chunked import chunked_backward
    from .data import IndexedDataset, PairDataset, audio_loader, image_loader, positive_groups, read_pairs, split_pairs
    from .evaluate import embed_pairs, evaluate, markdown_report
    from .losses import ring_clip_loss, ring_siglip_loss
    from .losses._kernels import resolve_tile_size
    from .mining import MiningCost, batch_hardness, mined_batches, neighbour_graph, timed

    rank, world = dist_info()
    device, own_group = init_distributed(world)
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
    if config.loss == "clip" and getattr(model, "logit_bias", None) is not None:
        model.logit_bias.requires_grad_(False)  # unused by InfoNCE; exported as softmax scoring
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
    groups = np.asarray(positive_groups(train_pairs, config.positives))
    group_ids = torch.from_numpy(groups)
    train_set = PairDataset(train_pairs, train_load, loaded.tokenizer)
    val_set = PairDataset(val_pairs, eval_load, loaded.tokenizer) if val_pairs else None
    if config.batch_size % world:
        raise ValueError(f"batch_size {config.batch_size} must divide evenly over {world} processes")
    local_batch = config.batch_size // world
    indexed = IndexedDataset(train_set)
    sampler = torch.utils.data.DistributedSampler(indexed, world, rank, shuffle=True, seed=config.seed, drop_last=True) if world > 1 else None
    loader = torch.utils.data.DataLoader(
        indexed, batch_size=local_batch, shuffle=sampler is None, sampler=sampler, drop_last=True,
        num_workers=config.workers, generator=torch.Generator().manual_seed(config.seed),
    )
    steps_per_epoch = len(train_set) // config.batch_size if config.batches == "mined" else len(loader)
    if steps_per_epoch == 0:
        raise ValueError(f"{len(train_set)} training pairs is fewer than one batch of {config.batch_size}; lower --batch-size")

    with torch.no_grad():
        embed_dim = int(model.encode_text(loaded.tokenizer(["a"]).to(device)).shape[-1])
    dims = nested_dims_for(config, embed_dim)

    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=config.lr)
    total_steps = min(config.epochs * steps_per_epoch, config.max_steps or 10**12)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(config.warmup_steps, total_steps))

    step, start_epoch, history = 0, 0, []
    if config.resume:
        state = torch.load(config.resume, map_location="cpu", weights_only=False)
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, start_epoch, history = state["step"], state["epoch"], state.get("history", [])
        log(f"resumed from {config.resume} at epoch {start_epoch}, step {step}")

    held = set_train_mode(model)
    scoring = "sigmoid" if config.loss == "siglip" else "softmax"
    mining: list[dict[str, Any]] = []
    choices = {
        "loss": f"{config.loss} (exact tiled kernel, tile {resolve_tile_size(config.tile_size, device)} on {device.type}"
        + (f", ring over {world} processes" if world > 1 else "") + ")",
        "positives": {
            "caption": "pairs with identical captions are positives (SupCon-style average over them)",
            "label": "pairs sharing a label are positives (SupCon-style average over them)",
            "pair": "one positive per row (each item's own caption); identical captions repel",
        }[config.positives] + f"; {len(set(groups.tolist()))} positive groups over {len(groups)} training pairs",
        "batches": "random (shuffled each epoch)" if config.batches == "random" else (
            f"mined: grown over a {config.mine_neighbours}-nearest-neighbour graph of "
            + ("the current model's embeddings, rebuilt every epoch" if config.mine_every == 1 else
               f"the current model's embeddings, rebuilt every {config.mine_every} epochs" if config.mine_every else
               "the starting model's embeddings (fixed teacher)")
        ),
        "nested_dims": f"loss summed over prefixes {dims}, evaluated per prefix" if dims else f"none (full {embed_dim}-d only)",
        "chunking": f"GradCache, {config.chunk_size or local_batch} rows per encoder pass, RNG replayed on {device.type}",
        "locked": ", ".join(n for n, on in (("image", config.lock_image), ("text", config.lock_text)) if on) or "none",
        "eval_mode_during_training": f"{held['frozen_modules']} frozen submodules (no dropout in locked towers), "
        f"{held['batchnorm_layers']} BatchNorm layers with frozen statistics",
        "scoring_exported": f"{scoring} (from --loss {config.loss}, not guessed from the checkpoint)",
        "precision": config.precision,
        "batch": f"{config.batch_size} global ({local_batch} per process)",
    }

    def write_reports() -> None:
        payload = {"config": json.loads(config.model_dump_json()), "choices": choices, "mining": mining, "history": history}
        (out / "report.json").write_text(json.dumps(payload, indent=2))
        (out / "report.md").write_text(markdown_report(history, {**choices, **({"mining_cost": _mining_summary(mining)} if mining else {})}) if history else "")

    def run_eval(epoch: int) -> None:
        if val_set is None or not is_main:
            return
        metrics = evaluate(model, val_set, config.templates, loaded.tokenizer, config.modality, nested_dims=dims)
        set_train_mode(model)
        history.append({"epoch": epoch, "step": step, "metrics": metrics})
        write_reports()
        log(f"epoch {epoch}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if ("r@" in k or "zero" in k) and "/" not in k))

    if not history:
        run_eval(0)

    def encode(fn: Callable) -> Callable:
        def run(x: Any) -> Any:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16"):
                return fn(x).float()
        return run

    def make_loss_fn(labels: Any) -> Callable:
        def loss_fn(img: Any, txt: Any) -> Any:
            scale = model.logit_scale.exp()
            total = None
            for d in dims or [None]:
                i = torch.nn.functional.normalize(img[:, :d] if d else img, dim=-1)
                t = torch.nn.functional.normalize(txt[:, :d] if d else txt, dim=-1)
                if config.loss == "siglip":
                    term = ring_siglip_loss(i, t, scale, model.logit_bias, tile_size=config.tile_size, labels=labels)
                else:
                    term = ring_clip_loss(i, t, scale, tile_size=config.tile_size, labels=labels)
                total = term if total is None else total + term
            return total
        return loss_fn

    mined_cache: dict[str, Any] = {}

    def epoch_batches(epoch: int) -> Any:
        """This epoch's loader: random, or this rank's share of each mined global batch."""
        if config.batches == "random":
            if sampler is not None:
                sampler.set_epoch(epoch)
            return loader
        if is_main:
            rebuild = mined_cache.get("neighbours") is None or (config.mine_every and (epoch - 1) % config.mine_every == 0)
            cost = MiningCost()
            if rebuild:
                with timed(cost, "embed_s"):
                    mine_set = PairDataset(train_pairs, eval_load, loaded.tokenizer)
                    model.eval()
                    media_emb, text_emb = embed_pairs(lambda x: encode_media(x.to(device)).cpu(), lambda x: model.encode_text(x.to(device)).cpu(), mine_set)
                    set_train_mode(model)
                with timed(cost, "graph_s"):
                    mined_cache["neighbours"] = neighbour_graph(media_emb, text_emb, groups, config.mine_neighbours)
                mined_cache["emb"] = (media_emb, text_emb)
            with timed(cost, "batches_s"):
                batches = mined_batches(*mined_cache["neighbours"], config.batch_size, seed=config.seed * 1000 + epoch)
            media_emb, text_emb = mined_cache["emb"]
            shuffled = list(range(len(groups)))
            random.Random(config.seed + epoch).shuffle(shuffled)
            random_batches = [shuffled[i : i + config.batch_size] for i in range(0, len(batches) * config.batch_size, config.batch_size)]
            entry = {"epoch": epoch, "rebuilt_graph": bool(rebuild), "embed_s": cost.embed_s, "graph_s": cost.graph_s, "batches_s": cost.batches_s,
                     "hardness_mined": batch_hardness(media_emb, text_emb, groups, batches),
                     "hardness_random": batch_hardness(media_emb, text_emb, groups, random_batches)}
            mining.append(entry)
            log(f"epoch {epoch}: mined {len(batches)} batches in {cost.total_s:.2f}s (hardest negative cosine {entry['hardness_mined']:.3f} vs {entry['hardness_random']:.3f} random)")
        else:
            batches = None
        if world > 1:
            box = [batches]
            dist.broadcast_object_list(box, src=0)
            batches = box[0]
        mine = [b[rank * local_batch : (rank + 1) * local_batch] for b in batches]
        return torch.utils.data.DataLoader(indexed, batch_sampler=mine, num_workers=config.workers)

    done = step >= total_steps
    for epoch in range(start_epoch + 1, config.epochs + 1):
        if done:
            break
        epoch_loader = epoch_batches(epoch)
        epoch_started = time.perf_counter()
        bar = tqdm(epoch_loader, desc=f"epoch {epoch}/{config.epochs}", unit="batch", disable=not (progress and is_main))
        for media, tokens, index in bar:
            started = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            chunk = config.chunk_size or len(media)
            labels = None if config.positives == "pair" else group_ids[index]
            loss = chunked_backward(
                (encode(encode_media), encode(model.encode_text)), (media, tokens), make_loss_fn(labels), chunk, device=device
            )
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
        if mining and mining[-1]["epoch"] == epoch:
            mining[-1]["train_s"] = time.perf_counter() - epoch_started
        run_eval(epoch)
        if is_main:
            _save_checkpoint(out / "checkpoints" / "last.pt", model, optimizer, scheduler, step, epoch, history, config)
    if is_main and history:
        write_reports()

    bundle = None
    if is_main and config.export:
        from omnivec.model_export.export import export_bundle

        model.to("cpu").eval()
        for p in model.parameters():
            p.requires_grad_(False)
        source = {**loaded.source, "finetuned_from": config.pretrained, "finetune_steps": step, "checkpoint": str(out / "checkpoints" / "last.pt")}
        exported = LoadedModel(model, loaded.name, str(out / "checkpoints" / "last.pt"), loaded.tokenizer, loaded.preprocess_cfg, source)
        bundle = export_bundle(
            config.model, "none", out / "bundle", loaded=exported, int8=config.int8, progress=log, scoring_kind=scoring, nested_dims=dims,
        ).out
        log(f"exported bundle {bundle}: serve it with `omnivec serve --bundle {bundle}`")
    if world > 1:
        dist.barrier()
        if own_group:
            dist.destroy_process_group()
    return FinetuneResult(out, history, bundle, step)


def _mining_summary(mining: list[dict[str, Any]]) -> str:
    spent = sum(m["embed_s"] + m["graph_s"] + m["batches_s"] for m in mining)
    trained = sum(m.get("train_s", 0.0) for m in mining)
    last = mining[-1]
    return (
        f"{spent:.2f}s building batches over {len(mining)} epochs ({100 * spent / max(trained, 1e-9):.0f}% of the {trained:.1f}s of training steps); "
        f"hardest in-batch negative cosine {last['hardness_mined']:.3f} mined vs {last['hardness_random']:.3f} random (last epoch)"
    )


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
