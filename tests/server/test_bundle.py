"""Bundle validation: every broken bundle is a clear startup error naming the problem."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from omnivec.server.bundle import BundleError, ModelBundle


@pytest.fixture
def bundle_copy(tiny_bundle, tmp_path):
    dst = tmp_path / "b"
    shutil.copytree(tiny_bundle, dst)
    return dst


def _edit_manifest(root, fn):
    path = root / "manifest.json"
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def test_loads(tiny_bundle):
    assert ModelBundle.load(tiny_bundle).manifest.model_name == "omnivec-tiny"


def test_missing_directory(tmp_path):
    with pytest.raises(BundleError, match="does not exist"):
        ModelBundle.load(tmp_path / "nope")


def test_missing_manifest(tmp_path):
    with pytest.raises(BundleError, match="manifest.json is missing"):
        ModelBundle.load(tmp_path)


def test_missing_tower_file(bundle_copy):
    (bundle_copy / "image.onnx").unlink()
    with pytest.raises(BundleError, match=r"image\.onnx is missing"):
        ModelBundle.load(bundle_copy)


def test_missing_tokenizer(bundle_copy):
    (bundle_copy / "tokenizer.json").unlink()
    with pytest.raises(BundleError, match=r"tokenizer\.json is missing"):
        ModelBundle.load(bundle_copy)


def test_wrong_version(bundle_copy):
    _edit_manifest(bundle_copy, lambda m: m.update(format_version=99))
    with pytest.raises(BundleError, match="format_version 99 is not supported"):
        ModelBundle.load(bundle_copy)


def test_inconsistent_dim(bundle_copy):
    _edit_manifest(bundle_copy, lambda m: m.update(embed_dim=128))
    with pytest.raises(BundleError, match="!= embed_dim 128"):
        ModelBundle.load(bundle_copy)


def test_wrong_preprocess_kind(bundle_copy):
    def swap(m):
        m["towers"]["image"]["preprocess"] = m["towers"]["text"]["preprocess"]

    _edit_manifest(bundle_copy, swap)
    with pytest.raises(BundleError, match="towers.image.preprocess"):
        ModelBundle.load(bundle_copy)


def test_sigmoid_needs_bias(bundle_copy):
    _edit_manifest(bundle_copy, lambda m: m["scoring"].update(kind="sigmoid", logit_bias=None))
    with pytest.raises(BundleError, match="logit_bias"):
        ModelBundle.load(bundle_copy)


def test_not_json(bundle_copy):
    (bundle_copy / "manifest.json").write_text("{oops")
    with pytest.raises(BundleError, match="not valid JSON"):
        ModelBundle.load(bundle_copy)


def test_serve_refuses_broken_bundle_at_startup(bundle_copy):
    (bundle_copy / "text.onnx").unlink()
    proc = subprocess.run(
        [sys.executable, "-m", "omnivec", "serve", "--bundle", str(bundle_copy), "--port", "0"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2 and "text.onnx is missing" in proc.stderr
