"""Safe reads and atomic writes (sidrec/io.py): the checkpoint envelope, atomic folders, JSON and
text that is refused with the file named."""
from __future__ import annotations

import pickle
from pathlib import PurePosixPath

import numpy as np
import pytest
import torch

from sidrec.errors import InputError
from sidrec.io import load_checkpoint, save_checkpoint

FMT = "sidrec.test/1"


def _payload() -> dict:
    return {"state_dict": {"w": torch.arange(6.0).view(2, 3), "b": torch.zeros(3, dtype=torch.int64)},
            "config": {"hidden_dims": (4, 2), "lr": np.float32(0.5), "name": "x", "none": None},
            "report": {"curve": np.array([1.0, 0.5]), "n": np.int64(3), "ok": True}}


def test_round_trip(tmp_path):
    path = tmp_path / "model.ckpt"
    save_checkpoint(path, FMT, _payload())
    assert not list(tmp_path.glob(".*"))  # the atomic write left no temporary behind
    raw = torch.load(path, weights_only=True)  # readable without the envelope's reader
    assert raw["format"] == FMT
    back = load_checkpoint(path, FMT, "test")
    assert back["format"] == FMT
    assert torch.equal(back["state_dict"]["w"], torch.arange(6.0).view(2, 3))
    assert back["state_dict"]["b"].dtype == torch.int64
    # numpy values and tuples come back as plain Python values
    assert back["config"] == {"hidden_dims": [4, 2], "lr": 0.5, "name": "x", "none": None}
    assert back["report"] == {"curve": [1.0, 0.5], "n": 3, "ok": True}
    assert type(back["report"]["n"]) is int


def test_save_refuses_what_weights_only_cannot_read(tmp_path):
    path = tmp_path / "bad.ckpt"
    with pytest.raises(TypeError, match="report.obj"):
        save_checkpoint(path, FMT, {"report": {"obj": PurePosixPath("a")}})
    with pytest.raises(ValueError, match="format"):
        save_checkpoint(path, FMT, {"format": "other"})
    assert not path.exists() and not list(tmp_path.glob(".*"))


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="missing.ckpt: file not found"):
        load_checkpoint(tmp_path / "missing.ckpt", FMT, "test")


def test_truncated_file(tmp_path):
    good = tmp_path / "good.ckpt"
    save_checkpoint(good, FMT, _payload())
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[:300])
    with pytest.raises(InputError, match="truncated.ckpt: not a readable checkpoint"):
        load_checkpoint(truncated, FMT, "test")


def test_not_a_torch_file(tmp_path):
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(InputError, match="garbage.ckpt: not a readable checkpoint"):
        load_checkpoint(garbage, FMT, "test")


def test_wrong_format_tag(tmp_path):
    other = tmp_path / "other.ckpt"
    save_checkpoint(other, "sidrec.other/1", {"x": torch.zeros(1)})
    with pytest.raises(InputError, match=r"other.ckpt: not a test checkpoint \(expected format 'sidrec.test/1'\)"):
        load_checkpoint(other, FMT, "test")
    untagged = tmp_path / "untagged.ckpt"
    torch.save([torch.zeros(1)], untagged)  # readable, but not a dict at all
    with pytest.raises(InputError, match="untagged.ckpt: not a test checkpoint"):
        load_checkpoint(untagged, FMT, "test")


def test_pickled_object_is_refused(tmp_path):
    # Objects that only unpickling could rebuild: weights_only refuses them, and so must we.
    evil = tmp_path / "evil.ckpt"
    torch.save({"format": FMT, "obj": PurePosixPath("a")}, evil)
    with pytest.raises(InputError, match="evil.ckpt: not a readable checkpoint"):
        load_checkpoint(evil, FMT, "test")
    raw = tmp_path / "raw.ckpt"
    raw.write_bytes(pickle.dumps(PurePosixPath, protocol=2))  # a bare pickle of a global
    with pytest.raises(InputError, match="raw.ckpt"):
        load_checkpoint(raw, FMT, "test")


