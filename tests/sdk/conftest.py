"""A Gatehouse server for the Cerbos SDK tests.

By default the fixture starts `gatehouse serve` on free loopback ports, on the conformance
store (schema enforcement reject, Cerbos's default request limits, the `cerbos` JWT key set
from the corpus) and stops it by PID at the end of the session.

Environment:
  GATEHOUSE_BIN               the gatehouse binary (default: target/release/gatehouse, then
                              target/debug/gatehouse)
  GATEHOUSE_CONFORMANCE_DIR   the corpus (default: ../shared/conformance)
  GATEHOUSE_SDK_HTTP / GATEHOUSE_SDK_GRPC
                              host:port of an already running server configured as above;
                              when both are set nothing is started
  CI                          with CI=true a missing corpus is an error, otherwise a skip
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Server:
    http: str  # host:port
    grpc: str  # host:port
    corpus: Path

    @property
    def http_url(self) -> str:
        return f"http://{self.http}"


def corpus_dir() -> Path | None:
    corpus = Path(os.environ.get("GATEHOUSE_CONFORMANCE_DIR", ROOT.parent / "shared" / "conformance"))
    if (corpus / "README.md").exists():
        return corpus
    if os.environ.get("CI") == "true":
        raise RuntimeError(f"conformance corpus not found at {corpus} (CI=true)")
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gatehouse_bin() -> Path:
    if "GATEHOUSE_BIN" in os.environ:
        return Path(os.environ["GATEHOUSE_BIN"])
    for profile in ("release", "debug"):
        candidate = ROOT / "target" / profile / "gatehouse"
        if candidate.exists():
            return candidate
    raise RuntimeError("gatehouse binary not found: build it with `cargo build --release` or set GATEHOUSE_BIN")


def server_config(corpus: Path) -> str:
    """gatehouse.yaml for the SDK tests (the Cerbos API settings use Cerbos's key names)."""
    key = corpus / "auxdata" / "keys" / "verify_key.jwk"
    return f"""
policies:
  directory: {corpus / "store"}
  watchForChanges: false
schema:
  enforcement: reject
server:
  requestLimits:
    maxActionsPerResource: 50
    maxResourcesPerRequest: 50
auxData:
  jwt:
    keySets:
      - id: cerbos
        local:
          file: {key}
"""


def wait_healthy(base: str, proc: subprocess.Popen | None, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"gatehouse serve exited early:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"{base}/_cerbos/health", timeout=2) as resp:
                if b"SERVING" in resp.read():
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"gatehouse did not become healthy in 60s:\n{log.read_text()[-4000:] if log.exists() else ''}")


@pytest.fixture(scope="session")
def server():
    corpus = corpus_dir()
    if corpus is None:
        pytest.skip("conformance corpus not found (set GATEHOUSE_CONFORMANCE_DIR)")
    http, grpc = os.environ.get("GATEHOUSE_SDK_HTTP"), os.environ.get("GATEHOUSE_SDK_GRPC")
    if http and grpc:
        wait_healthy(f"http://{http}", None, Path("/dev/null"))
        yield Server(http=http, grpc=grpc, corpus=corpus)
        return
    with tempfile.TemporaryDirectory(prefix="gatehouse-sdk-") as tmp:
        config = Path(tmp) / "gatehouse.yaml"
        config.write_text(server_config(corpus), encoding="utf-8")
        http, grpc = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        log = Path(tmp) / "gatehouse.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(  # noqa: S603 - fixed argv
                [str(gatehouse_bin()), "serve", "--config", str(config), "--http-addr", http, "--grpc-addr", grpc,
                 "--admin-addr", f"127.0.0.1:{free_port()}"],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=tmp,
            )
        try:
            wait_healthy(f"http://{http}", proc, log)
            yield Server(http=http, grpc=grpc, corpus=corpus)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)
