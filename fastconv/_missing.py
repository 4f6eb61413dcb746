"""The one module-level ``__getattr__`` every public fastconv module uses: lazy submodules, and
a clear error for a Keras name fastconv lacks.

`import fastconv as keras` is the contract, so a Keras script reaching for a name we do not
have must learn that *fastconv* lacks it (and what to use instead), not see a bare
"module has no attribute" that reads like a typo in their own code. Private and dunder names
(``__wrapped__``, ``_pytestfixturefunction``, ``__path__``...) are probed by hasattr in
pytest, doctest, inspect and our own code: they get a plain AttributeError at once.

>>> import fastconv
>>> fastconv.layers.Conv2d
Traceback (most recent call last):
...
AttributeError: fastconv.layers does not provide 'Conv2d'. Did you mean 'Conv2D'?
"""
import dis
import importlib
import sys
import types

# TensorFlow names Keras tutorials reach through `keras`/`tf`, with what plays their part here.
TENSORFLOW_ONLY = {
    "GradientTape": "fastconv records gradients itself: build the loss from fastconv Tensors "
                    "(fastconv.Variable / Tensor(..., requires_grad=True)), call loss.backward() and "
                    "read .grad; or override Model.train_step",
    "config": "fastconv has no tf.config: choose the device with fastconv.set_backend('cpu' | 'cuda') "
              "and threads with fastconv.set_num_threads(n)",
    "function": "fastconv has no graph compilation (tf.function); call the Python function directly",
    "mixed_precision": "fastconv computes in float32 (float64 accepted by the numpy backend); "
                       "mixed-precision policies are not provided",
    "device": "fastconv has no device scopes; use fastconv.set_backend('cpu' | 'cuda')",
}

# tf.config's everyday calls, reached as keras.config.X: fastconv.config is our own module.
CONFIG_HINTS = dict.fromkeys(
    ("list_physical_devices", "list_logical_devices", "set_visible_devices", "experimental",
     "threading", "get_visible_devices"),
    "fastconv has no tf.config: fastconv.cuda.is_available() says whether a GPU can be used, "
    "fastconv.set_backend('cpu' | 'cuda') chooses it, fastconv.set_num_threads(n) sets CPU threads")

# Keras 2 / TF 2.x sub-namespaces tutorials still type, by module.
MODULE_HINTS = {
    "fastconv.optimizers": {"legacy": "fastconv has one set of optimizers, accepting Keras 2 arguments: "
                                      "use fastconv.optimizers.Adam, SGD, RMSprop, ..."},
    "fastconv.layers": {"experimental": "Keras 2's layers.experimental.preprocessing layers are "
                                        "fastconv.layers.RandomFlip, RandomRotation, RandomZoom, "
                                        "RandomTranslation"},
}

_IMPORT_FROM = dis.opmap.get("IMPORT_FROM")


def _in_from_import():
    # `from m import X`: Python's IMPORT_FROM replaces any AttributeError from m.__getattr__ by
    # a generic "cannot import name", losing our message; an ImportError passes through as is.
    # The caller is the first frame outside this file.
    try:
        frame = sys._getframe(1)
        while frame is not None and frame.f_code.co_filename == __file__:
            frame = frame.f_back
        return frame is not None and frame.f_code.co_code[frame.f_lasti] == _IMPORT_FROM
    except (AttributeError, IndexError, ValueError):
        return False


def nearest(name, candidates, similar=None):
    """The closest of `candidates` to `name`: a case-insensitive match first (Conv2d -> Conv2D),
    then difflib's nearest among `similar` (default: all candidates); None when none is close."""
    import difflib  # only on an error: keeps `import fastconv` light

    candidates = sorted(set(candidates))
    same = [c for c in candidates if c.lower() == name.lower()]
    if same:
        return same[0]
    close = difflib.get_close_matches(name, sorted(set(candidates if similar is None else similar)), n=1)
    return close[0] if close else None


def not_provided(module_name, name, candidates=(), hint=None, similar=None):
    """The error for `module_name.name` fastconv lacks: an ImportError inside `from ... import`,
    an AttributeError otherwise (so hasattr stays False rather than raising)."""
    message = f"{module_name} does not provide {name!r}"
    if hint:
        message += f": {hint}"
    else:
        close = nearest(name, candidates, similar)
        message += f". Did you mean {close!r}?" if close else "."
    if _in_from_import():
        return ImportError(message, name=module_name)
    return AttributeError(message)


def module_getattr(module_name, lazy=None, hints=None, every_hint=None):
    """A module `__getattr__` for `module_name`: `lazy` maps attribute -> submodule (relative to
    `module_name`, imported on first access and cached in the module); `hints` maps a missing
    name -> what to say instead of the nearest-name suggestion; `every_hint` is said for every
    missing name (a module that is a placeholder).

    Use as the module's last line: ``__getattr__ = module_getattr(__name__, ...)``."""
    lazy, hints = dict(lazy or {}), dict(hints or {})

    def __getattr__(name):
        namespace = sys.modules[module_name].__dict__
        if name in lazy:
            value = importlib.import_module(lazy[name], module_name)
            namespace[name] = value
            return value
        if name.startswith("_"):
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        public = [k for k in namespace if not k.startswith("_")] + list(lazy)
        # Submodules holding one class each (layers.conv2d) are no near miss for a class name.
        similar = [k for k in public if not (name[:1].isupper() and isinstance(namespace.get(k), types.ModuleType))]
        raise not_provided(module_name, name, public, hints.get(name, every_hint), similar)

    return __getattr__


def install(module, lazy=None, hints=None):
    """Give an already imported module (one whose file another change owns) the same hook,
    with MODULE_HINTS' entries for it."""
    if "__getattr__" not in module.__dict__:
        hints = {**MODULE_HINTS.get(module.__name__, {}), **(hints or {})}
        module.__getattr__ = module_getattr(module.__name__, lazy, hints)
