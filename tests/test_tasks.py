"""The tarot lm-eval tasks: data resolution, splits, prompts, few-shot demonstrations, bad input,
and end-to-end runs through lm-eval (in process and through the real `lm_eval` console script)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import huggingface_hub
import pytest
import transformers
from support.tasks import tiny_model
from tarot_eval.tasks import data_sources, utils
from tarot_eval.tasks.data_sources import TaskDataError

REPO = Path(__file__).resolve().parents[1]
TASKS_DIR = REPO / "tasks"
LM_EVAL = Path(sys.executable).parent / "lm_eval"
SHARED_DATA = Path(__file__).parents[2] / "shared" / "data"

BASE_TASKS = ["tarot_agnews", "tarot_navigate", "tarot_color", "tarot_winowhy", "tarot_entailed_polarity"]
ALL_TASKS = BASE_TASKS + ["tarot_colored_objects"]
# (train pool, test split) as documented in docs/tasks.md
SPLIT_SIZES = {
    "tarot_agnews": (100, 200),
    "tarot_navigate": (100, 200),
    "tarot_color": (100, 200),
    "tarot_winowhy": (100, 200),
    "tarot_entailed_polarity": (40, 108),
    "tarot_colored_objects": (100, 200),
}
# Rows looked up by hand in the raw files: (doc id, start of the input, gold label word).
KNOWN_ROWS = {
    "tarot_agnews": [
        ("ag_news:701", "Athens - a $12bn bill", "Sports"),
        ("ag_news:1755", "Same-sex divorce rules still hazy", "World"),
        ("ag_news:2128", "International Space Station Crew", "Science"),
        ("ag_news:118", "Mills Grabs $1B Portfolio", "Business"),
        ("ag_news:4952", "Singapore govt extends third-party war risk", "Business"),
    ],
    "tarot_navigate": [
        ("navigate:56", "Always face forward. Take 8 steps left.", "True"),
        ("navigate:973", "Take 2 steps. Turn right. Take 8 steps.", "False"),
    ],
    "tarot_color": [
        ("color/rgb:56", "What is the color most closely matching this RGB", "red"),
        ("color/hex:56", "What is the color most closely matching this HEX", "red"),
        ("color/hsl:525", "What is the color most closely matching this HSL", "black"),
        ("color/hcl:525", "What is the color most closely matching this HCL", "red"),
    ],
    "tarot_winowhy": [
        ("winowhy:2635", "Dan had to stop Bill from toying with the injured bird.", "Correct"),
        ("winowhy:1432", "Sam took French classes from Adam", "Incorrect"),
        ("winowhy:806", "I'm sure that my map will show this building", "Incorrect"),
    ],
    "tarot_entailed_polarity": [
        ("entailed_polarity:13", "Fact: Ed came to know about the story.", "Yes"),
        ("entailed_polarity:131", "Fact: Ed didn't know to pay attention.", "No"),
    ],
    "tarot_colored_objects": [
        ("reasoning_about_colored_objects:1150", "On the desk, you see several items arranged", "green"),
        ("reasoning_about_colored_objects:1820", "On the desk, you see several objects arranged", "blue"),
    ],
}
LIMIT = 3


@pytest.fixture(scope="module", autouse=True)
def tasks_data_dir():
    """TAROT_DATA_DIR as CI sets it, defaulting to the shared data folder beside the repo."""
    with pytest.MonkeyPatch.context() as patch:
        if not os.environ.get(data_sources.DATA_DIR_ENV):
            patch.setenv(data_sources.DATA_DIR_ENV, str(SHARED_DATA))
        yield Path(os.environ[data_sources.DATA_DIR_ENV])


@pytest.fixture(scope="module")
def real_data(tasks_data_dir):
    if not (tasks_data_dir / "bigbench").is_dir() or not (tasks_data_dir / "ag_news").is_dir():
        pytest.skip(f"real task data not found under {data_sources.DATA_DIR_ENV}={tasks_data_dir}")
    return tasks_data_dir


@pytest.fixture(scope="module")
def task_manager():
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(TASKS_DIR), include_defaults=False)


@pytest.fixture(scope="module")
def tarot_tasks(real_data, task_manager):
    """Every tarot task object, zero-shot and few-shot, keyed by name."""
    names = ALL_TASKS + [f"{name}_fewshot" for name in ALL_TASKS]
    return task_manager.load_task_or_group(names)


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    from tarot_eval.models.default_model import converted_dir

    return transformers.AutoTokenizer.from_pretrained(converted_dir())  # the GGUF's tokenizer, converted once


@pytest.fixture(scope="module")
def tiny_llama(smollm2_tokenizer):
    return tiny_model(len(smollm2_tokenizer), max_positions=4096)  # few-shot contexts run long


@pytest.fixture(scope="module")
def evaluation(real_data, task_manager, tiny_llama, smollm2_tokenizer):
    """One lm-eval run of both groups and the extra task, zero-shot and few-shot, with samples."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=tiny_llama, tokenizer=smollm2_tokenizer, backend="causal", batch_size=8)
    return lm_eval.simple_evaluate(
        model=lm,
        tasks=["tarot", "tarot_fewshot", "tarot_colored_objects", "tarot_colored_objects_fewshot"],
        task_manager=task_manager,
        limit=LIMIT,
        log_samples=True,
    )


