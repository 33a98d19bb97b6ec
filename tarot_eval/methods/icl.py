"""`{method: icl, shots: K}`: the unedited model shown K fixed demonstrations, the first K of the seed's
training documents (the optimizer's draw). Evaluated on the zero-shot tasks only: a few-shot task already
has its shots."""

from __future__ import annotations

from tarot_eval.methods.jobs import Demonstrations, GridContext
from tarot_eval.methods.registry import Method, MethodSpec, check_keys, register_method

KEYS = ("method", "shots")


@register_method
class InContext(Method):
    kind = "icl"
    on_few_shot_tasks = False

    def parse(self, name: str, entry: dict, where: str, earlier: list[MethodSpec]) -> MethodSpec:
        check_keys(entry, KEYS, where)
        shots = entry.get("shots")
        if isinstance(shots, bool) or not isinstance(shots, int) or shots < 1:
            raise ValueError(f"{where}.shots: expected a number of demonstrations (1 or more), got {shots!r}")
        return MethodSpec(name, self.kind, {"shots": shots})

    def check(self, spec: MethodSpec, optimizer: dict) -> None:
        from tarot_eval.optimize.settings import OptimizeSettings

        n_train = optimizer.get("n_train", OptimizeSettings.n_train)
        if spec.settings["shots"] > n_train:
            raise ValueError(f"methods.{spec.name}.shots: {spec.settings['shots']} demonstrations, but the "
                             f"demonstrations are the first of the {n_train} training documents (optimizer.n_train)")

    def evaluation_inputs(self, grid: GridContext, spec: MethodSpec, task: str, source: str, seed: int | None) -> dict:
        from tarot_eval.optimize.settings import OptimizeSettings

        shared = grid.config.method_settings(spec, seed)
        return {"demonstrations": Demonstrations(spec.settings["shots"], shared.get("n_train", OptimizeSettings.n_train),
                                                 shared.get("n_val", OptimizeSettings.n_val),
                                                 shared.get("seed", OptimizeSettings.seed))}
