"""Models used as layers (a Sequential or functional model inside another, e.g. a frozen
base under a new head) and the zoo's blocks, which run their own lists of layers.

Each block's exporter mirrors its ``call`` line by line; a block class not listed here (or a
subclass with its own ``call``) is refused by the registry rather than guessed at.
"""
from ..engine.functional import Functional
from ..engine.sequential import Sequential
from ..layers.input_layer import InputLayer, KerasTensor
from ..layers.layer import flatten, map_structure
from ..models import zoo
from ..models.zoo import DenseBlock, DepthwiseSeparableBlock, InceptionBlock, ResidualBlock, TransitionBlock
from .graph import Value
from .registry import export_layer, export_sequence, register, unsupported


def export_graph(g, model, inputs):
    """The outputs (a structure of Values) of functional `model` given its input Values."""
    values = {id(t): v for t, v in zip(model._input_tensors, inputs)}
    for node in model._nodes:
        layer = node.layer
        if isinstance(layer, InputLayer):
            continue
        extra = {k: v for k, v in node.kwargs.items() if k != "training"}
        if node.args or extra:
            raise unsupported(layer, f"it is called with extra arguments {list(node.args) + sorted(extra)}, "
                                     "which the exporter does not know how to translate")
        if node.kwargs.get("training"):
            raise unsupported(layer, "it is called with training=True fixed in the graph, so its output is "
                                     "random or batch-dependent at inference and has no fixed ONNX form")
        if any(not isinstance(t, KerasTensor) for t in flatten(node.inputs)):
            raise unsupported(layer, "one of its inputs is a constant, not a tensor of the graph")
        args = map_structure(lambda t: values[id(t)], node.inputs)
        out = export_layer(g, layer, args)
        outs = flatten(node.outputs)
        if len(outs) != 1 or not isinstance(out, Value):
            raise unsupported(layer, "layers with several outputs are not supported")
        values[id(outs[0])] = out
    return map_structure(lambda t: values[id(t)], model._outputs_struct)


@register(Functional)
def _functional(g, model, x):
    outputs = export_graph(g, model, x if isinstance(x, list) else [x])
    if isinstance(outputs, Value):
        return outputs
    if len(flatten(outputs)) == 1:
        return flatten(outputs)[0]
    raise unsupported(model, "a model with several outputs can be exported only as the outermost model")


@register(Sequential)
def _sequential(g, model, x):
    return export_sequence(g, model._tracked, x)


@register(ResidualBlock)
def _residual(g, block, x):
    y = export_sequence(g, block.path, x)
    shortcut = export_sequence(g, block.proj, x) if block.proj else x
    y, shortcut = g.same_layout([y, shortcut])
    total = g.op("Add", [y.name, shortcut.name], f"{block.name}/add")
    return Value(g.op("Relu", [total], f"{block.name}/relu"), y.layout, y.shape)


def _concat_channels(g, values, name):
    values = g.same_layout(values)
    shape = values[0].shape[:-1] + (sum(v.shape[-1] for v in values),)
    return Value(g.op("Concat", [v.name for v in values], f"{name}/concat", axis=values[0].nchw_axis(-1)),
                 values[0].layout, shape)


@register(InceptionBlock)
def _inception(g, block, x):
    return _concat_channels(g, [export_sequence(g, branch, x) for branch in block.branches], block.name)


@register(DenseBlock)
def _dense_block(g, block, x):
    for unit in block.units:
        x = _concat_channels(g, [x, export_sequence(g, unit, x)], block.name)
    return x


@register(TransitionBlock)
def _transition(g, block, x):
    return export_sequence(g, [block.bn, block.relu, block.conv, block.pool], x)


@register(DepthwiseSeparableBlock)
def _depthwise_separable(g, block, x):
    return export_sequence(g, block.seq, x)


def _add(g, a, b, name):
    a, b = g.same_layout([a, b])
    return Value(g.op("Add", [a.name, b.name], f"{name}/add"), a.layout, a.shape)


def _inverted_residual(g, block, x):
    """MobileNetV2's block: expand, pad, depthwise, project, plus the input when it fits."""
    y = export_sequence(g, block.expand, x)
    if block.pad is not None:
        y = export_layer(g, block.pad, y)
    y = export_sequence(g, block.project, export_sequence(g, block.depthwise, y))
    return _add(g, x, y, block.name) if block.residual else y


def _preact_bottleneck(g, block, x):
    """ResNetV2's block: shared BN-ReLU pre-activation, shortcut conv / 1x1 max-pool / identity."""
    pre = export_sequence(g, block.preact, x)
    if block.conv_shortcut is not None:
        shortcut = export_layer(g, block.conv_shortcut, pre)
    elif block.pool_shortcut is not None:
        shortcut = export_layer(g, block.pool_shortcut, x)
    else:
        shortcut = x
    return _add(g, shortcut, export_sequence(g, block.path, pre), block.name)


# Blocks of the Keras-applications families (MobileNetV2, ResNetV2), where the zoo has them.
for _class_name, _exporter in (("InvertedResidualBlock", _inverted_residual),
                               ("PreactBottleneckBlock", _preact_bottleneck)):
    if hasattr(zoo, _class_name):
        register(getattr(zoo, _class_name))(_exporter)
