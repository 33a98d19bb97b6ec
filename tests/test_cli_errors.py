"""Every `tarot-eval` subcommand reports bad input in one line and exits 2; --debug shows the traceback."""

from __future__ import annotations

import re

import pytest
import torch
from support.rewards import WritesMarker

import tarot_eval.compare
from tarot_eval import cli
from tarot_eval.compare.errors import CompareError


def run_cli(capsys, *argv) -> tuple[int, str]:
    """Exit code and stderr of `tarot-eval ARGV`, asserting stderr is exactly one line."""
    code = cli.main([str(arg) for arg in argv])
    err = capsys.readouterr().err
    assert err.endswith("\n") and err.count("\n") == 1, err
    return code, err.rstrip("\n")


def test_compare_and_leaderboard_errors_are_one_line(tmp_path, capsys):
    assert run_cli(capsys, "compare", tmp_path / "nowhere") == (
        2, f"tarot-eval compare: error: results folder {tmp_path / 'nowhere'} does not exist")
    code, line = run_cli(capsys, "leaderboard", "--config", tmp_path / "missing.yaml", "--out", tmp_path / "out")
    assert (code, line) == (2, f"tarot-eval leaderboard: error: {tmp_path / 'missing.yaml'}: no such config file")


def test_optimize_config_errors_name_the_file(tmp_path, capsys):
    missing, broken, unknown = tmp_path / "missing.yaml", tmp_path / "broken.yaml", tmp_path / "unknown.yaml"
    broken.write_text("task: [unclosed\n")
    unknown.write_text("tsak: x\n")
    assert run_cli(capsys, "optimize", "--config", missing) == (
        2, f"tarot-eval optimize: error: --config {missing}: no such file")
    assert run_cli(capsys, "optimize", "--config", broken) == (
        2, f"tarot-eval optimize: error: --config {broken}: not valid YAML at line 2, column 1: "
           "expected ',' or ']', but got '<stream end>'")
    assert run_cli(capsys, "optimize", "--config", unknown) == (
        2, f"tarot-eval optimize: error: --config {unknown}: unknown setting(s) tsak")
    assert run_cli(capsys, "optimize", "--task", "tarot_navigate") == (2, "tarot-eval optimize: error: missing --out")
    assert run_cli(capsys, "optimize", "--compare", tmp_path, "--out", tmp_path / "x.png") == (
        2, f"tarot-eval optimize: error: --compare {tmp_path}: no trace.jsonl with evaluations")


def test_optimize_unknown_task_says_how_to_list_tasks(tmp_path, capsys):
    code, line = run_cli(capsys, "optimize", "--task", "no_such_task", "--out", tmp_path / "out")
    assert code == 2
    assert line.startswith("tarot-eval optimize: error: --task 'no_such_task': not an lm-eval task; ")
    assert "`tarot-eval lm-eval ls tasks`" in line and "--include-path DIR" in line
    assert not (tmp_path / "out").exists()


def test_lm_eval_unknown_task_is_one_line(capsys):
    code, line = run_cli(capsys, "lm-eval", "--model", "hf", "--model_args", "pretrained=x", "--tasks", "no_such_task")
    assert code == 2
    assert line.startswith("tarot-eval lm-eval: error: Tasks not found: no_such_task; list the tasks with ")


def test_rl_crafted_toxicity_checkpoint_is_refused_without_running_it(tmp_path, capsys):
    crafted, marker = tmp_path / "crafted.ckpt", tmp_path / "payload-ran"
    torch.save({"config": {}, "state_dict": {}, "hook": WritesMarker(marker)}, crafted)
    code, line = run_cli(capsys, "rl", "--reward", "toxicity", "--toxicity-checkpoint", crafted, "--out", tmp_path / "out")
    assert code == 2 and not marker.exists()
    assert line.startswith(f"tarot-eval rl: error: refusing Detoxify checkpoint {crafted}: it needs the pickle "
                           "globals posix.system")
    assert run_cli(capsys, "rl", "--reward", "toxicity", "--trust-checkpoint", "--out", tmp_path / "out") == (
        2, "tarot-eval rl: error: --trust-checkpoint applies to --toxicity-checkpoint, which is not given")


@pytest.mark.parametrize("where", ["before", "after", "env"])
def test_debug_reraises_with_the_traceback(tmp_path, monkeypatch, where):
    argv = ["compare", str(tmp_path / "nowhere")]
    if where == "env":
        monkeypatch.setenv(cli.DEBUG_ENV, "1")
    argv = ["--debug", *argv] if where == "before" else [*argv, "--debug"] if where == "after" else argv
    with pytest.raises(CompareError, match="does not exist"):
        cli.main(argv)


