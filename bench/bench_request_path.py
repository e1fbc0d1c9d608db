"""The request path before and after issue 15: search latency over HTTP and hops per search.

Before = the server at --baseline-rev (default: the merge-base with main), unpacked with `git archive`
and imported in place of this checkout (PYTHONPATH); after = this checkout. Same machine, same run,
same bundle (omnivec-tiny, 64-d), same data.

latency  For each size (20k and 100k points): an Edge collection in the bundle's space is filled
         directly with random unit vectors, then for each tree `omnivec serve` runs in a child
         process on it and one connection sends text searches one after another (top_k 10); p50
         and p90 in ms. The old path counted the collection's points exactly before every query;
         the new one checks the space on cached metadata. Ratio: before p50 / after p50.
hops     One multipart image search through the app in-process (starlette TestClient), profiled
         (coroutine resumptions are not calls): calls from one server module into a function of
         another (`hops`), of those the calls into a higher layer (`upward_hops`: api > services >
         inference/index/preprocess/fetch/sources > media > core), calls into a module its caller
         had already called into and left (`revisits`: 0 = each module visited once, in one
         direction), server modules entered
         (`modules`) and server functions called (`calls`); each tree in its own child process.

    .venv/bin/python bench/bench_request_path.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, bundle, final_json, percentile  # noqa: E402

QUERIES = ["a red bike", "a dog on a beach", "a blue square", "city lights at night", "a bowl of soup"]


def baseline_tree(rev: str, into: Path) -> Path:
    """The server at `rev`, laid out as the installed packages so that PYTHONPATH=<returned> imports it."""
    src = into / "src"
    src.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    pkg = into / "pkg"
    shutil.copytree(src / "omnivec", pkg / "omnivec")
    for name, folder in {"server": "server", "model_export": "model_export", "finetune": "finetune"}.items():
        (pkg / "omnivec" / name).symlink_to(src / folder)
    (pkg / "omnivec_client").symlink_to(src / "clients" / "python" / "omnivec_client")
    return pkg


def fill(data_dir: Path, bundle_dir: Path, n: int, optimize: bool) -> None:
    """One collection `bench` of n random unit vectors in the bundle's space (what the API would store)."""
    from omnivec.server.bundle import ModelBundle
    from omnivec.server.index import EdgeIndexStore, Point

    manifest = ModelBundle.load(bundle_dir).manifest
    rng = np.random.default_rng(0)
    store = EdgeIndexStore(data_dir / "index", search_threads=1, indexing_threads=1)
    store.create_collection("bench", manifest.embed_dim, manifest.space_id, manifest.model_name, {"description": "", "extra": {}})
    for start in range(0, n, 5000):
        vectors = rng.normal(size=(min(5000, n - start), manifest.embed_dim)).astype(np.float32)
        store.upsert("bench", [Point(f"p{start + i}", v, {"modality": "image", "i": start + i}) for i, v in enumerate(vectors)])
    if optimize:
        store.optimize("bench")
    store.close()


