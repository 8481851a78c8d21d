"""``python -m grpc_channel.bench.response_metadata``: runs against the demo app and reports every
way."""

from __future__ import annotations

import pytest

from grpc_channel.bench.response_metadata import main


def test_reports_each_way_with_its_ratio_to_the_public_read(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--rounds", "1", "--calls", "5"]) == 0
    rows = {
        line.rsplit(None, 3)[0]: line.split()[-3:]
        for line in capsys.readouterr().out.splitlines()[1:]
    }
    assert set(rows) == {"sync public", "sync fast", "aio public", "aio fast"}
    assert all(reads == "5" for reads, _, _ in rows.values())
    assert rows["sync public"][2] == rows["aio public"][2] == "1.000"
    assert all(float(median) > 0 for _, median, _ in rows.values())


def test_refuses_rounds_or_calls_below_one(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--rounds", "0"])
    assert exit_info.value.code == 2
    assert "--rounds and --calls must be at least 1" in capsys.readouterr().err
