"""Checkpoint round trip and every bad-input case named in the core issue."""

import json

import pytest
import torch
import transformers
from conftest import tiny_model

from tarot_eval.edit import checkpoint
from tarot_eval.edit.checkpoint import CheckpointError
from tarot_eval.edit.head_edit import HeadEdit


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
    config = checkpoint.TarotConfig.from_pretrained(directory)
    assert config.provenance == {"task": "t", "objective": "o"}
    assert config.num_heads == 4 and config.head_dim == 8
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


def test_same_weights_saved_elsewhere_still_fit(saved, model, tmp_path):
    directory, edit = saved  # the name (path) is not identity: the same weights loaded from elsewhere must load
    model.save_pretrained(tmp_path / "copy")
    copy = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "copy")
    assert copy.config._name_or_path != model.config._name_or_path
    assert torch.equal(checkpoint.load(directory, copy).params, edit.params)


def test_same_shapes_other_weights_need_allow_transfer(saved):
    directory, edit = saved
    other = tiny_model("llama", seed=5)
    with pytest.raises(CheckpointError, match=r"ckpt: found on other weights .*layer 0 output projection.*allow_transfer"):
        checkpoint.load(directory, other)
    assert torch.equal(checkpoint.load(directory, other, allow_transfer=True).params, edit.params)


def test_old_checkpoint_without_weight_fingerprint_loads_with_a_warning(saved, caplog):
    directory, edit = saved
    config = checkpoint.TarotConfig.from_pretrained(directory)
    del config.base_model["weights"]
    _rewrite_config(directory, base_model=config.base_model)
    with caplog.at_level("WARNING", logger="tarot_eval.edit.checkpoint"):
        loaded = checkpoint.load(directory, tiny_model("llama", seed=5))  # shapes match: nothing else to check
    assert torch.equal(loaded.params, edit.params)
    assert "without a weight fingerprint" in caplog.text and str(directory) in caplog.text


def test_fingerprint_is_of_the_unedited_weights(saved, model, tmp_path):
    directory, edit = saved
    stored = checkpoint.TarotConfig.from_pretrained(directory).base_model["weights"]
    handle = edit.merge(model)
    with pytest.raises(CheckpointError, match="edit folded into its weights"):
        checkpoint.save(tmp_path / "folded", edit, model)
    handle.unmerge()
    assert checkpoint.weight_fingerprint(model, edit.layers) == stored
    with edit.attached(model):  # hooks leave the weights alone, so a save under hooks is fine
        checkpoint.save(tmp_path / "hooked", edit, model)
    assert checkpoint.TarotConfig.from_pretrained(tmp_path / "hooked").base_model["weights"] == stored


def test_stored_weight_layers_must_be_the_edited_layers(saved, model):
    directory, _ = saved
    config = checkpoint.TarotConfig.from_pretrained(directory)
    del config.base_model["weights"]["layers"]["1"]
    _rewrite_config(directory, base_model=config.base_model)
    with pytest.raises(CheckpointError, match=r"tarot_config.json: base_model.weights covers layers \['0'\], "
                                              r"but the checkpoint edits layers \[0, 1\]"):
        checkpoint.load(directory, model)


BAD_VALUES = [
    ("bounds", "wide"), ("bounds", [0.1]), ("bounds", [1.0, -1.0]), ("bounds", ["a", 1]), ("bounds", [0, None]),
    ("layers", "0"), ("layers", [0.5]), ("layers", [-1]), ("layers", [0, 0]), ("layers", []), ("layers", [True]),
    ("num_heads", "4"), ("head_dim", 0), ("base_model", "llama"), ("base_model", {"name": "x"}), ("provenance", []),
    ("format_version", True),
]


@pytest.mark.parametrize("key,value", BAD_VALUES, ids=[f"{k}={json.dumps(v)}" for k, v in BAD_VALUES])
def test_config_values_of_the_wrong_type_are_named(saved, model, key, value):
    directory, _ = saved
    _rewrite_config(directory, **{key: value})
    with pytest.raises(CheckpointError, match=rf"ckpt/tarot_config.json: {key}\b"):
        checkpoint.load(directory, model)


@pytest.mark.parametrize("change", ["scheme", "projections", "rms"])
def test_malformed_weight_fingerprint_is_named(saved, model, change):
    directory, _ = saved
    config = checkpoint.TarotConfig.from_pretrained(directory)
    weights = config.base_model["weights"]
    if change == "scheme":
        weights["scheme"] = "sha256"
    elif change == "projections":
        weights["layers"]["1"]["projections"] = [0.0]
    else:
        weights["layers"]["1"]["rms"] = "big"
    _rewrite_config(directory, base_model=config.base_model)
    key = "base_model.weights" if change == "scheme" else "base_model.weights.layers.1"
    with pytest.raises(CheckpointError, match=rf"ckpt/tarot_config.json: {key} must be"):
        checkpoint.load(directory, model)


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


@pytest.mark.parametrize("content, message", [(b"5", "a JSON object of config keys expected, found int 5"),
                                              (b"null", "a JSON object of config keys expected, found NoneType"),
                                              (b'{"method": "caf\xe9"}', "not UTF-8 text")])
def test_a_config_that_is_no_object_or_no_utf8_is_named(saved, model, content, message):
    directory, _ = saved
    (directory / checkpoint.CONFIG_NAME).write_bytes(content)
    with pytest.raises(CheckpointError, match=rf"{checkpoint.CONFIG_NAME}: {message}"):
        checkpoint.load(directory, model)


def test_no_pickle_in_the_checkpoint(saved):
    directory, _ = saved
    for path in directory.iterdir():
        assert b"\x80\x04" not in path.read_bytes()[:2]  # pickle protocol header
    header_len = int.from_bytes((directory / checkpoint.TENSORS_NAME).read_bytes()[:8], "little")
    header = json.loads((directory / checkpoint.TENSORS_NAME).read_bytes()[8 : 8 + header_len])
    assert header["params"]["dtype"] == "F32"
