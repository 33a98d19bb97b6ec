"""The keys tarot-hf adds to lm-eval's model info (the `config` of every results JSON): written by
`tarot_eval.harness.tarot_hf`, read by `tarot_eval.compare` (labels) and the leaderboard (what a finished run was)."""

BASE_MODEL = "tarot_base_model"  # checkpoint.model_identity of the model evaluated (+ "source" for the embedded default)
ROTATIONS = "tarot_rotations"  # the checkpoint folder applied, or None
FOLD = "tarot_fold"  # whether it was merged into o_proj (else hooked)
EXPORTED_EDIT = "tarot_exported_edit"  # the export record of a model with an edit already merged in
CHECKPOINT_HASH = "tarot_checkpoint_hash"
METHOD = "tarot_method"  # the edit kind (`tarot_eval.edit.kinds`: rotation, rescale, ...)
LAYERS = "tarot_layers"
PROVENANCE = "tarot_provenance"  # how the checkpoint was found (optimizer, task, seed, ...)
CALIBRATION = "tarot_calibration"  # the calibration folder applied, or absent
CALIBRATION_VARIANT = "tarot_calibration_variant"
CALIBRATION_HASH = "tarot_calibration_hash"
SCORER = "tarot_scorer"  # how log-likelihoods were computed: prefix-tree (tarot_eval.harness.prefix_scoring) or stock (HFLM)
PREFIX_TREE_SHARE = "tarot_prefix_tree_share"  # the share of log-likelihood requests the prefix tree served