def rendered_demos(task) -> set[str]:
    """Every training doc as it reads when shown as a demonstration."""
    delimiter = task.config.target_delimiter
    return {
        task.doc_to_text(doc) + delimiter + doc["choices"][doc["label"]]
        for doc in task.dataset["train"]
    }


def context_blocks(task, context: str) -> tuple[list[str], str]:
    """(demonstrations, query) of a plain-text context: description, demos, query."""
    assert context.startswith(task.config.description)
    blocks = context[len(task.config.description):].split(task.config.fewshot_delimiter)
    return blocks[:-1], blocks[-1]


# --- splits and documents -------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_TASKS)
def test_splits_are_disjoint_sized_as_documented_and_deterministic(tarot_tasks, name):
    task = tarot_tasks[name]
    train, test = task.dataset["train"], task.dataset["test"]
    assert (len(train), len(test)) == SPLIT_SIZES[name]
    assert not set(train["id"]) & set(test["id"])
    assert not set(train["input"]) & set(test["input"])
    assert len(set(test["input"])) == len(test)
    again = task.config.custom_dataset(**task.config.dataset_kwargs)
    assert again["train"]["id"] == train["id"] and again["test"]["id"] == test["id"]
    for doc in (*train, *test):
        assert 0 <= doc["label"] < len(doc["choices"])


@pytest.mark.parametrize("name", ALL_TASKS)
def test_few_shot_variant_shares_the_base_splits_and_asks_six_shots(tarot_tasks, name):
    base, fewshot = tarot_tasks[name], tarot_tasks[f"{name}_fewshot"]
    assert fewshot.config.num_fewshot == 6 and base.config.num_fewshot is None
    assert fewshot.dataset["train"]["id"] == base.dataset["train"]["id"]
    assert fewshot.dataset["test"]["id"] == base.dataset["test"]["id"]


def test_color_keeps_one_colour_in_all_its_encodings_on_one_side(tarot_tasks):
    """rgb[i] and hex[i] are the same colour: row i of every subtask goes to the same split."""
    dataset = tarot_tasks["tarot_color"].dataset
    rows = {split: {doc_id.split(":")[1] for doc_id in dataset[split]["id"]} for split in dataset}
    assert not rows["train"] & rows["test"]
    assert {doc_id.split(":")[0] for doc_id in dataset["test"]["id"]} == {
        "color/rgb", "color/hex", "color/hsl", "color/hcl"
    }


@pytest.mark.parametrize("name", ALL_TASKS)
def test_known_rows_carry_the_right_label_word(tarot_tasks, name):
    dataset = tarot_tasks[name].dataset
    docs = {doc["id"]: doc for split in dataset for doc in dataset[split]}
    for doc_id, input_start, label_word in KNOWN_ROWS[name]:
        doc = docs[doc_id]
        assert doc["input"].startswith(input_start)
        assert doc["choices"][doc["label"]] == label_word


@pytest.mark.parametrize("name", ALL_TASKS)
def test_choices_start_with_distinct_first_tokens(tarot_tasks, smollm2_tokenizer, name):
    """Scored after "Answer:" with a leading space, each label word starts with its own token."""
    task = tarot_tasks[name]
    choices = task.dataset["test"][0]["choices"]
    context = task.doc_to_text(task.dataset["test"][0])
    prefix = smollm2_tokenizer(context)["input_ids"]
    firsts = [
        smollm2_tokenizer(context + task.config.target_delimiter + choice)["input_ids"][len(prefix)]
        for choice in choices
    ]
    assert len(set(firsts)) == len(choices)