def test_atomic_dir_replaces_a_folder_without_deleting_it_first(tmp_path):
    from sidrec.io import atomic_dir

    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "weights").write_text("v1")
    with atomic_dir(target) as tmp:
        (tmp / "weights").write_text("v2")
    assert (target / "weights").read_text() == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # nothing left aside

    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "weights").write_text("half")
            raise RuntimeError("killed while writing")
    assert (target / "weights").read_text() == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_atomic_dir_clears_what_a_kill_mid_swap_left_aside(tmp_path):
    from sidrec.io import atomic_dir

    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "weights").write_text("v1")
    stale = tmp_path / ".model.old-abc123"
    (stale / "model").mkdir(parents=True)
    with atomic_dir(target) as tmp:
        (tmp / "weights").write_text("v2")
    assert not stale.exists()
    assert (target / "weights").read_text() == "v2"


def test_a_kill_between_the_two_renames_keeps_the_old_folder(tmp_path, monkeypatch):
    """The new folder's rename fails after the old one was moved aside (what a kill at
    that moment would leave): the old folder is still whole, and is put back."""
    import os

    from sidrec import io as sio

    target = tmp_path / "model"
    with sio.atomic_dir(target) as tmp:
        (tmp / "weights").write_text("v1")
    real_replace, calls = os.replace, []

    def replace(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # the first moved the old folder aside; the second brings the new in
            assert any((p / "model" / "weights").read_text() == "v1"
                       for p in tmp_path.glob(".model.old-*"))  # the old one exists, aside
            raise KeyboardInterrupt("killed mid-swap")
        return real_replace(src, dst)

    monkeypatch.setattr(sio.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        with sio.atomic_dir(target) as tmp:
            (tmp / "weights").write_text("v2")
    monkeypatch.setattr(sio.os, "replace", real_replace)
    assert (target / "weights").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_writes_are_synced_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    import os

    from sidrec import io as sio

    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real_fsync(fd)

    monkeypatch.setattr(sio.os, "fsync", fsync)
    with sio.atomic_dir(tmp_path / "model") as tmp:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "weights").write_text("v1")
    assert any(p.endswith("/sub/weights") and ".model.tmp-" in p for p in synced)  # before the rename
    assert synced[-1] == str(tmp_path)  # the parent folder, after it
    synced.clear()
    sio.write_json(tmp_path / "a.json", {"x": 1})
    assert ".a.json.tmp-" in synced[0] and synced[-1] == str(tmp_path)


def test_stale_temporaries_of_a_killed_write_are_cleared_at_the_next_write(tmp_path):
    from sidrec.io import atomic_dir, atomic_path

    (tmp_path / ".model.tmp-dead1").mkdir()
    (tmp_path / ".model.tmp-dead1" / "weights").write_text("half")
    (tmp_path / ".metrics.tsv.tmp-dead2.tsv").write_text("half")
    (tmp_path / ".model.json.tmp-other").write_text("another output's temporary")
    with atomic_dir(tmp_path / "model") as tmp:
        (tmp / "weights").write_text("v1")
    with atomic_path(tmp_path / "metrics.tsv", suffix=".tsv") as tmp:
        tmp.write_text("v1")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".model.json.tmp-other", "metrics.tsv", "model"]


def test_a_repeated_json_key_is_named_not_silently_overwritten(tmp_path):
    from sidrec.io import read_json

    path = tmp_path / "items.json"
    path.write_text('{"0": {"title": "a"},\n "1": {"title": "b"},\n "0": {"title": "c"}}')
    with pytest.raises(InputError, match="items.json:3: key '0'.*twice") as err:
        read_json(path)
    assert str(path) in str(err.value)
    # nested, and spelled differently: the line is that of the second occurrence
    path.write_text('{"0": {"title": "a",\n  "brand": "b",\n  "t\\u0069tle": "c"}}')
    with pytest.raises(InputError, match="items.json:3: key 'title'.*twice"):
        read_json(path)


def test_text_that_is_not_utf8_is_named_with_its_line(tmp_path):
    from sidrec.data.minionerec import read_rows
    from sidrec.io import read_text

    path = tmp_path / "valid.csv"
    path.write_bytes(b"user_id,item_id\nU1,3\nU2 caf\xe9,4\n")
    with pytest.raises(InputError, match=r"valid.csv:3: not UTF-8") as err:
        read_text(path)
    assert "UnicodeDecodeError" not in str(err.value)
    with pytest.raises(InputError, match=r"valid.csv:3: not UTF-8"):
        read_rows(path, {})
