"""Checkpoint round trip and every bad-input case named in the core issue."""

import json

import pytest
import torch

from conftest import tiny_model
from tarot_eval import checkpoint
from tarot_eval.checkpoint import CheckpointError
from tarot_eval.edit import HeadEdit


@pytest.fixture
def model():
    return tiny_model("llama")


@pytest.fixture
def saved(tmp_path, model):
    edit = HeadEdit.identity(model, "rotation", (0, 1))
    edit.params = torch.linspace(-0.7, 0.7, edit.params.numel()).view_as(edit.params)
    checkpoint.save(tmp_path / "ckpt", edit, model, provenance={"task": "t", "objective": "o"})
    return tmp_path / "ckpt", edit


def _rewrite_config(directory, **changes):
    path = directory / checkpoint.CONFIG_NAME
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def test_round_trip_is_exact(saved, model):
    directory, edit = saved
    loaded = checkpoint.load(directory, model)
    assert loaded.method == edit.method and loaded.layers == edit.layers
    assert torch.equal(loaded.params, edit.params)
    config = checkpoint.read_config(directory)
    assert config["provenance"] == {"task": "t", "objective": "o"}
    assert config["num_heads"] == 4 and config["head_dim"] == 8
    assert sorted(p.name for p in directory.iterdir()) == ["edit.safetensors", "tarot_config.json"]


def test_hash_changes_with_the_params(saved, model, tmp_path):
    directory, edit = saved
    edit.params = edit.params * 0.5
    other = checkpoint.save(tmp_path / "other", edit, model)
    assert checkpoint.checkpoint_hash(directory) != checkpoint.checkpoint_hash(other)
    assert len(checkpoint.checkpoint_hash(directory)) == 64


def test_checkpoint_from_another_model_is_refused(saved):
    directory, _ = saved
    with pytest.raises(CheckpointError, match=r"made for .*llama.*model given is .*qwen2"):
        checkpoint.load(directory, tiny_model("qwen2"))


def test_same_shapes_other_weights_still_fit(saved):
    directory, edit = saved  # a fingerprint is about shapes: the same model re-saved elsewhere must load
    assert torch.equal(checkpoint.load(directory, tiny_model("llama", seed=5)).params, edit.params)


def test_wrong_head_count_is_refused(saved, model):
    directory, _ = saved
    _rewrite_config(directory, num_heads=8)
    with pytest.raises(CheckpointError, match="num_heads=8, model has num_heads=4"):
        checkpoint.load(directory, model)


def test_wrong_param_shape_is_refused(saved, model):
    directory, _ = saved
    _rewrite_config(directory, layers=[0, 1, 2])
    with pytest.raises(CheckpointError, match=r"params shape \(2, 4, 4\) does not match \(3, 4, 4\)"):
        checkpoint.load(directory, model)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 3.0])
def test_nan_or_out_of_bound_angles_are_refused(saved, model, bad):
    directory, edit = saved
    params = edit.params.clone()
    params[0, 0, 0] = bad
    from safetensors.torch import save_file

    save_file({"params": params}, str(directory / checkpoint.TENSORS_NAME))
    with pytest.raises(CheckpointError, match="NaN or inf" if bad != 3.0 else "outside bounds"):
        checkpoint.load(directory, model)


def test_save_refuses_out_of_bound_values(model, tmp_path):
    edit = HeadEdit.identity(model, "rescale", (0,))
    edit.params = edit.params * 1.5
    with pytest.raises(CheckpointError, match="outside bounds"):
        checkpoint.save(tmp_path / "x", edit, model)


def test_truncated_safetensors_is_refused(saved, model):
    directory, _ = saved
    path = directory / checkpoint.TENSORS_NAME
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="corrupt or truncated safetensors"):
        checkpoint.load(directory, model)


@pytest.mark.parametrize("key", checkpoint.REQUIRED_KEYS)
def test_missing_config_key_is_named(saved, model, key):
    directory, _ = saved
    path = directory / checkpoint.CONFIG_NAME
    config = json.loads(path.read_text())
    del config[key]
    path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=f"missing config key.*{key}"):
        checkpoint.load(directory, model)


def test_corrupt_json_and_missing_dir_are_refused(saved, model, tmp_path):
    directory, _ = saved
    (directory / checkpoint.CONFIG_NAME).write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt JSON"):
        checkpoint.load(directory, model)
    with pytest.raises(CheckpointError, match="not a tarot checkpoint"):
        checkpoint.load(tmp_path / "nowhere", model)


def test_no_pickle_in_the_checkpoint(saved):
    directory, _ = saved
    for path in directory.iterdir():
        assert b"\x80\x04" not in path.read_bytes()[:2]  # pickle protocol header
    header_len = int.from_bytes((directory / checkpoint.TENSORS_NAME).read_bytes()[:8], "little")
    header = json.loads((directory / checkpoint.TENSORS_NAME).read_bytes()[8 : 8 + header_len])
    assert header["params"]["dtype"] == "F32"
