#!/usr/bin/env python
"""Peak memory and time of the contrastive loss alone (forward + backward).

Compares omnivec's tiled CLIP loss (never materialises the B x B logits) with the
full-matrix reference (``omnivec.finetune.losses.full_clip_loss``) and open_clip's
``ClipLoss`` at D=512 fp32 on CPU.

Every measurement runs in a fresh subprocess (env MALLOC_MMAP_THRESHOLD_=131072,
so large buffers are mmapped and returned to the OS on free). After creating the
inputs, the worker writes "5" to /proc/self/clear_refs (resetting VmHWM to the
current RSS), records that RSS as the baseline, runs forward + backward, and
reads VmHWM from /proc/self/status. Reported: peak - baseline ("peak MiB", the
loss's own memory, including the input gradients it produces) and the absolute
VmHWM.

Full-matrix losses need several B x B fp32 buffers. Before running one, its
need is estimated (bytes-per-B^2 factor measured at the largest size already
run, or an a-priori factor) and it is skipped - reported as "not run: needs
~X GiB" - if it would exceed --max-gib or the machine's MemAvailable minus a
margin. A watchdog thread also kills a worker whose RSS passes --max-gib.

The output ends with exactly one JSON line with the measured numbers.

Examples:
  python bench/bench_loss_memory.py --quick        # ~1 min: B=4096..16384 (+ tiled 32768 if time allows)
  python bench/bench_loss_memory.py --sizes 8192 --methods tiled full --repeats 3
  python bench/bench_loss_memory.py                # full: B=4096..65536
  python bench/bench_loss_memory.py --tile-sweep   # time/memory of the tiled loss vs tile size at B=8192
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time

GIB = 1024**3
MIB = 1024**2
METHODS = ("tiled", "full", "open_clip")
# a-priori bytes per B^2 for the full-matrix losses (fp32), used before any measurement
PRIOR_FACTOR = {"full": 4 * 5.0, "open_clip": 4 * 7.0}
FULL_SIZES = (4096, 8192, 16384, 32768, 65536)
QUICK_SIZES = (4096, 8192, 16384)
# --quick keeps to about a minute: open_clip at 16384 alone takes ~25 s here
QUICK_SKIP = {("open_clip", 16384)}
TARGETS = {"tiled_32768_mib": 512, "tiled_65536_mib": 1024, "growth_per_doubling": 2.5, "time_ratio": 1.3}


# ----------------------------------------------------------------------------- worker


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _watchdog(limit_bytes: int) -> None:
    def loop() -> None:
        while True:
            if _status_kib("VmRSS") * 1024 > limit_bytes:
                print(json.dumps({"error": f"RSS exceeded {limit_bytes / GIB:.1f} GiB, aborted"}), flush=True)
                os._exit(3)
            time.sleep(0.02)

    threading.Thread(target=loop, daemon=True).start()


def _make_loss(method: str, tile: int):
    from omnivec.finetune.losses import full_clip_loss, tiled_clip_loss

    if method == "tiled":
        return lambda i, t, s: tiled_clip_loss(i, t, s, tile_size=tile)
    if method == "full":
        return full_clip_loss
    from open_clip.loss import ClipLoss

    return ClipLoss()


def worker(method: str, b: int, d: int, tile: int, threads: int, repeats: int, limit_bytes: int) -> dict:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    _watchdog(limit_bytes)
    loss_fn = _make_loss(method, tile)

    def inputs(n: int):
        g = torch.Generator().manual_seed(0)
        img = F.normalize(torch.randn(n, d, generator=g), dim=-1).requires_grad_()
        txt = F.normalize(torch.randn(n, d, generator=g), dim=-1).requires_grad_()
        scale = torch.tensor(100.0, requires_grad=True)
        return img, txt, scale

    # warm-up at a small size so one-time allocations (thread pools, BLAS buffers) are not counted
    w = inputs(256)
    loss_fn(*w).backward()
    del w

    img, txt, scale = inputs(b)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    baseline = _status_kib("VmRSS") * 1024
    times = []
    for _ in range(repeats):
        for x in (img, txt, scale):
            x.grad = None
        t0 = time.perf_counter()
        loss = loss_fn(img, txt, scale)
        loss.backward()
        times.append(time.perf_counter() - t0)
        del loss
    peak = _status_kib("VmHWM") * 1024
    return {
        "method": method,
        "B": b,
        "peak_bytes": peak - baseline,
        "abs_bytes": peak,
        "baseline_bytes": baseline,
        "time_s": min(times),
        "times_s": times,
    }


# ----------------------------------------------------------------------------- driver


def mem_available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def run_one(args: argparse.Namespace, method: str, b: int, tile: int, repeats: int) -> dict:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", OMP_NUM_THREADS=str(args.threads))
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--_worker",
        method,
        str(b),
        str(args.dim),
        str(tile or 0),
        str(args.threads),
        str(repeats),
        str(int(args.max_gib * GIB)),
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.worker_timeout)
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        msg = json.loads(lines[-1])["error"] if lines else (proc.stderr.strip().splitlines() or ["?"])[-1]
        return {"method": method, "B": b, "tile": tile, "status": f"failed: {msg}", "wall_s": wall}
    res = json.loads(lines[-1])
    res.update(tile=tile, status="ok", wall_s=wall)
    return res


def default_repeats(b: int) -> int:
    return 3 if b <= 4096 else 2 if b <= 8192 else 1


def should_skip(args, method: str, b: int, factors: dict, baselines: dict) -> str | None:
    if args.quick and not args.sizes and (method, b) in QUICK_SKIP:
        return "not run: skipped in --quick to keep it short"
    if method == "tiled":
        return None
    need = factors[method] * b * b  # the loss's own peak, on top of the process baseline
    base = baselines.get(method, 1.0 * GIB)
    budget = min(args.max_gib * GIB, base + mem_available() - 2 * GIB)
    if base + need > budget:
        return f"not run: needs ~{need / GIB:.1f} GiB (+{base / GIB:.1f} GiB process baseline > {budget / GIB:.1f} GiB limit)"
    return None


def fmt_mib(x) -> str:
    return "-" if x is None else f"{x / MIB:,.0f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] + "\n\n" + "\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="B=4096,8192 for all methods, 16384 for tiled and full, plus tiled at 32768 if it fits the --budget-s")
    p.add_argument("--sizes", type=int, nargs="+", help="override the batch sizes")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--dim", type=int, default=512, help="embedding dimension D (default 512)")
    p.add_argument("--tile", type=int, default=None, help="tile size of the tiled loss (default: the library default for CPU)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads per worker (default 1: stable timings on a shared machine)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per measurement, min is reported (default 3/2/1 by size; 1 with --quick)")
    p.add_argument("--max-gib", type=float, default=6.0, help="never run a worker expected to exceed this RSS (default 6)")
    p.add_argument("--budget-s", type=float, default=60.0, help="--quick: wall-time budget deciding whether tiled 32768 is added")
    p.add_argument("--worker-timeout", type=float, default=900.0, help="seconds before a worker is killed")
    p.add_argument("--tile-sweep", action="store_true", help="only time the tiled loss at B=8192 for several tile sizes")
    p.add_argument("--_worker", nargs=7, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args._worker:
        m, b, d, tile, th, rep, lim = args._worker
        print(json.dumps(worker(m, int(b), int(d), int(tile), int(th), int(rep), int(lim))), flush=True)
        return 0

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from omnivec.finetune.losses._kernels import DEFAULT_TILE_CPU

    tile = args.tile or DEFAULT_TILE_CPU
    start = time.perf_counter()

    if args.tile_sweep:
        rows = [run_one(args, "tiled", 8192, t, args.repeats or 2) for t in (256, 512, 1024, 2048, 4096)]
        print(f"{'tile':>6} {'status':>8} {'peak MiB':>9} {'time s':>8}")
        for r in rows:
            print(f"{r['tile']:>6} {r['status'][:8]:>8} {fmt_mib(r.get('peak_bytes')):>9} {r.get('time_s', float('nan')):>8.2f}")
        print(json.dumps({"tile_sweep_B": 8192, **{f"time_s_tile_{r['tile']}": r.get("time_s") for r in rows},
                          **{f"peak_mib_tile_{r['tile']}": (r.get("peak_bytes") or 0) / MIB for r in rows}}))
        return 0

    sizes = tuple(args.sizes) if args.sizes else (QUICK_SIZES if args.quick else FULL_SIZES)
    factors = dict(PRIOR_FACTOR)
    baselines: dict[str, int] = {}
    results: list[dict] = []
    for b in sizes:
        for method in args.methods:
            skip = should_skip(args, method, b, factors, baselines)
            if skip:
                results.append({"method": method, "B": b, "tile": None, "status": skip})
                continue
            repeats = args.repeats or (1 if args.quick else default_repeats(b))
            r = run_one(args, method, b, tile if method == "tiled" else None, repeats)
            results.append(r)
            if r["status"] == "ok":
                baselines[method] = r["baseline_bytes"]
            if r["status"] == "ok" and method != "tiled":
                factors[method] = max(r["peak_bytes"] / (b * b), 1.0) * 1.05  # 5% margin
    tiled_ok = {r["B"]: r for r in results if r["method"] == "tiled" and r["status"] == "ok"}
    if args.quick and not args.sizes and "tiled" in args.methods and 16384 in tiled_ok:
        est = tiled_ok[16384]["wall_s"] * 4.2
        left = args.budget_s - (time.perf_counter() - start)
        if est <= left:
            results.append(run_one(args, "tiled", 32768, tile, 1))
        else:
            results.append({"method": "tiled", "B": 32768, "tile": tile,
                            "status": f"not run: ~{est:.0f}s > {max(left, 0):.0f}s left of --budget-s"})

    # ---------------------------------------------------------------- report
    print(f"# loss memory benchmark: D={args.dim} fp32, CPU threads={args.threads}, tiled tile={tile}, "
          f"{'quick' if args.quick else 'full'} mode")
    hdr = f"{'method':<10} {'B':>6} {'peak MiB':>9} {'abs MiB':>8} {'base MiB':>9} {'time s':>8}  status"
    print(hdr)
    print("-" * len(hdr))
    for r in sorted(results, key=lambda r: (r["B"], METHODS.index(r["method"]))):
        t = f"{r['time_s']:.2f}" if "time_s" in r else "-"
        print(f"{r['method']:<10} {r['B']:>6} {fmt_mib(r.get('peak_bytes')):>9} {fmt_mib(r.get('abs_bytes')):>8} "
              f"{fmt_mib(r.get('baseline_bytes')):>9} {t:>8}  {r['status']}")

    def get(method: str, b: int, key: str):
        for r in results:
            if r["method"] == method and r["B"] == b and r["status"] == "ok":
                return r[key]
        return None

    out: dict = {"mode": "quick" if args.quick else "full", "D": args.dim, "threads": args.threads, "tile_size": tile}
    all_sizes = sorted({r["B"] for r in results})
    for method in METHODS:
        for b in all_sizes:
            pk = get(method, b, "peak_bytes")
            if any(r["method"] == method and r["B"] == b for r in results):
                out[f"peak_mib_{method}_{b}"] = None if pk is None else round(pk / MIB, 1)
                ab = get(method, b, "abs_bytes")
                out[f"abs_mib_{method}_{b}"] = None if ab is None else round(ab / MIB, 1)
                ts = get(method, b, "time_s")
                out[f"time_s_{method}_{b}"] = None if ts is None else round(ts, 3)
    for key in ("peak_mib_tiled_32768", "peak_mib_tiled_65536"):
        out.setdefault(key, None)
    for b in all_sizes:
        lo, hi = get("tiled", b, "peak_bytes"), get("tiled", 2 * b, "peak_bytes")
        if lo and hi:
            out[f"peak_growth_{b // 1024}k_to_{2 * b // 1024}k"] = round(hi / lo, 3)
    out.setdefault("peak_growth_16k_to_32k", None)
    for b in (4096, 8192, 16384):
        for ref in ("full", "open_clip"):
            tt, tr = get("tiled", b, "time_s"), get(ref, b, "time_s")
            out[f"time_ratio_tiled_vs_{ref}_{b}"] = None if tt is None or tr is None else round(tt / tr, 3)
    skipped = {f"{r['method']}_{r['B']}": r["status"] for r in results if r["status"] != "ok"}
    if skipped:
        out["not_run"] = skipped

    growths = [v for k, v in out.items() if k.startswith("peak_growth_") and v is not None]
    ratios = [out[f"time_ratio_tiled_vs_full_{b}"] for b in (8192, 16384) if out[f"time_ratio_tiled_vs_full_{b}"] is not None]
    checks = {
        "tiled_32768_le_512MiB": None if out["peak_mib_tiled_32768"] is None else out["peak_mib_tiled_32768"] <= TARGETS["tiled_32768_mib"],
        "tiled_65536_le_1GiB": None if out["peak_mib_tiled_65536"] is None else out["peak_mib_tiled_65536"] <= TARGETS["tiled_65536_mib"],
        "growth_le_2.5x_per_doubling": None if not growths else max(growths) <= TARGETS["growth_per_doubling"],
        "time_ratio_le_1.3_at_8k_16k": None if not ratios else max(ratios) <= TARGETS["time_ratio"],
    }
    out["targets_met"] = checks
    out["wall_s"] = round(time.perf_counter() - start, 1)
    print("\n# targets: " + ", ".join(f"{k}={'n/a' if v is None else ('yes' if v else 'NO')}" for k, v in checks.items()))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