def test_os_errors_name_the_file_and_bugs_keep_their_traceback(monkeypatch, capsys):
    def missing_file(args):
        raise FileNotFoundError(2, "No such file or directory", "results/x.json")

    monkeypatch.setattr(tarot_eval.compare, "run", missing_file)
    assert run_cli(capsys, "compare", "somewhere") == (
        2, "tarot-eval compare: error: results/x.json: No such file or directory")

    def bug(args):
        return {}["missing key"]

    monkeypatch.setattr(tarot_eval.compare, "run", bug)
    with pytest.raises(KeyError):
        cli.main(["compare", "somewhere"])
    assert not cli.is_expected(ValueError("plain")) and not cli.is_expected(RuntimeError("plain"))


def test_help_documents_debug(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert "--debug" in out and f"{cli.DEBUG_ENV}=1" in out and "exits 2" in out


def last_line_cli(capsys, *argv) -> tuple[int, str]:
    """Exit code and the last line of stderr (a task's dataset is built first, with its own progress lines)."""
    code = cli.main([str(arg) for arg in argv])
    return code, capsys.readouterr().err.strip().splitlines()[-1]


@pytest.fixture
def task_folder(tmp_path):
    from support.tasks import write_task

    (tmp_path / "tasks").mkdir()
    write_task(tmp_path / "tasks")
    return tmp_path / "tasks"


@pytest.mark.parametrize("template, message", [
    ("Question: {{question | nosuchfilter}}", r"a task's Jinja template: TemplateAssertionError: No filter named 'nosuchfilter'"),
    ("Question: {{question }", r"a task's Jinja template: TemplateSyntaxError: unexpected '}'"),
])
def test_a_task_template_jinja_refuses_is_one_line(task_folder, saved_tiny_llama, tmp_path, capsys, template, message):
    yaml_file = task_folder / "tiny_mc.yaml"
    yaml_file.write_text(yaml_file.read_text().replace('"Question: {{question}}\\nAnswer:"', repr(template)))
    code, line = last_line_cli(capsys, "optimize", "--task", "tiny_mc", "--include-path", task_folder,
                               "--model", saved_tiny_llama, "--out", tmp_path / "out",
                               "--n-train", 4, "--n-val", 4, "--budget", 2, "--layers", "0")
    assert code == 2 and re.search(rf"^tarot-eval optimize: error: {message}", line), line


def test_lora_target_modules_peft_cannot_match_are_one_line(task_folder, saved_tiny_llama, tmp_path, capsys):
    code, line = last_line_cli(capsys, "lora", "--task", "tiny_mc", "--include-path", task_folder, "--model", saved_tiny_llama,
                         "--out", tmp_path / "out", "--n-train", 4, "--n-val", 4, "--budget", 1,
                         "--target-modules", "nosuch_proj")
    assert code == 2 and line.startswith("tarot-eval lora: error: peft: Target modules {'nosuch_proj'} not found"), line


def test_lora_and_optimize_value_checks_are_one_line(task_folder, saved_tiny_llama, tmp_path, capsys):
    common = ["--task", "tiny_mc", "--include-path", task_folder, "--model", saved_tiny_llama, "--out", tmp_path / "out"]
    assert last_line_cli(capsys, "lora", *common, "--lr", "nan") == (
        2, "tarot-eval lora: error: --lr nan: must be a finite number above 0")
    code, line = last_line_cli(capsys, "optimize", *common, "--layers", "1-0")
    assert code == 2 and "--layers '1-0': the range 1-0 is reversed (an empty edit); write 0-1" in line
    code, line = last_line_cli(capsys, "optimize", *common, "--angle-limit", "pi/0")
    assert code == 2 and "angle limit 'pi/0' is not a number or a multiple of pi" in line
    assert not (tmp_path / "out").exists()


def test_rl_generation_flags_below_one_are_refused_before_any_run_record(tmp_path, capsys):
    code, line = last_line_cli(capsys, "rl", "--reward", "sentiment", "--max-new-tokens", "0", "--out", tmp_path / "rl")
    assert (code, line) == (2, "tarot-eval rl: error: --max-new-tokens 0: must be at least 1")
    assert not (tmp_path / "rl").exists()


def test_a_missing_model_path_is_named_as_a_path(task_folder, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, line = last_line_cli(capsys, "optimize", "--task", "tiny_mc", "--include-path", task_folder,
                               "--model", "./no/such/model", "--out", tmp_path / "out")
    assert (code, line) == (2, "tarot-eval optimize: error: model not found: ./no/such/model (no such file or folder)")


@pytest.mark.parametrize("flags, message", [(["--select-k", "0"], "--select-k 0: must be at least 1"),
                                            (["--batch-size", "0"], "--batch-size 0: must be at least 1"),
                                            (["--dtype", "float33"], "--dtype 'float33': not a torch dtype")])
def test_optimize_values_that_name_nothing_are_one_line(task_folder, saved_tiny_llama, tmp_path, capsys, flags, message):
    code, line = last_line_cli(capsys, "optimize", "--task", "tiny_mc", "--include-path", task_folder, "--model",
                               saved_tiny_llama, "--out", tmp_path / "out", *flags)
    assert code == 2 and line == f"tarot-eval optimize: error: {message}" + (
        " (e.g. float32, bfloat16, float16)" if "dtype" in message else ""), line
