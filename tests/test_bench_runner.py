"""The load generator: open-loop schedule, load settings, planning, coordinated omission."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from support_bench import demo_process, fake_variant

from grpc_channel.appcallback import ON_INVOKE
from grpc_channel.bench.histogram import Histogram
from grpc_channel.bench.report import format_table, to_csv, to_html, to_json
from grpc_channel.bench.runner import (
    Arm,
    LoadSpec,
    RunError,
    Timeline,
    arm_order,
    closed_block_sync,
    intended_send_times,
    open_block_aio,
    open_block_sync,
    plan_arms,
    run,
    timeline_block_aio,
    timeline_block_sync,
)
from grpc_channel.bench.target import Target, bytes_target, invoke_target
from grpc_channel.bench.variants import (
    AsyncCaller,
    SyncCaller,
    Variant,
    VariantError,
    VariantSettings,
    get_variant,
    register,
    unregister,
)
from grpc_channel.demo import DemoConfig


def test_schedule_is_evenly_spaced_from_the_start() -> None:
    assert intended_send_times(10, 1000.0, 4) == [10, 1_000_010, 2_000_010, 3_000_010]
    # A rate that does not divide a second: offsets are rounded, never accumulate drift.
    times = intended_send_times(0, 3.0, 4)
    assert times == [0, 333_333_333, 666_666_667, 1_000_000_000]
    assert intended_send_times(5, 50.0, 0) == []


@pytest.mark.parametrize("rate", [0.0, -1.0, float("inf")])
def test_schedule_refuses_a_rate_that_is_not_positive_and_finite(rate: float) -> None:
    with pytest.raises(RunError, match="rate"):
        intended_send_times(0, rate, 3)


@pytest.mark.parametrize("aio", [False, True])
def test_open_loop_never_sends_before_the_intended_time(aio: bool) -> None:
    rate, calls = 2000.0, 40
    start = time.perf_counter_ns() + 5_000_000
    schedule = intended_send_times(start, rate, calls)
    entered: list[int] = []

    def call() -> str:
        entered.append(time.perf_counter_ns())
        return "OK"

    async def acall() -> str:
        return call()

    if aio:
        stats = asyncio.run(open_block_aio(acall, rate=rate, calls=calls, start_ns=start))
    else:
        stats = open_block_sync(call, rate=rate, calls=calls, start_ns=start)
    # The event loop may fire a timer up to its clock resolution early; time.sleep never does.
    slack = 1_000 if aio else 0
    assert len(entered) == calls
    assert all(sent >= due - slack for sent, due in zip(entered, schedule, strict=True))
    assert stats.lags is not None and len(stats.lags) == calls
    assert all(lag >= -slack for lag in stats.lags)
    # Latency runs from the intended time, so it can never be shorter than the send lag.
    assert all(lat >= lag for lat, lag in zip(stats.latencies, stats.lags, strict=True))
    assert stats.codes == {"OK": calls}


def test_closed_block_counts_codes_and_error_messages() -> None:
    results = iter(["OK", "OK", "UNAVAILABLE", "OK"])

    def call() -> str:
        value = next(results, "OK")
        if value == "boom":
            raise RuntimeError("boom")
        return value

    def failing() -> str:
        raise ValueError("bad request built")

    stats = closed_block_sync(call, calls=4)
    assert stats.codes == {"OK": 3, "UNAVAILABLE": 1}
    assert len(stats.latencies) == 3  # latency of the OK calls only; failures are counted apart
    stats = closed_block_sync(failing, calls=2)
    assert stats.codes == {"CLIENT_ERROR": 2}
    assert stats.errors == {"ValueError: bad request built": 2}
    assert stats.latencies == []


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mode": "open"}, "rate"),
        ({"rate": 10.0}, "open loop only"),
        ({"workers": 2, "concurrency": 1}, "concurrency"),
        ({"rounds": 0}, "rounds"),
        ({"block_seconds": 0.0}, "block_seconds"),
        ({"warmup_calls": -1}, "warmup"),
        ({"mode": "sideways"}, "mode"),
    ],
)
def test_load_settings_are_checked(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(RunError, match=match):
        LoadSpec(**kwargs)  # type: ignore[arg-type]


def test_load_shares_add_up_over_workers() -> None:
    load = LoadSpec(workers=3, concurrency=7, block_calls=500)
    assert [load.share(7, w) for w in range(3)] == [3, 2, 2]
    assert sum(load.share(500, w) for w in range(3)) == 500


def test_plan_picks_each_kind_its_bare_baseline() -> None:
    arms, _ = plan_arms(invoke_target("127.0.0.1:1"), ["grpc-sync-raw", "grpc-aio", "grpc-sync"])
    assert {a.label: a.baseline for a in arms} == {
        "grpc-sync-raw": "grpc-sync",
        "grpc-aio": "grpc-aio",
        "grpc-sync": "grpc-sync",
    }
    arms, _ = plan_arms(invoke_target("127.0.0.1:1"), ["grpc-aio"], baseline="grpc-sync")
    assert [(a.label, a.baseline) for a in arms] == [
        ("grpc-sync", "grpc-sync"),
        ("grpc-aio", "grpc-sync"),
    ]


def test_plan_for_raw_bytes_skips_the_stub_variants_and_says_why() -> None:
    arms, skipped = plan_arms(bytes_target("127.0.0.1:1", "/a.B/C", b"\x01"))
    labels = [a.label for a in arms]
    assert "grpc-sync" not in labels and "grpc-sync-raw" in labels
    assert {a.baseline for a in arms if a.label.startswith("grpc-sync")} == {"grpc-sync-raw"}
    reasons = dict(skipped)
    assert "raw-bytes" in reasons["grpc-sync"]
    with pytest.raises(RunError, match="cannot run"):
        plan_arms(bytes_target("127.0.0.1:1", "/a.B/C", b""), ["grpc-sync"])
    with pytest.raises(VariantError, match="unknown variant"):
        plan_arms(invoke_target("127.0.0.1:1"), ["no-such-variant"])


def test_arm_order_shuffles_each_round_the_same_way_in_every_worker() -> None:
    orders = [arm_order(6, r) for r in range(8)]
    assert all(sorted(order) == list(range(6)) for order in orders)
    assert orders == [arm_order(6, r) for r in range(8)]  # deterministic: workers agree
    assert len({tuple(order) for order in orders}) > 1  # not one fixed order
    assert len({order[0] for order in orders}) > 1  # the baseline is not always first
    with pytest.raises(RunError, match="rewarm_calls must be >= 0"):
        LoadSpec(rewarm_calls=-1)


def test_open_loop_p99_shows_a_server_stall_that_closed_loop_p99_hides() -> None:
    """Coordinated omission: one 200 ms stop-the-world stall of the app, measured both ways.

    Closed loop (one call in flight): only the one call caught in the stall is slow, so p99 stays
    at the normal latency. Open loop (500 calls/s from intended send times): every call due during
    the stall waits for it, so p99 carries the stall. Only the order is asserted.
    """
    stall = DemoConfig(stall_after=150, stall_ms=200.0)
    load_closed = LoadSpec(rounds=1, block_calls=400, warmup_calls=20)
    load_open = LoadSpec(
        mode="open", rate=500.0, concurrency=4, rounds=1, block_calls=400, warmup_calls=20
    )
    p99 = {}
    maxima = {}
    for name, load in (("closed", load_closed), ("open", load_open)):
        with demo_process(stall) as app:
            target = invoke_target(app.address)
            result = run([Arm("bare", "grpc-sync", target, "bare")], load, progress=False)
        arm = result.arm("bare")
        assert arm.codes == {"OK": 400}
        p99[name] = arm.latency.percentile(99)
        maxima[name] = arm.latency.max
    assert maxima["closed"] > p99["closed"]  # the stall did hit the closed-loop run ...
    assert p99["open"] > p99["closed"]  # ... but only the open loop's p99 shows it


def test_workers_in_processes_merge_their_histograms() -> None:
    with demo_process() as app:
        target = invoke_target(app.address, data=b"abc")
        arms, _ = plan_arms(target, ["grpc-sync", "grpc-aio-raw"])
        result = run(
            arms,
            LoadSpec(workers=2, concurrency=4, rounds=2, block_calls=60, warmup_calls=10),
            progress=False,
        )
    for arm in result.arms:
        assert arm.calls == 120
        assert arm.codes == {"OK": 120}
        assert len(arm.round_p50_ns) == 2 and len(arm.ratios) == 2
        assert arm.cpu_ns > 0 and arm.elapsed_ns > 0
    assert result.arm("grpc-sync").ratios == [1.0, 1.0]


def test_aa_variants_repeat_their_baseline_on_a_channel_of_their_own() -> None:
    with demo_process() as app:
        target = invoke_target(app.address, data=b"abc")
        names = ["grpc-sync", "grpc-sync-again", "grpc-aio", "grpc-aio-again"]
        arms, skipped = plan_arms(target, names)
        assert skipped == []
        assert {arm.label: arm.baseline for arm in arms} == {
            "grpc-sync": "grpc-sync",
            "grpc-sync-again": "grpc-sync",
            "grpc-aio": "grpc-aio",
            "grpc-aio-again": "grpc-aio",
        }
        result = run(arms, LoadSpec(rounds=2, block_calls=20, warmup_calls=5), progress=False)
    for name in names:
        arm = result.arm(name)
        assert arm.codes == {"OK": 40}
        assert len(arm.ratios) == 2 and all(r > 0 for r in arm.ratios)


def test_failed_calls_are_counted_by_status_code() -> None:
    with demo_process() as app:
        target = invoke_target(app.address, method="error")
        result = run(
            [Arm("bare", "grpc-sync", target, "bare")],
            LoadSpec(rounds=1, block_calls=20, warmup_calls=0),
            progress=False,
        )
    arm = result.arm("bare")
    assert arm.codes == {"INVALID_ARGUMENT": 20}
    assert arm.failed == 20
    assert arm.errors == {"INVALID_ARGUMENT: demo error": 20}
    # Every report form carries the distribution.
    table = format_table(result)
    assert "bare status codes: INVALID_ARGUMENT=20" in table
    assert "20 x INVALID_ARGUMENT: demo error" in table
    assert "20 x INVALID_ARGUMENT: demo error" in to_html(result)
    assert "INVALID_ARGUMENT=20" in to_csv(result)
    assert to_json(result)["arms"][0]["errors"] == {"INVALID_ARGUMENT: demo error": 20}


def test_a_worker_that_cannot_reach_the_target_reports_unavailable() -> None:
    target = bytes_target("127.0.0.1:1", ON_INVOKE, b"", timeout=2.0)
    result = run(
        [Arm("raw", "grpc-sync-raw", target, "raw")],
        LoadSpec(rounds=1, block_calls=3, warmup_calls=0),
        progress=False,
    )
    assert result.arm("raw").codes == {"UNAVAILABLE": 3}


def test_pause_is_for_the_closed_loop_only_and_never_negative() -> None:
    target = invoke_target("127.0.0.1:1")
    with pytest.raises(RunError, match="pause_ms"):
        Arm("a", "grpc-sync", target, "a", pause_ms=-1.0)
    arm = Arm("a", "grpc-sync", target, "a", pause_ms=5.0)
    with pytest.raises(RunError, match="closed loop only"):
        run([arm], LoadSpec(mode="open", rate=10.0), progress=False)


def test_closed_block_pauses_before_each_call() -> None:
    entered: list[int] = []
    left: list[int] = []

    def call() -> str:
        entered.append(time.perf_counter_ns())
        left.append(time.perf_counter_ns())
        return "OK"

    stats = closed_block_sync(call, calls=5, pause=0.002)
    assert stats.codes == {"OK": 5}
    # time.sleep never returns early, so the gap between calls is at least the pause.
    assert all(nxt - end >= 2_000_000 for end, nxt in zip(left, entered[1:], strict=False))


OURS = [
    "intercept",
    "chain",
    "chain+tracing",
    "channel",
    "channel+lean-tracing",
    "intercept-aio",
    "chain-aio",
    "chain-aio+lean-tracing",
    "channel-aio+tracing",
]


def test_project_variants_run_against_the_demo_app() -> None:
    with demo_process(DemoConfig(app_token="bench-token")) as app:
        target = invoke_target(app.address, data=b"xyz", metadata=(("x-trace-me", "1"),))
        usable = [n for n in OURS if get_variant(n).unavailable(target) is None]
        if not usable:
            pytest.skip("none of the project's variants is importable")
        arms, _ = plan_arms(target, ["grpc-sync", "grpc-aio", *usable])
        result = run(arms, LoadSpec(rounds=1, block_calls=30, warmup_calls=5), progress=False)
    for arm in result.arms:
        # The app checks the token: every variant of ours sends it, the bare ones do not.
        expected = "UNAUTHENTICATED" if arm.label.startswith("grpc-") else "OK"
        assert arm.codes == {expected: 30}, arm.label


def test_a_variant_that_cannot_be_built_is_skipped_or_refused_by_name() -> None:
    def broken(target: Target, settings: VariantSettings) -> SyncCaller:
        raise TypeError("an API changed under this variant")

    register(Variant("test-broken", "always fails to build", sync_factory=broken), replace=True)
    try:
        target = invoke_target("127.0.0.1:1")
        arms, skipped = plan_arms(target)
        assert "test-broken" not in [a.label for a in arms]
        assert "could not be built: TypeError" in dict(skipped)["test-broken"]
        arms, skipped = plan_arms(target, ["grpc-sync", "test-broken"], strict=False)
        assert [a.label for a in arms] == ["grpc-sync"]
        with pytest.raises(RunError, match="an API changed"):
            plan_arms(target, ["test-broken"])
    finally:
        unregister("test-broken")


# -- the open loop's one schedule per arm, exact counts, failures apart
# ----------------------------------------------------------------------------------------


def test_timeline_pauses_shift_the_schedule_but_keep_overdue_calls_overdue() -> None:
    timeline = Timeline(1000.0, range(10), lead_ns=100)
    timeline.resume(1_000)
    assert timeline.restart_ns == 1_100 and timeline.due(0) == 1_100
    assert timeline.due(3) == 3_001_100  # 1 ms apart
    # The clock stops 2.5 ms in: call 2 is 0.5 ms overdue, call 3 due in 0.5 ms.
    timeline.pause(2_501_100)
    assert timeline.running_ns == 2_500_000
    # Restarted 10 ms later (plus the lead): everything shifts by exactly the time it stood.
    timeline.resume(12_501_000)
    assert timeline.restart_ns == 12_501_100
    assert timeline.restart_ns - timeline.due(2) == 500_000  # still 0.5 ms overdue
    assert timeline.due(3) - timeline.restart_ns == 500_000  # still due in 0.5 ms
    # A restart asked for before the clock stopped never moves the schedule earlier.
    timeline.pause(timeline.due(5))
    due_6 = timeline.due(6)
    timeline.resume(timeline.due(4))
    assert timeline.due(6) == due_6


def _fake_caller(aio: bool, stall_at: int | None = None, stall_s: float = 0.0) -> Any:
    variant = fake_variant("test-unregistered", aio=aio, stall_at=stall_at, stall_s=stall_s)
    target = invoke_target("127.0.0.1:1")
    if aio:
        factory = variant.aio_factory
        assert factory is not None

        async def build() -> AsyncCaller:
            return await factory(target, VariantSettings())

        # The fake holds nothing bound to a loop, so later loops can call it.
        return asyncio.run(build())
    assert variant.sync_factory is not None
    return variant.sync_factory(target, VariantSettings())


@pytest.mark.parametrize("aio", [False, True])
def test_a_stall_at_a_blocks_end_is_paid_by_the_calls_due_during_it(aio: bool) -> None:
    """One sender, 1000 calls/s, blocks of 20 with 30 ms of other work between them; the last
    call of block 1 stalls 60 ms. Calls due during the stall belong to blocks 2, 3 and 4: each must
    be measured from its own due time, the pauses between blocks left out. With a schedule that
    restarted per block they would all be on time."""
    rate, block, stall_s, stalled = 1000.0, 20, 0.060, 39
    caller = _fake_caller(aio, stall_at=stalled, stall_s=stall_s)
    timeline = Timeline(rate, range(5 * block))
    latencies: list[int] = []

    async def blocks_aio() -> None:
        for until in range(block, 5 * block + 1, block):
            stats = await timeline_block_aio(caller.call, timeline, until)
            latencies.extend(stats.latencies)
            time.sleep(0.030)  # another arm's block: the clock stands

    if aio:
        asyncio.run(blocks_aio())
    else:
        for until in range(block, 5 * block + 1, block):
            stats = timeline_block_sync(caller.call, timeline, until)
            latencies.extend(stats.latencies)
            time.sleep(0.030)
    assert len(latencies) == 5 * block and timeline.pending == 0
    # One sender: calls complete in order. Call j > stalled cannot start before the stall ends,
    # stall_s after the stalled call's due time, and is due (j - stalled) ms after it.
    for j in range(stalled, stalled + 60):
        floor = stall_s * 1e9 - (j - stalled) * 1e9 / rate
        assert latencies[j] >= floor, (j, latencies[j], floor)
    assert sum(1 for v in latencies if v >= 20_000_000) >= 41  # calls 39..79: 3 blocks' worth


@pytest.mark.parametrize("aio", [False, True])
def test_free_senders_keep_the_schedule_while_a_blocks_last_call_is_slow(aio: bool) -> None:
    """Four senders; the last call of the first block takes 300 ms. As in one unbroken schedule,
    free senders go on sending the next calls when due (they are counted in their own rounds);
    one sender never sends ahead."""
    executor = ThreadPoolExecutor(4)
    try:
        for senders in (4, 1):
            caller = _fake_caller(aio, stall_at=19, stall_s=0.3)
            timeline = Timeline(1000.0, range(60))
            counts = []
            sent_ahead = []
            for until in (20, 40, 60):
                if aio:
                    stats = asyncio.run(
                        timeline_block_aio(caller.call, timeline, until, concurrency=senders)
                    )
                else:
                    stats = timeline_block_sync(
                        caller.call, timeline, until, concurrency=senders, executor=executor
                    )
                counts.append(stats.calls)
                sent_ahead.append(timeline.sent_ahead)
            assert counts == [20, 20, 20]  # each round reports exactly its own calls
            assert timeline.pending == 0 and sent_ahead[-1] == 0
            if senders == 1:
                assert sent_ahead == [0, 0, 0]
            else:
                assert sent_ahead[0] >= 1
    finally:
        executor.shutdown()


@pytest.mark.parametrize(
    ("calls", "rounds", "workers"),
    [(1, 1, 1), (10, 10, 1), (10, 3, 2), (39, 39, 3), (1001, 40, 1), (1001, 40, 3), (7, 2, 4)],
)
def test_counts_are_exact_over_rounds_and_workers(calls: int, rounds: int, workers: int) -> None:
    load = LoadSpec(calls=calls, rounds=rounds, workers=workers, concurrency=workers)
    per_round = [load.round_calls(r) for r in range(rounds)]
    assert sum(c or 0 for c in per_round) == calls == load.total_calls
    assert max(c or 0 for c in per_round) - min(c or 0 for c in per_round) <= 1
    position = 0
    for r in range(rounds):
        span = load.round_span(r)
        assert span.start == position and len(span) == per_round[r]
        position = span.stop
        assert sum(load.worker_calls(r, w) or 0 for w in range(workers)) == per_round[r]
    assert load.describe()["calls"] == calls


def test_calls_fewer_than_rounds_or_beside_a_time_slice_are_refused() -> None:
    with pytest.raises(RunError, match=r"calls \(5\) must be >= rounds"):
        LoadSpec(calls=5, rounds=10)
    with pytest.raises(RunError, match="not both"):
        LoadSpec(calls=50, rounds=10, block_seconds=1.0)


@pytest.fixture
def fakes() -> Iterator[Callable[..., str]]:
    """Register fake variants for one test (``make(name, **kwargs)``), unregistered after."""
    names: list[str] = []

    def make(name: str, **kwargs: Any) -> str:
        register(fake_variant(name, **kwargs), replace=True)
        names.append(name)
        return name

    yield make
    for name in names:
        unregister(name)


@pytest.mark.parametrize("mode", ["closed", "open"])
def test_a_run_measures_exactly_the_calls_asked(mode: str, fakes: Callable[..., str]) -> None:
    target = invoke_target("127.0.0.1:1")
    arms = [
        Arm("sync", fakes("test-fake-sync"), target, "sync"),
        Arm("aio", fakes("test-fake-aio", aio=True), target, "sync"),
    ]
    rate = 2000.0 if mode == "open" else None
    for calls, rounds in ((10, 3), (41, 4)):
        load = LoadSpec(mode=mode, rate=rate, calls=calls, rounds=rounds, warmup_calls=3)  # type: ignore[arg-type]
        result = run(arms, load, progress=False)
        for arm in result.arms:
            assert arm.calls == calls and arm.codes == {"OK": calls}, arm.label
            assert arm.latency.count == calls and len(arm.round_p50_ns) == rounds


@pytest.mark.parametrize("aio", [False, True])
def test_interleaved_open_loop_keeps_the_backlog_of_a_stall_at_a_blocks_end(
    aio: bool, fakes: Callable[..., str]
) -> None:
    """The issue's case without a server: two arms interleaved in 16 rounds of 25 calls at
    1000 calls/s; the stalling arm's call 199, the last of round 7 (from 0), takes 100 ms. Calls
    199..279 are due at most 80 ms into the stall, so each is measured at least 20 ms late: 81 of
    400, which puts p90 above 20 ms. A schedule restarted at every block would measure one late
    call."""
    stalling = fakes("test-fake-stall", aio=aio, stall_at=199, stall_s=0.1)
    steady = fakes("test-fake-steady", aio=aio)
    target = invoke_target("127.0.0.1:1")
    load = LoadSpec(mode="open", rate=1000.0, calls=400, rounds=16, warmup_calls=0, rewarm_calls=0)
    assert load.round_span(7) == range(175, 200)  # call 199 ends a block
    result = run(
        [Arm("stall", stalling, target, "stall"), Arm("steady", steady, target, "stall")],
        load,
        progress=False,
    )
    arm = result.arm("stall")
    assert arm.calls == 400 and arm.ok == 400
    assert _count_at_least(arm.latency, 19_000_000) >= 81
    assert arm.latency.percentile(90) >= 19_000_000
    assert arm.latency.percentile(90) > 10 * result.arm("steady").latency.percentile(50)
    for each in result.arms:
        # Achieved rate: calls over the time the arm's clock ran, never above the asked rate.
        assert 0 < each.throughput <= 1000.0 * (1 + 1e-6)
    assert "asked/s" in format_table(result)
    assert to_json(result)["arms"][0]["asked_rate_per_s"] == 1000.0


def _count_at_least(histogram: Histogram, value: int) -> int:
    return sum(count for low, _high, count in histogram.buckets() if low >= value)


def test_failed_calls_stay_out_of_the_latency_and_are_counted_apart(
    fakes: Callable[..., str],
) -> None:
    target = invoke_target("127.0.0.1:1")
    arms = [Arm("flaky", fakes("test-fake-flaky", fail_every=4), target, "flaky")]
    result = run(arms, LoadSpec(calls=40, rounds=2, warmup_calls=0), progress=False)
    arm = result.arm("flaky")
    assert arm.codes == {"OK": 30, "UNAVAILABLE": 10}
    assert arm.calls == 40 and arm.ok == 30 and arm.failed == 10
    assert arm.latency.count == 30
    assert "flaky status codes: OK=30 UNAVAILABLE=10" in format_table(result)
    assert to_json(result)["arms"][0]["ok"] == 30
    assert any("ended OK" in note for note in result.notes)
