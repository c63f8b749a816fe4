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
    rows = [row(h, "ext_authz Check", "empty tonic server", [50_000, 40_000]),
            row(h, "CheckResources, gRPC", "Cerbos 0.55", [5_000, 4_000])]
    (r,) = [x for x in h.ratios(rows) if x["comparison"].startswith("ceiling")]
    assert r["req_s_ratio"] == pytest.approx(45_000 / 4_500)
    assert r["req_s_ratio_paired"] is None


def test_steadiness_probe_measures_cpu_time(harness):
    assert harness.steadiness_probe_ms() > 0
