"""Inference plans: `predict` as a flat list of prepared kernel calls (cpu backend, no autograd).

A predict on one image must not pay for machinery sized for batches or for training. The
first predict of a model on a given input shape walks its graph once -- nested Sequential and
functional models and the zoo's blocks (which describe themselves through
``_inference_graph``) are flattened into one list of layer calls -- fuses what can run as one
kernel call, and records one prepared step per remaining call. Later predicts on that shape
run the steps over a list of slots: no autograd tape, no Tensor wrappers, no per-layer
argument checks or padding arithmetic (the kernels still check their arrays), and every
intermediate is dropped after its last use.

Fusions (a link only when its input feeds nothing else and is not a model output):

- ``ZeroPadding2D -> Conv2D/DepthwiseConv2D('valid')``: the padding becomes the conv's own.
- ``(... -> ReLU) -> ZeroPadding2D -> MaxPooling2D('valid')``: over a ReLU's output the zeros
  never change a window's max (each window keeps an input pixel), so the padding becomes the
  pool's own.
- ``Conv2D/DepthwiseConv2D -> BatchNormalization``: the batch norm's moving statistics are
  folded into the kernel and bias once (kernel * s, (bias - mean) * s + beta with
  s = gamma / sqrt(var + eps)) and cached; the cache is rebuilt when any of those variables
  changed (their `_version` goes up on every outside read of `.data`: optimizer steps,
  `assign`, `set_weights`, `load_weights`, in-place edits through `.data`).
- ``... -> ReLU / ReLU(max_value) / Activation('relu')``: the ReLU runs in the conv kernel's
  output pass; a cap (ReLU6) is one in-place minimum after it.
- ``Add -> ReLU`` (and the residual blocks' joins): one add + relu kernel.
- ``Conv2D(+ BatchNormalization) -> Add(-> ReLU)``: where the add's later-computed input is a
  linear conv used nowhere else, the conv takes the other input as its residual (the kernel
  starts its output from bias + residual and applies the ReLU in the same pass), so the add
  costs no pass of its own.
- ``BatchNormalization -> ReLU``: the inference batch-norm kernel with its ReLU.

Any other layer runs as itself (``layer(x, training=False)`` under no_grad), so every model
gets a plan and the plan computes what the plain forward computes (up to float32 rounding
from the fold). ``set_inference_plan(False)`` turns plans off (predict then runs the autograd
forward under no_grad, with engine/fusion.py's fusions); ``set_fusion(False)`` turns both off.
"""
import numpy as np

from .. import _C
from ..autograd import Tensor, no_grad
from ..backend import get_backend, kernels_for
from ..functional._args import pair, resolve_padding
from ..layers.activation import Activation, ReLU
from ..layers.batch_normalization import BatchNormalization
from ..layers.conv2d import Conv2D
from ..layers.depthwise_conv2d import DepthwiseConv2D
from ..layers.dense import Dense
from ..layers.dropout import Dropout
from ..layers.flatten import Flatten
from ..layers.global_pooling import GlobalAveragePooling2D
from ..layers.input_layer import InputLayer, KerasTensor
from ..layers.merge import Add
from ..layers.pooling import AveragePooling2D, MaxPooling2D
from ..layers.reshape import Reshape
from ..layers.zero_padding2d import ZeroPadding2D
from . import fusion

_KERNEL_ACTIVATIONS = ("linear", "relu", "sigmoid", "tanh")
_MAX_PLANS = 8  # input shapes remembered per model (predict's last, smaller batch is a second)


_enabled = [True]

# Team or one thread: a rule on the plan's work, never a timing. The kernels split their work by
# the thread count (which algorithm, which blocks, which partial sums), so one plan run on the
# team and on one thread sums in different orders and its outputs differ in the last bits.
# Until stop 38 each plan timed its runs both ways and took the faster, so a model predicted
# differently from one call to the next, and from its saved-and-loaded twin (3e-7 apart on a
# Zen 3; tests/test_finetune_keras.py). Now a plan's thread count is fixed when it is built:
# one thread where its steps average fewer than _TEAM_MIN_WORK multiply-adds (or, for the
# memory-bound steps, output elements), the team otherwise. Measured on the 2-vCPU Zen 3 VM
# (benchmarks/bench_plan_threads.py, 2 threads, back-to-back calls): LeNet-5 b16 (8.4e5 a
# step) 2.34 ms on the team against 0.48 on one thread, b32 (1.7e6) 2.02 against 0.83, b64
# (3.4e6) 1.26 against 1.70; ResNet-18 CIFAR b1 (2.5e7) 10.8 against 18.2, MobileNet b1
# (1.8e7) 12.6 against 19.8. Below the threshold a step's work is smaller than what its
# parallel regions' wake-ups and joins cost on such a VM.
# Same thread knob, same model, same input: the same bits, every call.
_TEAM_MIN_WORK = 1 << 21
# A team run holds the team keeper for its duration (threads.cpp): SCHED_IDLE threads spin on
# the idle CPUs, so the workers' CPUs do not halt between its parallel regions. Off: on the
# shared 2-vCPU VM it made no run faster (benchmarks/RESULTS.md, issue 18 item 4, helper I);
# benchmarks/bench_b1_idle.py --paired measures it where the machine is quiet.
_HOLD_TEAM = False


