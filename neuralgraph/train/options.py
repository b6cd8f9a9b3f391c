"""Typed ``KEY=VALUE`` options: values are read and checked by the annotated type of their target.

The command line gives model hyper-parameters (``--model-arg``) and augmentation
fields (``--augment``) as text; the Python API gives them as values
(``TrainConfig(model_kwargs=..., augment=...)``). Both go through the type
annotation of the constructor argument or dataclass field they set, so the
text ``false`` is ``False`` for a ``bool`` and the string ``"false"`` given to a
``bool`` from Python is refused, instead of both being truthy.

Understood annotations: ``bool`` (text: true/false/yes/no/1/0, any case),
``int`` (not ``8.5``, not a bool), ``float`` (finite), ``str``, ``Literal[...]``,
``Optional`` / ``X | None`` (text: ``none``), other ``Union`` s (first
alternative that fits), ``tuple[...]`` / ``Sequence[...]`` / ``list[...]``
(text: ``64,64``, ``(64, 64)`` or ``[64, 64]``; one element ``64``), ``dict``
and ``Any``. Errors are ``ValueError`` s of one line naming the key and what it
accepts.

Example::

    >>> hints = {"permute": bool, "noise_std": float}
    >>> parse_options([("permute", "false"), ("noise_std", "0.01")], hints, owner="augment")
    {'permute': False, 'noise_std': 0.01}
"""
from __future__ import annotations

import ast
import collections.abc as cabc
import dataclasses
import inspect
import math
import numbers
import types
import typing
from typing import Any, Iterable, Literal, Mapping, Union

__all__ = ["describe", "parse_value", "check_value", "parse_options", "check_options", "dataclass_hints",
           "signature_hints"]

_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")
_NONE = ("none", "null")
_SEQUENCES = (tuple, list, cabc.Sequence, typing.Sequence)


class _Mismatch(Exception):
    """Internal: a value does not fit a type (turned into one ValueError naming the key)."""


# ----------------------------------------------------------------------------
# type descriptions
# ----------------------------------------------------------------------------

def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (Union, types.UnionType)


