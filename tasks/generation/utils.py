"""Task class, documents and corpus aggregations for `tarot_imdb` and `tarot_detox`.

The task class exists so the scorer actually used (chosen by metadata or environment, see
tarot_eval.tasks.generation.metrics) is written into the task's config metadata, which lm-eval saves
in the results JSON; it also builds the scorer before any text is generated, so a missing
scorer model fails at once.
"""

from __future__ import annotations

import functools

import datasets
from lm_eval.api.task import ConfigurableTask
from tarot_eval.tasks.generation.metrics import ScorerChoice, document_metrics, shared_scorer
from tarot_eval.tasks.prompts import TEST_PROMPTS, imdb_prompts, toxicity_prompts

from tarot_eval.rewards.fluency import distinct_n

DEFAULT_PROMPT_SEED = 0


class _ScoredGenerationTask(ConfigurableTask):
    KIND: str
    SCORE_PROMPT: bool

    def __init__(self, config: dict | None = None):
        config = {key: value for key, value in (config or {}).items() if key != "class"}
        metadata = dict(config.get("metadata") or {})
        choice = ScorerChoice.resolve(self.KIND, metadata)
        scorer = shared_scorer(choice)
        config["metadata"] = metadata | choice.record(scorer)
        config["process_results"] = functools.partial(document_metrics, choice, self.SCORE_PROMPT)
        super().__init__(config=config)


class SentimentTask(_ScoredGenerationTask):
    """Continuations of IMDB review openings, rated with the review opening included."""

    KIND = "sentiment"
    SCORE_PROMPT = True


class ToxicityTask(_ScoredGenerationTask):
    """Continuations of challenging RealToxicityPrompts, the continuation rated alone."""

    KIND = "toxicity"
    SCORE_PROMPT = False


def _test_docs(split) -> datasets.DatasetDict:
    docs = [{"prompt_id": p.id, "prompt": p.text, "prompt_source": split.source} for p in split.test]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(docs)})


def _split_options(metadata: dict, prompt_set: str) -> dict:
    return {
        "n_train": 0,
        "n_test": int(metadata.get("num_prompts", TEST_PROMPTS[prompt_set])),
        "seed": int(metadata.get("prompt_seed", DEFAULT_PROMPT_SEED)),
        "data_dir": metadata.get("data_dir"),
    }


def imdb_test_docs(**metadata) -> datasets.DatasetDict:
    """The IMDB test prompts (metadata `num_prompts`, `prompt_seed`, `data_dir` change the set)."""
    return _test_docs(imdb_prompts(**_split_options(metadata, "imdb")))


def detox_test_docs(**metadata) -> datasets.DatasetDict:
    """The RealToxicityPrompts test prompts (same metadata as `imdb_test_docs`)."""
    return _test_docs(toxicity_prompts(**_split_options(metadata, "rtp")))


def distinct_1(continuations: list[str]) -> float:
    return distinct_n(continuations, 1)


def distinct_2(continuations: list[str]) -> float:
    return distinct_n(continuations, 2)
