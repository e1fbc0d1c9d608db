"""The serving path never imports torch: import, load a bundle, embed, index, search, classify — in a fresh process."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_serving_path_does_not_import_torch(tiny_bundle, tmp_path):
    code = textwrap.dedent(
        f"""
        import sys
        from fastapi.testclient import TestClient
        from omnivec.server.api.app import create_app
        from omnivec.server.settings import Settings
        import omnivec.cli

        settings = Settings()
        settings.model.bundle = {str(tiny_bundle)!r}
        settings.model.intra_op_threads = 1
        settings.data_dir = {str(tmp_path / "data")!r}
        with TestClient(create_app(settings)) as client:
            r = client.post("/v1/embed", json={{"texts": ["a dog"]}})
            assert r.status_code == 200, r.text
            calls = [
                ("post", "/v1/collections", {{"name": "c"}}),
                ("post", "/v1/collections/c/items", {{"items": [{{"text": "a dog"}}, {{"url": "http://10.0.0.1/x.png"}}]}}),
                ("post", "/v1/collections/c/search", {{"query": {{"text": "a dog"}}, "filter": {{"must": [{{"key": "modality", "match": {{"value": "text"}}}}]}}}}),
                ("put", "/v1/labelsets/pets", {{"labels": ["dog", "cat"]}}),
                ("post", "/v1/classify", {{"inputs": [{{"text": "a dog"}}], "labelset": "pets"}}),
                ("request", "/v1/collections/c/items", {{"ids": ["x"]}}),
            ]
            for method, path, body in calls:
                r = client.request("DELETE", path, json=body) if method == "request" else getattr(client, method)(path, json=body)
                assert r.status_code in (200, 201), (path, r.text)
        banned = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "open_clip", "torchvision"))
        print("BANNED", banned)
        sys.exit(1 if banned else 0)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
