"""Process lifecycle: a Gatehouse started like the others stops cleanly on SIGTERM."""

from __future__ import annotations

import subprocess

import httpx
import yaml

import stack


def test_gatehouse_serves_and_exits_on_sigterm(app, work_dir):
    gh = stack.start_gatehouse("lifecycle", app.url, work_dir)
    try:
        assert httpx.get(gh.health_url, timeout=5).status_code == 200
        assert httpx.get(f"http://127.0.0.1:{gh.http_port}/health", timeout=5).status_code == 200
    finally:
        rc = gh.proc.stop()
    assert rc == 0, gh.proc.log_tail()
    assert not gh.proc.alive()


def test_gatehouse_rejects_a_broken_config(work_dir):
    """A config with an unknown key is refused at start (not served half-configured)."""
    cfg = stack.gatehouse_config(stack.free_port(), stack.free_port(), "http://127.0.0.1:1")
    cfg["extAuthz"]["unknownKey"] = True
    path = work_dir / "gatehouse-broken.yaml"
    path.write_text(yaml.safe_dump(cfg))
    r = subprocess.run([str(stack.gatehouse_binary()), "serve", "--config", str(path)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "unknownKey" in r.stderr + r.stdout
