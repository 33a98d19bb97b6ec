"""A registry of plug-ins (peft's `register_peft_method` pattern): one instance per registered class, by its name."""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> the one instance of each class registered under it (`attribute` names the class's name field);
    `noun` says what the entries are in every error."""

    def __init__(self, noun: str, attribute: str):
        self.noun = noun
        self.attribute = attribute
        self.entries: dict[str, T] = {}

    def register(self, cls: type[T]) -> type[T]:
        """Class decorator: registers one instance of `cls` under its name; a name registered twice is an error."""
        name = getattr(cls, self.attribute)
        if name in self.entries:
            raise ValueError(f"{self.noun} {name!r} is registered twice")
        self.entries[name] = cls()
        return cls

    def names(self) -> tuple[str, ...]:
        return tuple(self.entries)

    def __getitem__(self, name: str) -> T:
        if name not in self.entries:
            raise ValueError(f"unknown {self.noun} {name!r}; expected one of {self.names()}")
        return self.entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def __iter__(self):
        return iter(self.entries)

    def values(self):
        return self.entries.values()

    def unregister(self, name: str) -> None:
        """Drops `name` (a plug-in registered for a while, as tests do)."""
        del self.entries[name]
