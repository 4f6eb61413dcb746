"""What the Keras-application builders (inception_v3, xception, efficientnet) share: Keras's
argument checks, its input-shape rule, its auto layer names, and the classifier tail.

Names: Keras names unnamed layers from process-wide counters (conv2d, conv2d_1, ...), so the
names of a Keras application depend on what was built before it; weight files written by Keras
carry the names of a fresh session. `KerasNames` hands out exactly those fresh-session names,
whatever this process built before, and then advances the process-wide counters past them, so
layers made afterwards (a new head) get names that do not collide.
"""
from collections import Counter

from .. import layers
from ..engine import Model
from ..layers.input_layer import InputLayer, KerasTensor
from ..layers.layer import _name_counts


class KerasNames:
    """`names("conv2d")` -> conv2d, conv2d_1, ... numbered as in a fresh Keras session."""

    def __init__(self):
        self._used = Counter()

    def __call__(self, base):
        n = self._used[base]
        self._used[base] += 1
        return base if n == 0 else f"{base}_{n}"

    def release(self):
        """Advance the process-wide auto-name counters past every name handed out."""
        for base, n in self._used.items():
            _name_counts[base] = max(_name_counts[base], n)


def check_arguments(weights, include_top, pooling, classes, classifier_activation):
    if weights is not None:
        raise ValueError(f"weights={weights!r}: the zoo builds untrained models (weights=None); load "
                         "pretrained weights with fastconv.applications or model.load_weights(path)")
    if not isinstance(include_top, bool):
        raise TypeError(f"include_top must be True or False, got {include_top!r}")
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"pooling must be None, 'avg' or 'max', got {pooling!r}")
    if include_top and (isinstance(classes, bool) or not isinstance(classes, int) or classes < 1):
        raise ValueError(f"classes must be a positive int, got {classes!r}")
    if classifier_activation is not None and not isinstance(classifier_activation, str) \
            and not callable(classifier_activation):
        raise TypeError(f"classifier_activation must be None, a name or a callable, got {classifier_activation!r}")


def input_shape_for(input_shape, default_size, min_size, include_top, input_tensor=None):
    """Keras's rule (obtain_input_shape, weights=None): (default, default, 3) when nothing is
    given and the top needs a fixed size, (None, None, 3) without the top; a given shape must be
    (H, W, C) with H and W at least `min_size`."""
    if input_shape is None and input_tensor is not None:
        input_shape = tuple(input_tensor.shape[1:])
    if input_shape is None:
        return (default_size, default_size, 3) if include_top else (None, None, 3)
    shape = tuple(input_shape)
    if len(shape) != 3 or any(s is not None and (isinstance(s, bool) or not isinstance(s, int) or s < 1)
                              for s in shape) or shape[2] is None:
        raise ValueError(f"input_shape must be (height, width, channels) of positive ints, got {input_shape!r}")
    if any(s is not None and s < min_size for s in shape[:2]):
        raise ValueError(f"input size must be at least {min_size}x{min_size}; got input_shape={shape}")
    if include_top and None in shape:
        raise ValueError(f"include_top=True needs a static input_shape, got {shape}")
    return shape


def model_input(input_tensor, shape, names):
    """The image tensor the network starts from: a new Input, or `input_tensor` (symbolic)."""
    if input_tensor is None:
        return layers.Input(shape, name=names("input_layer"))
    if not isinstance(input_tensor, KerasTensor) or input_tensor._history is None:
        raise TypeError(f"input_tensor must be a symbolic tensor (layers.Input(...) or a layer's output), "
                        f"got {type(input_tensor).__name__}")
    if tuple(input_tensor.shape[1:]) != tuple(shape) and None not in shape:
        raise ValueError(f"input_tensor has shape {input_tensor.shape}, input_shape says {shape}")
    return input_tensor


def source_inputs(tensor):
    """The Input tensors `tensor` is computed from (Keras's get_source_inputs)."""
    found, seen, stack = [], set(), [tensor._history[0]]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node.layer, InputLayer):
            found.append(node.outputs)
        stack.extend(reversed(node.parents))
    return found[0] if len(found) == 1 else found


def classifier(x, include_top, pooling, classes, classifier_activation, names, pool_names=(None, None),
               dropout_rate=0.0, dense_initializer="glorot_uniform"):
    """Keras applications' tail: avg_pool (+ top_dropout) + Dense 'predictions' with the top;
    otherwise the optional global pooling, named as the family names it (`pool_names` =
    (avg, max); None: Keras's auto name)."""
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        if dropout_rate > 0:
            x = layers.Dropout(dropout_rate, name="top_dropout")(x)
        return layers.Dense(classes, activation=classifier_activation, kernel_initializer=dense_initializer,
                            name="predictions")(x)
    if pooling == "avg":
        return layers.GlobalAveragePooling2D(name=pool_names[0] or names("global_average_pooling2d"))(x)
    if pooling == "max":
        return layers.GlobalMaxPooling2D(name=pool_names[1] or names("global_max_pooling2d"))(x)
    return x


def finish(inputs, outputs, name, names):
    names.release()
    return Model(inputs, outputs, name=name)