# --- lm-eval runs ---------------------------------------------------------------------------


def test_every_task_runs_end_to_end_and_groups_average_unweighted(evaluation):
    results = evaluation["results"]
    for name in ALL_TASKS + [f"{name}_fewshot" for name in ALL_TASKS]:
        assert 0.0 <= results[name]["acc,none"] <= 1.0
        assert results[name]["acc_stderr,none"] >= 0.0
        assert evaluation["n-samples"][name]["effective"] == LIMIT
    for group, suffix in (("tarot", ""), ("tarot_fewshot", "_fewshot")):
        members = [results[name + suffix]["acc,none"] for name in BASE_TASKS]
        assert results[group]["acc,none"] == pytest.approx(sum(members) / len(members))


@pytest.mark.parametrize("name", ALL_TASKS)
def test_few_shot_contexts_hold_six_training_docs_and_the_query(evaluation, tarot_tasks, name):
    task = tarot_tasks[f"{name}_fewshot"]
    demos_allowed = rendered_demos(task)
    for sample in evaluation["samples"][f"{name}_fewshot"]:
        context, _ = sample["arguments"][0]
        demos, query = context_blocks(task, context)
        assert len(demos) == 6 and set(demos) <= demos_allowed
        assert query == task.doc_to_text(sample["doc"])
        assert sample["doc"]["id"] in task.dataset["test"]["id"]


@pytest.mark.parametrize("name", ALL_TASKS)
def test_zero_shot_contexts_hold_only_the_instruction_and_query(evaluation, tarot_tasks, name):
    task = tarot_tasks[name]
    for sample in evaluation["samples"][name]:
        context, _ = sample["arguments"][0]
        assert context == task.config.description + task.doc_to_text(sample["doc"])
        assert context.endswith("Answer:")
        choices = [continuation for _, continuation in sample["arguments"]]
        assert choices == [" " + choice for choice in sample["doc"]["choices"]]


def run_with_shots(task_manager, model, tokenizer, task: str, num_fewshot: int | None):
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=model, tokenizer=tokenizer, backend="causal", batch_size=8)
    return lm_eval.simple_evaluate(
        model=lm, tasks=[task], task_manager=task_manager, num_fewshot=num_fewshot, limit=2,
        log_samples=True,
    )


@pytest.mark.parametrize(("task", "num_fewshot"), [("tarot_navigate", 3), ("tarot_color_fewshot", 2)])
def test_num_fewshot_overrides_zero_and_few_shot_tasks(
    tarot_tasks, task_manager, tiny_llama, smollm2_tokenizer, task, num_fewshot
):
    evaluation = run_with_shots(task_manager, tiny_llama, smollm2_tokenizer, task, num_fewshot)
    assert evaluation["configs"][task]["num_fewshot"] == num_fewshot
    demos_allowed = rendered_demos(tarot_tasks[task])
    for sample in evaluation["samples"][task]:
        demos, _ = context_blocks(tarot_tasks[task], sample["arguments"][0][0])
        assert len(demos) == num_fewshot and set(demos) <= demos_allowed


def test_num_fewshot_beyond_the_training_pool_is_refused(
    real_data, task_manager, tiny_llama, smollm2_tokenizer
):
    with pytest.raises(ValueError, match=r"num_fewshot=41 .* 40 documents in this task's training pool"):
        run_with_shots(task_manager, tiny_llama, smollm2_tokenizer, "tarot_entailed_polarity", 41)


# --- data resolution and bad input ----------------------------------------------------------


def write_bigbench(root: Path, name: str, examples: list[dict]) -> Path:
    path = root / "bigbench" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"name": name, "examples": examples}))
    return path


def parity_examples(count: int) -> list[dict]:
    return [
        {"input": f"Is {n} an even number?", "target_scores": {"yes": int(n % 2 == 0), "no": int(n % 2)}}
        for n in range(count)
    ]


def test_unset_data_dir_offline_raises_one_error_saying_where_and_how(monkeypatch):
    monkeypatch.delenv(data_sources.DATA_DIR_ENV)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(data_sources, "AG_NEWS_HUB_ID", "tarot-eval-tests/not-cached")
    monkeypatch.setattr(data_sources, "BIGBENCH_URL", "https://tarot-eval.invalid/{name}/task.json")
    with pytest.raises(TaskDataError, match=r"TAROT_DATA_DIR is not set.*tarot-eval-tests/not-cached.*set TAROT_DATA_DIR="):
        utils.load_ag_news(["a", "b", "c", "d"], train_size=1, test_size=1)
    with pytest.raises(TaskDataError,
                       match=r"TAROT_DATA_DIR is not set.*tarot-eval.invalid/navigate/task.json.*set TAROT_DATA_DIR="):
        utils.load_bigbench("navigate", train_size=1)


