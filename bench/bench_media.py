#!/usr/bin/env python
"""What keeping media costs: indexing throughput with kept media over without, and bytes kept per item.

`omnivec serve` runs in a child process (omnivec-tiny-audio, 1 model thread, Edge index in a temp
data dir). The same items are indexed, in the same batches, into a collection created with
`keep_media` on and into one with it off, alternating which goes first over several rounds
(paired per round, so load from other processes cancels out). `kept_over_bare` is the median of
(items/s with media) / (items/s without): 1.0 means keeping previews is free. The tiny model
embeds very cheaply, so this is close to the worst case: with a real model the same preview work
is a smaller share. Also reported: the bytes kept per item on disk (preview and original), per
modality, against the source file's size.

Items: photo-sized JPEGs (640x480, noise plus shapes: hard to compress, the byte caps matter) and
5 s 16 kHz WAV recordings.

    .venv/bin/python bench/bench_media.py --quick   # about a minute

The last line is one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import bundle, final_json  # noqa: E402


def make_items(count: int, seed: int = 0) -> dict[str, tuple[list[dict], int]]:
    """Per modality: API items (base64) and the total bytes of their source files."""
    import soundfile as sf
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    images, image_bytes = [], 0
    for k in range(count):
        pixels = np.clip(rng.normal(128, 40, (480, 640, 3)), 0, 255).astype(np.uint8)
        picture = Image.fromarray(pixels)
        ImageDraw.Draw(picture).ellipse([40 + k % 200, 60, 300, 320], fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
        buf = io.BytesIO()
        picture.save(buf, "JPEG", quality=90)
        image_bytes += buf.tell()
        images.append({"image": base64.b64encode(buf.getvalue()).decode("ascii")})
    audios, audio_bytes = [], 0
    t = np.arange(16000 * 5) / 16000
    for k in range(count):
        wave = 0.4 * np.sin(2 * np.pi * (200 + 37 * k) * t) + 0.05 * rng.standard_normal(len(t))
        buf = io.BytesIO()
        sf.write(buf, wave.astype(np.float32), 16000, format="WAV", subtype="PCM_16")
        audio_bytes += buf.tell()
        audios.append({"audio": base64.b64encode(buf.getvalue()).decode("ascii")})
    return {"image": (images, image_bytes), "audio": (audios, audio_bytes)}


async def _index(url: str, name: str, items: list[dict], batch: int) -> float:
    import httpx

    async with httpx.AsyncClient(timeout=300) as client:
        start = time.perf_counter()
        for i in range(0, len(items), batch):
            r = await client.post(f"{url}/v1/collections/{name}/items", json={"items": items[i : i + batch]})
            if r.status_code != 200 or r.json()["errors"]:
                raise RuntimeError(f"{name}: HTTP {r.status_code}: {r.text[:300]}")
        return len(items) / (time.perf_counter() - start)


def _kept_bytes(data_dir: Path, name: str) -> tuple[int, int]:
    """(preview bytes, original bytes) kept on disk for a collection, from each item file's record line."""
    preview = original = 0
    for path in (data_dir / "media" / name).glob("*/*.media"):
        with open(path, "rb") as f:
            record = json.loads(f.readline())
        preview += record["preview_len"]
        original += record["original_bytes"]
    return preview, original


def measure(url: str, data_dir: Path, modality: str, items: list[dict], source_bytes: int, batch: int, rounds: int) -> dict:
    import httpx

    httpx.post(f"{url}/v1/collections", json={"name": f"warm-{modality}"}, timeout=30).raise_for_status()
    asyncio.run(_index(url, f"warm-{modality}", items[:batch], batch))  # sessions, allocator
    kept, bare, sizes = [], [], (0, 0)
    for r in range(rounds):
        phases = [(True, f"{modality}-kept-{r}"), (False, f"{modality}-bare-{r}")]
        for keep, name in phases if r % 2 == 0 else phases[::-1]:
            httpx.post(f"{url}/v1/collections", json={"name": name, "keep_media": keep}, timeout=30).raise_for_status()
            (kept if keep else bare).append(asyncio.run(_index(url, name, items, batch)))
            if keep:
                sizes = _kept_bytes(data_dir, name)
            httpx.delete(f"{url}/v1/collections/{name}", timeout=60).raise_for_status()
    ratios = [k / b for k, b in zip(kept, bare)]
    n = len(items)
    return {
        "kept_over_bare": round(statistics.median(ratios), 3),
        "ratio_min": round(min(ratios), 3),
        "ratio_max": round(max(ratios), 3),
        "kept_items_s": round(statistics.median(kept), 1),
        "bare_items_s": round(statistics.median(bare), 1),
        "source_bytes_per_item": source_bytes // n,
        "preview_bytes_per_item": sizes[0] // n,
        "original_bytes_per_item": sizes[1] // n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer items and rounds (about a minute on 2 cores)")
    parser.add_argument("--batch", type=int, default=16, help="items per request (default 16)")
    args = parser.parse_args()
    count, rounds = (48, 3) if args.quick else (160, 5)

    from omnivec.server_process import ServerProcess

    path = bundle("omnivec-tiny-audio", int8=False)
    data = make_items(count)
    env = {"OMNIVEC_SERVER__LOG_LEVEL": "warning", "OMNIVEC_SERVER__INFERENCE_THREADS": "1", "OMNIVEC_INDEX__SEARCH_THREADS": "1"}
    out: dict = {"model": "omnivec-tiny-audio", "items": count, "rounds": rounds, "batch": args.batch}
    with tempfile.TemporaryDirectory(prefix="omnivec-bench-media-") as tmp:
        env["OMNIVEC_DATA_DIR"] = tmp
        with ServerProcess(path, env=env, log=Path(tmp) / "server.log") as server:
            for modality, (items, source_bytes) in data.items():
                print(f"{modality}: {count} items x {rounds} rounds ...", file=sys.stderr, flush=True)
                out[modality] = measure(server.url, Path(tmp), modality, items, source_bytes, args.batch, rounds)
    out["kept_over_bare"] = round(statistics.mean([out[m]["kept_over_bare"] for m in data]), 3)
    final_json(out)


if __name__ == "__main__":
    main()
