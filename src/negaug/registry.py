"""A tiny registry: one per kind of component (NDA transforms, losses, models, datasets, metrics),
and the checks every component runs on its option values.

    TRANSFORMS = Registry("NDA transform")
    @TRANSFORMS.register("jigsaw")
    class Jigsaw: ...
    TRANSFORMS.build("jigsaw", k=2)

Unknown names and unknown options raise ``ValueError`` naming the valid ones, so a typo in a
config or a call never passes silently. A factory's options are read from its signature when it is
registered; a factory taking ``**kwargs`` (other than the generic ``*args, **kwargs`` of a base such
as ``nn.Module``, which means "no options") is refused there, since it would let any typo through.

Option values are checked by each component with ``check_int``, ``check_float``, ``check_bool``,
``check_choice`` and ``check_list``: a wrong type, a non-finite number or a value out of range is a
one-line ``ValueError`` naming the option, never a ``TypeError`` or an overflow deep inside torch.
"""
from __future__ import annotations

import difflib
import inspect
import math
import numbers
import reprlib
from collections.abc import Callable, Iterable
from typing import Any

_SHORT = reprlib.Repr()
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlist, _SHORT.maxtuple, _SHORT.maxdict = 40, 40, 4, 4, 4


def closest(name: str, valid: Iterable[str]) -> str:
    """' (did you mean X?)' for the nearest valid name, or '' when nothing is close."""
    match = difflib.get_close_matches(str(name), list(valid), n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


def short(value: Any) -> str:
    """A one-line, bounded repr of `value` for error messages (a huge list or a tensor stays short)."""
    return " ".join(_SHORT.repr(value).split())


def check_int(name: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    """`value` as an int: an integer (not a bool, a float or a string) with low <= value <= high."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name}={short(value)} must be an integer{_int_range(low, high)}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name}={value} must be an integer{_int_range(low, high)}")
    return value


def _int_range(low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return f" in {low}..{high}"
    if low is not None:
        return f" >= {low}"
    return f" <= {high}" if high is not None else ""


def check_float(name: str, value: Any, low: float | None = None, high: float | None = None, *,
                open_low: bool = False, open_high: bool = False) -> float:
    """`value` as a float: a finite real number (an int or a float; not a bool, a string, NaN or
    inf) inside [low, high], the ends excluded with `open_low` / `open_high`."""
    what = _float_range(low, high, open_low, open_high)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name}={short(value)} must be a finite number{what}")
    try:
        number = float(value)
    except OverflowError:  # an int beyond the float range
        number = math.copysign(math.inf, value)
    too_low = low is not None and (number <= low if open_low else number < low)
    too_high = high is not None and (number >= high if open_high else number > high)
    if not math.isfinite(number) or too_low or too_high:
        raise ValueError(f"{name}={short(value)} must be a finite number{what}")
    return number


def _float_range(low: float | None, high: float | None, open_low: bool, open_high: bool) -> str:
    if low is not None and high is not None:
        return f" in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
    if low is not None:
        return f" {'>' if open_low else '>='} {low:g}"
    if high is not None:
        return f" {'<' if open_high else '<='} {high:g}"
    return ""


def check_bool(name: str, value: Any) -> bool:
    """`value` if it is a real bool: the string 'no' or the number 0 is an error, not a truth value."""
    if not isinstance(value, bool):
        raise ValueError(f"{name}={short(value)} must be true or false (a boolean)")
    return value


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """`value` if it is one of `choices` (compared by type too, so True is not 1)."""
    choices = tuple(choices)
    if not any(type(value) is type(c) and value == c for c in choices):
        hint = closest(value, [str(c) for c in choices]) if isinstance(value, str) else ""
        raise ValueError(f"{name}={short(value)} is not one of {', '.join(map(str, choices))}{hint}")
    return value


def check_list(name: str, value: Any, length: int | None = None, min_length: int = 0) -> list:
    """`value` as a list: a list or a tuple (not a string, a dict or a scalar) of `length` items
    (when given) and at least `min_length`."""
    if not isinstance(value, (list, tuple)) or len(value) < min_length or (length is not None and len(value) != length):
        size = f"{length}" if length is not None else f"at least {min_length}" if min_length else "any number of"
        raise ValueError(f"{name}={short(value)} must be a list of {size} items")
    return list(value)


def accepted_options(factory: Callable[..., Any]) -> dict[str, Any]:
    """The keyword options `factory` accepts, name -> default (``inspect.Parameter.empty`` when
    required). A class that keeps a base's generic ``__init__(*args, **kwargs)`` (``nn.Module``'s,
    ``object``'s) accepts none; any other ``**kwargs`` is refused (TypeError, a programming error)."""
    if isinstance(factory, type):
        owner = next(c for c in factory.__mro__ if "__init__" in vars(c))
        if owner.__module__ in ("builtins", "torch") or owner.__module__.startswith("torch."):
            return {}
    parameters = inspect.signature(factory).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        raise TypeError(f"{getattr(factory, '__qualname__', factory)} takes **kwargs: a registered factory "
                        "lists its options, so that a misspelt one is an error")
    return {p.name: p.default for p in parameters if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Callable[..., Any]] = {}
        self._options: dict[str, dict[str, Any]] = {}

    def register(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def decorator(factory: Callable[..., Any]) -> Callable[..., Any]:
            assert name not in self._entries, f"{self.kind} '{name}' registered twice"
            self._options[name] = accepted_options(factory)
            self._entries[name] = factory
            return factory

        return decorator

    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str) -> Callable[..., Any]:
        if not isinstance(name, str) or name not in self._entries:
            raise ValueError(
                f"unknown {self.kind} {short(name)}{closest(name, self._entries)}; "
                f"valid: {', '.join(self.names())}"
            )
        return self._entries[name]

    def options(self, name: str) -> dict[str, Any]:
        """The keyword options of ``name`` with their defaults (``inspect.Parameter.empty`` if required)."""
        self.get(name)
        return dict(self._options[name])

    def check_options(self, name: str, options: dict[str, Any]) -> None:
        """ValueError for an option ``name`` does not take (naming the closest valid one) or a
        required one missing."""
        valid = self.options(name)
        for key in options:
            if key not in valid:
                raise ValueError(
                    f"unknown option {short(key)} for {self.kind} '{name}'{closest(key, valid)}; "
                    f"valid: {', '.join(sorted(valid)) or '(none)'}"
                )
        missing = [key for key, default in valid.items() if default is inspect.Parameter.empty and key not in options]
        if missing:
            raise ValueError(f"{self.kind} '{name}' needs option {', '.join(missing)}")

    def build(self, name: str, **options: Any) -> Any:
        self.check_options(name, options)
        return self.get(name)(**options)

    def __contains__(self, name: str) -> bool:
        return isinstance(name, str) and name in self._entries
