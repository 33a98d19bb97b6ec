"""`base`: the unedited model, the row every other method is compared with (config `base: null`)."""

from __future__ import annotations

from tarot_eval.methods.registry import Method, MethodSpec, register_method

BASE_NAME = "base"


@register_method
class Unedited(Method):
    kind = "base"
    takes_settings = False
    reference = True

    def selects(self, name: str, entry) -> bool:
        return name == BASE_NAME

    def parse(self, name: str, entry, where: str, earlier: list[MethodSpec]) -> MethodSpec:
        if entry:
            raise ValueError(f"{where}: the base method is the unedited model and takes no settings")
        return MethodSpec(name, self.kind, None)

    def seeded(self, spec: MethodSpec) -> bool:
        return False
