"""The invoke-latency benchmark: log-bucketed histograms, targets, pluggable variants, a closed- and
open-loop runner with interleaved rounds and worker processes, and reports (table, JSON, CSV, HTML,
Prometheus text, HdrHistogram .hgrm).

From the command line: ``grpc-channel bench`` (or ``python -m grpc_channel.bench``). From Python::

    from grpc_channel.bench import LoadSpec, format_table, invoke_target, plan_arms, run
    from grpc_channel.demo import start_demo

    port, app = start_demo()
    with app:
        arms, skipped = plan_arms(invoke_target(app.address), ["grpc-sync", "chain"])
        result = run(arms, LoadSpec(rounds=40, block_calls=100), skipped=skipped)
    print(format_table(result))
"""

from . import ours
from .call import CallResult, call_once, describe_result
from .export import to_hgrm, to_prometheus, write_hdr, write_prometheus
from .histogram import Histogram, HistogramError
from .report import format_table, to_csv, to_html, to_json, write_reports
from .runner import (
    Arm,
    ArmResult,
    ConcurrencySchedule,
    LoadSchedule,
    LoadSpec,
    RunError,
    RunResult,
    intended_send_times,
    plan_arms,
    run,
)
from .target import (
    Target,
    TargetError,
    TlsSpec,
    bytes_target,
    check_address,
    closest_methods,
    compile_protos,
    invoke_target,
    json_target,
    normalize_method,
    open_channel,
    reflect_descriptor_set,
)
from .template import DataTemplate, MetadataTemplate
from .variants import (
    AsyncCaller,
    SyncCaller,
    Variant,
    VariantError,
    VariantSettings,
    available_variants,
    get_variant,
    register,
    registered_variants,
    unregister,
)

# The registry does not import its plug-ins: the package registers this project's variants, once,
# after the bare grpcio built-ins (worker processes import the package too, so they see the same).
for _variant in ours.variants():
    register(_variant)
del _variant
# The plain variant (the load tester's default with --target) registers itself on import.
from .plain import PLAIN, PLAIN_AIO  # noqa: E402

__all__ = [
    "PLAIN",
    "PLAIN_AIO",
    "Arm",
    "ArmResult",
    "AsyncCaller",
    "CallResult",
    "ConcurrencySchedule",
    "DataTemplate",
    "Histogram",
    "HistogramError",
    "LoadSchedule",
    "LoadSpec",
    "MetadataTemplate",
    "RunError",
    "RunResult",
    "SyncCaller",
    "Target",
    "TargetError",
    "TlsSpec",
    "Variant",
    "VariantError",
    "VariantSettings",
    "available_variants",
    "bytes_target",
    "call_once",
    "check_address",
    "closest_methods",
    "compile_protos",
    "describe_result",
    "format_table",
    "get_variant",
    "intended_send_times",
    "invoke_target",
    "json_target",
    "normalize_method",
    "open_channel",
    "plan_arms",
    "reflect_descriptor_set",
    "register",
    "registered_variants",
    "run",
    "to_csv",
    "to_hgrm",
    "to_html",
    "to_json",
    "to_prometheus",
    "unregister",
    "write_hdr",
    "write_prometheus",
    "write_reports",
]
