"""The run record's config check on resume: a setting added or dropped since, at its empty value, is no difference."""

import json

import pytest
import torch

from tarot_eval.optimize.record import CONFIG_NAME, TRAIN_VALUE, RunConfigError, RunRecord


def test_a_recorded_empty_setting_absent_now_resumes_and_a_real_difference_is_refused(tmp_path):
    with RunRecord(tmp_path, {"task": "t", "calibration": "", "seed": 0}) as record:
        record.append({"phase": "random", "train": 0.5, "train_acc": 0.5, "wall_s": 0.0, "time": 0.0}, {"x": torch.zeros(2)})
    with RunRecord(tmp_path, {"task": "t", "seed": 0}) as record:  # written before `calibration` left the record
        assert len(record.trace) == 1
    with pytest.raises(RunConfigError, match="seed: recorded 0, now 1"):
        RunRecord(tmp_path, {"task": "t", "seed": 1}).__enter__()
    assert json.loads((tmp_path / "run.json").read_text())["seed"] == 0


def test_a_new_run_that_fails_before_its_first_evaluation_leaves_no_record(tmp_path):
    """rl --max-new-tokens 0 (or any early failure) used to leave a run.json that refused the corrected command."""
    with pytest.raises(RuntimeError, match="bad flag"):
        with RunRecord(tmp_path / "run", {"lr": 0.1}):
            raise RuntimeError("bad flag")
    assert not (tmp_path / "run" / CONFIG_NAME).exists()
    with RunRecord(tmp_path / "run", {"lr": 0.2}) as record:  # the corrected command starts afresh
        record.append({TRAIN_VALUE: 0.5}, {"x": torch.zeros(2)})
    with pytest.raises(RuntimeError, match="later failure"):
        with RunRecord(tmp_path / "run", {"lr": 0.2}) as resumed:  # resumed, with an evaluation: never removed
            assert len(resumed.trace) == 1
            raise RuntimeError("later failure")
    assert (tmp_path / "run" / CONFIG_NAME).is_file() and len(RunRecord(tmp_path / "run", {"lr": 0.2}).trace) == 1