def test_data_dir_that_is_missing_or_lacks_the_file_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv(data_sources.DATA_DIR_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(TaskDataError, match="nowhere is not a directory"):
        utils.load_bigbench("navigate", train_size=1)
    monkeypatch.setenv(data_sources.DATA_DIR_ENV, str(tmp_path))
    with pytest.raises(TaskDataError, match=r"bigbench/navigate.json does not exist"):
        utils.load_bigbench("navigate", train_size=1)
    with pytest.raises(TaskDataError, match=r"ag_news/test.csv does not exist"):
        utils.load_ag_news(["a", "b", "c", "d"], train_size=1, test_size=1)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"examples": [', "is not valid JSON"),
        ('{"examples": [{"input": "x", "target": "y"}]}', "is not a BIG-bench multiple-choice task"),
        ("[1, 2]", "is not a BIG-bench multiple-choice task"),
        ('{"examples": [{"input": "x", "target_scores": {"a": "1", "b": "0"}}]}', "is not a BIG-bench multiple-choice task"),
    ],
)
def test_malformed_bigbench_json_names_the_file_and_problem(monkeypatch, tmp_path, content, problem):
    path = tmp_path / "bigbench" / "broken.json"
    path.parent.mkdir()
    path.write_text(content)
    monkeypatch.setenv(data_sources.DATA_DIR_ENV, str(tmp_path))
    with pytest.raises(TaskDataError, match=f"{path}.*{problem}"):
        utils.load_bigbench("broken", train_size=1)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('"3","title only"\n', "row 1: expected 3 fields"),
        ('"1","a","b"\n"7","c","d"\n', "row 2: expected 3 fields"),
        ("", "holds no rows"),
    ],
)
def test_malformed_ag_news_csv_names_the_file_and_problem(monkeypatch, tmp_path, content, problem):
    path = tmp_path / "ag_news" / "test.csv"
    path.parent.mkdir()
    path.write_text(content)
    monkeypatch.setenv(data_sources.DATA_DIR_ENV, str(tmp_path))
    with pytest.raises(TaskDataError, match=f"{path}.*{problem}"):
        utils.load_ag_news(["a", "b", "c", "d"], train_size=1, test_size=1)


def test_too_few_usable_items_for_the_splits_is_refused(monkeypatch, tmp_path):
    write_bigbench(tmp_path, "parity", parity_examples(10))
    monkeypatch.setenv(data_sources.DATA_DIR_ENV, str(tmp_path))
    with pytest.raises(TaskDataError, match="parity: 10 usable items cannot fill a training pool of 8 and a test split of 5"):
        utils.load_bigbench("parity", train_size=8, test_size=5)


def test_unscorable_and_repeated_items_are_dropped(monkeypatch, tmp_path):
    examples = parity_examples(6) + [
        {"input": "Is 2 an even number?", "target_scores": {"yes": 1, "no": 0}},  # repeat, same answer
        {"input": "Is 3 an even number?", "target_scores": {"yes": 1, "no": 0}},  # repeat, other answer
        {"input": "tie", "target_scores": {"yes": 1, "no": 1}},
        {"input": "other words", "target_scores": {"maybe": 1, "no": 0}},
    ]
    write_bigbench(tmp_path, "parity", examples)
    monkeypatch.setenv(data_sources.DATA_DIR_ENV, str(tmp_path))
    splits = utils.load_bigbench("parity", train_size=2, label_words={"yes": "Yes", "no": "No"})
    docs = [*splits["train"], *splits["test"]]
    assert sorted(doc["input"] for doc in docs) == [f"Is {n} an even number?" for n in (0, 1, 2, 4, 5)]
    assert all(doc["choices"] == ["Yes", "No"] for doc in docs)
    assert all(doc["label"] == int(doc["input"][3]) % 2 for doc in docs)