def set_inference_plan(enabled):
    """Run predict / a no_grad call with training=False through prepared plans (default True)."""
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be a bool, got {enabled!r}")
    _enabled[0] = enabled


def get_inference_plan():
    return _enabled[0]


class Unsupported(Exception):
    """The model's graph has a shape the plan does not take; predict runs the plain forward."""


class Op:
    """One layer call in the flattened graph: inputs and output are slot numbers."""

    def __init__(self, kind, layer, ins, out, single=True, args=(), kwargs=None):
        self.kind, self.layer, self.ins, self.out = kind, layer, list(ins), out
        self.single, self.args, self.kwargs = single, tuple(args), dict(kwargs or {})
        # filled by the fusion pass (residual: the conv's second input slot, added before the relu)
        self.pads, self.bn, self.activation, self.cap, self.relu = None, None, None, None, None
        self.residual = None


def _defining_class(cls, name):
    return next((k for k in cls.__mro__ if name in vars(k)), None)


class Graph:
    """Records a model as Ops over numbered slots; blocks call back into it."""

    def __init__(self):
        self.ops, self.slots = [], 0

    def new_slot(self):
        self.slots += 1
        return self.slots - 1

    def layers(self, layer_list, x):
        """x through a list of layers, each feeding the next (what run_layers runs)."""
        for layer in layer_list:
            x = self.call(layer, [x])
        return x

    def add_activation(self, a, b, activation="relu"):
        """activation(a + b) (ops.add_activation in a block's call)."""
        out = self.new_slot()
        op = Op("add", None, [a, b], out)
        op.activation = activation
        self.ops.append(op)
        return out

    def call(self, layer, ins, single=True, args=(), kwargs=None):
        from .functional import Functional
        from .sequential import Sequential
        # training=False fixed at construction is what a plan runs anyway; training=True is kept
        kwargs = {k: v for k, v in (kwargs or {}).items() if not (k == "training" and not v)}
        if kwargs.get("training"):
            return self._record(layer, ins, single, args, kwargs)  # a layer fixed in training mode
        cls = type(layer)
        own_graph = _defining_class(cls, "_inference_graph")
        if own_graph is not None and own_graph is _defining_class(cls, "call") and single and not args:
            return layer._inference_graph(self, ins[0])
        if cls is Sequential and single and not args and not kwargs:
            return self.layers(layer._tracked, ins[0])
        if cls is Functional and not args and not kwargs:
            return self.functional(layer, ins)
        return self._record(layer, ins, single, args, kwargs)

    def _record(self, layer, ins, single, args, kwargs):
        out = self.new_slot()
        self.ops.append(Op("layer", layer, ins, out, single, args, kwargs))
        return out

    def functional(self, model, ins):
        """The nodes of a functional model, its inputs at slots `ins`; returns its output slot."""
        if len(ins) != len(model._input_tensors) or len(model._output_tensors) != 1:
            raise Unsupported("a nested functional model with several outputs")
        slot_of = {id(t): s for t, s in zip(model._input_tensors, ins)}
        for node in model._nodes:
            if isinstance(node.layer, InputLayer):
                continue
            if not isinstance(node.outputs, KerasTensor):
                raise Unsupported(f"layer {node.layer.name!r} returns several tensors")
            single = isinstance(node.inputs, KerasTensor)
            inputs = [node.inputs] if single else node.inputs
            if not isinstance(inputs, (list, tuple)) or not all(isinstance(t, KerasTensor) for t in inputs):
                raise Unsupported(f"layer {node.layer.name!r} takes a nested structure")
            slot_of[id(node.outputs)] = self.call(node.layer, [slot_of[id(t)] for t in inputs], single,
                                                  node.args, node.kwargs)
        return slot_of[id(model._output_tensors[0])]


# -- fusion over the flat list ---------------------------------------------------------------

def _plain(op):
    return op.kind == "layer" and not op.args and not op.kwargs and op.single


def _relu_cap(layer):
    """(True, cap or None) for a ReLU the kernels can apply; (False, None) otherwise."""
    if type(layer) is ReLU and layer.built and layer.negative_slope == 0.0 and layer.threshold == 0.0:
        return True, None if layer.max_value is None else float(layer.max_value)
    if type(layer) is Activation and layer.activation == "relu":
        return True, None
    return False, None


