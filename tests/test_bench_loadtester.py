"""``grpc-channel bench --target`` as a load tester with ghz's flags, against a plain grpcio
server of its own (not the demo app): what each flag does shows in the report or at the server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status
from support_harness import free_port, wait_until
from support_options import echo_modules

from grpc_channel.bench.cli import add_arguments
from grpc_channel.bench.runner import ConcurrencySchedule, LoadSchedule, RunError
from grpc_channel.bench.target import TargetError, normalize_method
from grpc_channel.bench.target_options import UsageError, parse_duration
from grpc_channel.bench.template import DataTemplate, TemplateError
from grpc_channel.cli import main

PROTO = Path(__file__).parent / "protos" / "echo_test.proto"
UNARY = "grpc_channel_test.Echo/Unary"
QUIET = ["--no-progress", "--connect-timeout", "5"]


@dataclass
class Seen:
    """What the server received: each request's text and count, and its metadata."""

    texts: list[str] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    metadata: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    active: int = 0
    levels: list[int] = field(default_factory=list)  # calls in flight as each call arrived


def _servicer(seen: Seen) -> Any:
    from google.protobuf import any_pb2
    from google.rpc import code_pb2, error_details_pb2, status_pb2

    pb2, pb2_grpc = echo_modules()

    class Echo(pb2_grpc.EchoServicer):  # type: ignore[misc, name-defined]
        def Unary(self, request: Any, context: grpc.ServicerContext) -> Any:
            with seen.lock:
                seen.texts.append(request.text)
                seen.counts.append(request.count)
                seen.metadata.append(dict(context.invocation_metadata()))
            if request.text == "odd-fails" and request.count % 2:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, "odd count")
            if request.text == "details":
                detail = any_pb2.Any()
                detail.Pack(
                    error_details_pb2.BadRequest(
                        field_violations=[
                            error_details_pb2.BadRequest.FieldViolation(
                                field="text", description="not allowed"
                            )
                        ]
                    )
                )
                status = status_pb2.Status(
                    code=code_pb2.INVALID_ARGUMENT, message="bad text", details=[detail]
                )
                context.abort_with_status(rpc_status.to_status(status))
            if request.text == "hold":
                with seen.lock:
                    seen.active += 1
                    seen.levels.append(seen.active)
                threading.Event().wait(0.02)  # slow calls: a run long enough to interrupt
                with seen.lock:
                    seen.active -= 1
            context.send_initial_metadata((("x-echo", request.text),))
            context.set_trailing_metadata((("x-trailer", "done"),))
            return pb2.EchoReply(text=request.text, index=request.count)

        def ServerStream(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            with seen.lock:
                seen.texts.append(request.text)
            for index in range(request.count):
                yield pb2.EchoReply(text=request.text, index=index)

        def ClientStream(self, requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
            texts = [request.text for request in requests]
            with seen.lock:
                seen.texts.append("+".join(texts))
            return pb2.EchoReply(text="+".join(texts), index=len(texts))

        def Bidi(self, requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
            texts = []
            for request in requests:
                texts.append(request.text)
                yield pb2.EchoReply(text=request.text, index=len(texts))
            with seen.lock:
                seen.texts.append("+".join(texts))

    return Echo()


@contextmanager
def echo_server(tls: tuple[bytes, bytes] | None = None) -> Iterator[tuple[str, Seen]]:
    """The Echo service (tests/protos/echo_test.proto) with server reflection on 127.0.0.1:0,
    plaintext or TLS with ``(key, cert)`` PEM; yields (address, what it saw)."""
    pb2, pb2_grpc = echo_modules()
    seen = Seen()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    pb2_grpc.add_EchoServicer_to_server(_servicer(seen), server)
    service = pb2.DESCRIPTOR.services_by_name["Echo"].full_name
    reflection.enable_server_reflection([service, reflection.SERVICE_NAME], server)
    if tls is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([tls]))
    server.start()
    try:
        yield f"127.0.0.1:{port}", seen
    finally:
        server.stop(None)


@pytest.fixture
def server() -> Iterator[tuple[str, Seen]]:
    with echo_server() as served:
        yield served


def _report(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def _outputs(tmp_path: Path) -> list[str]:
    return ["--json-out", str(tmp_path / "r.json"), "--html", str(tmp_path / "r.html")]


def test_target_runs_one_plain_variant_and_n_is_the_exact_total(
    server: tuple[str, Seen], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    address, seen = server
    argv = ["bench", *QUIET, "--call", UNARY, "-d", '{"text": "hi"}', "-n", "12", "-c", "3"]
    assert main([*argv, *_outputs(tmp_path), address]) == 0
    out = capsys.readouterr().out
    # The one preflight call is shown before the run, decoded with the reflected types.
    assert "preflight call: /grpc_channel_test.Echo/Unary" in out
    assert 'response: {"text": "hi"}' in out and "('x-echo', 'hi')" in out
    report = _report(tmp_path / "r.json")
    assert [arm["label"] for arm in report["arms"]] == ["plain"]
    assert report["arms"][0]["codes"] == {"OK": 12}
    assert report["load"]["concurrency"] == 3
    assert len(seen.texts) == 13  # no warm-up against a server of yours: 12 + the preflight


def test_variants_on_request_share_the_total(
    server: tuple[str, Seen], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    address, _ = server
    argv = ["bench", *QUIET, "--target", address, "--call", "/" + UNARY, "-n", "8", "-c", "1"]
    argv += ["--variants", "plain,grpc-sync", "--rounds", "2", *_outputs(tmp_path)]
    assert main(argv) == 0
    report = _report(tmp_path / "r.json")
    assert {arm["label"]: arm["calls"] for arm in report["arms"]} == {"plain": 4, "grpc-sync": 4}
    capsys.readouterr()
    odd = ["bench", *QUIET, "--target", address, "--call", UNARY, "-n", "7"]
    assert main([*odd, "--variants", "plain,grpc-sync", "--no-files"]) == 2
    assert "does not split evenly over 2 variants" in capsys.readouterr().err


def test_two_targets_make_an_interleaved_a_b(tmp_path: Path) -> None:
    with echo_server() as (first, seen_a), echo_server() as (second, seen_b):
        argv = ["bench", *QUIET, "--call", UNARY, "-d", '{"text": "ab"}', "-n", "8", "-c", "1"]
        argv += ["--rounds", "2", "--warmup", "0", "--target", first, "--target", second]
        assert main([*argv, *_outputs(tmp_path)]) == 0
    report = _report(tmp_path / "r.json")
    arms = {arm["label"]: arm for arm in report["arms"]}
    assert set(arms) == {"plain@A", "plain@B"}
    assert arms["plain@A"]["calls"] == arms["plain@B"]["calls"] == 4
    assert arms["plain@B"]["baseline"] == "plain@A"
    assert len(arms["plain@B"]["ratio_to_baseline_p50"]["rounds"]) == 2
    assert arms["plain@B"]["target"]["address"] == second
    assert any(f"A is {first}, B is {second}" in note for note in report["notes"])
    # Each server got its preflight call and its variant's measured (and re-warm) calls.
    assert len(seen_a.texts) >= 5 and len(seen_b.texts) >= 5


def test_data_template_rendered_per_call_and_metadata_from_flags_and_file(
    server: tuple[str, Seen], tmp_path: Path
) -> None:
    address, seen = server
    meta_file = tmp_path / "meta.txt"
    meta_file.write_text("# metadata\nx-file: from-file\n")
    data = '{"text": "n{{.RequestNumber}}", "count": {{.RequestNumber}}}'
    argv = ["bench", *QUIET, "--call", UNARY, "-d", data, "-n", "5", "-c", "1", "--no-files"]
    argv += ["-m", '{"x-user": "al"}', "-m", "x-team=core", "-M", str(meta_file), address]
    assert main(argv) == 0
    # The preflight call renders request 0, then the run's calls are numbered 0..4.
    assert seen.texts == ["n0", "n0", "n1", "n2", "n3", "n4"]
    assert seen.counts == [0, 0, 1, 2, 3, 4]
    for metadata in seen.metadata:
        assert (metadata["x-user"], metadata["x-team"], metadata["x-file"]) == (
            "al",
            "core",
            "from-file",
        )


def test_data_from_a_file_and_a_proto_compiled_at_run_time(
    server: tuple[str, Seen], tmp_path: Path
) -> None:
    address, seen = server
    body = tmp_path / "body.json"
    body.write_text('{"text": "from-file"}')
    argv = ["bench", *QUIET, "--proto", str(PROTO), "-I", str(PROTO.parent), "--call", UNARY]
    assert main([*argv, "-d", f"@{body}", "-n", "3", "--no-files", address]) == 0
    assert seen.texts == ["from-file"] * 4


def test_rate_implies_the_open_loop_and_duration_is_the_total(
    server: tuple[str, Seen], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    address, _ = server
    monkeypatch.chdir(tmp_path)  # the reports go to their default paths here
    argv = ["bench", *QUIET, "--call", UNARY, "-r", "200", "-z", "100ms", "-c", "2"]
    assert main([*argv, address]) == 0
    assert (tmp_path / "bench-report.html").exists()
    report = _report(tmp_path / "bench-report.json")
    assert report["load"]["mode"] == "open" and report["load"]["rate"] == 200
    assert report["arms"][0]["calls"] == 20  # -r x -z calls


@pytest.mark.parametrize(
    ("method", "data", "arrived"),
    [
        ("ServerStream", '{"text": "s", "count": 3}', "s"),
        ("ClientStream", '[{"text": "a"}, {"text": "b"}]', "a+b"),
        ("Bidi", '[{"text": "x"}, {"text": "y"}, {"text": "z"}]', "x+y+z"),
    ],
)
def test_streaming_methods_count_one_call_per_stream(
    server: tuple[str, Seen],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    method: str,
    data: str,
    arrived: str,
) -> None:
    address, seen = server
    call = f"grpc_channel_test.Echo/{method}"
    argv = ["bench", *QUIET, "--call", call, "-d", data, "-n", "4", "-c", "2", address]
    assert main([*argv, *_outputs(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "status:   0 OK" in out
    if method != "ClientStream":
        assert "responses: 3 messages" in out
    (arm,) = _report(tmp_path / "r.json")["arms"]
    assert arm["codes"] == {"OK": 4} and arm["target"]["shape"] != "unary"
    # The other variants would call it as a unary method: refused.
    assert main([*argv, "--variants", "grpc-sync", "--no-files"]) == 2
    assert "plain variants only" in capsys.readouterr().err
    assert seen.texts[:5] == [arrived] * 5  # the preflight stream, then 4 streams


def test_load_schedule_step_and_line(
    server: tuple[str, Seen], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    step = LoadSchedule("step", start=100, step=100, end=300, step_seconds=0.1)
    offsets = step.offsets_ns(40)
    # 10 calls 10 ms apart, 20 calls 5 ms apart, then 3.33 ms apart at the end rate.
    assert offsets[10] == 100_000_000 and offsets[30] == 200_000_000
    assert offsets[31] - offsets[30] == round(1e9 / 300)
    assert step.calls_within(0.2) == 30
    line = LoadSchedule("line", start=10, step=10)
    assert line.rate_at(0) == 10 and line.rate_at(2.5) == 35
    with pytest.raises(RunError, match="needs an end rate"):
        LoadSchedule("line", start=10, step=-1)
    address, _ = server
    argv = ["bench", *QUIET, "--call", UNARY, "--load-schedule", "step", "--load-start", "200"]
    argv += ["--load-step", "200", "--load-step-duration", "50ms", "-n", "60", address]
    assert main([*argv, *_outputs(tmp_path)]) == 0
    report = _report(tmp_path / "r.json")
    assert report["load"]["mode"] == "open" and report["arms"][0]["calls"] == 60
    assert report["load"]["schedule"]["kind"] == "step"
    assert any("load schedule step" in note for note in report["notes"])
    # 10 calls at 200/s, 20 at 400/s, 30 at 600/s: 60 calls in 150 ms, a mean of 400/s. The
    # asked rate is that mean, not the start; the table shows first and last rate beside it.
    assert report["arms"][0]["asked_rate_per_s"] == pytest.approx(400)
    assert report["load"]["schedule_rates"]["first"] == 200
    assert report["load"]["schedule_rates"]["last"] == 600
    assert "400 (200->600)" in capsys.readouterr().out
    assert any("mean over the run (400/s)" in note for note in report["notes"])
    assert main([*argv, "-r", "10", "--no-files"]) == 2
    assert "-r/--rps is a constant rate" in capsys.readouterr().err
    assert main(["bench", "--load-end", "5", "--target", address, "--no-files"]) == 2
    assert "--load-end need --load-schedule step or line" in capsys.readouterr().err


def test_max_error_rate_and_per_code_counts(
    server: tuple[str, Seen], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    address, _ = server
    data = '{"text": "odd-fails", "count": {{.RequestNumber}}}'
    argv = ["bench", *QUIET, "--call", UNARY, "-d", data, "-n", "10", "-c", "1", address]
    assert main([*argv, "--max-error-rate", "0.6", *_outputs(tmp_path)]) == 0
    arm = _report(tmp_path / "r.json")["arms"][0]
    assert arm["codes"] == {"OK": 5, "FAILED_PRECONDITION": 5}
    assert arm["ok"] == 5 and arm["failed"] == 5
    capsys.readouterr()
    assert main([*argv, "--max-error-rate", "0.2", "--no-files"]) == 1
    assert "5 of 10 calls failed" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--call", UNARY, "-d", '{"text": "details"}'], "all 4 calls failed"),
        (["--call", "grpc_channel_test.Echo/Unray"], "closest first): /grpc_channel_test"),
        (["--payload-hex", "00", "--call", "x.Y/Z"], "failed with UNIMPLEMENTED"),
    ],
)
def test_failures_exit_non_zero_with_a_message(
    server: tuple[str, Seen], extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    address, _ = server
    code = main(["bench", *QUIET, *extra, "-n", "4", "--no-files", "--quiet", address])
    assert code in (1, 2) and message in capsys.readouterr().err
    # A typo is a usage error (2); a server that cannot serve the call is a failed run (1).
    assert code == (2 if "Unray" in extra[1] else 1)


def test_unreachable_target_fails_at_the_connect_check(capsys: pytest.CaptureFixture[str]) -> None:
    address = f"127.0.0.1:{free_port()}"
    argv = ["bench", "--call", UNARY, "--connect-timeout", "0.3", "--no-files", address]
    assert main(argv) == 1
    assert f"cannot connect to {address} within 0.3 s (--connect-timeout)" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--target", "localhost"], "--target must be host:port"),
        (["--no-files", "--csv", "x.csv"], "--no-files contradicts --csv"),
        (["-r", "10", "--mode", "closed"], "drop --mode closed"),
        (["-d", "@/nonexistent/body.json"], "-d/--data: no such file: /nonexistent/body.json"),
        (["-M", "/nonexistent/meta"], "-M/--metadata-file: no such file: /nonexistent/meta"),
        (["--insecure", "--cacert", "ca.pem"], "--insecure (plaintext) contradicts --cacert"),
        (["-I", "protos"], "-I/--import-path applies to --proto only"),
        (["--max-error-rate", "2"], "--max-error-rate is a fraction"),
        (["-m", "{bad"], "-m/--metadata: not valid JSON"),
        (["--call", "nodots"], "--call: method must be a path"),
        (["-m", "x-id={{.Nope}}"], "-m/--metadata: unsupported template action {{.Nope}}"),
        (["--concurrency-end", "5"], "--concurrency-end need --concurrency-schedule step or line"),
        (["--concurrency-schedule", "step", "-c", "5"], "-c/--concurrency is a constant"),
        (["--concurrency-schedule", "line", "-r", "9"], "drop -r/--rps, --mode open and --load"),
        (["--concurrency-schedule", "step"], "a rising concurrency schedule needs an end level"),
        (
            ["--concurrency-schedule", "step", "--concurrency-end", "4", "--rounds", "2"],
            "runs each variant in one block (its clock starts there); drop --rounds",
        ),
        (
            [
                *("--concurrency-schedule", "line", "--concurrency-end", "4"),
                *("--concurrency-step-duration", "1s"),
            ],
            "--concurrency-step-duration applies to --concurrency-schedule step only",
        ),
        (
            [
                *("--concurrency-schedule", "step", "--concurrency-start", "5"),
                *("--concurrency-end", "2"),
            ],
            "end 2 is not reached from start 5 with step +1",
        ),
    ],
)
def test_usage_errors_name_the_flag_and_exit_2(
    extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["bench", "--call", UNARY, "--no-files", "--target", "127.0.0.1:1"]
    if extra[0] == "--target":
        base = base[:-2]
    if "--no-files" in extra:
        base.remove("--no-files")
    assert main([*base, *extra]) == 2
    assert message in capsys.readouterr().err


def test_contradictory_totals_are_refused_by_the_parser(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["bench", "-n", "10", "-z", "1s", "--target", "127.0.0.1:1"])
    assert exited.value.code == 2
    assert "-z/--duration: not allowed with argument -n/--total" in capsys.readouterr().err


def test_json_is_a_deprecated_alias_of_data(
    server: tuple[str, Seen], capsys: pytest.CaptureFixture[str]
) -> None:
    address, seen = server
    argv = ["bench", *QUIET, "--call", UNARY, "--json", '{"text": "old"}', "-n", "2"]
    assert main([*argv, "--no-files", "--quiet", address]) == 0
    assert "--json is deprecated; use -d/--data" in capsys.readouterr().err
    assert seen.texts == ["old"] * 3


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt"),
            *("ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert)),
            *("-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"),
        ],
        check=True,
        capture_output=True,
    )
    return key, cert


def test_tls_with_a_self_signed_certificate_and_authority(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key, cert = _self_signed(tmp_path)
    with echo_server((key.read_bytes(), cert.read_bytes())) as (address, seen):
        tls = ["--cacert", str(cert), "--authority", "localhost"]
        argv = ["bench", *QUIET, "--call", UNARY, "-d", '{"text": "tls"}', "-n", "3"]
        assert main([*argv, *tls, "--no-files", "--quiet", address]) == 0
        assert seen.texts == ["tls"] * 4
        assert all(m[":authority"] == "localhost" for m in seen.metadata if ":authority" in m)
        # Plaintext against the TLS server never connects: a clear failure, not a hang.
        plain = ["bench", "--call", UNARY, "--connect-timeout", "0.5", "--no-files", address]
        assert main(plain) == 1
        assert "cannot connect" in capsys.readouterr().err
        assert main([*argv, *tls, "--variants", "plain-aio", "--no-files", address]) == 0
        assert seen.texts == ["tls"] * 8  # the aio form over TLS: a preflight call and 3 more
        # The other variants would send plaintext: refused.
        assert main([*argv, *tls, "--variants", "grpc-sync", "--no-files", address]) == 2
        assert "plain variants only" in capsys.readouterr().err


@pytest.mark.parametrize("workers", [1, 2])
def test_sigint_writes_a_partial_report_and_exits_130(
    server: tuple[str, Seen], tmp_path: Path, workers: int
) -> None:
    address, seen = server
    report = tmp_path / "r.json"
    data = '{"text": "hold", "count": {{.RequestNumber}}}'
    argv = ["bench", *QUIET, "--call", UNARY, "-d", data, "-z", "60s", "-c", "2"]
    argv += ["--workers", str(workers), "--json-out", str(report)]
    argv += ["--html", str(tmp_path / "r.html"), address]
    process = subprocess.Popen(
        [sys.executable, "-m", "grpc_channel.cli", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert wait_until(lambda: len(seen.texts) >= 10, timeout=30)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, err
    assert "interrupted" in err and f"wrote report {report}" in out
    data = _report(report)
    (arm,) = data["arms"]
    assert 0 < arm["calls"] <= len(seen.texts) - 1 and arm["codes"] == {"OK": arm["calls"]}
    assert any("interrupted after" in note for note in data["notes"])
    if workers > 1:
        # Every worker finished its calls in flight and reported them: every call the server
        # answered (but the preflight) is in the report, and both workers' numbers are there.
        assert arm["calls"] == len(seen.texts) - 1
        assert {count % 2 for count in seen.counts[1:]} == {0, 1}


def test_help_has_defaults_and_no_markup(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("bench", "call"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        assert "``" not in text and ":class:" not in text and ":func:" not in text
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    for action in parser._actions:
        if action.help is None or action.help == argparse.SUPPRESS:
            pytest.fail(f"{action.option_strings or action.dest} has no help")
        valued = action.nargs != 0 and action.option_strings and action.dest != "help"
        if valued:
            assert "default" in action.help, action.option_strings


def test_small_pieces() -> None:
    assert normalize_method("pkg.Svc/M") == normalize_method("/pkg.Svc/M") == "/pkg.Svc/M"
    assert normalize_method("pkg.Svc.M") == "/pkg.Svc/M"
    with pytest.raises(TargetError):
        normalize_method("M")
    assert parse_duration("1m30s") == 90 and parse_duration("250ms") == 0.25
    assert parse_duration("2") == 2
    with pytest.raises(UsageError, match="10s, 500ms"):
        parse_duration("ten", "-z")
    template = DataTemplate.parse('{"a": "{{ .RequestNumber }}", "m": "{{.MethodName}}"}', "/p.S/M")
    assert template is not None and template.render(7) == '{"a": "7", "m": "M"}'
    assert DataTemplate.parse('{"a": 1}', "/p.S/M") is None
    uuid = DataTemplate.parse("{{newUUID}}", "/p.S/M")
    assert uuid is not None and uuid.render(0) != uuid.render(0)
    with pytest.raises(TemplateError, match=r"supported: \{\{.RequestNumber\}\}"):
        DataTemplate.parse("{{.Nope}}", "/p.S/M")


def test_concurrency_schedule_levels_and_sender_windows() -> None:
    step = ConcurrencySchedule("step", start=2, step=2, end=5, step_seconds=0.5)
    assert [step.level_at(t) for t in (0, 0.49, 0.5, 1.0, 9)] == [2, 2, 4, 5, 5]
    assert step.peak == step.final == 5
    # Senders 0-1 from the start, 2-3 from 0.5 s, 4 from 1 s; none beyond the peak.
    assert [step.active_between(k)[0] for k in range(6)] == [0, 0, 0.5, 0.5, 1.0, float("inf")]
    line = ConcurrencySchedule("line", start=1, step=4, max_seconds=1.0)
    assert line.level_at(0.3) == 2 and line.peak == 5 and line.level_at(7) == 5
    assert line.active_between(2) == (0.5, float("inf"))
    down = ConcurrencySchedule("step", start=4, step=-1, end=2, step_seconds=1.0)
    assert down.peak == 4 and down.final == 2 and down.level_at(1.5) == 3
    # Senders 0-1 stay; sender 2 stops at 2 s, sender 3 at 1 s.
    assert [down.active_between(k) for k in (1, 2, 3)] == [
        (0, float("inf")),
        (0, 2.0),
        (0, 1.0),
    ]
    assert ConcurrencySchedule("line", start=3, step=-1).final == 1
    with pytest.raises(RunError, match="needs an end level or a max duration"):
        ConcurrencySchedule("line", start=1, step=1)
    with pytest.raises(RunError, match="must not be 0"):
        ConcurrencySchedule("step", start=1, step=0, end=3)


@pytest.mark.parametrize("variant", ["plain", "plain-aio"])
def test_concurrency_schedule_step_raises_the_calls_in_flight(
    server: tuple[str, Seen], tmp_path: Path, variant: str
) -> None:
    address, seen = server
    argv = ["bench", *QUIET, "--call", UNARY, "-d", '{"text": "hold"}', "-n", "36", address]
    argv += ["--variants", variant]
    argv += ["--concurrency-schedule", "step", "--concurrency-end", "3"]
    argv += ["--concurrency-step-duration", "150ms", *_outputs(tmp_path)]
    assert main(argv) == 0
    report = _report(tmp_path / "r.json")
    assert report["arms"][0]["codes"] == {"OK": 36}
    assert report["load"]["concurrency"] == 3
    assert report["load"]["concurrency_schedule"]["kind"] == "step"
    assert any(
        "concurrency schedule step: calls in flight from 1 to 3" in n for n in report["notes"]
    )
    # The server saw one call at a time first (a constant -c 3 would send three at once), and at
    # most 3 in flight once the schedule reached its end.
    assert seen.levels[:3] == [1, 1, 1]
    assert max(seen.levels) == 3
    # Falling: 3 in flight, then 1 after 100 ms (the other senders stop after their call).
    seen.levels.clear()
    argv = ["bench", *QUIET, "--call", UNARY, "-d", '{"text": "hold"}', "-n", "30", address]
    argv += ["--variants", variant, "--concurrency-schedule", "step", "--no-files"]
    argv += ["--concurrency-start", "3", "--concurrency-step", "-2"]
    assert main([*argv, "--concurrency-step-duration", "100ms", "--quiet"]) == 0
    assert max(seen.levels) == 3 and seen.levels[-3:] == [1, 1, 1]


@pytest.mark.parametrize("variant", ["plain", "plain-aio"])
def test_metadata_templates_rendered_per_call_with_the_data(
    server: tuple[str, Seen], variant: str
) -> None:
    address, seen = server
    argv = ["bench", *QUIET, "--call", UNARY, "-n", "4", "-c", "1", "--no-files", address]
    argv += ["-d", '{"count": {{.RequestNumber}}}', "--variants", variant]
    argv += ["-m", "x-req=r{{.RequestNumber}}", "-m", '{"x-call": "{{ .MethodName }}"}']
    assert main(argv) == 0
    # The preflight call is request 0; the run's calls 0..3, data and metadata alike.
    assert [m["x-req"] for m in seen.metadata] == ["r0", "r0", "r1", "r2", "r3"]
    assert [int(m["x-req"][1:]) for m in seen.metadata] == seen.counts
    assert {m["x-call"] for m in seen.metadata} == {"Unary"}


def test_workers_number_requests_uniquely(server: tuple[str, Seen]) -> None:
    address, seen = server
    data = '{"text": "w", "count": {{.RequestNumber}}}'
    argv = ["bench", *QUIET, "--call", UNARY, "-d", data, "-n", "8", "-c", "2", address]
    assert main([*argv, "--workers", "2", "--no-files", "--quiet"]) == 0
    # Worker 0 numbers 0, 2, 4, 6 and worker 1 numbers 1, 3, 5, 7: no number twice.
    assert sorted(seen.counts[1:]) == list(range(8))


@pytest.mark.parametrize(
    ("method", "data", "arrived"),
    [
        ("ServerStream", '{"text": "s", "count": 3}', "s"),
        ("ClientStream", '[{"text": "a"}, {"text": "b"}]', "a+b"),
        ("Bidi", '[{"text": "x"}, {"text": "y"}]', "x+y"),
    ],
)
def test_plain_aio_calls_streams_whole(
    server: tuple[str, Seen], tmp_path: Path, method: str, data: str, arrived: str
) -> None:
    address, seen = server
    call = f"grpc_channel_test.Echo/{method}"
    argv = ["bench", *QUIET, "--call", call, "-d", data, "-n", "3", "-c", "2", address]
    assert main([*argv, "--variants", "plain-aio", *_outputs(tmp_path)]) == 0
    (arm,) = _report(tmp_path / "r.json")["arms"]
    assert arm["label"] == "plain-aio" and arm["kind"] == "aio"
    assert arm["codes"] == {"OK": 3}
    assert seen.texts == [arrived] * 4
