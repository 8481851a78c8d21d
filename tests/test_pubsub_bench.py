"""A quick run of the pub/sub benchmark (``grpc_channel.bench.pubsub``) with tiny counts: every
(broker, in-flight, arm) row is there with positive figures, in the table and in the JSON.
Figures are never judged here (no timing assertions); only that they were measured."""

from __future__ import annotations

import asyncio
import json
import logging
import pathlib

import pytest

from grpc_channel.app import TopicEvent
from grpc_channel.bench import pubsub as bench


def _check_rows(report: dict[str, object], brokers: list[str], in_flight: list[int]) -> None:
    assert report["schema"] == bench.SCHEMA
    assert report["errors"] == [] and report["skipped"] == []
    rows = report["rows"]
    assert isinstance(rows, list)
    keys = {(row["broker"], row["in_flight"], row["arm"]) for row in rows}
    assert keys == {(b, n, arm) for b in brokers for n in in_flight for arm in bench.ARMS}
    for row in rows:
        assert row["events_per_second"] > 0
        assert 0 < row["events_per_second_min"] <= row["events_per_second"]
        assert row["events_per_second"] <= row["events_per_second_max"]
        assert 0 < row["p50_ms"] <= row["p99_ms"]
        if row["arm"] == "bare":
            assert row["ratio_vs_bare"] is None
        else:
            assert row["ratio_vs_bare"] > 0 and row["overhead"] is not None


def test_memory_broker_rows_in_table_and_json(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "pubsub.json"
    argv = ["--events", "12", "--rounds", "2", "--brokers", "memory", "--in-flight", "1,4"]
    logger = logging.getLogger("grpc_channel")
    before = logger.level
    assert bench.main([*argv, "--json-out", str(out)]) == 0
    # The run quiets the library's logs, and gives the level back: other code shares the logger.
    assert logger.level == before
    report = json.loads(out.read_text())
    _check_rows(report, ["memory"], [1, 4])
    assert report["events"] == 12 and report["rounds"] == 2
    table = capsys.readouterr().out
    for in_flight in ("1", "4"):
        for arm in bench.ARMS:
            assert any(
                line.split()[:3] == ["memory", in_flight, arm] for line in table.splitlines()
            )
    assert "target (memory, 1 in flight): overhead <= 20%" in table


def test_redis_and_nats_rows_with_the_fixtures_servers(
    tmp_path: pathlib.Path, redis_url: str, nats_url: str
) -> None:
    out = tmp_path / "pubsub.json"
    argv = [
        "--events", "10", "--rounds", "1", "--brokers", "redis,nats", "--in-flight", "2",
        "--redis-url", redis_url, "--nats-url", nats_url, "--json-out", str(out),
    ]  # fmt: skip
    assert bench.main(argv) == 0
    _check_rows(json.loads(out.read_text()), ["redis", "nats"], [2])


def test_a_broker_without_a_server_is_skipped_with_a_note(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # No redis-server to be found: the broker is skipped, the others still run.
    monkeypatch.setattr(bench, "_binary", lambda name: None)
    out = tmp_path / "pubsub.json"
    argv = ["--events", "5", "--rounds", "1", "--brokers", "memory,redis", "--in-flight", "1"]
    assert bench.main([*argv, "--json-out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [s["broker"] for s in report["skipped"]] == ["redis"]
    assert {row["broker"] for row in report["rows"]} == {"memory"}
    assert "skipped redis: redis-server not found" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--brokers", "memory,kafka"], "--brokers"),
        (["--events", "0"], "--events"),
        (["--in-flight", "1,x"], "--in-flight"),
    ],
)
def test_bad_options_exit_2_naming_the_option(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        bench.main(argv)
    assert exited.value.code == 2
    assert named in capsys.readouterr().err


def test_both_arms_hand_the_app_the_same_request(monkeypatch: pytest.MonkeyPatch) -> None:
    # Fairness: the bare arm's OnTopicEvent request is the runtime's field for field, so the app
    # does the same work per event in both arms; only ids, times and stamps differ.
    seen: list[TopicEvent] = []
    record = bench._Collector.record

    def keep(self: bench._Collector, event: TopicEvent) -> None:
        seen.append(event)
        record(self, event)

    monkeypatch.setattr(bench._Collector, "record", keep)

    async def both() -> dict[str, list[TopicEvent]]:
        by_arm: dict[str, list[TopicEvent]] = {}
        async with bench._set_up("memory", None, 2, 30.0) as setup:
            for arm, run in (("runtime", bench._runtime_arm), ("bare", bench._bare_arm)):
                seen.clear()
                await run(setup, 3, arm)
                by_arm[arm] = list(seen)
        return by_arm

    by_arm = asyncio.run(both())

    def shape(event: TopicEvent) -> tuple[object, ...]:
        body = json.loads(event.data)
        return (
            event.source,
            event.type,
            event.spec_version,
            event.data_content_type,
            event.topic,
            event.pubsub_name,
            event.path,
            tuple(sorted(event.extensions)),
            len(event.id),
            tuple(sorted(body)),
            len(event.data) - len(str(body["k"])) - len(str(body["t"])),  # compact JSON
        )

    runtime, bare = by_arm["runtime"], by_arm["bare"]
    assert len(runtime) == len(bare) == 3
    assert {shape(e) for e in runtime} == {shape(e) for e in bare}
    assert len({shape(e) for e in bare}) == 1
    assert len({e.id for e in runtime + bare}) == 6  # ids are unique across both arms
