"""The settings module: defaults owned by the dataclasses, mappings checked key by key, flags shared by commands."""

import argparse

import pytest
from tarot_eval.rl import command as rl_command

from tarot_eval import settings
from tarot_eval.optimize import command as optimize_command
from tarot_eval.optimize.settings import OptimizeSettings, SearchSettings


def test_from_mapping_keeps_defaults_and_names_the_bad_key():
    search = settings.from_mapping(SearchSettings, {"bo-init": 6, "space": "head"}, "cfg.yaml")
    assert (search.bo_init, search.space, search.bo_surrogate) == (6, "head", SearchSettings().bo_surrogate)
    with pytest.raises(settings.SettingsError, match=r"cfg\.yaml\.bo_init: expected int, got 'six'"):
        settings.from_mapping(SearchSettings, {"bo_init": "six"}, "cfg.yaml")
    with pytest.raises(settings.SettingsError, match=r"cfg\.yaml\.bo_surrogate: 'gp' is not one of bnn, vanilla, saas"):
        settings.from_mapping(SearchSettings, {"bo_surrogate": "gp"}, "cfg.yaml")
    with pytest.raises(settings.SettingsError, match="cfg.yaml: unknown setting.*bo_itit"):
        settings.from_mapping(SearchSettings, {"bo_itit": 6}, "cfg.yaml")
    assert settings.from_mapping(settings.EditSettings, {"angle_limit": 0.5}).angle_limit == "0.5"  # YAML number as text


def test_bo_settings_follow_the_search_settings():
    built = SearchSettings(bo_init=7, bo_surrogate="bnn", bo_kernel_depth=2, bo_noise="learned").bo_settings()
    assert (built.n_init, built.surrogate, built.kernel_depth, built.noise) == (7, "bnn", 2, "learned")


def parse(module, argv):
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return parser.parse_args(argv)


@pytest.mark.parametrize("group", [settings.ModelSettings, settings.EditSettings, SearchSettings])
def test_optimize_and_rl_read_the_shared_flags_alike(group):
    argv = {settings.ModelSettings: ["--dtype", "bfloat16", "--model", "m.gguf"],
            settings.EditSettings: ["--layers", "0-2", "--angle-limit", "pi/6"],
            SearchSettings: ["--bo-space", "head", "--seed", "3", "--bo-surrogate", "bnn", "--trust-region"]}[group]
    optimize_args = parse(optimize_command, ["--task", "t", "--out", "o", *argv])
    rl_args = parse(rl_command, ["--reward", "sentiment", "--out", "o", *argv])
    from_optimize = group(**settings.given(optimize_args, group))
    assert from_optimize == group(**settings.given(rl_args, group))
    assert from_optimize != group()  # the flags took effect
    untouched = group(**settings.given(parse(rl_command, ["--reward", "sentiment", "--out", "o"]), group))
    assert untouched == group()  # no flag: the dataclass default


def test_optimize_flags_override_the_config_file(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("bo-init: 6\nspace: head\n")
    resolved = optimize_command.resolve(parse(optimize_command, ["--task", "t", "--out", "o", "--config", str(config),
                                                                  "--space", "full"]))
    assert isinstance(resolved, OptimizeSettings)
    assert (resolved.bo_init, resolved.space) == (6, "full")


@pytest.mark.parametrize("trainer, argv, expected", [
    ("dpo", ["--lr", "0.3", "--beta", "0.2", "--diversity", "0"], {"learning_rate": 0.3, "beta": 0.2, "diversity": 0.0}),
    ("grpo", ["--lr", "0.3", "--num-generations", "4", "--temperature", "0.9"],
     {"learning_rate": 0.3, "num_generations": 4, "temperature": 0.9}),
])
def test_rl_trainer_flags_are_the_trainer_settings_fields(trainer, argv, expected):
    """Each trainer flag sets its settings field; a flag left out keeps the dataclass's own default (one home)."""
    from tarot_eval.rl.settings import DPOSettings, GRPOSettings

    cls = {"dpo": DPOSettings, "grpo": GRPOSettings}[trainer]
    args = parse(rl_command, ["--reward", "sentiment", "--out", "o", "--trainer", trainer, "--seed", "2", *argv])
    made = rl_command.trainer_run(args, SearchSettings(seed=2), (0, 1), (-0.5, 0.5), 3).keywords["settings"]
    assert made == cls(layers=(0, 1), bounds=(-0.5, 0.5), seed=2, **{"rounds" if trainer == "dpo" else "steps": 3}, **expected)
    plain = rl_command.trainer_run(parse(rl_command, ["--reward", "sentiment", "--out", "o", "--trainer", trainer]),
                                   SearchSettings(), (0, 1), (-0.5, 0.5), 3).keywords["settings"]
    assert plain == cls(layers=(0, 1), bounds=(-0.5, 0.5), **{"rounds" if trainer == "dpo" else "steps": 3})
