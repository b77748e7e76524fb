"""Type and range checks of the config dataclasses, in one place.

Every config of :mod:`lsi_ml` (:class:`~lsi_ml.training.config.TrainConfig`,
:class:`~lsi_ml.latent.probe_training.ProbeConfig`,
:class:`~lsi_ml.baselines.image_probes.ImageProbeConfig`,
:class:`~lsi_ml.baselines.image_reconstruction.ImageReconConfig`,
:class:`~lsi_ml.latent.losses.LossWeights`)
calls :func:`check_fields` first thing in its ``__post_init__``.  It checks each field's
value against the field's annotation, so a TOML typo fails loudly instead of being
coerced:

* ``bool``: a real ``True``/``False`` (``"no"`` or ``1`` are refused: ``bool("no")`` is
  True);
* ``int``: an integer (``4.7``, ``"64"`` and ``True`` are refused; NumPy integers become
  ``int``);
* ``float``: any real number but a bool (ints and NumPy floats become ``float``);
* ``str``; ``X | None`` (None allowed); ``Literal[...]``; ``tuple[int, ...]`` (a list or
  tuple of ints, stored as a tuple); ``dict`` (a table); any class (an instance of it);

then the field's :class:`Rule`, if any (bounds ``ge``/``gt``/``le``, ``multiple_of``,
``choices``; floats must also be finite).  Errors are one :class:`ConfigError` line:
``config: steps = 4.7 must be an int``.
"""

from __future__ import annotations

import functools
import math
import numbers
import types
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from lsi_hw.errors import ConfigError

__all__ = ["Rule", "check_fields", "describe", "show_value"]

_NO = object()  # "the value does not conform" (None is a legal value)


