"""The small grammar of settings: ``KEY=VALUE`` pairs and ``NAME[:VALUE][,KEY=VALUE...]`` specs.

Values are JSON when they parse (numbers, booleans, null, lists, dicts), else strings, so
``exact=false`` is the boolean False and ``mapping=cifar10`` the string "cifar10".
"""

from __future__ import annotations

import json


def parse_value(text: str):
    """A command-line value: JSON when it parses, else the string itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_kv(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` -> (key with dashes as underscores, parsed value)."""
    key, eq, value = text.partition("=")
    if not eq or not key.strip():
        raise ValueError(f"expected KEY=VALUE, got {text!r}")
    return key.strip().replace("-", "_"), parse_value(value)


def parse_kvs(items) -> dict:
    """A list of ``KEY=VALUE`` strings as a dict (None: empty)."""
    return dict(parse_kv(item) for item in items or [])


def parse_spec(spec: str, first: str | None = "rate") -> tuple[str, dict]:
    """``NAME[:VALUE][,KEY=VALUE...]`` -> (name, params); ``VALUE`` fills the parameter ``first``
    (``first=None``: the grammar is ``NAME[,KEY=VALUE...]``, as for losses: ``jal-ce,a=auto``, where a
    bare ``auto`` stands for ``auto=true``: ``nce+rce,auto`` searches every parameter)."""
    head, *pairs = str(spec).split(",")
    name, _, value = head.partition(":")
    grammar = f"NAME[:{first.upper()}][,KEY=VALUE...]" if first else "NAME[,KEY=VALUE...]"
    if not name.strip() or (value and first is None):
        raise ValueError(f"malformed spec {spec!r}: expected {grammar}")
    params = {}
    if value:
        params[first] = parse_value(value)
        if first == "rate" and (isinstance(params[first], bool) or not isinstance(params[first], (int, float))):
            raise ValueError(f"malformed spec {spec!r}: rate {value!r} is not a number")
    for pair in pairs:
        if first is None and pair.strip() == "auto":
            params["auto"] = True
            continue
        key, eq, val = pair.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"malformed spec {spec!r}: {pair!r} is not KEY=VALUE")
        params[key.strip()] = parse_value(val)
    return name.strip(), params


def format_spec(name: str, params: dict, first: str = "rate") -> str:
    """The canonical spec string: ``NAME[:FIRST][,KEY=VALUE...]`` with the other keys sorted."""
    params = dict(params)
    head = name + (f":{json.dumps(params.pop(first))}" if first in params else "")
    return ",".join([head] + [f"{k}={_format_value(v)}" for k, v in sorted(params.items())])


def _format_value(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
