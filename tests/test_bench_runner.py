"""The load generator: open-loop schedule, load settings, planning, coordinated omission."""

from __future__ import annotations

import asyncio
import time

import pytest
from support_bench import demo_process

from benchmarks.report import format_table, to_csv, to_html, to_json
from benchmarks.runner import (
    Arm,
    LoadSpec,
    RunError,
    arm_order,
    closed_block_sync,
    intended_send_times,
    open_block_aio,
    open_block_sync,
    plan_arms,
    run,
)
from benchmarks.target import Target, bytes_target, invoke_target
from benchmarks.variants import (
    SyncCaller,
    Variant,
    VariantError,
    VariantSettings,
    get_variant,
    register,
    unregister,
)
from grpc_channel.appcallback import ON_INVOKE
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
    assert len(stats.latencies) == 4
    stats = closed_block_sync(failing, calls=2)
    assert stats.codes == {"CLIENT_ERROR": 2}
    assert stats.errors == {"ValueError: bad request built": 2}


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
