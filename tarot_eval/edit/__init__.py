"""The edit at each attention block's `o_proj` input: its kinds, where each model family keeps that site, the module,
checkpoints and export."""
