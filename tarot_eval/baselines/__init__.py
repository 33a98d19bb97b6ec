"""The baselines an edit is compared with that need fitting: contextual calibration and LoRA fine-tuning."""