def test_public_sources_give_the_same_docs_as_the_data_dir(monkeypatch, tmp_path):
    """The no-TAROT_DATA_DIR route, pointed at local copies, yields identical documents."""
    write_bigbench(tmp_path, "parity", parity_examples(12))
    (tmp_path / "ag_news").mkdir()
    rows = [("3", "Wall St. Bears", "Short-sellers are \\seeing green  #36;5 again."), ("2", "Goal", "A win."),
            ("1", "Talks", "Peace talks resume."), ("4", "Chips", "A new chip.")]
    (tmp_path / "ag_news" / "test.csv").write_text("".join(f'"{c}","{t}","{d}"\n' for c, t, d in rows))
    hub_copy = tmp_path / "hub_ag_news"
    hub_copy.mkdir()
    datasets.Dataset.from_list(
        [{"text": f"{t} {d}", "label": int(c) - 1} for c, t, d in rows]
    ).to_csv(hub_copy / "test.csv", index=False)
    label_words = ["World", "Sports", "Business", "Science"]

    monkeypatch.setenv(data_sources.DATA_DIR_ENV, str(tmp_path))
    local = (utils.load_bigbench("parity", train_size=4), utils.load_ag_news(label_words, 2, 2))
    monkeypatch.delenv(data_sources.DATA_DIR_ENV)
    monkeypatch.setattr(data_sources, "BIGBENCH_URL", str(tmp_path / "bigbench" / "{name}.json"))
    monkeypatch.setattr(data_sources, "AG_NEWS_HUB_ID", str(hub_copy))
    public = (utils.load_bigbench("parity", train_size=4), utils.load_ag_news(label_words, 2, 2))

    for local_splits, public_splits in zip(local, public):
        for split in ("train", "test"):
            assert local_splits[split].to_list() == public_splits[split].to_list()
    ag_news_docs = {doc["id"]: doc for split in local[1].values() for doc in split}
    assert ag_news_docs["ag_news:0"]["input"] == "Wall St. Bears Short-sellers are seeing green $5 again."
    assert ag_news_docs["ag_news:0"]["choices"][ag_news_docs["ag_news:0"]["label"]] == "Business"


# --- the real console script ----------------------------------------------------------------


def lm_eval_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [str(LM_EVAL), *args], cwd=REPO, env=environment, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_lm_eval_validate_accepts_the_tarot_groups():
    done = lm_eval_cli("validate", "--tasks", "tarot,tarot_fewshot,tarot_colored_objects", "--include_path", "tasks",
                       env={"TAROT_EVAL_NO_DEFAULT_TASKS": "1"})  # the tarot tasks without lm-eval's own
    assert done.returncode == 0, done.stdout + done.stderr
    assert "All tasks found and valid" in done.stdout


NEW_TASK_YAML = """\
task: parity
custom_dataset: !function tarot_eval.tasks.utils.load_bigbench
dataset_kwargs:
  bigbench_task: parity
  label_words: {"yes": "Yes", "no": "No"}
  train_size: 10
  test_size: 20
output_type: multiple_choice
training_split: train
test_split: test
fewshot_split: train
fewshot_config:
  sampler: !function tarot_eval.tasks.utils.TrainPoolSampler
description: "Answer Yes or No.\\n\\n"
doc_to_text: "{{input}}\\nAnswer:"
doc_to_choice: choices
doc_to_target: label
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""


@pytest.mark.slow
def test_a_new_bigbench_task_from_yaml_alone_runs_through_the_console_script(
    tmp_path, tiny_llama, smollm2_tokenizer
):
    write_bigbench(tmp_path / "data", "parity", parity_examples(40))
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "parity.yaml").write_text(NEW_TASK_YAML)
    tiny_llama.save_pretrained(tmp_path / "model")
    smollm2_tokenizer.save_pretrained(tmp_path / "model")
    done = lm_eval_cli(
        "--model", "hf", "--model_args", f"pretrained={tmp_path / 'model'},dtype=float32",
        "--tasks", "parity", "--include_path", str(tmp_path / "tasks"), "--num_fewshot", "2",
        "--limit", "4", "--device", "cpu", "--output_path", str(tmp_path / "out"),
        env={data_sources.DATA_DIR_ENV: str(tmp_path / "data"), "TAROT_EVAL_NO_DEFAULT_TASKS": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (results_file,) = (tmp_path / "out").rglob("results_*.json")
    results = json.loads(results_file.read_text())
    assert 0.0 <= results["results"]["parity"]["acc,none"] <= 1.0
    assert results["n-samples"]["parity"] == {"original": 20, "effective": 4}
    assert results["configs"]["parity"]["num_fewshot"] == 2
