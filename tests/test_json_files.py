"""The JSON files tarot-eval reads back fail as one line naming the file, whichever command reads them."""

import re

import pytest

from tarot_eval.edit import checkpoint, export
from tarot_eval.objective import calibration


@pytest.mark.parametrize("content, problem", [(b"\xff\xfe{}", "not UTF-8 text (byte 0"), (b'{"a": ', "corrupt JSON (")])
def test_unreadable_json_names_the_file_and_the_problem(tmp_path, content, problem):
    (tmp_path / export.EXPORT_RECORD).write_bytes(content)
    (tmp_path / checkpoint.CONFIG_NAME).write_bytes(content)
    (tmp_path / "calibration.json").write_bytes(content)
    for error, read, name in ((export.ExportError, export.exported_edit, export.EXPORT_RECORD),
                              (checkpoint.CheckpointError, checkpoint.TarotConfig.from_pretrained, checkpoint.CONFIG_NAME),
                              (calibration.CalibrationError, calibration.load, "calibration.json")):
        with pytest.raises(error, match=re.escape(f"{tmp_path / name}: {problem}")) as raised:
            read(tmp_path / name if read is calibration.load else tmp_path)
        assert "\n" not in str(raised.value)
