"""Objects as JSON data and back: `serialize`, `deserialize`, `register_keras_serializable`,
`custom_object_scope`.

A serialized object is Keras 3's dict ``{"module", "class_name", "config", "registered_name"}``
where `config` is the object's `get_config()`, itself JSON data (nested objects serialized the
same way; numpy arrays as ``{"class_name": "__numpy__", "config": {"value", "dtype"}}``).

Deserializing is a lookup, never an import: a class name is found only in `custom_objects`,
an active `custom_object_scope`, the objects registered with `register_keras_serializable`, or
fastconv's own public modules (layers, models, optimizers, schedules, losses, metrics,
regularizers, initializers, callbacks). The `module` a file names is used only to choose among
those tables; nothing a file says is imported or executed. A plain Python function is refused
when serializing unless it is registered (a name can be stored, code cannot).

Where most get_config()s come from: `RecordsArguments.__new__` keeps the arguments each object
was constructed with (bound to its ``__init__`` signature, defaults filled in), and the base
classes' get_config() start from them; classes whose state can change after construction
(a layer's name, an optimizer's learning rate) override those keys with the current values.

>>> from fastconv import layers
>>> d = layers.Dense(3, activation="relu", name="d")
>>> serialize(d)["class_name"], serialize(d)["config"]["units"]
('Dense', 3)
>>> deserialize(serialize(d)).get_config() == d.get_config()
True
"""
import functools
import inspect
import threading

import numpy as np

__all__ = ["register_keras_serializable", "get_custom_objects", "get_registered_name", "get_registered_object", "serialize",
           "deserialize", "custom_object_scope", "CustomObjectScope", "RecordsArguments", "arguments_config"]

_REGISTERED = {}       # "package>name" -> class or function
_REGISTERED_NAMES = {}  # id(class or function) -> "package>name"
_scopes = threading.local()  # a stack of custom_objects dicts per thread


# -- registration -----------------------------------------------------------------------------
def register_keras_serializable(package="Custom", name=None):
    """Decorator registering a class (with get_config) or a function under "package>name", so
    that model files naming it can be loaded without `custom_objects`."""
    if not isinstance(package, str) or ">" in package:
        raise ValueError(f"package must be a str without '>', got {package!r}")

    def decorator(obj):
        registered = f"{package}>{name or getattr(obj, '__name__', None)}"
        if inspect.isclass(obj) and not hasattr(obj, "get_config"):
            raise ValueError(f"cannot register {obj.__name__}: a class needs a get_config() method")
        if not inspect.isclass(obj) and not callable(obj):
            raise TypeError(f"register_keras_serializable expects a class or a function, got {obj!r}")
        _REGISTERED[registered] = obj
        _REGISTERED_NAMES[id(obj)] = registered
        return obj
    return decorator


def get_custom_objects():
    """The registry itself ({"package>name": object}), as Keras exposes it."""
    return _REGISTERED


def get_registered_name(obj):
    """"package>name" for a registered object, else its class/function name."""
    return _REGISTERED_NAMES.get(id(obj), getattr(obj, "__name__", type(obj).__name__))


def _custom_objects_in_scope():
    out = {}
    for objects in getattr(_scopes, "stack", []):
        out.update(objects)
    return out


def get_registered_object(name, custom_objects=None):
    """The object `name` refers to in custom_objects, an active custom_object_scope or the
    registry; None when none holds it."""
    for table in (custom_objects or {}, _custom_objects_in_scope(), _REGISTERED):
        if name in table:
            return table[name]
    return None


class CustomObjectScope:
    """``with custom_object_scope({"MyLayer": MyLayer}):`` — names deserialization may use."""

    def __init__(self, *objects):
        self.objects = {}
        for d in objects:
            if d is not None and not isinstance(d, dict):
                raise TypeError(f"custom_object_scope expects dicts of name -> object, got {type(d).__name__}")
            self.objects.update(d or {})

    def __enter__(self):
        if not hasattr(_scopes, "stack"):
            _scopes.stack = []
        _scopes.stack.append(self.objects)
        return self

    def __exit__(self, *exc):
        _scopes.stack.pop()


custom_object_scope = CustomObjectScope


# -- constructor arguments as the default config ------------------------------------------------
@functools.lru_cache(maxsize=4096)  # bounded: classes made at run time are not kept forever
def _init_signature(cls):
    try:
        return inspect.signature(cls.__init__)
    except (TypeError, ValueError):
        return None


