"""What an edit is optimized for: a task, its documents and prompts, batched choice scoring, the objective function,
calibration files, selection."""
