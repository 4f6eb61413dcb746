"""Weight regularizers (Keras): callables on a Tensor returning a scalar Tensor penalty,
built from Tensor methods so the penalty is differentiable.

L1(l1=0.01): l1 * sum(|w|);  L2(l2=0.01): l2 * sum(w^2);  L1L2(l1=0.0, l2=0.0): both.
Keras 3 spells l1_l2 as an alias of L1L2 with both factors defaulting to 0.0 (tf.keras 2's
`l1_l2()` function defaulted to 0.01); we follow Keras 3.
"""


from .saving import serialization as _serialization


class Regularizer(_serialization.RecordsArguments):
    def __call__(self, x):
        raise NotImplementedError

    def get_config(self):
        return _serialization.arguments_config(self)

    @classmethod
    def from_config(cls, config):
        return _serialization.from_config_arguments(cls, config)

    def __repr__(self):
        return f"{type(self).__name__}({self.get_config()})"


def _factor(name, value):
    value = float(value)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


class L1(Regularizer):
    def __init__(self, l1=0.01):
        self.l1 = _factor("l1", l1)

    def __call__(self, x):
        return x.abs().sum() * self.l1

    def get_config(self):
        return {"l1": self.l1}


class L2(Regularizer):
    def __init__(self, l2=0.01):
        self.l2 = _factor("l2", l2)

    def __call__(self, x):
        return x.square().sum() * self.l2

    def get_config(self):
        return {"l2": self.l2}


class L1L2(Regularizer):
    def __init__(self, l1=0.0, l2=0.0):
        self.l1, self.l2 = _factor("l1", l1), _factor("l2", l2)

    def __call__(self, x):
        terms = []
        if self.l1:
            terms.append(x.abs().sum() * self.l1)
        if self.l2:
            terms.append(x.square().sum() * self.l2)
        if not terms:
            return x.abs().sum() * 0.0
        return terms[0] if len(terms) == 1 else terms[0] + terms[1]

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


l1, l2, l1_l2 = L1, L2, L1L2

_BY_NAME = {"l1": L1, "l2": L2, "l1_l2": L1L2, "l1l2": L1L2}


def get(identifier):
    """A regularizer from a name ('l1', 'l2', 'l1_l2'), a config dict, an instance or any
    callable; None stays None."""
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, dict):
        cls = _BY_NAME.get(str(identifier.get("class_name", "")).lower())
        if cls is None:
            raise ValueError(f"Could not interpret regularizer identifier: {identifier!r}")
        return cls(**identifier.get("config", {}))
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier.lower())
        if cls is None:
            raise ValueError(f"Could not interpret regularizer identifier: {identifier!r}; "
                             f"known names: {sorted(_BY_NAME)}")
        return cls()
    if callable(identifier):
        return identifier
    raise ValueError(f"Could not interpret regularizer identifier: {identifier!r}")
