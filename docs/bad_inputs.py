"""Reproduce the hardening table (docs/bad_inputs.md): each bad input or fault, its command, exit code, one line.

    TAROT_DATA_DIR=../shared/data .venv/bin/python docs/bad_inputs.py > docs/bad_inputs.md

Runs real commands (tarot-eval, lm_eval) on the tests' tiny random Llama in a temporary folder; each
row names the test that asserts the same behaviour. Takes a few minutes on 2 cores.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ROWS: list[tuple[str, str, int, str, str]] = []


def run(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})})


def last_line(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower() or "refus" in line.lower()]
    return (errors or lines or [""])[-1].strip()


def case(fault: str, args: list[str], work: Path, test: str, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = run(args, work, env)
    shown = " ".join(a if " " not in a else repr(a) for a in args).replace(str(work) + "/", "")
    ROWS.append((fault, shown.replace(str(BIN) + "/", ""), proc.returncode, last_line(proc), test))
    return proc


def tarot(*args: str) -> list[str]:
    return [str(BIN / "tarot-eval"), *args]


def lm_eval(model_args: str, *extra: str) -> list[str]:
    return [str(BIN / "lm_eval"), "--model", "tarot-hf", "--model_args", model_args, "--tasks", "tarot_navigate",
            "--limit", "2", "--device", "cpu", "--batch_size", "2", *extra]


def edit_config(src: Path, dst: Path, **changes) -> Path:
    shutil.copytree(src, dst)
    config = json.loads((dst / "tarot_config.json").read_text())
    config.update(changes)
    (dst / "tarot_config.json").write_text(json.dumps(config))
    return dst


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="tarot-bad-"))
    run([sys.executable, str(REPO / ".ci/tiny_model.py"), str(work / "tiny")], REPO).check_returncode()
    ckpt = work / "tiny/rotations"
    optimize = tarot("optimize", "--model", "tiny/model", "--task", "tarot_navigate", "--n-train", "2",
                     "--n-val", "2", "--optimizer", "random", "--seed", "0")

    # 1. the wheel: checked by .ci/wheel_check, not reproducible as one bad command
    # 2. export overwrite
    (work / "full").mkdir()
    (work / "full/notes.txt").write_text("mine")
    case("export into a non-empty folder", tarot("export", "--model", "tiny/model", "--rotations", "tiny/rotations",
         "--out", "full"), work, "test_export::test_non_empty_out_needs_overwrite_and_is_then_replaced_whole")
    case("export onto the base model's own folder, even with --overwrite", tarot("export", "--model", "tiny/model",
         "--rotations", "tiny/rotations", "--out", "tiny/model", "--overwrite"), work,
         "test_export::test_out_never_replaces_the_inputs_even_with_overwrite")
    case("export into the checkpoint's folder", tarot("export", "--model", "tiny/model", "--rotations",
         "tiny/rotations", "--out", "tiny/rotations", "--overwrite"), work,
         "test_export::test_out_never_replaces_the_inputs_even_with_overwrite")
    run(tarot("export", "--model", "tiny/model", "--rotations", "tiny/rotations", "--out", "exported"), work).check_returncode()
    case("export a checkpoint onto an already edited (exported) model", tarot("export", "--model", "exported",
         "--rotations", "tiny/rotations", "--out", "twice"), work,
         "test_export::test_exporting_on_an_export_needs_allow_stacked_and_records_the_stack")
    case("lm_eval: the same checkpoint again on the exported model", lm_eval("pretrained=exported,rotations=tiny/rotations"),
         work, "test_lm::test_checkpoint_on_an_exported_model_needs_allow_stacked")
    # 3. two writers
    first = subprocess.Popen([*optimize, "--budget", "400", "--out", "busy"], cwd=work, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    for _ in range(600):
        if (work / "busy/trace.jsonl").is_file():  # the first holds the lock and is evaluating
            break
        time.sleep(0.1)
    first.send_signal(signal.SIGSTOP)  # paused mid-run, holding the folder's lock: the tiny model would finish first
    case("a second optimize on the same --out while the first runs", [*optimize, "--budget", "400", "--out", "busy"],
         work, "test_optimize::test_a_second_optimize_process_on_one_out_fails_at_once_and_the_first_completes")
    first.send_signal(signal.SIGCONT)
    first.wait()
    # 6. identity of the weights
    run([sys.executable, "-c", (
        "import sys; sys.path.insert(0, 'tests'); import torch; from support.tasks import tiny_model, tiny_tokenizer; "
        "t = tiny_tokenizer(); torch.manual_seed(123); m = tiny_model(len(t)); "
        f"[p.data.normal_(0, 0.02) for p in m.parameters()]; m.save_pretrained('{work}/other'); "
        f"t.save_pretrained('{work}/other')")],
        REPO).check_returncode()
    case("a checkpoint onto another model of the same shapes, other weights",
         lm_eval("pretrained=other,rotations=tiny/rotations"), work,
         "test_lm::test_other_weights_need_allow_transfer; test_checkpoint::test_same_shapes_other_weights_need_allow_transfer")
    case("the same, through tarot-eval lm-eval (one line, exit 2)",
         tarot("lm-eval", *lm_eval("pretrained=other,rotations=tiny/rotations")[1:]),
         work, "test_lm::test_other_weights_need_allow_transfer")
    case("empty rotations= (would silently score the base model)", lm_eval("pretrained=tiny/model,rotations="), work,
         "test_lm::test_empty_rotations_is_an_error_not_the_base_model")
    case("unknown tarot-hf model_arg", lm_eval("pretrained=tiny/model,rotation=tiny/rotations"), work,
         "test_lm::test_unknown_model_arg_is_named")
    # checkpoint contents
    case('checkpoint config "bounds": "wide"', lm_eval("pretrained=tiny/model,rotations=bounds"), work,
         "test_checkpoint::test_config_values_of_the_wrong_type_are_named") \
        if edit_config(ckpt, work / "bounds", bounds="wide") else None
    case('checkpoint config "layers": "0"', lm_eval("pretrained=tiny/model,rotations=layers"), work,
         "test_checkpoint::test_config_values_of_the_wrong_type_are_named") \
        if edit_config(ckpt, work / "layers", layers="0") else None
    shutil.copytree(ckpt, work / "torn")
    weights = next((work / "torn").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    case("truncated checkpoint safetensors", lm_eval("pretrained=tiny/model,rotations=torn"), work,
         "test_checkpoint::test_truncated_safetensors_is_refused")
    shutil.copytree(ckpt, work / "badjson")
    (work / "badjson/tarot_config.json").write_text("{not json")
    case("corrupt checkpoint tarot_config.json", lm_eval("pretrained=tiny/model,rotations=badjson"), work,
         "test_checkpoint::test_corrupt_json_and_missing_dir_are_refused")
    case("rotations= a folder that does not exist", lm_eval("pretrained=tiny/model,rotations=nowhere"), work,
         "test_checkpoint::test_corrupt_json_and_missing_dir_are_refused")
    # optimize inputs
    case("optimize: unknown task", [*optimize[:4], "--task", "tarot_nope", "--out", "o1"], work,
         "test_cli_errors::test_optimize_unknown_task_says_how_to_list_tasks")
    case("optimize: bad --space", [*optimize, "--space", "diagonal", "--out", "o2"], work,
         "test_optimize::test_search_space_rejects_bad_specs")
    case("optimize: --layers beyond the model", [*optimize, "--layers", "0-40", "--out", "o3"], work,
         "test_cli_errors::test_optimize_config_errors_name_the_file")
    case("optimize: --budget 0", [*optimize, "--budget", "0", "--out", "o4"], work,
         "test_cli_errors::test_optimize_config_errors_name_the_file")
    (work / "bad.yaml").write_text("budget: [1, 2\n")
    case("optimize: malformed --config YAML", [*optimize, "--config", "bad.yaml", "--out", "o5"], work,
         "test_cli_errors::test_optimize_config_errors_name_the_file")
    (work / "typo.yaml").write_text("budgte: 3\n")
    case("optimize: unknown key in --config", [*optimize, "--config", "typo.yaml", "--out", "o6"], work,
         "test_cli_errors::test_optimize_config_errors_name_the_file")
    run([*optimize, "--budget", "3", "--out", "done"], work).check_returncode()
    case("optimize: lower --budget on a finished run", [*optimize, "--budget", "2", "--out", "done"], work,
         "test_optimize::test_a_lower_budget_on_a_finished_run_is_refused")
    case("optimize: other settings into an existing run folder", [*optimize, "--budget", "3", "--seed", "1", "--out", "done"],
         work, "test_optimize::test_a_different_config_in_the_same_directory_is_refused")
    shutil.copytree(work / "done", work / "damaged")
    (work / "damaged/trace.jsonl").write_text('{"index": 0, "train": 0.5}\n{"index": 0, "train": 0.5}\n')
    case("optimize: a damaged trace.jsonl (an index twice)", [*optimize, "--budget", "3", "--out", "damaged"], work,
         "test_optimize::test_a_damaged_record_is_refused_naming_the_file")
    # compare
    for name, limit, args in (("base2", "2", ""), ("edit2", "2", ",rotations=tiny/rotations"),
                              ("edit3", "3", ",rotations=tiny/rotations")):
        run([str(BIN / "lm_eval"), "--model", "tarot-hf", "--model_args", f"pretrained=tiny/model{args}", "--tasks",
             "tarot_navigate", "--limit", limit, "--device", "cpu", "--batch_size", "2", "--log_samples",
             "--output_path", f"evals/{name}"], work).check_returncode()
    for folder, members in (("differ", ("base2", "edit3")), ("torn_runs", ("base2", "edit2"))):
        for member in members:
            shutil.copytree(work / "evals" / member, work / folder / member)
    case("compare --no-significance over different documents", tarot("compare", "differ", "--no-significance", "--out", "board1"),
         work, "test_compare::test_different_document_sets_are_refused")
    samples = next((work / "torn_runs/edit2").rglob("samples_*.jsonl"))
    samples.write_text(samples.read_text()[:-40])
    case("compare: a torn samples file", tarot("compare", "torn_runs", "--out", "board2"), work,
         "test_compare::test_a_torn_samples_file_is_named")
    case("compare: a folder with no lm-eval results", tarot("compare", "tiny", "--out", "board3"), work,
         "test_compare::test_cli_errors")
    case("compare: a metric the runs lack", tarot("compare", "differ", "--metric", "bleu", "--out", "board4"), work,
         "test_compare::test_cli_errors")
    # leaderboard
    (work / "board.yaml").write_text((REPO / "configs/ci_tiny_leaderboard.yaml").read_text().replace("budget: 2", "budget: x"))
    case("leaderboard: a config value of the wrong type", tarot("leaderboard", "--config", "board.yaml", "--out", "b1",
         "--dry-run"), work, "test_leaderboard::test_invalid_configs_are_refused_naming_the_key")
    case("leaderboard: a config file that does not exist", tarot("leaderboard", "--config", "none.yaml", "--out", "b2"),
         work, "test_leaderboard::test_config_error_names_the_file")
    # rewards
    payload = work / "payload.ckpt"
    run([sys.executable, "-c", (
        "import torch, os\nclass P:\n    def __reduce__(self):\n        return (os.system, ('touch PWNED',))\n"
        f"torch.save({{'model': P()}}, '{payload}')")], work).check_returncode()
    case("rl: a crafted --toxicity-checkpoint (pickle that runs code)", tarot("rl", "--reward", "toxicity",
         "--toxicity-checkpoint", "payload.ckpt", "--model", "tiny/model", "--out", "r1"), work,
         "test_cli_errors::test_rl_crafted_toxicity_checkpoint_is_refused_without_running_it")
    assert not (work / "PWNED").exists(), "the payload ran"
    case("tarot-eval lm-eval: unknown task", tarot("lm-eval", "--model", "tarot-hf", "--model_args", "pretrained=tiny/model",
         "--tasks", "tarot_nope"), work, "test_cli_errors::test_lm_eval_unknown_task_is_one_line")
    # round two (issue #33): each of these gave a traceback, wrote outside its folder or went unchecked
    tasks = REPO / "tasks"
    (work / "victim").mkdir()
    (work / "victim/mine.txt").write_text("the user's own file")
    (work / "escape/deep/er").mkdir(parents=True)
    (work / "escape/deep/er/lb.yaml").write_text(
        "models:\n  tiny: {pretrained: ../../../tiny/model}\ntasks:\n  zero_shot: ['../../../../victim']\n"
        "methods:\n  base: null\n")
    case("leaderboard: a task named ../../../../victim (wrote outside --out)", tarot("leaderboard", "--config",
         "escape/deep/er/lb.yaml", "--out", "escape/deep/er/out"), work,
         "test_leaderboard::test_names_that_leave_out_and_repeated_keys_are_refused")
    (work / "project/src").mkdir(parents=True)
    (work / "project/src/main.py").write_text("print('mine')\n")
    (work / "project/NOTES.md").write_text("mine\n")
    case("export --overwrite into a folder that is no export (deleted it)", tarot("export", "--model", "tiny/model",
         "--rotations", "tiny/rotations", "--out", "project", "--overwrite"), work,
         "test_export::test_non_empty_out_needs_overwrite_and_is_then_replaced_whole")
    run(tarot("calibrate", "--model", "tiny/model", "--task", "tarot_navigate", "--variant", "batch", "--n-train", "2",
              "--n-val", "2", "--out", "cal"), work).check_returncode()
    case("a calibration fitted on one model applied to another",
         tarot("lm-eval", *lm_eval("pretrained=other,calibration=cal")[1:]),
         work, "test_calibration::test_a_calibration_is_refused_on_other_weights_unless_transfer_is_allowed")
    lora = tarot("lora", "--task", "tarot_navigate", "--n-train", "2", "--n-val", "2", "--budget", "1", "--out", "lo")
    run([*lora, "--model", "tiny/model"], work).check_returncode()
    case("lora: a folder holding another model's adapter (answered 'already there')", [*lora, "--model", "other"], work,
         "test_lora::test_an_adapter_of_another_model_is_not_taken_for_this_ones")
    case("optimize: --layers 1-0 (an empty edit, saved)", [*optimize, "--layers", "1-0", "--out", "r2a"], work,
         "test_cli_errors::test_lora_and_optimize_value_checks_are_one_line")
    case("optimize: --layers 1,1,0", [*optimize, "--layers", "1,1,0", "--out", "r2b"], work, "test_settings / parse_layers")
    case("optimize: --angle-limit pi/0", [*optimize, "--angle-limit", "pi/0", "--out", "r2c"], work,
         "test_cli_errors::test_lora_and_optimize_value_checks_are_one_line")
    for flag, value in (("--dtype", "float33"), ("--select-k", "0"), ("--batch-size", "0")):
        case(f"optimize: {flag} {value}", [*optimize, flag, value, "--out", f"r2-{flag[2:]}"], work,
             "test_cli_errors::test_optimize_values_that_name_nothing_are_one_line")
    (work / "jinja").mkdir()
    for name, template in (("jinja_filter", "{{input | nosuchfilter}}"), ("jinja_syntax", "{{input }")):
        (work / "jinja" / f"{name}.yaml").write_text(f"include: {tasks / 'tarot_navigate.yaml'}\ntask: {name}\n"
                                                     f"doc_to_text: {template!r}\n")
        case(f"optimize: a task template with {'an unknown Jinja filter' if 'filter' in name else 'a Jinja syntax error'}",
             [*optimize[:4], "--task", name, "--include-path", "jinja", "--n-train", "2", "--n-val", "2", "--out", f"r2-{name}"],
             work, "test_cli_errors::test_a_task_template_jinja_refuses_is_one_line")
    for name, content in (("five", b"5"), ("null", b"null"), ("latin1", b'{"method": "caf\xe9"}')):
        shutil.copytree(ckpt, work / f"ckpt_{name}")
        (work / f"ckpt_{name}" / "tarot_config.json").write_bytes(content)
        case(f"tarot-hf: tarot_config.json that is {name}",
             tarot("lm-eval", *lm_eval(f"pretrained=tiny/model,rotations=ckpt_{name}")[1:]),
             work, "test_checkpoint::test_a_config_that_is_no_object_or_no_utf8_is_named")
    shutil.copytree(work / "tiny/model", work / "pickled")
    for weights in (work / "pickled").glob("*.safetensors"):
        weights.unlink()
    run([sys.executable, "-c", (  # a pytorch_model.bin whose unpickling would run code (transformers loads weights_only)
        "import torch, os\nclass P:\n    def __reduce__(self):\n        return (os.system, ('touch PWNED_BIN',))\n"
        f"torch.save({{'model.embed_tokens.weight': P()}}, '{work}/pickled/pytorch_model.bin')")], work).check_returncode()
    case("tarot-hf: a model folder whose pytorch_model.bin is a crafted pickle",
         tarot("lm-eval", *lm_eval("pretrained=pickled")[1:]),
         work, "cli.library_failure (UnpicklingError)")
    assert not (work / "PWNED_BIN").exists(), "the pickled payload ran"
    case("export --dtype float33", tarot("export", "--model", "tiny/model", "--rotations", "tiny/rotations", "--out", "x1",
         "--dtype", "float33"), work, "test_export::test_export_dtype_and_value_bias_refusals_are_one_line")
    case("lora --target-modules nosuch_proj", [*lora[:-2], "--out", "lo2", "--model", "tiny/model", "--target-modules",
         "nosuch_proj"], work, "test_cli_errors::test_lora_target_modules_peft_cannot_match_are_one_line")
    case("lora --lr nan", [*lora[:-2], "--out", "lo3", "--model", "tiny/model", "--lr", "nan"], work,
         "test_cli_errors::test_lora_and_optimize_value_checks_are_one_line")
    board = (REPO / "configs/ci_tiny_leaderboard.yaml").read_text()
    for fault, text in (("a non-UTF-8 byte", board.encode() + b"# caf\xe9\n"),
                        ("dtype: float33", board.replace("angle_limit: pi/4", "angle_limit: pi/4\n    dtype: float33").encode()),
                        ("angle_limit: pi/0", board.replace("angle_limit: pi/4", "angle_limit: pi/0").encode()),
                        ("layers: '0,0'", board.replace("layers: 0-1", "layers: '0,0'").encode()),
                        ("a method listed twice", board.replace(
                            "  base: null\n", "  base: null\n  rotation: {method: rescale}\n").encode()),
                        ("lora rank: -2", board.replace(
                            "  base: null\n", "  base: null\n  lora: {method: lora, rank: -2}\n").encode()),
                        ("lora target_modules: nosuch", board.replace(
                            "  base: null\n", "  base: null\n  lora: {method: lora, target_modules: nosuch}\n").encode())):
        path = work / f"board-{len(ROWS)}.yaml"
        path.write_bytes(text)
        case(f"leaderboard config: {fault}", tarot("leaderboard", "--config", path.name, "--out", f"b-{len(ROWS)}", "--dry-run"),
             work, "test_leaderboard / test_leaderboard_baselines (bad settings named before any work)")
    shutil.copytree(work / "torn_runs", work / "torn_utf8")
    for samples in (work / "torn_utf8").rglob("samples_*.jsonl"):
        samples.write_bytes(samples.read_bytes().splitlines(keepends=True)[0] + "é".encode()[:1])
    case("compare: a samples file torn inside a UTF-8 character", tarot("compare", "torn_utf8", "--out", "board5"), work,
         "test_compare::test_a_samples_file_torn_inside_a_utf8_character_is_named")
    rl = tarot("rl", "--reward", "sentiment", "--model", "tiny/model", "--n-train", "2", "--n-val", "0", "--budget", "1")
    case("rl --max-new-tokens 0 (left a run.json refusing the corrected command)", [*rl, "--max-new-tokens", "0", "--out", "rl1"],
         work, "test_cli_errors::test_rl_generation_flags_below_one_are_refused_before_any_run_record")
    assert not (work / "rl1" / "run.json").exists(), "a refused rl run left a record"
    case("rl --layers 1-0", [*rl, "--layers", "1-0", "--out", "rl2"], work, "settings.parse_layers (every command)")
    case("a model path that does not exist", [*optimize[:1], "optimize", "--model", "./no/such/model", "--task", "tarot_navigate",
         "--out", "o9"], work, "test_cli_errors::test_a_missing_model_path_is_named_as_a_path")
    # the traceback on request
    proc = run([*optimize[:4], "--task", "tarot_nope", "--out", "o7"], work, {"TAROT_EVAL_DEBUG": "1"})
    ROWS.append(("the traceback on request", "TAROT_EVAL_DEBUG=1 tarot-eval optimize ... --task tarot_nope", proc.returncode,
                 f"{len(proc.stderr.splitlines())} lines, starting {proc.stderr.splitlines()[0]!r}",
                 "test_cli_errors::test_debug_reraises_with_the_traceback"))

    ours = [row for row in ROWS if row[1].startswith("tarot-eval") and row[0] != "the traceback on request"]
    tracebacks = sum(rc not in (0, 2) for _, _, rc, _, _ in ours)
    stock = sum(row[1].startswith("lm_eval") for row in ROWS)
    print("| # | fault | command | rc | printed (last line) | test |\n|---|---|---|---|---|---|")
    for i, (fault, command, rc, line, test) in enumerate(ROWS, 1):
        cell = line.replace("|", "\\|")[:400]
        print(f"| {i} | {fault} | `{command}` | {rc} | {cell} | {test} |")
    print(f"\n{len(ROWS)} rows. tarot-eval commands: {len(ours)}, of them {sum(rc == 2 for _, _, rc, _, _ in ours)} exit 2 "
          f"with one line and {tracebacks} end in a traceback (the TAROT_EVAL_DEBUG row shows one on request). The "
          f"{stock} stock `lm_eval` rows exit 1 with lm-eval's own traceback, whose last line is tarot-hf's message; "
          "the same input through `tarot-eval lm-eval` is one line.")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