def describe(hint: Any) -> str:
    """What ``hint`` accepts, in words (``'an int'``, ``"one of 'mean', 'sum'"``, ...)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool:
        return "a bool (true/false, yes/no, 1/0)"
    if hint is int:
        return "an int"
    if hint is float:
        return "a finite float"
    if hint is str:
        return "a string"
    if hint is Any or hint is inspect.Parameter.empty:
        return "any value"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if _is_union(hint):
        alternatives = [describe(a) for a in args if a is not type(None)]
        text = " or ".join(alternatives)
        return f"{text} or none" if type(None) in args else text
    if origin in _SEQUENCES:
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"a tuple of {len(args)} ({', '.join(describe(a) for a in args)}), e.g. 1,2"
        element = describe(args[0]) if args else "any value"
        return f"a sequence of {element.removeprefix('an ').removeprefix('a ')} values, e.g. 64,64"
    if origin in (dict, cabc.Mapping) or hint in (dict, cabc.Mapping):
        return "a dict"
    return f"a {getattr(hint, '__name__', hint)}"


# ----------------------------------------------------------------------------
# Python values
# ----------------------------------------------------------------------------

def _check(value: Any, hint: Any) -> Any:
    """``value`` if it fits ``hint`` (numbers normalised to the hint's type), else ``_Mismatch``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is inspect.Parameter.empty:
        return value
    if hint is type(None):
        if value is None:
            return None
        raise _Mismatch
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if hint is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
        raise _Mismatch
    if hint is float:
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        raise _Mismatch
    if origin is Literal:
        for choice in args:
            if type(value) is type(choice) and value == choice:
                return value
        raise _Mismatch
    if _is_union(hint):
        for alternative in args:
            try:
                return _check(value, alternative)
            except _Mismatch:
                continue
        raise _Mismatch
    if origin in _SEQUENCES or hint in (tuple, list):
        if not isinstance(value, (tuple, list)):
            raise _Mismatch
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise _Mismatch
            return type(value)(_check(v, a) for v, a in zip(value, args))
        element = args[0] if args else Any
        return type(value)(_check(v, element) for v in value)
    if origin in (dict, cabc.Mapping) or hint in (dict, cabc.Mapping):
        if not isinstance(value, Mapping):
            raise _Mismatch
        return value
    if isinstance(hint, type):
        if isinstance(value, hint):
            return value
        raise _Mismatch
    return value                                   # an annotation we cannot check (e.g. a Protocol)


def check_value(key: str, value: Any, hint: Any, *, where: str = "option") -> Any:
    """``value`` checked against ``hint``; a one-line ``ValueError`` naming ``key`` if it does not fit.

    Ints are accepted for floats (and returned as floats); strings are never
    converted (``"false"`` is not a bool here, unlike on the command line).
    """
    try:
        return _check(value, hint)
    except _Mismatch:
        expected = "a bool (True or False)" if hint is bool else describe(hint)
        got = type(value).__name__
        raise ValueError(f"{where} {key}={value!r}: expected {expected}"
                         + ("" if got in expected else f", got {got}")) from None


# ----------------------------------------------------------------------------
# command-line text
# ----------------------------------------------------------------------------

def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def _split_sequence(text: str) -> list[str]:
    text = text.strip()
    if len(text) >= 2 and (text[0], text[-1]) in (("(", ")"), ("[", "]")):
        text = text[1:-1]
    parts = [p.strip() for p in text.split(",")]
    if parts and parts[-1] == "":                  # "(32,)" and "32," are one element
        parts.pop()
    if any(p == "" for p in parts):
        raise _Mismatch
    return parts


def _parse(text: str, hint: Any) -> Any:
    """``text`` read as ``hint`` (see the module docstring), else ``_Mismatch``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    stripped = text.strip()
    if hint is Any or hint is inspect.Parameter.empty:
        try:
            return ast.literal_eval(stripped)
        except (ValueError, SyntaxError):
            return stripped                        # a bare word is a string
    if hint is type(None):
        if stripped.lower() in _NONE:
            return None
        raise _Mismatch
    if hint is bool:
        word = _unquote(stripped).lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
        raise _Mismatch
    if hint is int:
        try:
            return int(stripped)
        except ValueError:
            raise _Mismatch from None
    if hint is float:
        try:
            value = float(stripped)
        except ValueError:
            raise _Mismatch from None
        if not math.isfinite(value):
            raise _Mismatch
        return value
    if hint is str:
        return _unquote(stripped)
    if origin is Literal:
        word = _unquote(stripped)
        for choice in args:
            if isinstance(choice, str) and word == choice:
                return choice
            if not isinstance(choice, str):
                try:
                    if _parse(word, type(choice)) == choice:
                        return choice
                except _Mismatch:
                    pass
        raise _Mismatch
    if _is_union(hint):
        alternatives = [a for a in args if a is not type(None)]
        if type(None) in args and stripped.lower() in _NONE:
            return None
        for alternative in alternatives:
            try:
                return _parse(text, alternative)
            except _Mismatch:
                continue
        raise _Mismatch
    if origin in _SEQUENCES or hint in (tuple, list):
        parts = _split_sequence(stripped)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(parts) != len(args):
                raise _Mismatch
            return tuple(_parse(p, a) for p, a in zip(parts, args))
        element = args[0] if args else Any
        return tuple(_parse(p, element) for p in parts)
    try:                                           # dicts and classes: a Python literal of the right type
        value = ast.literal_eval(stripped)
    except (ValueError, SyntaxError):
        raise _Mismatch from None
    return _check(value, hint)


def parse_value(key: str, text: str, hint: Any, *, where: str = "option") -> Any:
    """Command-line ``text`` read as ``hint``; a one-line ``ValueError`` naming ``key`` if it cannot be."""
    try:
        return _parse(text, hint)
    except _Mismatch:
        raise ValueError(f"{where} {key}={text!r}: expected {describe(hint)}") from None


# ----------------------------------------------------------------------------
# several options
# ----------------------------------------------------------------------------

def _known(key: str, hints: Mapping[str, Any], owner: str, noun: str) -> None:
    if key not in hints:
        raise ValueError(f"{owner} has no {noun} {key!r}; accepted: {', '.join(sorted(hints))}")


def parse_options(pairs: Iterable[tuple[str, str]], hints: Mapping[str, Any], *, owner: str = "this command",
                  noun: str = "option") -> dict[str, Any]:
    """``{key: value}`` from command-line ``(key, text)`` pairs, each read by ``hints[key]``.

    Unknown keys and keys given twice are ``ValueError`` s naming ``owner`` (``"model 'nggnn'"``)
    and listing the accepted keys.
    """
    out: dict[str, Any] = {}
    for key, text in pairs:
        _known(key, hints, owner, noun)
        if key in out:
            raise ValueError(f"{owner}: {noun} {key} is given twice; give it once")
        out[key] = parse_value(key, text, hints[key], where=f"{owner}: {noun}")
    return out


def check_options(values: Mapping[str, Any], hints: Mapping[str, Any], *, owner: str = "this call",
                  noun: str = "option") -> dict[str, Any]:
    """``values`` checked key by key against ``hints`` (unknown keys are refused, listing the accepted)."""
    if not isinstance(values, Mapping):
        raise ValueError(f"{owner}: expected a dict of {{{noun}: value}}, got {type(values).__name__}")
    for key in values:
        _known(key, hints, owner, noun)
    return {key: check_value(key, value, hints[key], where=f"{owner}: {noun}") for key, value in values.items()}


def _resolved_hints(obj: Any) -> dict[str, Any]:
    """``typing.get_type_hints`` (strings of ``from __future__ import annotations`` resolved); ``{}`` if unresolvable."""
    try:
        return typing.get_type_hints(obj)
    except Exception:  # noqa: BLE001 - an annotation naming something undefined: fall back per argument
        return {}


def dataclass_hints(cls: type) -> dict[str, Any]:
    """``{field: annotation}`` of a dataclass (``init`` fields only)."""
    hints = _resolved_hints(cls)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls) if f.init}


def signature_hints(function: Any) -> dict[str, Any]:
    """``{argument: annotation}`` of a function's named arguments.

    An argument without a usable annotation takes the type of its default
    (``Any`` when there is neither).
    """
    hints = _resolved_hints(function)
    out = {}
    for name, p in inspect.signature(function).parameters.items():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or name == "self":
            continue
        hint = hints.get(name)
        if hint is None:
            hint = type(p.default) if p.default not in (p.empty, None) else Any
        out[name] = hint
    return out
