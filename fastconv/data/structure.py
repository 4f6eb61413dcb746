"""Nested structures of arrays (an element of a Dataset, the x of a multi-input model): a leaf,
or a tuple/list/dict of structures. One set of helpers so the loop, the Dataset pipeline and
the cache all walk them the same way."""


def map_structure(fn, s):
    """`s` with `fn` applied to every leaf (None stays None)."""
    if s is None:
        return None
    if isinstance(s, (list, tuple)):
        return type(s)(map_structure(fn, v) for v in s)
    if isinstance(s, dict):
        return {k: map_structure(fn, v) for k, v in s.items()}
    return fn(s)


def leaves(s):
    """The leaves of `s` in a fixed order (dicts in insertion order); [] for None."""
    if s is None:
        return []
    if isinstance(s, (list, tuple)):
        return [a for v in s for a in leaves(v)]
    if isinstance(s, dict):
        return [a for v in s.values() for a in leaves(v)]
    return [s]


def describe(s):
    """A JSON-compatible description of the shape of the structure (not its values)."""
    if isinstance(s, (list, tuple)):
        return {"type": type(s).__name__, "items": [describe(v) for v in s]}
    if isinstance(s, dict):
        return {"type": "dict", "keys": [str(k) for k in s], "items": [describe(v) for v in s.values()]}
    return {"type": "leaf"}


def rebuild(description, values):
    """Inverse of (describe, leaves): the structure with the leaves taken in order from `values`."""
    return _build(description, iter(values))


def _build(d, it):
    # a plain recursive function: a nested closure that calls itself would form a reference
    # cycle holding the leaves, and large arrays would then wait for the cyclic collector
    kind = d.get("type")
    if kind == "leaf":
        return next(it)
    if kind in ("tuple", "list"):
        items = [_build(v, it) for v in d["items"]]
        return tuple(items) if kind == "tuple" else items
    if kind == "dict":
        return {k: _build(v, it) for k, v in zip(d["keys"], d["items"])}
    raise ValueError(f"malformed structure description: {d!r}")


def zip_structures(fn, structures):
    """Apply fn(list_of_leaves) leaf-wise across structures of the same shape (batching)."""
    first = structures[0]
    if isinstance(first, (list, tuple)):
        return type(first)(zip_structures(fn, [s[i] for s in structures]) for i in range(len(first)))
    if isinstance(first, dict):
        return {k: zip_structures(fn, [s[k] for s in structures]) for k in first}
    return fn(structures)
