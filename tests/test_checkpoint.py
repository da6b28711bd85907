"""Checkpoints: round trip, atomic replacement, and clear refusals of files that cannot be trusted."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from worldsim.checkpoint import (
    CheckpointError, component, load_checkpoint, prefixed, read_metadata, save_checkpoint,
)


def _save(path, **meta):
    tensors = {**prefixed({"w": torch.randn(3, 4), "b": torch.zeros(4)}, "dit"), "ae.scale": torch.ones(8)}
    meta = {"config": {"model": {"preset": "S"}}, "action_meanings": ["noop", "left"], "frame_shape": [64, 64, 3],
            **meta}
    return save_checkpoint(path, tensors, **meta), tensors


def test_round_trip_keeps_tensors_and_metadata(tmp_path):
    path, tensors = _save(tmp_path / "a.safetensors", step=123)
    loaded, meta = load_checkpoint(path)
    assert loaded.keys() == tensors.keys()
    for k in tensors:
        assert torch.equal(loaded[k], tensors[k])
    assert meta["config"] == {"model": {"preset": "S"}} and meta["step"] == 123
    assert meta["action_meanings"] == ["noop", "left"] and meta["frame_shape"] == [64, 64, 3]
    assert read_metadata(path) == meta
    assert set(component(loaded, "dit")) == {"w", "b"}


def test_save_needs_the_config(tmp_path):
    with pytest.raises(ValueError, match="config"):
        save_checkpoint(tmp_path / "x.safetensors", {"w": torch.zeros(1)}, action_meanings=[])


def test_a_crashed_save_leaves_the_old_checkpoint(tmp_path, monkeypatch):
    path, tensors = _save(tmp_path / "a.safetensors")
    before = path.read_bytes()
    import worldsim.io as io

    def crash(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(io.os, "replace", crash)
    with pytest.raises(OSError):
        _save(path, step=2)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.safetensors"]  # no temporary file left behind


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "not a readable safetensors file"),
    (lambda p: p.write_bytes(p.read_bytes()[:5]), "not a readable safetensors file"),
    (lambda p: p.write_text("hello, not a checkpoint"), "not a readable safetensors file"),
    (lambda p: save_file({"x": torch.zeros(1)}, str(p)), "not a worldsim checkpoint"),
    (lambda p: save_file({"x": torch.zeros(1)}, str(p), metadata={"format_version": "99", "kind": '"worldsim"',
                                                                   "config": "{}"}), "format_version 99"),
])
def test_untrustworthy_files_are_refused_naming_the_file(tmp_path, damage, message):
    path, _ = _save(tmp_path / "a.safetensors")
    damage(path)
    with pytest.raises(CheckpointError, match=message) as err:
        load_checkpoint(path)
    assert str(path) in str(err.value)


def test_missing_file_says_how_to_get_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file.*worldsim train"):
        load_checkpoint(tmp_path / "nope.safetensors")