def record_arguments(obj, args, kwargs):
    """Keep on `obj` the arguments of its construction, by parameter name, defaults included.
    Nothing is recorded when they do not bind (then __init__ raises its own error)."""
    sig = _init_signature(type(obj))
    if sig is None:
        return
    try:
        bound = sig.bind(obj, *args, **kwargs)
    except TypeError:
        return
    bound.apply_defaults()
    recorded = {}
    for i, (key, value) in enumerate(bound.arguments.items()):
        kind = sig.parameters[key].kind
        if i == 0:  # self
            continue
        if kind is inspect.Parameter.VAR_KEYWORD:
            recorded.update(value)
        elif kind is inspect.Parameter.VAR_POSITIONAL:
            if value:
                recorded["*" + key] = list(value)  # get_config refuses these (no keyword to give back)
        else:
            recorded[key] = value
    obj.__dict__["_init_arguments"] = recorded


class RecordsArguments:
    """Mixin: instances remember their constructor arguments (see `arguments_config`)."""

    def __new__(cls, *args, **kwargs):
        obj = super().__new__(cls)
        record_arguments(obj, args, kwargs)
        return obj


def _user_states_config(obj):
    # A class outside fastconv with its own get_config (calling the base's through super(), as
    # Keras code does) decides itself what its config holds.
    method = getattr(type(obj), "get_config", None)
    return not getattr(method, "__module__", "fastconv").startswith("fastconv")


def arguments_config(obj):
    """The recorded constructor arguments of `obj` as JSON data (nested objects serialized).

    An argument that cannot be data (a plain function, an arbitrary object) is an error, so a
    config never silently loses part of an object; except for a user class with its own
    get_config, which then leaves out what it cannot hold (Keras's contract for overrides)."""
    recorded = obj.__dict__.get("_init_arguments", {})
    lenient = _user_states_config(obj)
    out = {}
    for k, v in recorded.items():
        if k.startswith("*"):
            if lenient:
                continue
            raise ValueError(f"{type(obj).__name__} was given extra positional arguments ({k}), which a "
                             f"config cannot hold; give it a get_config() of its own")
        try:
            out[k] = serialize_value(v, f"{type(obj).__name__}.{k}")
        except (TypeError, ValueError):
            if not lenient:
                raise
    return out


# -- fastconv's own classes --------------------------------------------------------------------
_PUBLIC_MODULES = ("fastconv.layers", "fastconv.models", "fastconv.optimizers", "fastconv.optimizers.schedules",
                   "fastconv.losses", "fastconv.metrics", "fastconv.regularizers", "fastconv.initializers",
                   "fastconv.callbacks", "fastconv.activations", "fastconv.preprocessing")


@functools.lru_cache(maxsize=None)
def _builtin_table(module_name):
    """{class name: class} of the public classes of one of fastconv's modules (imported by
    fastconv itself: the name comes from _PUBLIC_MODULES, never from a file)."""
    import importlib
    module = importlib.import_module(module_name)
    table = {k: v for k, v in vars(module).items() if inspect.isclass(v) and not k.startswith("_")}
    if module_name == "fastconv.models":
        from ..engine.functional import Functional
        from ..models import zoo
        table["Functional"] = Functional
        table.update((k, v) for k, v in vars(zoo).items() if inspect.isclass(v) and not k.startswith("_"))
    return table


def _public_module(cls):
    for module_name in _PUBLIC_MODULES:
        if _builtin_table(module_name).get(cls.__name__) is cls:
            return module_name
    return None


def _find_class(class_name, module, registered_name, custom_objects):
    for key in (registered_name, class_name):
        if key:
            found = get_registered_object(key, custom_objects)
            if found is not None:
                return found
    # The module the file names first; then the others, so a class that moved between
    # fastconv's modules still loads from older files.
    modules = sorted(_PUBLIC_MODULES, key=lambda m: m != module)
    for module_name in modules:
        found = _builtin_table(module_name).get(class_name)
        if found is not None:
            return found
    raise ValueError(
        f"unknown class {class_name!r} (module {module!r}, registered name {registered_name!r}): fastconv "
        f"does not provide it and it is not registered. If it is your own class, decorate it with "
        f"@fastconv.saving.register_keras_serializable(package='MyPackage') (it needs get_config), or pass "
        f"custom_objects={{{class_name!r}: {class_name}}} to load_model/deserialize")


