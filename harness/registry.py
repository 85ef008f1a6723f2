"""Named registries with did-you-mean errors and lazily loaded entry points."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from robustness_harness.errors import UnknownNameError

T = TypeVar("T")


def did_you_mean(name: str, known: list[str] | tuple[str, ...]) -> str:
    """A ``did you mean 'x'?`` phrase for the closest known name, or ``''``.

    Case differences count least: ``mAp`` suggests ``map`` before ``mpc``.
    """
    by_lower = {k.lower(): k for k in known}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
    return f"did you mean '{by_lower[close[0]]}'? " if close else ""


class Registry(Generic[T]):
    """A mapping from names to objects, filled by ``register`` or by entry points.

    ``kind`` names what the registry holds (``"metric"``, ``"model"``) in errors;
    ``group`` is an optional entry-point group that is loaded on first lookup, so
    plug-in packages (and ``models/``) register without the core importing them.
    """

    def __init__(self, kind: str, group: str | None = None) -> None:
        self.kind = kind
        self.group = group
        self._items: dict[str, T] = {}
        self._entry_points_loaded = group is None

    def register(self, name: str, item: T, *, replace: bool = False) -> T:
        """Add ``item`` under ``name``; a second registration of a name is an error."""
        if name in self._items and not replace and self._items[name] is not item:
            raise ValueError(f"{self.kind} '{name}' is already registered")
        self._items[name] = item
        return item

    def decorator(self, name: str) -> Callable[[T], T]:
        """``@registry.decorator("name")`` registers the decorated object."""

        def wrap(item: T) -> T:
            return self.register(name, item)

        return wrap

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for ep in entry_points(group=self.group or ""):
            if ep.name not in self._items:
                self._items[ep.name] = _LazyEntryPoint(ep)  # type: ignore[assignment]

    def names(self) -> list[str]:
        """Registered names, sorted."""
        self._load_entry_points()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        self._load_entry_points()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str, *, file: str | None = None, field: str | None = None) -> T:
        """The item called ``name``; an unknown name raises with a did-you-mean."""
        self._load_entry_points()
        if name not in self._items:
            known = self.names()
            raise UnknownNameError(
                f"unknown {self.kind} '{name}'",
                file=file,
                field=field,
                hint=f"{did_you_mean(name, known)}known {self.kind}s: {', '.join(known) or 'none'}",
            )
        item = self._items[name]
        if isinstance(item, _LazyEntryPoint):
            item = self._items[name] = item.load()
        return item


class _LazyEntryPoint:
    """An entry point that is imported only when its name is looked up."""

    def __init__(self, ep: object) -> None:
        self.ep = ep

    def load(self) -> object:
        return self.ep.load()  # type: ignore[attr-defined]
