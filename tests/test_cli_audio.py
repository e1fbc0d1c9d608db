"""`omnivec index / search / classify` with audio files, against `omnivec serve` on omnivec-tiny-audio."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.media import encode, scene, sound_clips


def _run(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "omnivec", *args], capture_output=True, text=True, timeout=timeout)


def _lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_index_search_and_classify_audio_files(audio_server, tmp_path):
    clips = sound_clips()
    folder = tmp_path / "media"
    (folder / "sub").mkdir(parents=True)
    for name, data in clips.items():
        (folder / ("sub" if name.endswith(".wav") else "") / name).write_bytes(data)
    (folder / "photo.png").write_bytes(encode(scene(50, 40, seed=9), "PNG"))
    (folder / "notes.txt").write_text("neither")
    target = ["--collection", "cli-sounds", "--server", audio_server.url]

    proc = _run("index", str(folder), *target, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    summary = _lines(proc.stdout)[-1]
    assert (summary["indexed"], summary["errors"]) == (len(clips) + 1, 0), "every audio file and the picture; not the .txt"

    query = folder / "sub" / "clicks.wav"
    proc = _run("search", "--audio", str(query), "--modality", "audio", "--top-k", "3", *target)
    assert proc.returncode == 0, proc.stderr
    hits = _lines(proc.stdout)
    assert hits[0]["payload"]["path"] == str(query) and hits[0]["score"] > 0.9999 and {h["modality"] for h in hits} == {"audio"}

    proc = _run("classify", str(folder / "noise.flac"), str(folder / "photo.png"), "--labels", "rain,a dog,a siren", "--server", audio_server.url)
    assert proc.returncode == 0, proc.stderr
    rows = _lines(proc.stdout)
    assert [r["input"] for r in rows] == [str(folder / "noise.flac"), str(folder / "photo.png")]
    assert all(abs(sum(s["score"] for s in r["labels"]) - 1) < 1e-6 for r in rows)


def test_sources_pick_up_audio_from_globs_and_manifests(tmp_path):
    from omnivec.server.sources import read_source

    for name in ("a.wav", "b.FLAC", "c.ogg", "d.opus", "e.mp3", "f.png", "g.txt"):
        (tmp_path / name).write_bytes(b"x")
    found = read_source(str(tmp_path / "*"))
    assert [(p.path.name, p.modality) for p in found] == [
        ("a.wav", "audio"), ("b.FLAC", "audio"), ("c.ogg", "audio"), ("d.opus", "audio"), ("e.mp3", "audio"), ("f.png", "image")
    ]
    (tmp_path / "m.csv").write_text("path,text,mood\na.wav,,calm\n,a caption,\nf.png,,busy\n")
    rows = read_source(str(tmp_path / "m.csv"))
    assert [(r.modality, r.payload) for r in rows] == [("audio", {"mood": "calm", "path": "a.wav"}), ("text", {}), ("image", {"mood": "busy", "path": "f.png"})]
    (tmp_path / "m.jsonl").write_text('{"path": "e.mp3", "id": "song"}\n')
    (row,) = read_source(str(tmp_path / "m.jsonl"))
    assert (row.modality, row.id, row.path) == ("audio", "song", tmp_path / "e.mp3")
