"""The one registry mechanism behind environments, agents and presets.

A :class:`Registry` maps names (as typed on the command line) to entries.
An entry's target is either the object itself or an import string
``"package.module:attribute"`` resolved on first use, so a registry can list
PyTorch agents or the text-encoder environment without importing torch, and
no module has to import another just to make it register itself.
:func:`check_options` is the one place that checks user options against a
constructor's signature, for all three registries.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

__all__ = ["Entry", "Registry", "UnknownName", "Unavailable", "check_options", "resolve"]


class UnknownName(ValueError, KeyError):
    """A name that is not registered; the message lists the valid ones.

    A ValueError for callers and the command line, and a KeyError so that
    the registry behaves as a mapping (``registry.get(name)`` returns None).
    """

    def __str__(self) -> str:
        # KeyError would print the message in quotes.
        return str(self.args[0]) if self.args else ""


class Unavailable(ImportError, RuntimeError):
    """A registered name whose code cannot be imported (usually a missing optional extra).

    A RuntimeError as well, so that the command line reports it as a plain
    error message; the import error is chained as its cause.
    """


def resolve(target: Any, what: str = "target") -> Any:
    """Return ``target``, importing it first when it is a ``"module:attribute"`` string.

    Parameters
    ----------
    target : str or object
        An import string ``"package.module:attribute"`` (the attribute may be
        dotted) or any other object, returned as it is.
    what : str
        Name used in the error message.

    Raises
    ------
    ValueError
        If the string is not of the form ``"module:attribute"``.
    ImportError
        If the module cannot be imported or lacks the attribute; the original
        error is chained, never swallowed.
    """
    if not isinstance(target, str):
        return target
    module, sep, attr = target.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"{what}: expected 'package.module:attribute', got {target!r}")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise ImportError(f"{what}: {module!r} has no attribute {attr!r}") from exc
    return obj


@dataclass(frozen=True)
class Entry:
    """One registered name.

    Attributes
    ----------
    name : str
        Registry name.
    target : str or object
        The object, or ``"module:attribute"`` imported by :meth:`load`.
    description : str
        One line (or paragraph) for the listing commands.
    defaults : dict
        Options applied before the user's.
    """

    name: str
    target: Any
    description: str = ""
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def load(self) -> Any:
        """Import (if needed) and return the target.

        Raises
        ------
        Unavailable
            (an ImportError) If the target's module cannot be imported; the
            message carries the original one (with its install hint).
        """
        try:
            return resolve(self.target, f"{self.name!r}")
        except ImportError as exc:
            raise Unavailable(f"{self.name!r} needs {self.target}, which cannot be imported: {exc}",
                              name=exc.name) from exc


E = TypeVar("E", bound=Entry)


class Registry(Mapping[str, E], Generic[E]):
    """Names to entries, read like a dict.

    Parameters
    ----------
    kind : str
        What the entries are (``"environment"``, ``"agent"``, ``"preset"``),
        used in error messages.

    Notes
    -----
    Looking up an unknown name raises :class:`UnknownName` (a ValueError and
    a KeyError) listing every valid name. Entries are added with :meth:`add`
    (or the ``register_*`` functions) and removed with ``del`` or :meth:`pop`.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, E] = {}

    def add(self, entry: E, replace: bool = False) -> E:
        """Register ``entry`` under ``entry.name``.

        Parameters
        ----------
        entry : Entry
            What to register.
        replace : bool, default False
            Allow overwriting an existing name.

        Raises
        ------
        ValueError
            For an empty or non-string name, or a taken name without ``replace``.
        """
        name = entry.name
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} name must be a non-empty string, got {name!r}")
        if name in self._entries and not replace:
            raise ValueError(f"{self.kind} {name!r} is already registered (pass replace=True to overwrite)")
        self._entries[name] = entry
        return entry

    def remove(self, name: str) -> E:
        """Unregister ``name`` and return its entry.

        Raises
        ------
        ValueError
            For a name that is not registered (the message lists the valid ones).
        """
        entry = self[name]
        del self._entries[name]
        return entry

    def __getitem__(self, name: str) -> E:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownName(f"unknown {self.kind} {name!r}; known: {', '.join(sorted(self._entries))}") from None

    def __delitem__(self, name: str) -> None:
        self[name]  # raises UnknownName
        del self._entries[name]

    def pop(self, name: str, *default: Any) -> E | Any:
        """Unregister ``name`` and return its entry (or ``default`` when it is not registered)."""
        if len(default) > 1:
            raise TypeError(f"pop expected at most 2 arguments, got {1 + len(default)}")
        if name not in self and default:
            return default[0]
        entry = self[name]
        del self._entries[name]
        return entry

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {sorted(self._entries)})"


def _accepted_options(factory: Callable[..., Any]) -> set[str] | None:
    """Keyword names ``factory`` accepts, following ``**kwargs`` up a class's MRO; None if unknown."""
    if inspect.isclass(factory):
        targets = [c.__init__ for c in factory.__mro__ if "__init__" in vars(c)]
    else:
        targets = [factory]
    names: set[str] = set()
    for target in targets:
        try:
            params = inspect.signature(target).parameters
        except (TypeError, ValueError):  # builtins without a signature
            return None
        names |= {n for n, p in params.items()
                  if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
                  and not n.startswith("_") and n != "self"}
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return names
    return None


def check_options(factory: Callable[..., Any], options: Mapping[str, Any], what: str,
                  reserved: tuple[str, ...] = ()) -> None:
    """Raise ValueError naming any option that ``factory`` does not accept.

    Parameters
    ----------
    factory : callable
        A class (its ``__init__`` chain is followed through ``**kwargs``) or function.
    options : mapping
        Options the caller wants to pass.
    what : str
        Prefix of the error message (e.g. ``"agent 'ts'"``).
    reserved : tuple of str
        Names the caller sets itself, not accepted from ``options``.
    """
    allowed = _accepted_options(factory)
    bad_reserved = sorted(set(options) & set(reserved))
    if bad_reserved:
        raise ValueError(f"{what}: option(s) {', '.join(bad_reserved)} are set by the runner, not by the user")
    if allowed is None:
        return
    allowed -= set(reserved)
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"{what}: unknown option(s) {', '.join(unknown)}; "
                         f"valid options: {', '.join(sorted(allowed))}")
