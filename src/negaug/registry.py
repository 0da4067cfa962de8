"""A tiny registry: one per kind of component (NDA transforms, losses, models, datasets, metrics).

    TRANSFORMS = Registry("NDA transform")
    @TRANSFORMS.register("jigsaw")
    class Jigsaw: ...
    TRANSFORMS.build("jigsaw", k=2)

Unknown names and unknown options raise ``ValueError`` naming the valid ones, so a typo in a
config or a call never passes silently.
"""
from __future__ import annotations

import difflib
import inspect
from typing import Any, Callable, Iterable


def closest(name: str, valid: Iterable[str]) -> str:
    """' (did you mean X?)' for the nearest valid name, or '' when nothing is close."""
    match = difflib.get_close_matches(str(name), list(valid), n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def decorator(factory: Callable[..., Any]) -> Callable[..., Any]:
            assert name not in self._entries, f"{self.kind} '{name}' registered twice"
            self._entries[name] = factory
            return factory

        return decorator

    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str) -> Callable[..., Any]:
        if name not in self._entries:
            raise ValueError(
                f"unknown {self.kind} '{name}'{closest(name, self._entries)}; "
                f"valid: {', '.join(self.names())}"
            )
        return self._entries[name]

    def options(self, name: str) -> dict[str, Any]:
        """The keyword options of ``name`` with their defaults (``inspect.Parameter.empty`` if required)."""
        sig = inspect.signature(self.get(name))
        return {
            p.name: p.default
            for p in sig.parameters.values()
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        }

    def check_options(self, name: str, options: dict[str, Any]) -> None:
        factory = self.get(name)
        params = inspect.signature(factory).parameters
        if any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return
        valid = self.options(name)
        for key in options:
            if key not in valid:
                raise ValueError(
                    f"unknown option '{key}' for {self.kind} '{name}'{closest(key, valid)}; "
                    f"valid: {', '.join(sorted(valid)) or '(none)'}"
                )

    def build(self, name: str, **options: Any) -> Any:
        self.check_options(name, options)
        return self.get(name)(**options)

    def __contains__(self, name: str) -> bool:
        return name in self._entries