def latency(bundle_dir: Path, data_dir: Path, pythonpath: str | None, requests: int) -> dict:
    import httpx

    from omnivec.server_process import ServerProcess

    env = {"OMNIVEC_DATA_DIR": str(data_dir), "OMNIVEC_INDEX__SEARCH_THREADS": "1", "OMNIVEC_INDEX__OPTIMIZE_AFTER_POINTS": "0"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    with ServerProcess(bundle_dir, env=env, log=data_dir / f"server-{'before' if pythonpath else 'after'}.log") as srv:
        times: list[float] = []
        with httpx.Client(base_url=srv.url, timeout=60) as client:
            for i in range(requests + 20):
                started = time.perf_counter()
                r = client.post("/v1/collections/bench/search", json={"query": {"text": QUERIES[i % len(QUERIES)]}, "top_k": 10})
                elapsed = time.perf_counter() - started
                r.raise_for_status()
                if i >= 20:  # warm-up
                    times.append(elapsed * 1000)
    return {"p50_ms": percentile(times, 50), "p90_ms": percentile(times, 90)}


HOPS_CHILD = r"""
import io, json, sys, tempfile, threading
from pathlib import Path
import numpy as np
from PIL import Image

bundle_dir, data_dir = Path(sys.argv[1]), Path(sys.argv[2])
from omnivec.server.api.app import create_app
from omnivec.server.settings import Settings
from starlette.testclient import TestClient

here = {}
calls, hops, files = 0, 0, set()
active = False

RANK = {"api": 4, "services": 3, "inference": 2, "index": 2, "preprocess": 2, "fetch": 2, "sources": 2, "media": 1, "mediatype": 1}
upward = 0
ENTERED = {}  # caller module -> the modules it called into, in order (repeats in a row folded)

def module(frame):
    name = frame.f_globals.get("__name__", "") if frame is not None else ""
    return name if name.startswith("omnivec.server") else None

def rank(name):
    return RANK.get(name.split(".")[2], 0) if name.count(".") >= 2 else 0

def profile(frame, event, arg):
    global calls, hops, upward
    if not active or event != "call" or frame.f_lasti > 0:  # f_lasti > 0: a coroutine or generator resuming, not a call
        return
    callee = module(frame)
    if callee is None:
        return
    calls += 1
    files.add(callee)
    caller = module(frame.f_back)
    if caller is not None and caller != callee:
        hops += 1
        upward += rank(callee) > rank(caller)
        entered = ENTERED.setdefault(caller, [])
        if not entered or entered[-1] != callee:
            entered.append(callee)

threading.setprofile(profile)
sys.setprofile(profile)
settings = Settings(data_dir=data_dir, model={"bundle": bundle_dir, "intra_op_threads": 1}, server={"preprocess_threads": 1})
buf = io.BytesIO()
Image.fromarray(np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(buf, "PNG")
with TestClient(create_app(settings)) as client:
    assert client.post("/v1/collections", json={"name": "hops"}).status_code == 201
    assert client.post("/v1/collections/hops/items", json={"items": [{"text": f"item {i}"} for i in range(5)]}).status_code == 200
    files_in = {"image": ("q.png", buf.getvalue(), "image/png")}
    client.post("/v1/collections/hops/search", files=files_in, data={"params": json.dumps({"top_k": 3})}).raise_for_status()  # warm
    calls, hops, upward, files = 0, 0, 0, set()
    ENTERED.clear()
    active = True
    r = client.post("/v1/collections/hops/search", files=files_in, data={"params": json.dumps({"top_k": 3})})
    active = False
    r.raise_for_status()
import omnivec.server
revisits = sum(len(seq) - len(set(seq)) for seq in ENTERED.values())  # a module called into again after the caller went elsewhere
print(json.dumps({"hops": hops, "upward_hops": upward, "revisits": revisits, "modules": len(files), "calls": calls, "server": str(Path(omnivec.server.__file__).resolve())}))
"""


def hops(bundle_dir: Path, data_dir: Path, pythonpath: str | None) -> dict:
    env = {**os.environ, **({"PYTHONPATH": pythonpath} if pythonpath else {})}
    out = subprocess.run([sys.executable, "-c", HOPS_CHILD, str(bundle_dir), str(data_dir)], env=env, check=True, capture_output=True, text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert str(Path(pythonpath).parent if pythonpath else ROOT) in result.pop("server"), f"the {'before' if pythonpath else 'after'} tree was not the one imported"
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer requests, no HNSW build (about a minute or two)")
    parser.add_argument("--baseline-rev", default=None, help="git revision of the 'before' server (default: merge-base of HEAD and main)")
    parser.add_argument("--sizes", default="20000,100000")
    parser.add_argument("--requests", type=int, default=None, help="timed searches per tree and size (default 150 quick, 600 full)")
    args = parser.parse_args()
    rev = args.baseline_rev or subprocess.run(["git", "-C", str(ROOT), "merge-base", "HEAD", "main"], check=True, capture_output=True, text=True).stdout.strip()
    requests = args.requests or (150 if args.quick else 600)
    bundle_dir = bundle("omnivec-tiny", int8=False)
    figures: dict = {"baseline_rev": rev[:10], "requests": requests}
    with tempfile.TemporaryDirectory(prefix="bench-request-path-") as tmp:
        tmp_path = Path(tmp)
        before = str(baseline_tree(rev, tmp_path / "before"))
        os.chdir(tmp_path)  # children must not find this checkout's omnivec/ through the working directory
        for label, path in (("before", before), ("after", None)):
            result = hops(bundle_dir, tmp_path / f"hops-{label}", path)
            print(f"hops {label}: {result}", file=sys.stderr, flush=True)
            figures.update({f"{k}_{label}": v for k, v in result.items()})
        for n in (int(s) for s in args.sizes.split(",")):
            data_dir = tmp_path / f"data-{n}"
            started = time.perf_counter()
            fill(data_dir, bundle_dir, n, optimize=not args.quick)
            print(f"{n} points filled in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
            for label, path in (("before", before), ("after", None)):
                result = latency(bundle_dir, data_dir, path, requests)
                print(f"{n} points, {label}: {result}", file=sys.stderr, flush=True)
                figures.update({f"{k.replace('_ms', '')}_{label}_{n // 1000}k_ms": v for k, v in result.items()})
            figures[f"p50_before_over_after_{n // 1000}k"] = figures[f"p50_before_{n // 1000}k_ms"] / figures[f"p50_after_{n // 1000}k_ms"]
    final_json(figures)


if __name__ == "__main__":
    main()
