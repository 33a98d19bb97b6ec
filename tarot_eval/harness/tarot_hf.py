"""`tarot-hf`: lm-eval's HF model with a TaRot checkpoint applied (folded into o_proj by default).

    lm_eval --model tarot-hf --model_args pretrained=PATH_OR_ID,rotations=CKPT_DIR --tasks TASK

A checkpoint is refused on a model folder that already has an edit folded in (an export)
unless `allow_stacked=true`, and on weights other than the ones it was found on unless
`allow_transfer=true`. `calibration=DIR` (a `tarot-eval calibrate` folder) removes the answer
prior from every loglikelihood request (`tarot_eval.objective.calibration`), with or without rotations.
Log-likelihood requests are scored through the prefix tree of their tokens (`prefix_scoring`: what
documents share computed once, the same answers as HFLM's); `stock_scoring=true` leaves them to HFLM.
Everything else (tokenization, chat templates, rolling log-likelihoods, generation) is lm-eval's HFLM.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM

from tarot_eval.edit import checkpoint, export
from tarot_eval.harness import model_info
from tarot_eval.models import default_model, loading
from tarot_eval.objective import calibration as calibrations

# Keyword arguments HFLM forwards to `from_pretrained` that users commonly pass.
FROM_PRETRAINED_KEYS = frozenset(
    {
        "attn_implementation",
        "device_map",
        "low_cpu_mem_usage",
        "load_in_8bit",
        "load_in_4bit",
        "bnb_4bit_compute_dtype",
        "bnb_4bit_quant_type",
        "bnb_4bit_use_double_quant",
        "use_safetensors",
        "local_files_only",
        "cache_dir",
        "token",
        "variant",
    }
)
TAROT_KEYS = frozenset({"pretrained", "rotations", "calibration", "fold", "allow_stacked", "allow_transfer", "stock_scoring"})


def _accepted_keys() -> frozenset[str]:
    hflm = {name for name, p in inspect.signature(HFLM.__init__).parameters.items() if p.kind is p.POSITIONAL_OR_KEYWORD}
    return frozenset(hflm - {"self"}) | FROM_PRETRAINED_KEYS | TAROT_KEYS


def _as_bool(value, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"true", "1", "yes"}:
        return True
    if text in {"false", "0", "no"}:
        return False
    raise ValueError(f"tarot-hf: {name}={value!r} is not a boolean (use true or false)")


@register_model("tarot-hf")
class TarotHFLM(HFLM):
    """HFLM plus `rotations` (a tarot checkpoint dir; absent = base model), `calibration` (a
    calibration dir; absent = none), `fold` (default true), `allow_stacked` and `allow_transfer`
    (default false)."""

    def __init__(self, pretrained: str | None = None, rotations: str | None = None, calibration: str | None = None,
                 fold=True, allow_stacked=False, allow_transfer=False, stock_scoring=False, **kwargs):
        unknown = sorted(set(kwargs) - _accepted_keys())
        if unknown:
            raise ValueError(
                f"tarot-hf: unknown model_args {', '.join(unknown)}; tarot-hf takes {', '.join(sorted(TAROT_KEYS))} "
                "plus lm-eval's hf model_args (see `lm_eval --model hf` docs)"
            )
        if rotations is not None and not str(rotations).strip():
            raise ValueError("tarot-hf: rotations= is empty; name a checkpoint directory, "
                             "or leave rotations out for the base model")
        self.tarot_rotations = None if rotations is None else str(Path(str(rotations)))
        if calibration is not None and not str(calibration).strip():
            raise ValueError("tarot-hf: calibration= is empty; name a `tarot-eval calibrate` folder, or leave it out")
        self.tarot_calibration = None if calibration is None else calibrations.load(str(calibration))
        self.tarot_fold = _as_bool(fold, "fold")
        self.tarot_stock_scoring = _as_bool(stock_scoring, "stock_scoring")
        self.tarot_requests = {"prefix-tree": 0, "stock": 0}  # log-likelihood requests served by each path
        self.tarot_tokens: dict = {}  # input tokens the prefix tree fed the model ("tokens"; "positions" with padding)
        allow_stacked, allow_transfer = _as_bool(allow_stacked, "allow_stacked"), _as_bool(allow_transfer, "allow_transfer")
        self.tarot_default_model = pretrained in (None, "")
        self.tarot_exported_edit = None
        if isinstance(pretrained, str) or pretrained is None:
            folder = export.model_folder(pretrained)
            self.tarot_exported_edit = export.exported_edit(folder)
            if self.tarot_rotations is not None and self.tarot_exported_edit is not None and not allow_stacked:
                raise export.stacking_refusal(folder, self.tarot_exported_edit, self.tarot_rotations, "allow_stacked=true")
            pretrained, gguf_file = loading.resolve(pretrained)
            if gguf_file is not None:
                kwargs["gguf_file"] = gguf_file
        super().__init__(pretrained=pretrained, **kwargs)
        if self.tarot_calibration is not None:  # on the unedited weights, before any rotation is merged
            calibrations.check_weights(self.tarot_calibration, self.model, allow_transfer)
        self.tarot_edit = None
        self.tarot_handle = None
        if self.tarot_rotations is not None:
            self.tarot_edit = checkpoint.load(self.tarot_rotations, self.model, allow_transfer=allow_transfer)
            apply = self.tarot_edit.merge if self.tarot_fold else self.tarot_edit.attach
            self.tarot_handle = apply(self.model)

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs=None):
        """HFLM's tokenized requests scored through the prefix tree (`prefix_scoring`); those it cannot serve
        (a non-causal model, a request HFLM would truncate, `stock_scoring=true`) go to HFLM unchanged."""
        rolling = any(request[0] is None for request in requests)  # loglikelihood_rolling's windows stay HFLM's
        if self.tarot_stock_scoring or self.backend != "causal" or rolling or not requests:
            self.tarot_requests["stock"] += len(requests)
            return super()._loglikelihood_tokens(requests, disable_tqdm=disable_tqdm, override_bs=override_bs)
        from tarot_eval.harness import prefix_scoring

        batch_size = override_bs or (self.batch_size if self.batch_size != "auto" else self._detect_batch_size(requests))
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        answers, left = prefix_scoring.loglikelihood_tokens(
            self.model, requests, int(batch_size), pad, self.max_length, self.cache_hook, disable_tqdm or self.rank != 0,
            self.tarot_tokens)
        if left:
            answers.update(zip(left, super()._loglikelihood_tokens([requests[i] for i in left], disable_tqdm=disable_tqdm,
                                                                    override_bs=override_bs)))
        self.tarot_requests["prefix-tree"] += len(requests) - len(left)
        self.tarot_requests["stock"] += len(left)
        return [answers[index] for index in range(len(requests))]

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        """HFLM's log-likelihoods, less the calibration's answer prior when one is given."""
        results = super().loglikelihood(requests, disable_tqdm=disable_tqdm)
        if self.tarot_calibration is None:
            return results
        return [
            (loglik - self.tarot_calibration.offset(request.task_name, request.args[1]), greedy)
            for request, (loglik, greedy) in zip(requests, results)
        ]

    def get_model_info(self) -> dict:
        info = super().get_model_info()
        info[model_info.BASE_MODEL] = checkpoint.model_identity(self.model)
        if self.tarot_default_model:
            info[model_info.BASE_MODEL]["source"] = f"{default_model.DEFAULT_NAME} from {default_model.gguf_path().name}"
        info[model_info.ROTATIONS] = self.tarot_rotations
        info[model_info.FOLD] = self.tarot_fold
        if self.tarot_exported_edit is not None:
            info[model_info.EXPORTED_EDIT] = self.tarot_exported_edit
        if self.tarot_rotations is not None:
            config = checkpoint.TarotConfig.from_pretrained(self.tarot_rotations)
            info[model_info.CHECKPOINT_HASH] = checkpoint.checkpoint_hash(self.tarot_rotations)
            info[model_info.METHOD] = config.method
            info[model_info.LAYERS] = config.layers
            info[model_info.PROVENANCE] = config.provenance
        served = sum(self.tarot_requests.values())
        info[model_info.SCORER] = "stock" if self.tarot_stock_scoring else "prefix-tree"
        info[model_info.PREFIX_TREE_SHARE] = self.tarot_requests["prefix-tree"] / served if served else None
        if self.tarot_calibration is not None:
            info[model_info.CALIBRATION] = self.tarot_calibration.source
            info[model_info.CALIBRATION_VARIANT] = self.tarot_calibration.variant
            info[model_info.CALIBRATION_HASH] = calibrations.calibration_hash(self.tarot_calibration.source)
        return info
