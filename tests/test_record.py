"""The run record's config check on resume: a setting added or dropped since, at its empty value, is no difference."""

import json

import pytest
import torch

from tarot_eval.optimize.record import RunConfigError, RunRecord


def test_a_recorded_empty_setting_absent_now_resumes_and_a_real_difference_is_refused(tmp_path):
    with RunRecord(tmp_path, {"task": "t", "calibration": "", "seed": 0}) as record:
        record.append({"phase": "random", "train": 0.5, "train_acc": 0.5, "wall_s": 0.0, "time": 0.0}, {"x": torch.zeros(2)})
    with RunRecord(tmp_path, {"task": "t", "seed": 0}) as record:  # written before `calibration` left the record
        assert len(record.trace) == 1
    with pytest.raises(RunConfigError, match="seed: recorded 0, now 1"):
        RunRecord(tmp_path, {"task": "t", "seed": 1}).__enter__()
    assert json.loads((tmp_path / "run.json").read_text())["seed"] == 0