def _is_bn(layer):
    return type(layer) is BatchNormalization and layer.built and layer._axis == layer._ndim - 1


def _is_conv(layer):
    return type(layer) in (Conv2D, DepthwiseConv2D) and layer.built


def _pool_takes_zero_padding(op, pads):
    """A plain 'valid' max pool whose every window holds an input pixel after the padding."""
    if not (_plain(op) and type(op.layer) is MaxPooling2D and op.layer.padding == "valid"):
        return False
    pool = pair(op.layer.pool_size, "pool_size")
    return max(pads[0], pads[1]) < pool[0] and max(pads[2], pads[3]) < pool[1]


def fuse(ops, outputs):
    """Merge chains into their head op (conv, batch norm or add); returns the new op list."""
    users = {}
    for op in ops:
        for s in op.ins:
            users[s] = users.get(s, 0) + 1
    for s in outputs:
        users[s] = users.get(s, 0) + 1
    producer = {op.out: op for op in ops}
    consumer = {}
    for op in ops:
        for s in op.ins:
            consumer[s] = op
    dropped = set()

    def next_op(op):
        nxt = consumer.get(op.out)
        if users.get(op.out) != 1 or nxt is None or len(nxt.ins) != 1 or id(nxt) in dropped:
            return None
        return nxt

    def absorb(head, link):
        dropped.add(id(link))
        head.out = link.out

    def take_relu(head):
        nxt = next_op(head)
        if nxt is not None and _plain(nxt):
            ok, cap = _relu_cap(nxt.layer)
            if ok:
                head.activation, head.cap, head.relu = "relu", cap, nxt.layer
                absorb(head, nxt)

    def add_layer(op):  # a Keras Add of two tensors (not single, so not _plain)
        return (op.kind == "layer" and type(op.layer) is Add and len(op.ins) == 2 and not op.single
                and not op.args and not op.kwargs)

    for op in ops:
        if id(op) in dropped or not (_plain(op) or op.kind == "add" or add_layer(op)):
            continue
        layer = op.layer
        if op.kind == "add":
            if op.activation == "linear":
                take_relu(op)
            continue
        if type(layer) is ZeroPadding2D and layer.built:
            nxt = next_op(op)
            (top, bottom), (left, right) = layer.padding
            if nxt is not None and _plain(nxt) and _is_conv(nxt.layer) and nxt.layer.padding == "valid":
                # the conv takes the padding: it becomes the head, reading the padding's input
                nxt.pads, nxt.ins = (top, bottom, left, right), list(op.ins)
                dropped.add(id(op))
            elif nxt is not None and _pool_takes_zero_padding(nxt, (top, bottom, left, right)) and any(
                    p.out == op.ins[0] and id(p) not in dropped and p.activation == "relu" for p in ops):
                # a max pool over zero padding of a ReLU's output (>= 0, or NaN) is the max pool
                # with its own padding, which no window reads (ResNet-50's pool1: the pad step
                # 0.08 ms alone, the pool with padding 0.07 ms faster than pad + pool, 1 thread)
                nxt.pads, nxt.ins = (top, bottom, left, right), list(op.ins)
                dropped.add(id(op))
            continue
        if _is_conv(layer):
            op.kind = "conv"
            op.activation = layer.activation
            if layer.activation == "linear":
                nxt = next_op(op)
                if nxt is not None and _plain(nxt) and _is_bn(nxt.layer):
                    op.bn = nxt.layer
                    absorb(op, nxt)
                take_relu(op)
        elif _is_bn(layer):
            op.kind, op.activation = "bn", "linear"
            take_relu(op)
        elif add_layer(op):
            op.kind, op.activation = "add", "linear"
            take_relu(op)
    del producer
    live = [op for op in ops if id(op) not in dropped]
    return _fuse_residuals(live, outputs)


def _fuse_residuals(ops, outputs):
    """Each add (+ relu) of two equal-shaped tensors whose later-computed input is a linear conv
    with no other user becomes that conv's residual epilogue; returns the new op list.
    Shapes are checked when the step is built (a broadcasting add keeps a separate add)."""
    users, index = {}, {op.out: n for n, op in enumerate(ops)}
    for op in ops:
        for s in op.ins:
            users[s] = users.get(s, 0) + 1
    for s in outputs:
        users[s] = users.get(s, 0) + 1
    dropped = set()
    for op in ops:
        if op.kind != "add" or len(op.ins) != 2 or op.ins[0] == op.ins[1] or op.activation not in ("linear", "relu"):
            continue
        (late, s_late), (_, s_early) = sorted(((index.get(s, -1), s) for s in op.ins), reverse=True)
        conv = ops[late] if late >= 0 else None
        if (conv is None or conv.kind != "conv" or id(conv) in dropped or conv.residual is not None
                or conv.activation != "linear" or conv.cap is not None or users.get(s_late) != 1):
            continue
        # The add's output now comes out of the conv, which runs after the other input exists.
        conv.ins.append(s_early)
        conv.residual, conv.activation, conv.cap, conv.relu = s_early, op.activation, op.cap, op.relu
        conv.out = op.out
        dropped.add(id(op))
    return [op for op in ops if id(op) not in dropped]


