"""A local HTTP server on 127.0.0.1 serving the URLs that URL-input tests fetch (good and bad)."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class MediaServer:
    """Routes: /img/<name> (registered bytes), /file/<name> (registered (bytes, content type) pairs), /html, /slow (stalls), /drip (one byte a second),
    /big (oversized, declared), /big-chunked (oversized, no length), /redirect/<n> (n hops to an
    image), /to-blocked (redirect to the cloud metadata address), /missing (404)."""

    def __init__(
        self, images: dict[str, bytes], big_bytes: int = 3 * 1024 * 1024, stall_s: float = 5.0, files: dict[str, tuple[bytes, str]] | None = None
    ) -> None:
        self.images = images
        self.files = files or {}
        self.big_bytes = big_bytes
        self.stall_s = stall_s
        self.hits: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def _send(self, status: int, body: bytes, content_type: str, length: bool = True, headers: dict | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                if length:
                    self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                path = self.path
                server.hits.append(f"{self.headers.get('Host')}{path}")
                try:
                    if path.startswith("/img/") and path[5:] in server.images:
                        self._send(200, server.images[path[5:]], "image/png")
                    elif path.startswith("/file/") and path[6:] in server.files:
                        self._send(200, *server.files[path[6:]])
                    elif path == "/untyped":
                        self._send(200, next(iter(server.images.values())), "application/octet-stream")
                    elif path == "/html":
                        self._send(200, b"<html>not an image</html>", "text/html; charset=utf-8")
                    elif path == "/slow":
                        time.sleep(server.stall_s)
                        self._send(200, b"late", "image/png")
                    elif path == "/drip":
                        self.send_response(200)
                        self.send_header("Content-Type", "image/png")
                        self.end_headers()
                        for _ in range(int(server.stall_s * 4)):
                            self.wfile.write(b"x")
                            self.wfile.flush()
                            time.sleep(0.25)
                    elif path == "/big":
                        self._send(200, b"\0" * server.big_bytes, "image/png")
                    elif path == "/big-chunked":
                        self.send_response(200)
                        self.send_header("Content-Type", "image/png")
                        self.end_headers()
                        for _ in range(server.big_bytes // 65536 + 1):
                            self.wfile.write(b"\0" * 65536)
                    elif path.startswith("/redirect/"):
                        n = int(path.rsplit("/", 1)[1])
                        target = f"/redirect/{n - 1}" if n > 1 else f"/img/{next(iter(server.images))}"
                        self._send(302, b"", "text/plain", headers={"Location": target})
                    elif path == "/to-blocked":
                        self._send(302, b"", "text/plain", headers={"Location": "http://169.254.169.254/latest/meta-data/"})
                    else:
                        self._send(404, b"no such thing", "text/plain")
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "MediaServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
