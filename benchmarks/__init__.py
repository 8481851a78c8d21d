"""The invoke-latency benchmark: log-bucketed histograms, targets, pluggable variants, a closed- and
open-loop runner with interleaved rounds and worker processes, and reports (table, JSON, CSV, HTML).

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
from .histogram import Histogram, HistogramError
from .report import format_table, to_csv, to_html, to_json, write_reports
from .runner import (
    Arm,
    ArmResult,
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
    bytes_target,
    invoke_target,
    json_target,
    reflect_descriptor_set,
)
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

__all__ = [
    "Arm",
    "ArmResult",
    "AsyncCaller",
    "Histogram",
    "HistogramError",
    "LoadSpec",
    "RunError",
    "RunResult",
    "SyncCaller",
    "Target",
    "TargetError",
    "Variant",
    "VariantError",
    "VariantSettings",
    "available_variants",
    "bytes_target",
    "format_table",
    "get_variant",
    "intended_send_times",
    "invoke_target",
    "json_target",
    "plan_arms",
    "reflect_descriptor_set",
    "register",
    "registered_variants",
    "run",
    "to_csv",
    "to_html",
    "to_json",
    "unregister",
    "write_reports",
]
