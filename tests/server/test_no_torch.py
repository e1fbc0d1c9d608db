"""The serving path never imports torch: import, load a bundle, embed, serve a request — in a fresh process."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_serving_path_does_not_import_torch(tiny_bundle):
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
        with TestClient(create_app(settings)) as client:
            r = client.post("/v1/embed", json={{"texts": ["a dog"]}})
            assert r.status_code == 200, r.text
        banned = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "open_clip", "torchvision"))
        print("BANNED", banned)
        sys.exit(1 if banned else 0)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
