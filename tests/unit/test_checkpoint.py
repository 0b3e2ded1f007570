"""Scan checkpoints (enforcer.engine.checkpoint): atomic save, load, refusal of strangers."""

from __future__ import annotations

from pathlib import Path

import pytest

from enforcer.engine.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from enforcer.errors import ConfigError


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "scan.json"
    checkpoint = Checkpoint(source="s3://b/p", consumed=7, after_key="k7", verdicts={"x": 7})
    save_checkpoint(path, checkpoint)
    assert load_checkpoint(path) == checkpoint
    assert not path.with_name("scan.json.partial").exists()
    assert checkpoint.matches("s3://b/p", versions=False, enqueue=False)
    assert not checkpoint.matches("s3://b/p", versions=True, enqueue=False)


def test_missing_is_none_and_garbage_is_a_config_error(tmp_path: Path) -> None:
    assert load_checkpoint(tmp_path / "none.json") is None
    (tmp_path / "bad.json").write_text('{"hello": 1}')
    with pytest.raises(ConfigError, match="not a scan checkpoint"):
        load_checkpoint(tmp_path / "bad.json")
