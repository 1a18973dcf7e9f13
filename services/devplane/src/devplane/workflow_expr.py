"""The two small languages of an Argo template that devplane executes.

- Expressions (expr-lang, as Argo evaluates `depends` and `retryStrategy.expression`): `||`,
  `&&`, `!`, parentheses, `==`, `!=`, `matches` (a regular expression found anywhere in the
  string, like Go's regexp.MatchString) and `contains` between names and string literals
  ('...' or "..."). Anything else (numbers, function calls, `and`/`or`/`not`, `in`, ...) is
  refused when the template is loaded, naming what was found, rather than evaluated wrongly.
- Placeholders: `{{name}}` in strings, replaced in one pass (a value that itself contains
  `{{` is not expanded again). `{{=expression}}` is refused.

A `depends` expression names tasks, bare (`validate`, which means Succeeded, Skipped or
Daemoned, as in Argo) or with a result (`validate.Failed`); Argo evaluates it with `-` in task
names read as `_`, so names are compared that way here too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

__all__ = [
    "Expression",
    "ExpressionError",
    "placeholders",
    "substitute",
]

_TOKEN: Final = re.compile(
    r"""\s*(?:
        (?P<op>\|\||&&|==|!=|!|\(|\))
      | (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<name>[A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z_][A-Za-z0-9_-]*)*)
      | (?P<bad>\S+)
    )""",
    re.VERBOSE,
)
_WORD_OPERATORS: Final = frozenset({"matches", "contains"})
_UNSUPPORTED_WORDS: Final = frozenset(
    {"and", "or", "not", "in", "startsWith", "endsWith", "true", "false", "nil"}
)
_PLACEHOLDER: Final = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")

Value = str | bool
Resolve = Callable[[str], Value]


class ExpressionError(ValueError):
    """An expression or placeholder devplane cannot evaluate faithfully."""


@dataclass(frozen=True, slots=True)
class _Name:
    name: str


@dataclass(frozen=True, slots=True)
class _Literal:
    value: str


@dataclass(frozen=True, slots=True)
class _Not:
    operand: _Node


@dataclass(frozen=True, slots=True)
class _Binary:
    op: str
    left: _Node
    right: _Node


_Node = _Name | _Literal | _Not | _Binary


class Expression:
    """A parsed expression; `names` are the identifiers it reads."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._tokens = _tokenize(source)
        self._at = 0
        self.tree = self._or()
        if self._at != len(self._tokens):
            raise ExpressionError(f"{source!r}: unexpected {self._tokens[self._at][1]!r}")
        self.names = sorted(_names(self.tree))

    def evaluate(self, resolve: Resolve) -> bool:
        value = _evaluate(self.tree, resolve)
        if not isinstance(value, bool):
            raise ExpressionError(f"{self.source!r} is a string, not true or false")
        return value

    # -- recursive descent ---------------------------------------------------------------

    def _peek(self) -> tuple[str, str] | None:
        return self._tokens[self._at] if self._at < len(self._tokens) else None

    def _take(self) -> tuple[str, str]:
        token = self._peek()
        if token is None:
            raise ExpressionError(f"{self.source!r}: ends too soon")
        self._at += 1
        return token

    def _or(self) -> _Node:
        node = self._and()
        while self._peek() == ("op", "||"):
            self._take()
            node = _Binary("||", node, self._and())
        return node

    def _and(self) -> _Node:
        node = self._unary()
        while self._peek() == ("op", "&&"):
            self._take()
            node = _Binary("&&", node, self._unary())
        return node

    def _unary(self) -> _Node:
        if self._peek() == ("op", "!"):
            self._take()
            return _Not(self._unary())
        return self._comparison()

    def _comparison(self) -> _Node:
        left = self._primary()
        token = self._peek()
        if token is not None and (
            (token[0] == "op" and token[1] in ("==", "!="))
            or (token[0] == "name" and token[1] in _WORD_OPERATORS)
        ):
            self._take()
            return _Binary(token[1], left, self._primary())
        return left

    def _primary(self) -> _Node:
        kind, text = self._take()
        if (kind, text) == ("op", "("):
            node = self._or()
            if self._take() != ("op", ")"):
                raise ExpressionError(f"{self.source!r}: a '(' is not closed")
            return node
        if kind == "str":
            return _Literal(_unquote(text))
        if kind == "name" and text not in _WORD_OPERATORS:
            return _Name(text)
        raise ExpressionError(f"{self.source!r}: unexpected {text!r}")


def _tokenize(source: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(source):
        match = _TOKEN.match(source, position)
        if match is None or match.end() == position:
            break
        position = match.end()
        kind = match.lastgroup
        if kind is None:
            continue
        text = match.group(kind)
        if kind == "bad":
            raise ExpressionError(
                f"{source!r}: {text!r} is not supported here (devplane evaluates ||, &&, !, "
                "parentheses, ==, !=, matches and contains over names and quoted strings)"
            )
        if kind == "name" and text in _UNSUPPORTED_WORDS:
            raise ExpressionError(f"{source!r}: {text!r} is not supported here; use ||, && or !")
        tokens.append((kind, text))
    return tokens


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text[1:-1])


def _names(node: _Node) -> set[str]:
    if isinstance(node, _Name):
        return {node.name}
    if isinstance(node, _Not):
        return _names(node.operand)
    if isinstance(node, _Binary):
        return _names(node.left) | _names(node.right)
    return set()


def _evaluate(node: _Node, resolve: Resolve) -> Value:
    if isinstance(node, _Literal):
        return node.value
    if isinstance(node, _Name):
        return resolve(node.name)
    if isinstance(node, _Not):
        return not _boolean(_evaluate(node.operand, resolve), "!")
    if node.op == "||":
        return _boolean(_evaluate(node.left, resolve), "||") or _boolean(
            _evaluate(node.right, resolve), "||"
        )
    if node.op == "&&":
        return _boolean(_evaluate(node.left, resolve), "&&") and _boolean(
            _evaluate(node.right, resolve), "&&"
        )
    left, right = _evaluate(node.left, resolve), _evaluate(node.right, resolve)
    if node.op == "==":
        return left == right
    if node.op == "!=":
        return left != right
    if not isinstance(left, str) or not isinstance(right, str):
        raise ExpressionError(f"{node.op} needs two strings")
    if node.op == "matches":
        return re.search(right, left) is not None
    return right in left  # contains


def _boolean(value: Value, op: str) -> bool:
    if not isinstance(value, bool):
        raise ExpressionError(f"{op} needs true or false, got the string {value!r}")
    return value


def placeholders(text: str) -> list[str]:
    """The names of the `{{...}}` placeholders in `text`; `{{=...}}` is refused."""
    names = [match.group(1) for match in _PLACEHOLDER.finditer(text)]
    for name in names:
        if name.startswith("="):
            raise ExpressionError(
                f"{{{{{name}}}}}: expression placeholders ({{{{=...}}}}) are not supported"
            )
    return names


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Replace every placeholder of `text` by its value, in one pass; KeyError if one is
    missing (the caller says which)."""
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], text)
