"""The official Cerbos Python SDK over TLS (issue 12): Gatehouse serves Cerbos's
`server.tls` keys (`cert`, `key`, `caCert`) on both listeners; the SDK's HTTP and gRPC
clients verify Gatehouse's certificate against the test CA (`tls_verify=<ca.pem>`), and
clients that do not trust that CA are refused. Certificates are made at test time by
scripts/gen-test-certs.sh."""

from __future__ import annotations

import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from cerbos.sdk.client import CerbosClient
from cerbos.sdk.grpc.client import CerbosClient as GrpcCerbosClient
from conftest import ROOT, corpus_dir, free_port, gatehouse_bin, server_config
from test_cerbos_sdk import grpc_principal, grpc_resource, john, leave_request


@dataclass
class TlsServer:
    http: str
    grpc: str
    ca: Path


@pytest.fixture(scope="module")
def tls_server() -> Iterator[TlsServer]:
    corpus = corpus_dir()
    if corpus is None:
        pytest.skip("conformance corpus not found (set GATEHOUSE_CONFORMANCE_DIR)")
    with tempfile.TemporaryDirectory(prefix="gatehouse-sdk-tls-") as tmp:
        certs = Path(tmp) / "certs"
        subprocess.run(["bash", str(ROOT / "scripts" / "gen-test-certs.sh"), str(certs)], check=True)
        tls = f"  tls: {{cert: {certs / 'server.pem'}, key: {certs / 'server.key'}, caCert: {certs / 'ca.pem'}}}\n"
        config = Path(tmp) / "gatehouse.yaml"
        config.write_text(server_config(corpus).replace("server:\n", "server:\n" + tls, 1), encoding="utf-8")
        http, grpc_addr, admin = (f"127.0.0.1:{free_port()}" for _ in range(3))
        log = Path(tmp) / "gatehouse.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(  # noqa: S603 - fixed argv
                [str(gatehouse_bin()), "serve", "--config", str(config), "--http-addr", http,
                 "--grpc-addr", grpc_addr, "--admin-addr", admin],
                stdout=out, stderr=subprocess.STDOUT, cwd=tmp,
            )
        try:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, log.read_text()[-4000:]
                try:
                    with urllib.request.urlopen(f"http://{admin}/health", timeout=2):
                        break
                except OSError:
                    assert time.monotonic() < deadline, log.read_text()[-4000:]
                    time.sleep(0.2)
            yield TlsServer(http=http, grpc=grpc_addr, ca=certs / "ca.pem")
        finally:
            proc.terminate()
            proc.wait(timeout=15)


def test_issue_12_sdk_http_client_over_tls(tls_server: TlsServer) -> None:
    with CerbosClient(f"https://{tls_server.http}", tls_verify=str(tls_server.ca)) as c:
        assert c.is_healthy()
        assert c.is_allowed("view:public", john(), leave_request())
        assert not c.is_allowed("approve", john(), leave_request())
    # A client that does not trust the test CA refuses the connection.
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"https://{tls_server.http}/_cerbos/health", timeout=5)


def test_issue_12_sdk_grpc_client_over_tls(tls_server: TlsServer) -> None:
    with GrpcCerbosClient(tls_server.grpc, tls_verify=str(tls_server.ca)) as c:
        assert c.is_allowed("view:public", grpc_principal(), grpc_resource())
        assert not c.is_allowed("approve", grpc_principal(), grpc_resource())
        assert c.server_info().version
    # Plaintext gRPC to the TLS listener gets no answer.
    channel = grpc.insecure_channel(tls_server.grpc)
    with pytest.raises(grpc.FutureTimeoutError):
        grpc.channel_ready_future(channel).result(timeout=3)
    channel.close()