@dataclass(frozen=True)
class Rule:
    """Allowed values of one config field (beyond its type).

    Attributes
    ----------
    ge, gt, le : float or None
        Inclusive lower, exclusive lower and inclusive upper bound.
    multiple_of : int or None
        The value must be a multiple of this.
    choices : tuple or None
        The value must be one of these.
    why : str
        Reason shown after the message, e.g. ``"SynthFace renders 32 px or more"``.
    """

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    multiple_of: int | None = None
    choices: tuple[Any, ...] | None = None
    why: str = ""

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value`` (``"must be >= 1"``), or None when it is allowed."""
        if value is None:
            return None
        if self.choices is not None:
            if value not in self.choices:
                return "must be one of " + ", ".join(show_value(c) for c in self.choices)
            return None
        if not isinstance(value, numbers.Real):
            return None  # the type check has already spoken
        bounds = []
        if self.ge is not None:
            bounds.append(f">= {_num(self.ge)}")
        if self.gt is not None:
            bounds.append(f"> {_num(self.gt)}")
        if self.le is not None:
            bounds.append(f"<= {_num(self.le)}")
        finite = math.isfinite(value)
        ok = (finite
              and (self.ge is None or value >= self.ge)
              and (self.gt is None or value > self.gt)
              and (self.le is None or value <= self.le))
        if not ok:
            needs = " and ".join(bounds)
            if isinstance(value, float):
                return f"must be finite{' and ' + needs if needs else ''}"
            return f"must be {needs}"
        if self.multiple_of and value % self.multiple_of:
            return f"must be a multiple of {self.multiple_of}"
        return None


def _num(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def show_value(value: Any) -> str:
    """A value as a user wrote it in TOML: strings in double quotes, others by repr."""
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """Resolved annotations of a dataclass (``from __future__ import annotations``)."""
    return get_type_hints(cls)


def _is_union(origin: Any) -> bool:
    return origin is Union or origin is types.UnionType


def _conform(value: Any, hint: Any) -> Any:
    """``value`` as the field stores it, or ``_NO`` when it does not fit ``hint``."""
    if hint is Any:
        return value
    if hint is type(None):
        return None if value is None else _NO
    origin = get_origin(hint)
    if _is_union(origin):
        for arg in get_args(hint):
            got = _conform(value, arg)
            if got is not _NO:
                return got
        return _NO
    if origin is Literal:
        # ``True == 1``: compare types too
        allowed = any(type(value) is type(a) and value == a for a in get_args(hint))
        return value if allowed else _NO
    if hint is bool:
        return value if isinstance(value, bool) else _NO
    if hint is int:
        if isinstance(value, numbers.Integral) and not _is_bool(value):
            return int(value)
        return _NO
    if hint is float:
        if isinstance(value, numbers.Real) and not _is_bool(value):
            return float(value)
        return _NO
    if origin is tuple:
        args = get_args(hint)
        if not isinstance(value, (list, tuple)):
            return _NO
        if len(args) == 2 and args[1] is Ellipsis:
            items = [_conform(v, args[0]) for v in value]
        elif len(args) == len(value):
            items = [_conform(v, a) for v, a in zip(value, args, strict=True)]
        else:
            return _NO
        return _NO if any(v is _NO for v in items) else tuple(items)
    if origin is dict or hint is dict:
        return value if isinstance(value, dict) else _NO
    if origin is list or hint is list:
        return value if isinstance(value, list) else _NO
    if isinstance(hint, type):
        return value if isinstance(value, hint) else _NO
    return value  # a hint this checker does not understand: not checked


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool) or type(value).__name__ == "bool_"


def describe(hint: Any) -> str:
    """``an int``, ``a number``, ``a string or none``, ... for the error message."""
    if hint is Any:
        return "anything"
    if hint is type(None):
        return "none (leave it out)"
    origin = get_origin(hint)
    if _is_union(origin):
        return " or ".join(describe(a) for a in get_args(hint))
    if origin is Literal:
        return "one of " + ", ".join(show_value(a) for a in get_args(hint))
    names = {bool: "a bool (true or false)", int: "an int", float: "a number",
             str: "a string", dict: "a table", list: "a list"}
    if hint in names:
        return names[hint]
    if origin is tuple:
        args = get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            inner = describe(args[0]).split(" ", 1)[-1]
            return f"a list of {inner}s"
        return f"a list of {len(args)} values"
    if origin is dict:
        return "a table"
    if origin is list:
        return "a list"
    if isinstance(hint, type):
        return f"a {hint.__name__}"
    return str(hint)


def check_fields(config: Any, rules: Mapping[str, Rule] | None = None, *,
                 where: str = "config", prefix: str = "") -> None:
    """Check (and normalise) every field of the dataclass instance ``config``.

    Each value must fit its annotation (see the module notes); ints given to float fields
    become floats, NumPy integers ints, lists given to tuple fields tuples (written back
    with ``object.__setattr__``, so frozen dataclasses work).  Then ``rules[name]``, if
    any, must accept it.

    Parameters
    ----------
    config : dataclass instance
        The config, usually ``self`` in ``__post_init__``.
    rules : mapping of str to Rule, optional
        Allowed values per field name.
    where : str
        What the config is, for the message (``"config"``, ``"probe config"``).
    prefix : str
        Put before each field name in the message: a section of a nested config names
        its fields by their dotted key (``prefix="schedule."``: ``schedule.steps``).

    Raises
    ------
    ConfigError
        One line: ``{where}: {prefix}{name} = {value} must be ...``.
    """
    hints = _hints(type(config))
    rules = rules or {}
    unknown = sorted(set(rules) - {f.name for f in fields(config)})
    if unknown:  # a programming error in a config class
        raise TypeError(f"rules for unknown fields {unknown} of {type(config).__name__}")
    for f in fields(config):
        value = getattr(config, f.name)
        hint = hints.get(f.name, Any)
        got = _conform(value, hint)
        if got is _NO:
            raise ConfigError(f"{where}: {prefix}{f.name} = {show_value(value)} must be "
                              f"{describe(hint)}")
        if got is not value:
            object.__setattr__(config, f.name, got)
        rule = rules.get(f.name)
        problem = rule.problem(got) if rule is not None else None
        if problem:
            why = f" ({rule.why})" if rule is not None and rule.why else ""
            raise ConfigError(f"{where}: {prefix}{f.name} = {show_value(value)} {problem}{why}")