# -- steps -------------------------------------------------------------------------------------

def _bn_scale_shift(bn, bias):
    """(s, shift) in float64: y_bn = y * s + shift for y = conv without bias, bias added."""
    var = bn.moving_variance._storage.astype(np.float64)
    s = 1.0 / np.sqrt(var + bn.epsilon)
    if bn.gamma is not None:
        s = s * bn.gamma._storage
    shift = -bn.moving_mean._storage.astype(np.float64)
    if bias is not None:
        shift = shift + bias._storage
    shift = shift * s
    if bn.beta is not None:
        shift = shift + bn.beta._storage
    return s, shift


def _shared_entry(op, shared):
    """The model-wide record of one conv (+ folded batch norm) that every plan of the model
    uses: its weights callable (one fold) and its prepared forms (keyed by their size: the
    Winograd transform depends on the weights and the tile size, not on the batch or pads),
    so a model's memory no longer grows with the number of input shapes it has seen."""
    key = (id(op.layer), id(op.bn))
    entry = shared.get(key)
    # the layers are held by the entry, so an id is not reused while it lives; `is` checks anyway
    if entry is None or entry["layer"] is not op.layer or entry["bn"] is not op.bn:
        entry = shared[key] = {"layer": op.layer, "bn": op.bn, "weights": _conv_weights(op), "prepared": {}}
    return key, entry


def _conv_weights(op):
    """A callable () -> (kernel HWIO for the kernel, bias or None), the fold cached by version."""
    layer, bn = op.layer, op.bn
    depthwise = type(layer) is DepthwiseConv2D
    kernel_var = layer.depthwise_kernel if depthwise else layer.kernel
    bias_var = layer.bias
    # What the conv reads: a depthwise kernel (KH, KW, C, M) is the grouped (KH, KW, 1, C*M).
    shape = kernel_var.shape
    grouped = (shape[0], shape[1], 1, shape[2] * shape[3]) if depthwise else shape
    if bn is None:
        def weights():
            return kernel_var._storage.reshape(grouped), None if bias_var is None else bias_var._storage
        weights.variables = [v for v in (kernel_var, bias_var) if v is not None]
        return weights
    variables = [v for v in (kernel_var, bias_var, bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance)
                 if v is not None]
    cache = {"versions": None}

    def weights():
        versions = _versions(variables)
        if versions != cache["versions"]:
            s, shift = _bn_scale_shift(bn, bias_var)
            kernel = kernel_var._storage.reshape(grouped)
            cache["w"] = np.ascontiguousarray((kernel * s).astype(np.float32))
            cache["b"] = shift.astype(np.float32)
            cache["versions"] = versions
        return cache["w"], cache["b"]
    weights.variables = variables
    return weights


def _versions(variables):
    return [v.__dict__.get("_version", 0) for v in variables]


def _prepared_weights(k, weights, x_shape, geometry, store):
    """A callable () -> the kernel's prepared form of the conv's weights for this input shape
    (conv2d_prepare: the Winograd filter transform, which a batch-1 pass would otherwise redo on
    every call; other ungrouped convs' weights packed for the GEMM, which would otherwise read
    them in place at a page per k step or pack them per call), or None where the kernel keeps
    none for this geometry; cached, like the fold, until one of the variables changes. `store`
    (the conv's shared entry's "prepared" dict) keeps one prepared array per form and size for
    all the model's plans: two batch sizes of one layer read the same array. (The geometry picks
    the form, and the two forms of one conv can have the same size: a Winograd F(2x2) transform
    of 8 -> 16 channels and the packed 3x3 weights are both 2304 floats.)"""
    prepare = getattr(k, "conv2d_prepare", None)
    if prepare is None:
        return None
    kernel, _ = weights()
    strides, pads, dilation, groups = geometry
    first = prepare(kernel, x_shape, strides, pads, dilation, groups)
    if first is None:
        return None
    form = k.conv2d_prepared_form(kernel.shape, x_shape, strides, pads, dilation, groups)
    versions = _versions(weights.variables)
    slot = store.setdefault((form, first.size), {"versions": None, "prepared": None})
    if slot["versions"] != versions or slot["prepared"] is None:  # updated in place: plans share it
        slot["versions"], slot["prepared"] = versions, first

    def prepared():
        versions = _versions(weights.variables)
        if versions != slot["versions"]:
            # Fold first: weights() reads the same versions, so the two caches agree.
            w, _ = weights()
            slot["prepared"] = prepare(w, x_shape, strides, pads, dilation, groups)
            slot["versions"] = versions
        return slot["prepared"]
    return prepared


