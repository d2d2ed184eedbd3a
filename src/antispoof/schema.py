"""The vocabulary of params validation: a `Field` per leaf key (types, range, choices, extra check).
params.py assembles the schema; model modules declare their own sections with it."""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any, Callable

from antispoof.errors import ParamError


@dataclass(frozen=True)
class Field:
    """One leaf of the schema: accepted types, optional range/choices, nullability."""

    types: tuple[type, ...]
    min: float | None = None
    max: float | None = None
    choices: tuple[Any, ...] | None = None
    nullable: bool = False
    items: "Field | None" = None  # element spec for lists
    check: Callable[[Any, str], None] | None = None  # extra validation (raises ParamError)

    def validate(self, value: Any, key: str) -> None:
        if value is None:
            if self.nullable:
                return
            raise ParamError(key, "must not be empty (null)")
        # bool is a subclass of int: accept it only where bool is asked for
        ok = isinstance(value, self.types) and not (isinstance(value, bool) and bool not in self.types)
        if not ok:
            want = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in self.types)
            raise ParamError(key, f"expected {want}, got {_TYPE_NAMES.get(type(value), type(value).__name__)} {value!r}")
        if self.choices is not None and value not in self.choices:
            suggestion = closest(str(value), [str(c) for c in self.choices])
            raise ParamError(key, f"{value!r} is not one of {', '.join(map(str, self.choices))}{suggestion}")
        if isinstance(value, float) and not math.isfinite(value):  # NaN passes every range check below
            raise ParamError(key, f"must be a finite number, got {value!r}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if self.min is not None and value < self.min:
                raise ParamError(key, f"{value!r} is below the minimum {self.min}")
            if self.max is not None and value > self.max:
                raise ParamError(key, f"{value!r} is above the maximum {self.max}")
        if isinstance(value, list) and self.items is not None:
            for i, item in enumerate(value):
                self.items.validate(item, f"{key}[{i}]")
        if self.check is not None:
            self.check(value, key)


_TYPE_NAMES = {int: "integer", float: "number", str: "string", bool: "true/false", list: "list", dict: "mapping", type(None): "null"}
INT = (int,)
NUM = (int, float)


def closest(word: str, options: list[str]) -> str:
    match = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def closest(word: str, options: list[str]) -> str:
    match = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def length_between(lo: int, hi: int) -> Callable[[list, str], None]:
    """A `check` for list fields: between lo and hi entries."""
    def check(value: list, key: str) -> None:
        if not lo <= len(value) <= hi:
            raise ParamError(key, f"must have {lo} to {hi} entries, got {len(value)}")
    return check