# -- serialize / deserialize -------------------------------------------------------------------
def _is_serialized_object(value):
    return isinstance(value, dict) and "class_name" in value and "config" in value


def serialize_value(value, where="value"):
    """`value` as JSON data: objects with get_config serialized, tuples as lists, numpy arrays
    and scalars converted; a plain function only by its registered or fastconv name."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return {"class_name": "__numpy__", "config": {"value": value.tolist(), "dtype": value.dtype.name}}
    if isinstance(value, np.dtype):
        return value.name
    if isinstance(value, (list, tuple)):
        return [serialize_value(v, where) for v in value]
    if isinstance(value, dict):
        return {str(k): serialize_value(v, where) for k, v in value.items()}
    if hasattr(value, "get_config") and not inspect.isclass(value):
        return serialize(value)
    if callable(value):
        return _serialize_function(value, where)
    raise TypeError(f"{where}: cannot serialize a {type(value).__name__} ({value!r}) as JSON data")


def _serialize_function(fn, where):
    if id(fn) in _REGISTERED_NAMES:
        return {"module": None, "class_name": "function", "config": _REGISTERED_NAMES[id(fn)],
                "registered_name": _REGISTERED_NAMES[id(fn)]}
    name = getattr(fn, "__name__", None)
    from .. import activations, losses
    for module in (activations, losses):
        if name and getattr(module, name, None) is fn:
            return name
    raise ValueError(
        f"{where}: cannot save the Python function {name or fn!r}: fastconv files hold data, never code. "
        f"Register it with @fastconv.saving.register_keras_serializable() (then the file stores its name and "
        f"loading finds it), or rebuild this part of the model in code and load only the weights")


def serialize(obj):
    """Keras 3's {"module", "class_name", "config", "registered_name"} for an object with
    get_config (strings and None pass through, as Keras identifiers)."""
    if obj is None or isinstance(obj, (str, bool, int, float)):
        return obj
    if not hasattr(obj, "get_config") or inspect.isclass(obj):
        return serialize_value(obj)
    cls = type(obj)
    module = _public_module(cls)
    registered = _REGISTERED_NAMES.get(id(cls))
    if module is None and registered is None:
        registered = cls.__name__  # loadable with custom_objects={name: cls}
    config = obj.get_config()
    return {"module": module or cls.__module__, "class_name": cls.__name__,
            "config": serialize_value(config, f"{cls.__name__}.get_config()"),
            "registered_name": registered}


def deserialize_value(value, custom_objects=None):
    """Inverse of serialize_value: nested serialized objects become objects again."""
    if isinstance(value, list):
        return [deserialize_value(v, custom_objects) for v in value]
    if isinstance(value, dict):
        if _is_serialized_object(value):
            return deserialize(value, custom_objects)
        return {k: deserialize_value(v, custom_objects) for k, v in value.items()}
    return value


def deserialize(config, custom_objects=None):
    """The object a `serialize` dict describes (strings and None are returned as they are)."""
    if config is None or isinstance(config, (str, bool, int, float)):
        return config
    if not _is_serialized_object(config):
        raise ValueError(f"cannot deserialize {config!r}: expected a dict with 'class_name' and 'config'")
    class_name, inner = config["class_name"], config["config"]
    if not isinstance(class_name, str):
        raise ValueError(f"cannot deserialize: class_name must be a str, got {class_name!r}")
    if class_name == "__numpy__":
        return np.asarray(inner["value"], dtype=np.dtype(inner["dtype"]))
    if class_name == "function":
        fn = get_registered_object(inner, custom_objects)
        if fn is None:
            raise ValueError(f"unknown function {inner!r}: register it with "
                             f"@fastconv.saving.register_keras_serializable() or pass custom_objects")
        return fn
    cls = _find_class(class_name, config.get("module"), config.get("registered_name"), custom_objects)
    if not inspect.isclass(cls) or not hasattr(cls, "from_config"):
        raise ValueError(f"{class_name!r} does not name a class with from_config")
    if not isinstance(inner, dict):
        raise ValueError(f"cannot deserialize {class_name}: its config must be a dict, got {type(inner).__name__}")
    with CustomObjectScope(custom_objects or {}):
        try:
            return cls.from_config(inner)
        except TypeError as e:
            raise ValueError(f"cannot rebuild {class_name} from its config: {e}") from None


def from_config_arguments(cls, config):
    """The generic from_config: the config (nested objects deserialized) as keyword arguments."""
    return cls(**{k: deserialize_value(v) for k, v in config.items()})