def _epilogue(activation, cap):
    """(kernel activation, cap left for an in-place minimum or None)."""
    if activation == "relu" and cap == 6.0:
        return "relu6", None
    return activation, cap


def _conv_step(op, x, k, residual, entry):
    layer = op.layer
    depthwise = type(layer) is DepthwiseConv2D
    weights = entry["weights"]
    kernel, _ = weights()
    strides, dilation = pair(layer.strides, "strides"), pair(layer.dilation_rate, "dilation_rate")
    pads = op.pads or resolve_padding(layer.padding, x.shape[1:3], kernel.shape[:2], strides, dilation)
    groups = x.shape[3] if depthwise else layer.groups
    if op.activation not in _KERNEL_ACTIVATIONS:  # softmax or a callable: the conv, then the layer's own
        return None
    activation, cap = _epilogue(op.activation, op.cap)
    conv = k.conv2d_forward
    i, o = op.ins[0], op.out
    if op.residual is not None:
        return _residual_conv_step(op, x, residual, k, entry, (strides, pads, dilation, groups), activation, cap)

    if (not depthwise and groups == 1 and kernel.shape[:2] == (1, 1) and strides == (1, 1)
            and dilation == (1, 1) and not any(pads) and x.shape[0] * x.shape[1] * x.shape[2] == 1
            and hasattr(k, "dense_forward")):
        return _one_pixel_pointwise_step(op, k, weights, activation, cap)
    prepared = _prepared_weights(k, weights, x.shape, (strides, pads, dilation, groups), entry["prepared"])
    if prepared is not None:
        def step(r):
            w, b = weights()
            y = conv(r[i], w, b, strides, pads, dilation, groups, activation, None, prepared())
            if cap is not None:
                np.minimum(y, cap, out=y)  # NaN stays NaN
            r[o] = y
    elif cap is None:
        def step(r):
            w, b = weights()
            r[o] = conv(r[i], w, b, strides, pads, dilation, groups, activation)
    else:
        def step(r):
            w, b = weights()
            y = conv(r[i], w, b, strides, pads, dilation, groups, activation)
            np.minimum(y, cap, out=y)  # NaN stays NaN
            r[o] = y
    return step


def _one_pixel_pointwise_step(op, k, weights, activation, cap):
    """A 1x1 conv (stride 1, no padding) over one pixel of one image is y = b + x @ w: the
    dense kernel's one-row product streams w once (MobileNet's classifier conv_preds, 1024 ->
    1000 on the pooled pixel: 0.24 ms through the conv's packed GEMM against 0.17 in
    onnxruntime, 1 thread, Zen 4; see RESULTS.md, helper S stop 35). Same activation, cap as
    in-place minimum."""
    dense, i, o = k.dense_forward, op.ins[0], op.out

    def step(r):
        w, b = weights()
        xi = r[i]
        y = dense(xi.reshape(1, xi.shape[3]), w.reshape(w.shape[2], w.shape[3]), b, activation)
        if cap is not None:
            np.minimum(y, cap, out=y)  # NaN stays NaN
        r[o] = y.reshape(1, 1, 1, y.shape[1])
    return step


def _residual_conv_step(op, x, residual, k, entry, geometry, activation, cap):
    """activation(conv(x) + residual), the add inside the conv's output pass; a residual whose
    shape differs from the conv's output (a broadcasting add) is added by numpy after it."""
    strides, pads, dilation, groups = geometry
    conv = k.conv2d_forward
    i, res, o = op.ins[0], op.residual, op.out
    weights = entry["weights"]
    kernel, _ = weights()
    size = [(x.shape[1 + a] + pads[2 * a] + pads[2 * a + 1] - dilation[a] * (kernel.shape[a] - 1) - 1) // strides[a] + 1
            for a in range(2)]
    fused = residual.shape == (x.shape[0], size[0], size[1], kernel.shape[3])
    prepared = _prepared_weights(k, weights, x.shape, geometry, entry["prepared"]) or (lambda: None)

    def step(r):
        w, b = weights()
        if fused:
            y = conv(r[i], w, b, strides, pads, dilation, groups, activation, r[res], prepared())
        else:
            y = conv(r[i], w, b, strides, pads, dilation, groups, "linear", None, prepared()) + r[res]
            if activation != "linear":
                y = k.bias_act_forward(y, None, activation)
        if cap is not None:
            np.minimum(y, cap, out=y)  # NaN stays NaN
        r[o] = y
    return step


