"""`omnivec index / search / classify` against a running server (and classify in-process)."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx

from omnivec.server_process import free_port
from tests.media import encode, scene


def _run(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "omnivec", *args], capture_output=True, text=True, timeout=timeout)


def _lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_help_explains_the_client_commands():
    for sub in ("index", "search", "classify"):
        proc = _run(sub, "--help")
        assert proc.returncode == 0 and "--server" in proc.stdout and "--bundle" in proc.stdout
        assert "owns the embedded index" in proc.stdout
    assert "Resumable" in _run("index", "--help").stdout


def test_index_is_resumable_and_search_finds_items(server, tmp_path):
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    for i in range(5):
        (photos / ("sub" if i > 2 else "") / f"p{i}.png").write_bytes(encode(scene(40 + 5 * i, 36, seed=20 + i), "PNG"))
    (photos / "notes.txt").write_text("not an image")
    target = ["--collection", "cli-photos", "--server", server.url, "--no-progress"]

    first = _run("index", str(photos / "p*.png"), *target)  # a glob: 3 of the 5 files
    assert first.returncode == 0, first.stderr
    assert _lines(first.stdout)[-1]["indexed"] == 3 and "created collection" in first.stderr

    again = _run("index", str(photos), *target)  # the whole folder: resumes
    assert again.returncode == 0, again.stderr
    summary = _lines(again.stdout)[-1]
    assert (summary["indexed"], summary["skipped"], summary["errors"]) == (2, 3, 0)
    assert httpx.get(f"{server.url}/v1/collections/cli-photos", timeout=10).json()["count"] == 5

    manifest = tmp_path / "captions.csv"
    manifest.write_text("id,text,path,year,author\ncap-1,a sailing boat at sunset,,2021,ana\ncap-2,a bowl of soup,,2019,bo\n,,photos/p0.png,2020,cy\n,,photos/missing.png,2020,dd\n")
    csv_run = _run("index", str(manifest), *target)
    assert csv_run.returncode == 1, "a missing file is an item error"
    summary = _lines(csv_run.stdout)[-1]
    assert (summary["indexed"], summary["skipped"], summary["errors"]) == (2, 1, 1)
    assert "captions.csv:5" in csv_run.stderr and "missing.png" in csv_run.stderr

    proc = _run("search", "a bowl of soup", "--top-k", "3", *target[:-1])
    assert proc.returncode == 0, proc.stderr
    hits = _lines(proc.stdout)
    assert hits[0]["rank"] == 1 and hits[0]["id"] == "cap-2" and hits[0]["payload"] == {"year": 2019, "author": "bo"}
    assert len(hits) == 3

    proc = _run("search", "--image", str(photos / "sub" / "p4.png"), "--modality", "image", "--top-k", "2", *target[:-1])
    assert proc.returncode == 0, proc.stderr
    hits = _lines(proc.stdout)
    assert hits[0]["payload"]["path"].endswith("p4.png") and hits[0]["score"] > 0.999 and {h["modality"] for h in hits} == {"image"}

    # p0.png was skipped by the CSV run (already indexed), so only cap-1 has a year >= 2020
    proc = _run("search", "x", "--filter", '{"must": [{"key": "year", "range": {"gte": 2020}}]}', *target[:-1])
    assert proc.returncode == 0, proc.stderr
    assert [h["id"] for h in _lines(proc.stdout)] == ["cap-1"]


def test_classify_through_the_server_and_in_process(server, tiny_bundle, tmp_path):
    image = tmp_path / "x.png"
    image.write_bytes(encode(scene(), "PNG"))
    proc = _run("classify", str(image), "--text", "dog", "--labels", "cat,dog,car", "--server", server.url)
    assert proc.returncode == 0, proc.stderr
    rows = _lines(proc.stdout)
    assert [r["input"] for r in rows] == ["dog", str(image)] and rows[0]["labels"][0]["label"] == "dog"
    assert abs(sum(s["score"] for s in rows[1]["labels"]) - 1) < 1e-6

    proc = _run("classify", "--text", "car", "--labels", "cat,dog,car", "--bundle", str(tiny_bundle), "--data-dir", str(tmp_path / "d"))
    assert proc.returncode == 0, proc.stderr
    assert _lines(proc.stdout)[0]["labels"][0]["label"] == "car"


def test_client_errors_are_explained(server, tmp_path):
    proc = _run("search", "x", "--collection", "c", "--server", f"http://127.0.0.1:{free_port()}")
    assert proc.returncode == 2 and "no omnivec server answers" in proc.stderr and "omnivec serve" in proc.stderr
    proc = _run("search", "x", "--collection", "no-such-collection", "--server", server.url)
    assert proc.returncode == 2 and "collection_not_found" in proc.stderr
    proc = _run("index", str(tmp_path / "nothing-here"), "--collection", "c", "--server", server.url)
    assert proc.returncode == 2 and "no image files" in proc.stderr
    proc = _run("classify", "--text", "a", "--server", server.url)
    assert proc.returncode == 2 and "--labels" in proc.stderr


def test_index_streams_a_manifest_with_requests_in_flight(server, tiny_bundle, tmp_path):
    manifest = tmp_path / "notes.jsonl"
    rows = [{"text": f"streamed note {i}", "n": i} for i in range(45)] + [{"text": "", "id": "empty"}]
    manifest.write_text("\n".join(json.dumps(r) for r in rows[:-1]) + "\n")
    target = ["--collection", "cli-stream", "--server", server.url, "--batch-size", "4"]

    first = _run("index", str(manifest), *target, "--concurrency", "3")  # with the progress bar: items/s and ETA
    assert first.returncode == 0, first.stderr
    assert (_lines(first.stdout)[-1]["indexed"], _lines(first.stdout)[-1]["skipped"]) == (45, 0)
    assert "45/45" in first.stderr and "items/s" in first.stderr
    again = _run("index", str(manifest), *target, "--concurrency", "2", "--no-progress")
    assert (_lines(again.stdout)[-1]["indexed"], _lines(again.stdout)[-1]["skipped"]) == (0, 45)
    hit = httpx.post(f"{server.url}/v1/collections/cli-stream/search", json={"query": {"text": "streamed note 17"}, "top_k": 1}, timeout=30).json()
    assert hit["results"][0]["payload"]["n"] == 17

    manifest.write_text(manifest.read_text() + '{"text": "row 47 is broken"\n')  # checked before anything is sent
    broken = _run("index", str(manifest), *target, "--no-progress")
    assert broken.returncode == 2 and "notes.jsonl:46" in broken.stderr
    assert _run("index", str(manifest), *target, "--concurrency", "0").returncode == 2

    in_process = _run("index", str(tmp_path / "notes.jsonl"), "--collection", "local", "--bundle", str(tiny_bundle), "--data-dir", str(tmp_path / "d"),
                      "--concurrency", "3", "--batch-size", "4", "--no-progress")  # fmt: skip
    assert in_process.returncode == 2  # the broken manifest is refused in-process too
    manifest.write_text("\n".join(json.dumps(r) for r in rows[:-1]) + "\n")
    in_process = _run("index", str(manifest), "--collection", "local", "--bundle", str(tiny_bundle), "--data-dir", str(tmp_path / "d"),
                      "--concurrency", "3", "--batch-size", "4", "--no-progress")  # fmt: skip
    assert in_process.returncode == 0, in_process.stderr
    assert _lines(in_process.stdout)[-1]["indexed"] == 45
