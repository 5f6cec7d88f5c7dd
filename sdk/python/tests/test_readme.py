"""The README's walkthrough, executed as it stands."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def walkthrough() -> str:
    text = README.read_text()
    section = text.split("## Walkthrough", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    assert len(blocks) == 1, "the walkthrough has one Python block"
    return str(blocks[0])


def test_readme_walkthrough(archive_ready: None, capsys: pytest.CaptureFixture[str]) -> None:
    ns: dict[str, Any] = {"__name__": "walkthrough"}
    exec(compile(walkthrough(), str(README), "exec"), ns)
    out = capsys.readouterr().out

    assert "user_clicks" in out and "user_transactions" in out
    online: pd.DataFrame = ns["online"]
    assert online["user_id"].tolist() == ["u00001", "u00002"]
    assert {"user_clicks__click_count_1h__status", "user_profile__country__event_time"} <= set(
        online.columns
    )
    training: pd.DataFrame = ns["training"]
    assert len(training) == 3
    assert list(training.columns) == [
        "user_id",
        "event_timestamp",
        "label",
        "user_clicks__click_count_1h",
        "user_clicks__click_count_1h__status",
        "user_profile__country",
        "user_profile__country__status",
    ]
    assert set(training["user_clicks__click_count_1h__status"]) <= {"PRESENT", "NOT_FOUND", "STALE"}
    assert 0.0 <= ns["prediction"]["outputs"]["score"] <= 1.0
    assert len(ns["scores"]) == 2
    assert 'features[0]: unknown feature view "no_such_view"' in out