def _bn_step(op, x, k):
    bn, cap = op.layer, op.cap
    relu = op.activation == "relu"
    run = k.batch_norm_forward_inference
    i, o = op.ins[0], op.out
    ones = zeros = None
    if bn.gamma is None:
        ones = np.ones(bn.moving_mean.shape, np.float32)
    if bn.beta is None:
        zeros = np.zeros(bn.moving_mean.shape, np.float32)

    def step(r):
        y = run(r[i], ones if bn.gamma is None else bn.gamma._storage,
                zeros if bn.beta is None else bn.beta._storage,
                bn.moving_mean._storage, bn.moving_variance._storage, bn.epsilon, relu)
        if cap is not None:
            np.minimum(y, cap, out=y)
        r[o] = y
    return step


def _add_step(op, k):
    a, b, o = op.ins[0], op.ins[1], op.out
    activation, cap = _epilogue(op.activation, op.cap)
    add = k.add_act_forward

    def step(r):
        if r[a].shape != r[b].shape:  # broadcasting: numpy, then the activation
            y = r[a] + r[b]
            r[o] = y if activation == "linear" else k.bias_act_forward(y, None, activation)
        else:
            r[o] = add(r[a], r[b], activation)
        if cap is not None:
            np.minimum(r[o], cap, out=r[o])
    return step


def _layer_step(op, x, k):
    """A prepared call for the simple layers; None where the layer runs as itself."""
    layer, i, o = op.layer, op.ins[0], op.out
    cls = type(layer)
    if not _plain(op):
        return None
    if cls is ReLU or cls is Activation:
        ok, cap = _relu_cap(layer)
        if ok:
            name, rest = _epilogue("relu", cap)
            if rest is None:
                return lambda r: r.__setitem__(o, k.bias_act_forward(r[i], None, name))
            return lambda r: r.__setitem__(o, np.clip(r[i], 0.0, rest))
        if cls is Activation and layer.activation in ("sigmoid", "tanh"):
            name = layer.activation
            return lambda r: r.__setitem__(o, k.bias_act_forward(r[i], None, name))
        if cls is Activation and layer.activation == "softmax" and x.ndim == 2:
            return lambda r: r.__setitem__(o, k.softmax_forward(r[i]))
        return None
    if cls is Dense and x.ndim == 2 and layer.activation in _KERNEL_ACTIVATIONS + ("softmax",):
        name = layer.activation
        dense = k.dense_forward
        if name != "softmax":  # the activation in the dense kernel's output pass
            def step(r):
                r[o] = dense(r[i], layer.kernel._storage, None if layer.bias is None else layer.bias._storage, name)
            return step
        softmax = k.softmax_forward

        def step(r):
            r[o] = softmax(dense(r[i], layer.kernel._storage, None if layer.bias is None else layer.bias._storage))
        return step
    if cls in (MaxPooling2D, AveragePooling2D) and x.ndim == 4:
        pool = pair(layer.pool_size, "pool_size")
        strides = pool if layer.strides is None else pair(layer.strides, "strides")
        pads = op.pads or resolve_padding(layer.padding, x.shape[1:3], pool, strides)
        run = k.max_pool2d_forward if cls is MaxPooling2D else k.avg_pool2d_forward
        return lambda r: r.__setitem__(o, run(r[i], pool, strides, pads))
    if cls is GlobalAveragePooling2D and x.ndim == 4:
        run, keep = k.global_avg_pool2d_forward, layer.keepdims

        def step(r):
            y = run(r[i])
            r[o] = y.reshape(y.shape[0], 1, 1, y.shape[1]) if keep else y
        return step
    if cls is ZeroPadding2D and x.ndim == 4:  # one no conv took (ResNet-50's before its pool)
        (top, bottom), (left, right) = layer.padding
        pads, pad = (top, bottom, left, right), k.zero_pad2d
        return lambda r: r.__setitem__(o, pad(r[i], pads))
    if cls is Flatten:
        return lambda r: r.__setitem__(o, r[i].reshape(r[i].shape[0], -1))
    if cls is Reshape:  # a view of the C-ordered input, its sample shape resolved once
        shape = (x.shape[0],) + layer._resolve(x.shape[1:])
        return lambda r: r.__setitem__(o, r[i].reshape(shape))
    if cls is Dropout:  # inference: the identity
        return lambda r: r.__setitem__(o, r[i])
    return None


