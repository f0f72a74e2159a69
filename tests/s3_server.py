"""A real S3 API on localhost (moto's server) that counts the bytes each client moves.

Clients are told apart by their access key id (any id works with moto), so the traffic of each
worker "host" is measured at the server, independently of what the code under test reports.
``python -m tests.s3_server PORT COUNTS.json`` runs it standalone (``bench/store_traffic.py``).
"""

from __future__ import annotations

import json
import re
import sys
import threading
from collections import defaultdict
from pathlib import Path

from werkzeug.serving import make_server

_CREDENTIAL = re.compile(r"Credential=([^/]+)/")
BUCKET = "sail-runs"


class S3Server:
    def __init__(self, port: int = 0, counts_file: Path | None = None) -> None:
        from moto.server import DomainDispatcherApplication, create_backend_app

        self.counts: dict[str, dict[str, int]] = defaultdict(lambda: {"requests": 0, "bytes_down": 0, "bytes_up": 0})
        self.counts_file = counts_file
        self._lock = threading.Lock()
        self._server = make_server("127.0.0.1", port, self._counting(DomainDispatcherApplication(create_backend_app)),
                                   threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _counting(self, app):
        def wrapped(environ, start_response):
            match = _CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
            client = match.group(1) if match else "anonymous"
            sent = int(environ.get("CONTENT_LENGTH") or 0) if environ["REQUEST_METHOD"] in ("PUT", "POST") else 0
            body = app(environ, start_response)
            received = 0
            for chunk in body:
                received += len(chunk)
                yield chunk
            if environ["REQUEST_METHOD"] != "GET":
                received = 0
            with self._lock:
                entry = self.counts[client]
                entry["requests"] += 1
                entry["bytes_up"] += sent
                entry["bytes_down"] += received
                if self.counts_file is not None:
                    self.counts_file.write_text(json.dumps(self.counts, indent=1))

        return wrapped

    def env(self, client: str) -> dict[str, str]:
        """What a client needs in its environment: the usual AWS variables, nothing else."""
        return {"AWS_ENDPOINT_URL": self.url, "AWS_ACCESS_KEY_ID": client, "AWS_SECRET_ACCESS_KEY": "not-a-secret",
                "AWS_DEFAULT_REGION": "us-east-1"}

    def start(self) -> S3Server:
        self._thread.start()
        import boto3

        boto3.client("s3", endpoint_url=self.url, aws_access_key_id="setup", aws_secret_access_key="x",
                     region_name="us-east-1").create_bucket(Bucket=BUCKET)
        return self

    def stop(self) -> None:
        self._server.shutdown()


if __name__ == "__main__":
    server = S3Server(int(sys.argv[1]), Path(sys.argv[2])).start()
    print(server.url, flush=True)
    threading.Event().wait()
