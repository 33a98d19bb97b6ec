"""The settings of the search and of `tarot-eval optimize`: `SearchSettings` is the black-box search's
group (shared with `tarot-eval rl`), `OptimizeSettings` is what a user sets (every flag, its
default and help; the same keys in `--config` files and leaderboard methods), `Settings` the typed
run config it builds for a model, which the run record holds and compares on resume.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from tarot_eval.edit import kinds
from tarot_eval.objective import scoring
from tarot_eval.objective import task_documents as objectives
from tarot_eval.optimize import bo as bayesian
from tarot_eval.optimize import grad as gradient
from tarot_eval.optimize.search_space import SearchSpace, parse_bounds
from tarot_eval.settings import DocumentSettings, EditSettings, ModelSettings, PromptSettings, SettingsError, setting

OPTIMIZERS = ("bo", "random", "grad")
METHODS = kinds.names()


@dataclass(frozen=True)
class SearchSettings:
    """The black-box search over the edit's coordinates (random points, then BO)."""

    space: str = setting("layer", "search coordinates: layer, head, embed:D or full (the paper's); see docs/optimize.md",
                         aliases=("--bo-space",))
    seed: int = setting(0, "seed of the documents or prompts drawn and of the search")
    select_k: int = setting(5, "best-by-training-score candidates compared on validation")
    bo_init: int = setting(4, "BO: random initial points")
    bo_restarts: int = setting(20, "BO: acquisition optimizer restarts")
    bo_raw_samples: int = setting(1024, "BO: raw samples for the acquisition")
    bo_kernel_depth: int = setting(3, "BO: depth of the infinite-width BNN kernel (the paper's 12 collapses)")
    bo_surrogate: str = setting("vanilla", "BO: GP surrogate: bnn (the paper's kernel), vanilla (BoTorch's standard "
                                "SingleTaskGP, dimension-scaled priors), saas (MAP SAAS); see docs/optimize.md",
                                choices=bayesian.SURROGATES)
    bo_noise: str = setting("fixed", "BO: fixed (deterministic objective) or learned (sampled rewards)",
                            choices=bayesian.NOISE_MODELS)
    trust_region: bool = setting(False, "BO: TuRBO-style trust region around the best point")

    def bo_settings(self) -> bayesian.BOSettings:
        return bayesian.BOSettings(n_init=self.bo_init, num_restarts=self.bo_restarts, raw_samples=self.bo_raw_samples,
                          kernel_depth=self.bo_kernel_depth, trust_region=self.trust_region,
                          surrogate=self.bo_surrogate, noise=self.bo_noise)


@dataclass(frozen=True)
class OptimizeSettings(ModelSettings, EditSettings, SearchSettings, DocumentSettings, PromptSettings):
    """Every setting of `tarot-eval optimize`, with its default."""

    out: str | None = setting(None, "output directory: checkpoint + run record")
    method: str = setting("rotation", "the edit: " + "; ".join(f"{k.name} ({k.help})" for k in kinds.KINDS.values()),
                          choices=METHODS)
    optimizer: str = setting("bo", "search: bo, random or grad (Adam on the training objective)", choices=OPTIMIZERS)
    objective: str = setting("choice-prob", "training objective; see docs/optimize.md", choices=scoring.OBJECTIVES)
    budget: int = setting(124, "objective evaluations (grad: steps); 124 = 4 + 120 as in the paper")
    balance: bool = setting(False, "training documents half right, half wrong for the base model (the paper's choice)")
    ship_unimproved: bool = setting(False, "save the chosen edit even when it does not beat the base model on "
                                           "validation (default: save the identity edit)")
    num_fewshot: int | None = setting(None, "demonstrations per prompt (default: the task's own)")
    demonstrations: str = setting(
        "sampled", "sampled (lm-eval's sampler per document), fixed (the same --num-fewshot documents outside "
        "train/validation for every document: one shared prefix) or mix (the paper's: 0, 2, 4 or 6 of them per "
        "document)", choices=objectives.DEMONSTRATIONS)
    calibration: str | None = setting(None, "a `tarot-eval calibrate` folder: search on choice scores less its answer prior "
                                            "(evaluate with the same calibration= in tarot-hf)")
    search_dtype: str | None = setting(None, "run the search's training evaluations under autocast in this dtype; "
                                             "validation selection and base scores stay in --dtype",
                                       choices=("bfloat16", "float16"))
    lr: float = setting(0.02, "grad: Adam learning rate in unit-cube coordinates")

    def __post_init__(self):  # checked where the settings are made, before any model loads
        if self.budget < 1:
            raise SettingsError(f"--budget must be at least 1 evaluation, got {self.budget}")
        for name in ("select_k", "batch_size", "n_train"):
            if getattr(self, name) < 1:
                raise SettingsError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be at least 1")

    def run_settings(self, num_layers: int) -> Settings:
        """The typed run config for a model of `num_layers` layers; a value it refuses is a SettingsError."""
        try:
            SearchSpace.parse(self.space, self.method, (1,), (0.0, 1.0))  # only checks the spec; the shape comes with the model
            return Settings(
                task=self.task,
                method=self.method,
                layers=self.layer_indices(num_layers),
                bounds=parse_bounds(self.angle_limit, self.method),
                optimizer=self.optimizer,
                space=self.space,
                objective=self.objective,
                n_train=self.n_train,
                n_val=self.n_val,
                seed=self.seed,
                balance=self.balance,
                ship_unimproved=self.ship_unimproved,
                prompt=objectives.PromptOptions(self.num_fewshot, self.apply_chat_template, self.fewshot_as_multiturn,
                                                self.system_instruction, self.demonstrations),
                search_dtype=self.search_dtype or "",
                calibration=self.calibration or "",
                bo=self.bo_settings(),
                grad=gradient.GradSettings(lr=self.lr),
            )
        except SettingsError:
            raise
        except ValueError as error:
            raise SettingsError(str(error)) from error


DEFAULT = OptimizeSettings()


@dataclass(frozen=True)
class Settings:
    """Everything that determines a run's results (budget aside, which a resumed run may extend);
    defaults are `OptimizeSettings`' own."""

    task: str
    method: str = DEFAULT.method
    layers: tuple[int, ...] = (0,)
    bounds: tuple[float, float] = parse_bounds(DEFAULT.angle_limit, "rotation")
    optimizer: str = DEFAULT.optimizer
    space: str = DEFAULT.space
    objective: str = DEFAULT.objective
    n_train: int = DEFAULT.n_train
    n_val: int = DEFAULT.n_val
    seed: int = DEFAULT.seed
    balance: bool = DEFAULT.balance
    ship_unimproved: bool = DEFAULT.ship_unimproved
    prompt: objectives.PromptOptions = field(default_factory=objectives.PromptOptions)
    search_dtype: str = ""  # autocast dtype of the training evaluations ("" = the model's); selection stays in the model's
    calibration: str = ""  # calibration folder whose answer prior the objective removes ("" = none)
    bo: bayesian.BOSettings = field(default_factory=DEFAULT.bo_settings)
    grad: gradient.GradSettings = field(default_factory=lambda: gradient.GradSettings(lr=DEFAULT.lr))

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; expected one of {OPTIMIZERS}")
        if self.objective not in scoring.OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}; expected one of {scoring.OBJECTIVES}")
        kinds.kind(self.method).check_bounds(self.bounds)

    def record_config(self) -> dict:
        """What the run record holds and compares; a calibration by its content hash (added by the run), not its path."""
        config = asdict(self)
        config.pop("calibration")
        for name in ("bo", "grad"):
            if self.optimizer != name:
                config.pop(name)
        return config