def _fallback_step(op):
    """The layer as itself, on Tensors, in inference mode."""
    layer, ins, o, single, args = op.layer, op.ins, op.out, op.single, op.args
    kwargs = {"training": False, **op.kwargs}

    def step(r):
        xs = [Tensor(r[s]) for s in ins]
        with no_grad():  # the plan's hot path runs outside no_grad: only a layer call needs it
            y = layer(xs[0] if single else xs, *args, **kwargs)
        if not isinstance(y, Tensor):
            raise Unsupported(f"layer {layer.name!r} returns {type(y).__name__}, not one tensor")
        d = y.data
        # a layer may return a view (a crop's slice); the kernels of the next steps take C order
        r[o] = d if d.flags.c_contiguous else d.copy()
    return step


def _make_step(op, regs, k, shared, used):
    """The step for op; `shared` is the model's record of its convs (_shared_entry), and the
    keys this plan reads are added to `used`."""
    x = regs[op.ins[0]] if op.ins else None
    step = None
    if op.kind == "conv":
        key, entry = _shared_entry(op, shared)
        used.add(key)
        step = _conv_step(op, x, k, None if op.residual is None else regs[op.residual], entry)
        if step is None:
            raise Unsupported(f"{op.layer.name}: activation {op.activation!r}")
    elif op.kind == "bn":
        step = _bn_step(op, x, k)
    elif op.kind == "add":
        step = _add_step(op, k)
    else:
        step = _layer_step(op, x, k)
    return step or _fallback_step(op)


class Plan:
    """The prepared steps of one model on one input signature; built by its first run."""

    def __init__(self, model):
        # the model's conv records, shared by all its plans (_shared_entry); `used`: this plan's
        self.shared, self.used = model.__dict__.setdefault("_inference_shared", {}), set()
        graph = Graph()
        if hasattr(model, "_nodes"):
            inputs = [graph.new_slot() for _ in model._input_tensors]
            out = graph.functional(model, inputs)
        else:
            inputs = [graph.new_slot()]
            out = graph.layers(model._tracked, inputs[0])
        self.inputs, self.output, self.slots = inputs, out, graph.slots
        self.ops = fuse(graph.ops, [out])
        last_use = {}
        for n, op in enumerate(self.ops):
            for s in op.ins:
                last_use[s] = n
        # slots to drop after each op (never the output)
        self.dead = [tuple(s for s in set(op.ins) if last_use[s] == n and s != out) for n, op in enumerate(self.ops)]
        self.steps = None

    def describe(self, layer_names=False):
        """The steps in order, e.g. ['conv2d + batch_normalization + relu', 'add + relu', ...]
        (layer_names: the fused ReLU layer's own name in place of 'relu' / 'relu6')."""
        names = []
        for op in self.ops:
            parts = [op.layer.name if op.layer is not None else "add"]
            if op.pads is not None:
                parts.insert(0, "pad")
            if op.bn is not None:
                parts.append(op.bn.name)
            if op.residual is not None:
                parts.append("add")
            if op.activation == "relu":
                relu = "relu" if op.cap is None else f"relu{op.cap:g}"
                parts.append(op.relu.name if layer_names and op.relu is not None else relu)
            names.append(" + ".join(parts))
        return names

    def run(self, arrays):
        regs = [None] * self.slots
        for s, a in zip(self.inputs, arrays):
            regs[s] = a
        if self.steps is None:
            return self._prepare(regs, arrays)
        threads = _C.get_num_threads()
        if threads > 1:
            return self._run_team(regs, threads)
        self._walk(regs)
        return regs[self.output]

    def _prepare(self, regs, arrays):
        """The first run: prepares each step from its real input and sizes the plan's work,
        which fixes its thread count (_TEAM_MIN_WORK)."""
        k, steps, work = kernels_for("cpu"), [], 0
        for op, dead in zip(self.ops, self.dead):
            step = _make_step(op, regs, k, self.shared, self.used)
            step(regs)
            steps.append(step)
            work += _work(op, regs[op.out])
            for s in dead:
                regs[s] = None
        self.steps = list(zip(steps, self.dead))
        # The loop's bookkeeping per step (a tuple unpacked, an empty loop over dead slots)
        # is a tenth of a LeNet step at batch 1: the hot loop walks the steps alone, and
        # the slots die in the few places they must (runs keyed by the step before them).
        self.flat = [(tuple(steps[a:b]), clear) for a, b, clear in _runs(self.dead)]
        self.work = work
        self.one_thread = work < _TEAM_MIN_WORK * len(steps)
        if self.one_thread and _C.get_num_threads() > 1:
            return self.run(arrays)  # that run was the team's: every output is one thread's
        return regs[self.output]

    def _walk(self, regs):
        for run, clear in self.flat:
            for step in run:
                step(regs)
            for s in clear:
                regs[s] = None

    def _run_team(self, regs, threads):
        """The steps with the thread knob at `threads` > 1, or at 1 for a plan too small for a
        team (_TEAM_MIN_WORK); the knob is back at `threads` afterwards, also when a step raises."""
        one = self.one_thread
        hold = _HOLD_TEAM and not one
        if one:
            _C.set_num_threads(1)
        elif hold:
            _C._team_hold_begin()
        try:
            self._walk(regs)
        finally:
            if one:
                _C.set_num_threads(threads)
            elif hold:
                _C._team_hold_end()
        return regs[self.output]


