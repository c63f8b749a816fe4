"""The load benchmark's bookkeeping (benches/load/harness.py), without starting a server:
the run order that keeps each round's servers back to back, and the ratios BENCHMARKS.md
reports, of the medians and of each round's pair."""

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def harness():
    spec = importlib.util.spec_from_file_location("load_harness", ROOT / "benches" / "load" / "harness.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    yield module
    shutil.rmtree(module.WORK, ignore_errors=True)
    del sys.modules[spec.name]


def server(h, label):
    return h.Server(label, h.Target("http", "http://127.0.0.1:1/"), [])


def test_schedule_keeps_each_rounds_servers_back_to_back_and_gives_envoy_its_extra_rounds(harness):
    h = harness
    direct = h.Group("ext_authz Check", "h2load", [1, 64], [server(h, "empty"), server(h, "gh")], rounds=2)
    envoy = h.Group("Envoy", "wrk", [64], [server(h, "empty"), server(h, "gh")], rounds=4, seconds=1.0)
    order = [(rnd, g.name, c, s.label) for rnd, g, c, s in h.schedule([direct, envoy])]
    assert order[:6] == [
        (0, "ext_authz Check", 1, "empty"), (0, "ext_authz Check", 1, "gh"),
        (0, "ext_authz Check", 64, "empty"), (0, "ext_authz Check", 64, "gh"),
        (0, "Envoy", 64, "empty"), (0, "Envoy", 64, "gh"),
    ]
    assert sum(1 for o in order if o[1] == "Envoy") == 8
    assert sum(1 for o in order if o[1] == "ext_authz Check") == 8
    # Rounds 3 and 4 are Envoy's alone, still alternating.
    assert order[12:] == [(2, "Envoy", 64, "empty"), (2, "Envoy", 64, "gh"),
                          (3, "Envoy", 64, "empty"), (3, "Envoy", 64, "gh")]


def row(h, group, label, rates):
    runs = [{"req_s": r, "p99_ms": 1.0, "cpu_us_per_req": 10.0} for r in rates]
    return {"group": group, "server": label, "concurrency": 64, "runs": runs,
            "req_s": h.median_range(rates), "p99_ms": h.median_range([1.0]),
            "cpu_us_per_req": h.median_range([10.0])}


def test_paired_ratio_is_taken_round_by_round(harness):
    h = harness
    # The machine's speed moves between rounds (1, 0.5, 0.8) and both servers of a round
    # feel it; the rounds' own ratios are 0.7, 1.1 and 0.9.
    rows = [
        row(h, "Envoy 1.40", "Envoy + empty tonic server", [10_000, 5_000, 8_000]),
        row(h, "Envoy 1.40", "Envoy + Gatehouse, audit off", [7_000, 5_500, 7_200]),
    ]
    (r,) = [x for x in h.ratios(rows) if x["server"] == "Envoy + Gatehouse, audit off"]
    assert r["baseline"] == "Envoy + empty tonic server"
    assert r["req_s_ratio"] == pytest.approx(7_000 / 8_000)
    assert r["req_s_ratio_paired"]["median"] == pytest.approx(0.9)
    assert r["req_s_ratio_paired"]["min"] == pytest.approx(0.7)
    assert r["req_s_ratio_paired"]["max"] == pytest.approx(1.1)


def test_no_paired_ratio_across_rows_timed_apart(harness):
    h = harness
    rows = [row(h, "ext_authz Check, gRPC (h2load)", "empty tonic server", [50_000, 40_000]),
            row(h, "CheckResources, gRPC (h2load)", "Cerbos 0.55", [5_000, 4_000])]
    (r,) = [x for x in h.ratios(rows) if x["comparison"].startswith("ceiling")]
    assert r["req_s_ratio"] == pytest.approx(45_000 / 4_500)
    assert r["req_s_ratio_paired"] is None


def test_steadiness_probe_measures_cpu_time(harness):
    assert harness.steadiness_probe_ms() > 0


def test_multiplexed_rows_compare_with_their_own_baselines(harness):
    h = harness
    # The same servers in both shapes: one connection per request in flight, and 2 x 32.
    rows = [
        row(h, "ext_authz Check, gRPC (h2load)", "empty tonic server", [50_000]),
        row(h, "ext_authz Check, gRPC (h2load)", "Gatehouse, audit off", [35_000]),
        row(h, "CheckResources, gRPC (h2load)", "Cerbos 0.55", [5_000]),
        row(h, "CheckResources, gRPC (h2load)", "Gatehouse, audit off", [36_000]),
        row(h, h.MUX_AUTHZ, "empty tonic server", [80_000]),
        row(h, h.MUX_AUTHZ, "Gatehouse, audit off", [64_000]),
        row(h, h.MUX_CHECK, "Cerbos 0.55", [5_500]),
        row(h, h.MUX_CHECK, "Gatehouse, audit off", [66_000]),
    ]
    by = {(x["comparison"], x["server"]): x["req_s_ratio"] for x in h.ratios(rows)}
    assert by[("ext_authz Check vs the empty tonic server", "Gatehouse, audit off")] == pytest.approx(0.7)
    assert by[("ext_authz Check, multiplexed, vs the empty tonic server", "Gatehouse, audit off")] == \
        pytest.approx(0.8)
    assert by[("CheckResources, gRPC vs Cerbos 0.55", "Gatehouse, audit off")] == pytest.approx(7.2)
    assert by[("CheckResources, multiplexed gRPC vs Cerbos 0.55", "Gatehouse, audit off")] == pytest.approx(12.0)
    ceilings = {x["comparison"]: x["req_s_ratio"] for x in h.ratios(rows) if x["comparison"].startswith("ceiling")}
    assert ceilings == {
        "ceiling: the empty tonic server's bare Check vs Cerbos 0.55's CheckResources, gRPC": pytest.approx(10.0),
        "ceiling, multiplexed: the empty tonic server's bare Check vs Cerbos 0.55's CheckResources":
            pytest.approx(80_000 / 5_500),
    }


def test_h2load_spreads_the_requests_in_flight_over_the_connections_asked_for(harness, monkeypatch, tmp_path):
    h = harness
    sent = []

    def fake_run(cmd, **_kwargs):
        sent.append(cmd)
        (tmp_path / "h2load-requests.log").write_text("0 200 500\n")
        out = ("finished in 1.00s, 1000.00 req/s, 1MB/s\n"
               "requests: 1000 total, 1000 started, 1000 done, 1000 succeeded, 0 failed, 0 errored, 0 timeout\n"
               "status codes: 1000 2xx, 0 3xx, 0 4xx, 0 5xx\n")
        return h.subprocess.CompletedProcess(cmd, 0, out, "")

    monkeypatch.setattr(h.subprocess, "run", fake_run)
    target = h.Target("grpc", "http://127.0.0.1:1/x", tmp_path / "body.bin")
    h.run_h2load(target, 64, 1, 0, tmp_path)
    h.run_h2load(target, 64, 1, 0, tmp_path, streams=32)
    # Never more streams in flight than the concurrency asked for.
    h.run_h2load(target, 1, 1, 0, tmp_path, streams=32)
    flags = [(cmd[cmd.index("-c") + 1], cmd[cmd.index("-m") + 1]) for cmd in sent]
    assert flags == [("64", "1"), ("2", "32"), ("1", "1")]
