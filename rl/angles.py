"""Rotation angles as the only trainable tensor of a HuggingFace model, for TRL's trainers.

TRL needs a real PreTrainedModel (config, generation_config, generate), so the angles are not
held in a wrapper but registered on the model itself as a Parameter, hooked in through
`tarot_eval.edit.attach` (rollouts come from the edited model, gradients reach only the angles),
every base weight frozen. On leaving `angles_on_model` the Parameter and hooks are gone and the
base weights' `requires_grad` and the train/eval mode are restored: the model is exactly the base
model again (its fingerprint, which checkpoints record, included).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn
from transformers import TrainerCallback

from tarot_eval.edit import HeadEdit, attach

ANGLES = "tarot_angles"


@contextmanager
def angles_on_model(model: nn.Module, layers, initial: torch.Tensor | None = None):
    """Yields (angles Parameter, attached edit); zero angles (the unedited model) unless `initial` is given."""
    if hasattr(model, ANGLES):
        raise ValueError(f"the model already carries a {ANGLES!r} parameter (a run in progress?)")
    start = HeadEdit.identity(model, "rotation", layers).params
    if initial is not None:
        start = initial.detach().to(start.dtype).clone()
    trainable = [p for p in model.parameters() if p.requires_grad]
    for parameter in trainable:
        parameter.requires_grad_(False)
    angles = nn.Parameter(start.clone())
    model.register_parameter(ANGLES, angles)
    handle = attach(model, HeadEdit("rotation", tuple(layers), angles))
    was_training = model.training
    try:
        yield angles, handle
    finally:
        handle.remove()
        del model._parameters[ANGLES]
        for parameter in trainable:
            parameter.requires_grad_(True)
        model.train(was_training)


def training_arguments(**own) -> dict:
    """TRL config arguments every angle trainer shares (CPU, nothing saved or reported, a constant lr), plus `own`."""
    return {
        "use_cpu": True, "bf16": False, "report_to": [], "save_strategy": "no", "logging_steps": 1,
        "lr_scheduler_type": "constant", "weight_decay": 0.0, "dataloader_num_workers": 0,
        # reentrant checkpointing of frozen blocks would cut the angles' gradient
        "activation_checkpointing": False,
        **own,
    }


class ClampAngles(TrainerCallback):
    """Projects the angles back into [low, high] after each optimizer step."""

    def __init__(self, angles: nn.Parameter, bounds: tuple[float, float]):
        self.angles, self.bounds = angles, bounds

    def on_step_end(self, args, state, control, **kwargs):
        with torch.no_grad():
            self.angles.clamp_(*self.bounds)