def _work(op, out):
    """A step's work for the thread rule: multiply-adds for a conv or dense layer (output
    elements times the kernel's taps per output), output elements for any other step."""
    layer, size = op.layer, getattr(out, "size", 0)
    if isinstance(layer, DepthwiseConv2D):
        kh, kw = layer.depthwise_kernel.shape[:2]
        return size * kh * kw
    if isinstance(layer, (Conv2D, Dense)):
        return size * int(np.prod(layer.kernel.shape[:-1]))
    return size


def _runs(dead):
    """[(first, end, slots to clear after step end-1)]: the steps cut after each one that
    frees a slot still holding a large array (intermediates are dropped at their last use, so
    a long model's peak memory stays a few activations)."""
    out, start = [], 0
    for n, slots in enumerate(dead):
        if slots or n == len(dead) - 1:
            out.append((start, n + 1, slots))
            start = n + 1
    return out


def _input_arrays(model, inputs):
    """The inputs as C-contiguous float32 arrays, or None when the plan does not take them."""
    flat = inputs if isinstance(inputs, (list, tuple)) else [inputs]
    arrays = []
    for x in flat:
        a = x.data if isinstance(x, Tensor) else x
        if not isinstance(a, np.ndarray):
            if isinstance(a, KerasTensor) or not isinstance(a, (list, tuple, float, int)):
                return None
            a = np.asarray(a)
        if a.dtype.kind != "f":
            return None
        arrays.append(np.ascontiguousarray(a, dtype=np.float32))
    return arrays


def _structure(model):
    """What a plan depends on besides the input shapes: a Sequential's layers can change."""
    return tuple(map(id, model._tracked)) if not hasattr(model, "_nodes") else ()


def _signature(model, arrays):
    return tuple(a.shape for a in arrays), _structure(model)


def predict(model, inputs):
    """The model's inference output for `inputs` through its plan (a NumPy array), or None
    where no plan applies (another backend, fusion off, a non-float input, a graph the plan
    does not take); the caller then runs the plain forward."""
    last = model.__dict__.get("_inference_last")
    if (last is not None and type(inputs) is np.ndarray and inputs.shape == last[0] and inputs.dtype == np.float32
            and inputs.flags.c_contiguous and _enabled[0] and fusion._enabled[0] and get_backend() == "cpu"
            and last[1] == _structure(model)):
        # The hot path: one array, the shape of the model's last plan. Everything else this
        # function checks was checked when that plan was made (once per shape); a change of
        # layers (Sequential.add / pop) changes the structure and takes the full path.
        return last[2].run((inputs,))
    from .functional import Functional
    from .sequential import Sequential
    if not (_enabled[0] and fusion.get_fusion()) or type(model) not in (Functional, Sequential) or not model.built:
        return None
    if get_backend() != "cpu" or getattr(model, "_inference_unsupported", False):
        return None
    if any(layer.dtype != "float32" for layer in model._tracked if hasattr(layer, "dtype")):
        return None
    arrays = _input_arrays(model, inputs)
    if arrays is None or len(arrays) != (len(model._input_tensors) if hasattr(model, "_nodes") else 1):
        return None
    plans = model.__dict__.setdefault("_inference_plans", {})
    key = _signature(model, arrays)
    plan = plans.get(key)
    with no_grad():
        if plan is None:
            model._check_input_spec(inputs)  # the plain call's shape errors, once per shape
            try:
                plan = Plan(model)
                out = plan.run(arrays)
            except Unsupported:
                model._inference_unsupported = True
                return None
            if len(plans) >= _MAX_PLANS:
                plans.pop(next(iter(plans)))
            plans[key] = plan
            # the shared conv records no remaining plan reads (an evicted plan's, a removed layer's)
            live = set().union(*(p.used for p in plans.values()))
            for stale in [s for s in plan.shared if s not in live]:
                del plan.shared[stale]
        else:
            out = plan.run(arrays)
    if len(arrays) == 1 and plan.steps is not None:
        model._inference_last = (arrays[0].shape, key[1], plan)
    return out
