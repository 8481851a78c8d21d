"""Smoke tests of the sidecar benchmark (``grpc_channel.bench.sidecar``): tiny counts, real
processes (echo app and sidecars), the report's shape and that every call succeeded. Never a
timing assertion: the figures are only checked to be there and positive."""

from __future__ import annotations

import json
import pathlib

import pytest

from grpc_channel.bench import sidecar as bench
from grpc_channel.bench.target import Target
from grpc_channel.bench.variants import VariantSettings

TINY = [
    "--rounds=2",
    "--unary-calls=5",
    "--inflight=4",
    "--inflight-calls=12",
    "--stream-messages=30",
    "--payload=16",
]


def test_main_runs_every_arm_and_writes_the_json_report(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sidecar.json"
    # The candidate is the current proxy again: its arms must run like the others.
    candidate = "--candidate=grpc_channel.sidecar:Sidecar"
    assert bench.main([*TINY, candidate, f"--json-out={out}"]) == 0

    report = json.loads(out.read_text())
    assert report["schema"] == bench.SCHEMA
    assert report["failures"] == 0
    assert report["settings"]["candidate"] == "grpc_channel.sidecar:Sidecar"
    assert report["settings"]["rounds"] == 2
    assert report["settings"]["stream_messages"] == 30
    rows = {(row["measurement"], row["arm"]): row for row in report["rows"]}
    arms = (*bench.ARMS, *bench.CANDIDATE_ARMS)
    assert set(rows) == {(m, a) for m in bench.MEASUREMENTS for a in arms}
    for (measurement, arm), row in rows.items():
        assert row["failures"] == 0 and row["errors"] == [], (measurement, arm)
        assert len(row["values"]) == 2 and all(v > 0 for v in row["values"])
        assert len(row["ratios"]) == 2
        if arm == "direct":
            assert row["ratio"] == 1.0
        hop_arm = (measurement, arm.removesuffix("-cand"))
        assert (row["target"] is not None) == (hop_arm in bench.TARGETS)
        # unary rows carry p99s; the rate rows do not
        assert (len(row["p99s"]) == 2) == (measurement == "unary")

    table = capsys.readouterr().out
    for arm in arms:
        assert arm in table
    assert "MISS" in table or "ok" in table


def test_run_a_subset_on_uvloop_or_asyncio() -> None:
    uvloop = pytest.importorskip("uvloop", reason="uvloop is optional") is not None
    report = bench.run(
        rounds=1,
        unary_calls=3,
        inflight=2,
        inflight_calls=6,
        stream_messages=10,
        measurements=["stream"],
        uvloop=uvloop,
    )
    assert report.failures == 0
    assert [row.measurement for row in report.rows] == ["stream"] * len(bench.ARMS)
    assert report.row("stream", "2hop").values[0] > 0


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"rounds": 0}, "rounds"),
        ({"inflight": -1}, "inflight"),
        ({"stream_messages": True}, "stream_messages"),
        ({"measurements": ["unary", "bogus"]}, "bogus"),
        ({"measurements": []}, "measurements"),
    ],
)
def test_bad_settings_are_refused_before_anything_starts(
    kwargs: dict[str, object], named: str
) -> None:
    with pytest.raises(ValueError, match=named):
        bench.run(**kwargs)  # type: ignore[arg-type]


def test_bad_options_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        bench.main(["--measure=unary,bogus"])
    assert exc.value.code == 2
    assert "subset of unary,inflight,stream" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        bench.main(["--rounds=0"])
    assert exc.value.code == 2


def test_a_sidecar_that_cannot_start_fails_the_run_clearly() -> None:
    with pytest.raises(RuntimeError, match="did not report its port"):
        bench.run(rounds=1, unary_calls=1, proxy="no_such_module:Sidecar")


@pytest.mark.parametrize("hops", [1, 2])
def test_bench_variants_call_through_their_own_sidecars(hops: int) -> None:
    variant = {v.name: v for v in bench.variants()}[f"sidecar-{hops}hop"]
    assert variant.kind == "sync" and variant.baselines == ("grpc-sync-raw",)
    assert variant.sync_factory is not None
    with bench._child(["app"]) as app_port:
        target = Target(address=f"127.0.0.1:{app_port}", method=bench.UNARY, payload=b"ping")
        caller = variant.sync_factory(target, VariantSettings())
        try:
            assert [caller.call() for _ in range(3)] == ["OK"] * 3
        finally:
            caller.close()


def test_grpc_channel_bench_preset_sidecar_runs_this_benchmark(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from grpc_channel.bench import cli

    # A stand-in for this module's main (a real run is the test above): the preset must hand
    # over to it, with the rounds when given, and return its exit code.
    calls: list[list[str]] = []

    def fake_main(argv: list[str] | None = None) -> int:
        calls.append(list(argv or []))
        return 7

    monkeypatch.setattr(bench, "main", fake_main)
    assert cli.main(["--preset", "sidecar", "--rounds", "3"]) == 7
    assert cli.main(["--preset", "sidecar"]) == 7
    assert calls == [["--rounds", "3"], []]
