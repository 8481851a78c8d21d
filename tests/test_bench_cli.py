"""End to end: ``grpc-channel bench`` against the demo app, writing every report format."""

from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pb2
from support_bench import demo_process, descriptor_set, reflecting_server

from grpc_channel.appcallback import HEALTH_CHECK, ON_INVOKE
from grpc_channel.bench.cli import _apply_preset, accuracy_verdict, add_arguments
from grpc_channel.bench.environment import environment
from grpc_channel.bench.histogram import Histogram
from grpc_channel.bench.runner import ArmResult, LoadSpec, RunResult
from grpc_channel.bench.target import (
    TargetError,
    invoke_target,
    json_target,
    load_descriptor_set,
    reflect_descriptor_set,
)
from grpc_channel.bench.variants import registered_variants
from grpc_channel.cli import main
from grpc_channel.v1 import common_pb2

SMALL = ["--rounds", "2", "--block", "40", "--warmup", "5", "--no-progress"]


def _outputs(tmp_path: Path) -> list[str]:
    return [
        "--html",
        str(tmp_path / "r.html"),
        "--json-out",
        str(tmp_path / "r.json"),
        "--csv",
        str(tmp_path / "r.csv"),
    ]


def test_default_run_writes_table_json_csv_and_html(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["bench", *SMALL, *_outputs(tmp_path)]
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "command: grpc-channel bench --rounds 2" in table
    assert re.search(r"grpcio \d", table) and "CPUs" in table
    assert re.search(r"^grpc-sync\s+80\s", table, re.M)
    # The main job first shows one real invoke through the Channel: status, headers, trailers.
    assert "sample invoke: Channel.invoke_method -> demo app on 127.0.0.1:" in table
    assert "sample publish: PubSubRuntime (in-memory broker) -> App on 127.0.0.1:" in table
    assert "sample sidecar: InvokeService -> Sidecar on 127.0.0.1:" in table
    assert "b'hi via the sidecar'" in table
    assert "'amount': 9223372036854775807" in table  # the JSON number arrived exact
    assert "status:   0 OK" in table
    assert "headers:  {'demo-call': ['1']}" in table
    assert "trailers: {'demo-trailer': ['ok']}" in table

    report = json.loads((tmp_path / "r.json").read_text())
    assert report["schema"] == "grpc-channel-bench/1"
    assert report["command"].startswith("grpc-channel bench")
    assert set(report["environment"]["versions"]) >= {
        "python",
        "grpcio",
        "protobuf",
        "grpc_channel",
    }
    assert report["environment"]["machine"]["cpu_count"] >= 1
    labels = [arm["label"] for arm in report["arms"]]
    assert {"grpc-sync", "grpc-sync-raw", "grpc-aio", "grpc-aio-raw"} <= set(labels)
    # Every registered variant either ran or is listed as skipped with its reason.
    skipped = {entry["variant"]: entry["reason"] for entry in report["skipped"]}
    assert set(labels) | set(skipped) == {v.name for v in registered_variants()}
    assert all(skipped.values())
    kinds = [arm["kind"] for arm in report["arms"]]
    assert kinds == sorted(kinds, key=lambda k: k == "aio")  # sync family first
    for arm in report["arms"]:
        assert arm["calls"] == 80 and arm["codes"] == {"OK": 80}
        latency = arm["latency_ms"]
        assert 0 < latency["min"] <= latency["p50"] <= latency["p99"] <= latency["max"]
        assert len(arm["ratio_to_baseline_p50"]["rounds"]) == 2
        assert arm["cpu_us_per_call"] > 0

    rows = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert [row["label"] for row in rows] == labels
    assert all(row["command"] == report["command"] for row in rows)

    page = (tmp_path / "r.html").read_text()
    # The ratio chart comes first, then one figure per variant group (sync and aio apart).
    assert page.index('class="chart ratio"') < page.index('class="chart percentiles"')
    assert page.count('<figure class="group"') >= 2 and "<polyline" in page
    assert report["command"].split()[0] in page and "grpcio" in page
    # Self-contained: no scripts, stylesheets or images fetched from anywhere; the only script
    # (the legend toggles) is inline.
    assert not re.search(r"""(src|href)=["']?https?:""", page)
    assert not re.search(r"<script[^>]*\bsrc=", page)


def test_open_loop_with_two_workers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # No --concurrency: one sender per worker. 81 calls: uneven over 2 rounds and 2 workers.
    argv = [
        "bench",
        *("--rounds", "2", "--calls", "81", "--warmup", "5", "--no-progress"),
        *("--mode", "open", "--rate", "400", "--workers", "2"),
        *("--variants", "grpc-sync,grpc-aio"),
        *_outputs(tmp_path),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "lag p99 ms" in out and "asked/s" in out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["load"]["workers"] == 2 and report["load"]["mode"] == "open"
    assert report["load"]["concurrency"] == 2 and report["load"]["calls"] == 81
    for arm in report["arms"]:
        assert arm["calls"] == 81 and arm["codes"] == {"OK": 81}
        assert arm["send_lag_ms"]["max"] >= 0
        # The achieved rate, beside the asked one; the schedule never runs ahead of it.
        assert arm["asked_rate_per_s"] == 400.0
        assert 0 < arm["throughput_per_s"] <= 400.0 * (1 + 1e-6)
    assert "intended send time" in " ".join(report["notes"])
    assert "asked/s" in (tmp_path / "r.html").read_text()


def _late_calls(arm: dict[str, Any], at_least_ms: float) -> int:
    histogram = Histogram.from_dict(arm["histogram_ns"])
    return sum(n for low, _high, n in histogram.buckets() if low >= at_least_ms * 1e6)


def test_open_loop_carries_a_stall_that_lands_at_a_blocks_end(tmp_path: Path) -> None:
    """The issue's run: 1000 calls at 500/s, default rounds, one sender, and the demo app stalls
    200 ms on the last call of a round. The calls due during the stall fall in the next rounds;
    each is measured from its own due time, so the backlog shows whatever the block boundaries.

    Accounting, not timing: call 199 + k is due 2k ms after the stalled call and cannot start
    before the stall ends 200 ms after it, so calls 199..289 are all at least 20 ms late (91
    calls). The catch-up after the stall adds more (about 130 in all on a 2-core box), which puts
    p90 far above the p50 of the calls the stall missed; a schedule restarted at every block
    showed one late call and p90 near p50.
    """
    rounds, calls = 40, 1000
    block = calls // rounds
    stall_after = 8 * block - 1  # the stall starts with the last call of round 7 (from 0)
    argv = [
        "bench",
        *("--variants", "grpc-sync", "--mode", "open", "--rate", "500"),
        *("--calls", str(calls), "--warmup", "0", "--no-progress"),
        *("--stall-after", str(stall_after), "--stall-ms", "200"),
        *_outputs(tmp_path),
    ]
    assert main(argv) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["load"]["rounds"] == rounds
    (arm,) = report["arms"]
    assert arm["calls"] == calls and arm["codes"] == {"OK": calls}
    assert _late_calls(arm, 19.9) >= 91
    latency = arm["latency_ms"]
    assert latency["p90"] >= 19.9
    assert latency["p90"] > 10 * latency["p50"]
    assert arm["asked_rate_per_s"] == 500.0 and arm["throughput_per_s"] <= 500.0 * (1 + 1e-6)


def test_calls_are_measured_exactly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["bench", "--variants", "grpc-sync", "--warmup", "3", "--no-progress", "--no-files"]
    for calls, rounds in (("10", "10"), ("1001", "40")):
        assert main([*base, "--calls", calls]) == 0
        out = capsys.readouterr().out
        # Fewer calls than the default 40 rounds: one call per round, rather than 40 calls.
        assert re.search(rf"^grpc-sync\s+{calls}\s", out, re.M), out
        assert f"rounds={rounds}, calls={calls}," in out
        assert "warmup_calls=3" in out  # warm-up is extra, never counted
    assert main([*base, "--calls", "5", "--rounds", "10"]) == 2
    assert "fewer than --rounds" in capsys.readouterr().err
    assert main([*base, "--calls", "50", "--block", "10"]) == 2
    assert "--block sets the calls per round" in capsys.readouterr().err


def test_a_variant_whose_calls_all_fail_reports_no_latency_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The demo app fails every OnInvoke whose method is "error" (INVALID_ARGUMENT).
    argv = [
        "bench",
        *("--invoke-method", "error", "--stall-after", "1000000"),
        *("--variants", "grpc-sync-raw", "--calls", "20", "--rounds", "2", "--warmup", "0"),
        *("--timeout", "2", "--no-progress"),
        *_outputs(tmp_path),
    ]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "error: grpc-sync-raw: all 20 calls failed (INVALID_ARGUMENT=20)" in captured.err
    row = re.search(r"^grpc-sync-raw\s+20\s+(\S+)\s+(\S+)", captured.out, re.M)
    assert row is not None and row.groups() == ("-", "-")
    assert "no call ended OK" in captured.out
    report = json.loads((tmp_path / "r.json").read_text())
    (arm,) = report["arms"]
    assert arm["ok"] == 0 and arm["failed"] == 20
    assert set(arm["latency_ms"].values()) == {None}
    assert next(csv.DictReader((tmp_path / "r.csv").open()))["p50_ms"] == ""
    # Against an unreachable --target the run stops at the connect check, exit 1.
    unreachable = ["--target", "127.0.0.1:1", "--connect-timeout", "0.2", "--no-files"]
    assert main(["bench", *unreachable]) == 1
    assert "cannot connect to 127.0.0.1:1 within 0.2 s" in capsys.readouterr().err


def test_json_payload_with_a_descriptor_set_against_a_running_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    descriptors = tmp_path / "set.pb"
    descriptors.write_bytes(descriptor_set())
    with demo_process() as app:
        argv = [
            "bench",
            *SMALL,
            "--target",
            app.address,
            "--method",
            ON_INVOKE,
            "--json",
            '{"method": "echo", "contentType": "text/plain"}',
            "--descriptor-set",
            str(descriptors),
            "--metadata",
            "x-run=1",
            "--variants",
            "grpc-sync,grpc-sync-raw",
            *_outputs(tmp_path),
        ]
        assert main(argv) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert [arm["label"] for arm in report["arms"]] == ["grpc-sync", "grpc-sync-raw"]
    assert all(arm["codes"] == {"OK": 80} for arm in report["arms"])
    assert report["arms"][0]["target"]["request_type"] == "grpc_channel.v1.InvokeRequest"
    assert report["arms"][0]["target"]["metadata_keys"] == ["x-run"]


def test_json_payload_with_types_found_by_server_reflection(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with reflecting_server() as address:
        descriptors = reflect_descriptor_set(address, ON_INVOKE)
        names = [f.name for f in descriptor_pb2.FileDescriptorSet.FromString(descriptors).file]
        # Dependencies first, each file once.
        assert names == [
            "google/protobuf/any.proto",
            common_pb2.DESCRIPTOR.name,
            "bench_test/appcallback.proto",
        ]
        argv = [
            "bench",
            *SMALL,
            "--target",
            address,
            "--method",
            ON_INVOKE,
            "--json",
            '{"method": "echo", "contentType": "text/plain"}',
            "--reflect",
            "--variants",
            "grpc-sync",
            *_outputs(tmp_path),
        ]
        assert main(argv) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["arms"][0]["codes"] == {"OK": 80}
    assert report["arms"][0]["target"]["request_type"] == "grpc_channel.v1.InvokeRequest"


def test_reflection_errors_name_the_problem() -> None:
    with reflecting_server() as address, pytest.raises(TargetError, match=r"'x\.Nope'"):
        reflect_descriptor_set(address, "/x.Nope/M")
    with demo_process() as app, pytest.raises(TargetError, match=r"reflection on .* UNIMPLEMENTED"):
        reflect_descriptor_set(app.address, ON_INVOKE)
    assert main(["bench", "--reflect", "--no-files"]) == 2


def test_json_target_errors_name_the_problem() -> None:
    data = descriptor_set()
    with pytest.raises(TargetError, match="does not match"):
        json_target("127.0.0.1:1", ON_INVOKE, '{"nope": 1}', data)
    with pytest.raises(TargetError, match="no method"):
        json_target("127.0.0.1:1", "/dapr.proto.runtime.v1.AppCallback/Nope", "{}", data)
    with pytest.raises(TargetError, match="name the request and response types"):
        json_target("127.0.0.1:1", "/x.Y/Z", "{}", data)
    typed = json_target(
        "127.0.0.1:1",
        "/x.Y/Z",
        '{"method": "m"}',
        data,
        request_type="grpc_channel.v1.InvokeRequest",
        response_type="grpc_channel.v1.InvokeResponse",
    )
    assert common_pb2.InvokeRequest.FromString(typed.payload).method == "m"
    with pytest.raises(TargetError, match="FileDescriptorSet"):
        load_descriptor_set(b"\xff\xff")
    with pytest.raises(TargetError, match="path like"):
        json_target("127.0.0.1:1", "OnInvoke", "{}", data)


def test_list_variants(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--list-variants"]) == 0
    out = capsys.readouterr().out
    for name in ("grpc-sync", "grpc-sync-raw", "grpc-aio", "grpc-aio-raw"):
        assert re.search(rf"^{name}\s", out, re.M)


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--mode", "open"], "rate"),
        (["--method", "/a.B/C", "--size", "3"], "--size shape"),
        (["--payload-hex", "zz", "--method", "/a.B/C"], "hex"),
        (["--json", "{}"], "needs --call"),
        (["--metadata", "novalue"], "KEY=VALUE"),
        (["--variants", "nope"], "unknown variant"),
        (["--workers", "2", "--concurrency", "1"], "concurrency"),
        (["--target", "127.0.0.1:1", "--delay-ms", "5"], "--delay-ms configure the demo app"),
        (["--payload-hex", "00", "--method", "/a.B/C", "--size", "3"], "--size shape"),
        (["--descriptor-set", "x.pb"], "need --call"),
        (["--accuracy-check", "--baseline", "grpc-sync"], "takes no"),
        (["--accuracy-check", "--variants", "grpc-sync,chain"], "one variant"),
        (["--calls", "0"], "--calls"),
    ],
)
def test_usage_errors_exit_2_with_a_message(
    extra: list[str], match: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["bench", *SMALL, "--no-files", *extra]) == 2
    assert match in capsys.readouterr().err


def test_accuracy_check_runs_both_comparisons(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "bench",
        "--accuracy-check",
        "--rounds",
        "2",
        "--block",
        "15",
        "--warmup",
        "3",
        "--no-progress",
        *_outputs(tmp_path),
    ]
    code = main(argv)
    out = capsys.readouterr().out
    assert code in (0, 1)  # the verdict depends on the machine; the check itself must run
    assert "accuracy vs back-to-back bare" in out and "accuracy vs idle-matched bare" in out
    report = json.loads((tmp_path / "r.json").read_text())
    arms = {arm["label"]: arm for arm in report["arms"]}
    assert list(arms) == ["bare", "bare-idle", "delayed"]
    assert arms["bare-idle"]["pause_ms"] == 5.0
    assert all(arm["codes"] == {"OK": 30} for arm in arms.values())
    # The delayed app sleeps 5 ms per call: its p50 is above the bare one (order only).
    assert arms["delayed"]["latency_ms"]["p50"] > arms["bare"]["latency_ms"]["p50"]


def _result_with_p50s(p50_ms: dict[str, float]) -> RunResult:
    arms = []
    for label, value in p50_ms.items():
        histogram = Histogram()
        histogram.record(int(value * 1e6), 10)
        arms.append(
            ArmResult(
                label,
                "grpc-sync",
                "",
                "sync",
                "bare",
                invoke_target("127.0.0.1:1"),
                histogram,
                None,
                {"OK": 10},
                {},
                1,
                1,
                [],
                [],
            )
        )
    return RunResult(arms, [], LoadSpec(), "cmd", environment(), "now", 0.0)


def test_accuracy_verdict_judges_by_the_idle_matched_bare_round_trip() -> None:
    ok, lines = accuracy_verdict(
        _result_with_p50s({"bare": 0.5, "bare-idle": 1.0, "delayed": 6.1}), 5.0
    )
    assert ok
    assert "outside 5 %" in lines[0] and "within 5 %" in lines[1]
    ok, lines = accuracy_verdict(
        _result_with_p50s({"bare": 0.5, "bare-idle": 1.0, "delayed": 7.0}), 5.0
    )
    assert not ok and "outside 5 %" in lines[1]


def test_preset_picks_variants_and_explicit_options_win(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "bench",
        "--preset",
        "channel-throughput",
        "--concurrency",
        "4",
        "--rounds",
        "1",
        "--warmup",
        "4",
        "--block",
        "40",
        "--no-progress",
        *_outputs(tmp_path),
    ]
    assert main(argv) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["load"]["concurrency"] == 4  # given explicitly: the preset's 64 gives way
    assert report["load"]["block_calls"] == 40
    labels = [arm["label"] for arm in report["arms"]]
    skipped = [entry["variant"] for entry in report["skipped"]]
    assert labels + skipped == ["grpc-aio", "grpc-aio-invoke", "channel-aio"]
    assert report["arms"][0]["ratio_to_baseline_throughput"]["rounds"] == [1.0]
    # The Channel variant compares with the bare stub that sends the same bytes and metadata.
    baselines = {arm["label"]: arm["baseline"] for arm in report["arms"]}
    assert baselines.get("channel-aio", "grpc-aio-invoke") == "grpc-aio-invoke"
    assert baselines.get("grpc-aio-invoke", "grpc-aio") == "grpc-aio"


def test_many_short_rounds_by_default_and_long_blocks_for_throughput() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)

    def load_of(*argv: str) -> tuple[int, int]:
        args = parser.parse_args(list(argv))
        _apply_preset(args)
        return args.rounds, args.block

    assert load_of() == (40, 100)
    assert load_of("--preset", "channel") == (40, 100)
    assert load_of("--preset", "channel-throughput") == (8, 2000)  # 64 in flight need long blocks
    assert load_of("--preset", "channel", "--rounds", "3") == (3, 100)  # given: it wins
    assert (LoadSpec().rounds, LoadSpec().block_calls) == (40, 100)


def test_raw_bytes_payload_against_any_method(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with demo_process() as app:
        argv = [
            "bench",
            *SMALL,
            "--target",
            app.address,
            "--method",
            HEALTH_CHECK,
            "--payload-hex",
            "",
            "--variants",
            "plain,grpc-sync-raw,grpc-aio-raw",
            *_outputs(tmp_path),
        ]
        assert main(argv) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    labels = [arm["label"] for arm in report["arms"]]
    assert labels == ["plain", "grpc-sync-raw", "grpc-aio-raw"]
    assert all(arm["codes"] == {"OK": 80} for arm in report["arms"])
    assert [arm["baseline"] for arm in report["arms"]] == ["grpc-sync-raw", *labels[1:]]
