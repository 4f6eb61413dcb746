"""Layer fusion in Sequential and functional models: fewer passes over the activations.

A chain of layers is run as one op when each link's output feeds only the next link (and is
not a model output):

- ``ZeroPadding2D -> Conv2D('valid')``: the padding becomes the conv's own (no padded copy).
- ``Conv2D -> ReLU``: the activation runs inside the conv kernel (any mode).
- ``Conv2D -> BatchNormalization [-> ReLU]`` at inference: the batch norm is folded into the
  convolution (kernel * s, (bias - mean) * s + beta with s = gamma / sqrt(var + eps)), so
  predict() pays for one conv and nothing else. The fold is made of autograd ops, so a model
  run with training=False still gets gradients for its conv and BN weights.
- ``Add -> ReLU``: the residual join and its activation in one pass.
- ``Conv2D('relu') -> MaxPooling2D`` (or ``Conv2D -> ReLU -> MaxPooling2D``): one op whose
  backward applies the ReLU mask to the pooled gradient (autograd/ops/conv_relu_max_pool.py),
  a quarter of the conv output for 2x2 pooling, and keeps no conv output.
- ``Conv2D('relu' | 'sigmoid' | 'tanh') -> AveragePooling2D``: one op whose backward spreads the
  pooled gradient and multiplies it by the activation's derivative in one pass
  (autograd/ops/conv_act_avg_pool.py; LeNet-5's classic sigmoid + average pool).
- ``BatchNormalization -> ReLU``: one batch-norm kernel that applies the ReLU (and, in
  training, masks its gradient by recomputing the sign instead of saving another array).

Only the exact built-in classes fuse (a subclass may override ``call``); ``ReLU`` only with its
defaults; the conv only with a linear activation (or ReLU when a max pool follows) and the batch norm
only on the last axis; a conv with its own relu, sigmoid or tanh fuses with an average pool after it.
``fastconv.set_fusion(False)`` turns it off; ``model.fusion_plan(training)`` lists the chains.
Layers that run a list of sublayers themselves (the zoo's residual and dense blocks) use
``run_layers`` to get the same treatment.
"""
from ..layers.activation import Activation, ReLU
from ..layers.batch_normalization import BatchNormalization
from ..layers.conv2d import Conv2D
from ..layers.merge import Add
from ..layers.pooling import AveragePooling2D, MaxPooling2D
from ..layers.zero_padding2d import ZeroPadding2D


_enabled = [True]


def set_fusion(enabled):
    """Run fusable layer chains as single ops (default True); False runs every layer alone."""
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be a bool, got {enabled!r}")
    _enabled[0] = enabled


def get_fusion():
    return _enabled[0]


def _is_relu(layer):
    if type(layer) is ReLU:
        return layer.max_value is None and layer.negative_slope == 0.0 and layer.threshold == 0.0
    return type(layer) is Activation and layer.activation == "relu"


def _bn_training(layer, kwargs, training):
    fixed = kwargs.get("training")
    return bool(training if fixed is None else fixed) and layer.trainable


def _is_conv(layer):
    return type(layer) is Conv2D and layer.built and layer.activation == "linear"


def _is_relu_conv(layer):  # fuses only with a max pool after it
    return type(layer) is Conv2D and layer.built and layer.activation == "relu"


def _is_max_pool(layer):
    return type(layer) is MaxPooling2D and layer.built


def _is_act_conv(layer):  # an activation the kernels differentiate from y: fuses with an average pool
    return type(layer) is Conv2D and layer.built and layer.activation in ("relu", "sigmoid", "tanh")


def _is_avg_pool(layer):
    return type(layer) is AveragePooling2D and layer.built


def _is_zero_padding(layer):
    return type(layer) is ZeroPadding2D and layer.built


def _is_bn(layer):
    return type(layer) is BatchNormalization and layer.built and layer._axis == layer._ndim - 1


class Chain:
    """Links [(layer, kwargs), ...] run as one call of the first layer."""

    def __init__(self, links, training):
        self.links = links
        self.layers = [layer for layer, _ in links]
        head, kwargs = links[0]
        pad = head.padding if _is_zero_padding(head) else None
        self.runner = self.layers[1] if pad else head  # the layer whose call runs the chain
        if _is_conv(self.runner) or _is_act_conv(self.runner):
            rest = self.layers[2 if pad else 1:]
            self.fold = rest[0] if rest and _is_bn(rest[0]) else None
            pool = self.layers[-1] if _is_max_pool(self.layers[-1]) else None
            self.call_kwargs = {"_fold": self.fold, "_activation": "relu" if _is_relu(self.layers[-1]) else None,
                                "_pads": pad}
            if pool is not None:
                self.call_kwargs = {"_pads": pad, "_max_pool": pool}
            elif _is_avg_pool(self.layers[-1]):
                self.call_kwargs = {"_pads": pad, "_avg_pool": self.layers[-1]}
        elif type(head) is Add:
            self.call_kwargs = {"_activation": "relu"}
        else:  # batch norm + relu
            self.call_kwargs = {"training": _bn_training(head, kwargs, training), "_activation": "relu"}

    def __call__(self, args, extra_args, kwargs):
        return self.runner(args, *extra_args, **{**kwargs, **self.call_kwargs})

    def describe(self):
        return " + ".join(type(layer).__name__ for layer in self.layers)


def chain_from(links_at, training):
    """The longest fusable chain starting at position 0 of links_at (a callable i -> (layer,
    kwargs) or None); the caller guarantees that link i's output feeds only link i + 1."""
    first = links_at(0)
    if first is None:
        return None
    links = [first]

    def extend(accept):
        nxt = links_at(len(links))
        if nxt is not None and accept(nxt):
            links.append(nxt)
            return True
        return False

    head, kwargs = first
    if _is_zero_padding(head):
        if not extend(lambda l: _is_conv(l[0]) and l[0].padding == "valid"):
            return None
        head = links[-1][0]
    if _is_conv(head):
        if extend(lambda l: _is_bn(l[0]) and not _bn_training(l[0], l[1], training)):
            extend(lambda l: _is_relu(l[0]))
        elif extend(lambda l: _is_relu(l[0])):
            extend(lambda l: _is_max_pool(l[0]))
    elif _is_relu_conv(head):
        extend(lambda l: _is_max_pool(l[0]) or _is_avg_pool(l[0]))
    elif _is_act_conv(head):
        extend(lambda l: _is_avg_pool(l[0]))
    elif _is_bn(head) or type(head) is Add:
        extend(lambda l: _is_relu(l[0]))
    return Chain(links, training) if len(links) > 1 else None


def plan_layers(layers, training):
    """{start index: Chain} for the fusable runs of consecutive layers in a plain list."""
    plan, i = {}, 0
    while _enabled[0] and i < len(layers):
        chain = chain_from(lambda j, i=i: (layers[i + j], {}) if i + j < len(layers) else None,
                           training)
        if chain is not None:
            plan[i] = chain
        i += len(chain.links) if chain is not None else 1
    return plan


def run_layers(layers, x, training=None):
    """x through a list of layers, each feeding the next, with fusable runs fused."""
    from ..layers.layer import _training_ctx
    plan = plan_layers(layers, bool(_training_ctx.get() if training is None else training))
    i = 0
    while i < len(layers):
        chain = plan.get(i)
        if chain is None:
            x = layers[i](x, training=training)
            i += 1
        else:
            x = chain(x, (), {"training": training})
            i += len(chain.links)
    return x
