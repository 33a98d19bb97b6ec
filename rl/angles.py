"""Rotation angles trained by TRL's trainers as the Parameter of the edit module, not of the model.

TRL needs a real PreTrainedModel (config, generation_config, generate), so the edit is hooked
into it (`HeadEdit.attach`): rollouts come from the edited model and gradients reach the angles,
which live in the `HeadEdit` module (`trainable=True`), never in the model's own parameter table.
The trainer gets an optimizer over the angles alone (`angle_optimizer`) and `AngleStep` does for
them what it does for a model's parameters (clip the gradient), plus the projection into the bounds.
On leaving `trainable_angles` the hooks are gone and the base weights' `requires_grad` and the
train/eval mode are restored: the model is exactly the base model again (its fingerprint included).
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
from torch import nn
from transformers import Trainer, TrainerCallback, TrainingArguments

from tarot_eval.edit.head_edit import HeadEdit


@contextmanager
def trainable_angles(model: nn.Module, layers, initial: torch.Tensor | None = None):
    """Yields (angles Parameter, attached edit); zero angles (the unedited model) unless `initial` is given."""
    edit = HeadEdit.identity(model, "rotation", layers, trainable=True).to(next(model.parameters()).device)
    if initial is not None:
        if initial.shape != edit.params.shape:
            raise ValueError(f"initial angles of shape {tuple(initial.shape)}, the edit needs {tuple(edit.params.shape)}")
        with torch.no_grad():
            edit.params.copy_(initial)
    handle = edit.attach(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    was_training = model.training
    try:
        for parameter in trainable:
            parameter.requires_grad_(False)
        yield edit.params, handle
    finally:
        handle.remove()
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


def angle_optimizer(angles: nn.Parameter, args: TrainingArguments) -> torch.optim.Optimizer:
    """The optimizer the Trainer would build from `args` (`optim`, lr, betas, eps, and `weight_decay`, which the
    Trainer sets per parameter group and the optimizer class would otherwise default), over the angles alone."""
    optimizer_class, kwargs = Trainer.get_optimizer_cls_and_kwargs(args)
    return optimizer_class([{"params": [angles], "weight_decay": args.weight_decay}], **kwargs)


class AngleStep(TrainerCallback):
    """Before each optimizer step, clips the angles' gradient to `max_grad_norm` (its norm replaces the
    step log's `grad_norm`, which the Trainer takes over the model's parameters only); after it,
    clears the gradient (the Trainer's `model.zero_grad()` does not reach it) and projects the
    angles back into [low, high]."""

    def __init__(self, angles: nn.Parameter, bounds: tuple[float, float]):
        self.angles, self.bounds = angles, bounds
        self.grad_norm: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.angles.grad = None

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        limit = args.max_grad_norm if args.max_grad_norm and args.max_grad_norm > 0 else math.inf
        self.grad_norm = float(torch.nn.utils.clip_grad_norm_([self.angles], limit))

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.angles.grad = None

    def on_step_end(self, args, state, control, **kwargs):
        with torch.no_grad():
            self.angles.clamp_(*self.bounds)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.grad_norm is None:
            return
        for logged in (state.log_history[-1] if state.log_history else {}, logs or {}):
            if "grad_norm" in logged:
                logged["grad_norm"] = self.grad_norm
