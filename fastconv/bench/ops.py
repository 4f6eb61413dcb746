"""One callable per (framework, op): forward + backward (data and weights), same shapes."""
import numpy as np

from fastconv import functional as F


def _data(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def conv_flops(spec):
    _, n, h, w, cin, cout, k, s, padding, groups = spec
    oh, ow = (F.conv_output_size(h, k, s, padding), F.conv_output_size(w, k, s, padding))
    return 2 * n * oh * ow * k * k * (cin // groups) * cout


def fastconv_conv(spec):
    _, n, h, w, cin, cout, k, s, padding, groups = spec
    x, wt, b = _data((n, h, w, cin)), _data((k, k, cin // groups, cout), 1), _data((cout,), 2)
    y = F.conv2d(x, wt, b, strides=s, padding=padding, groups=groups)
    dy = _data(y.shape, 3)

    def step():
        F.conv2d(x, wt, b, strides=s, padding=padding, groups=groups)
        F.conv2d_backward(dy, x, wt, strides=s, padding=padding, groups=groups)
    return step


def fastconv_op(spec):
    _, kind, n, h, w, c, p, s, padding = spec
    if kind == "dense":
        x, wt, b = _data((n, c)), _data((c, p), 1), _data((p,), 2)
        dy = _data((n, p), 3)
        return lambda: (F.dense(x, wt, b), F.dense_backward(dy, x, wt))
    x = _data((n, h, w, c))
    if kind == "batchnorm":
        g, bt = np.ones(c, np.float32), np.zeros(c, np.float32)

        def bn():
            y, mean, _, inv = F.batch_norm_train(x, g, bt)
            F.batch_norm_backward(y, x, g, mean, inv)
        return bn
    if kind == "maxpool":
        # What the autograd op does: the forward keeps a uint8 argmax (where the backend has
        # one), so the backward never reads x.
        y, arg = F.max_pool2d_with_argmax(x, p, s, padding)
        dy = _data(y.shape, 3)
        if arg is not None:
            def maxpool():
                _, a = F.max_pool2d_with_argmax(x, p, s, padding)
                F.max_pool2d_backward_argmax(dy, a, x.shape, p, s, padding)
            return maxpool
    fwd, bwd = (F.max_pool2d, F.max_pool2d_backward) if kind == "maxpool" else (F.avg_pool2d, F.avg_pool2d_backward)
    dy = _data(fwd(x, p, s, padding).shape, 3)
    arg = x if kind == "maxpool" else x.shape
    return lambda: (fwd(x, p, s, padding), bwd(dy, arg, p, s, padding))


def _torch_pad(torch, x, h, w, k, s, padding, value=0.0):
    if padding != "same":
        return x
    t, b, l, r = F.resolve_padding("same", (h, w), (k, k), (s, s))
    return torch.nn.functional.pad(x, (l, r, t, b), value=value)


def torch_conv(torch, spec):
    _, n, h, w, cin, cout, k, s, padding, groups = spec
    cl = torch.channels_last
    x = torch.from_numpy(_data((n, h, w, cin))).permute(0, 3, 1, 2).contiguous(memory_format=cl).requires_grad_()
    wt = torch.from_numpy(_data((k, k, cin // groups, cout), 1)).permute(3, 2, 0, 1).contiguous(memory_format=cl)
    wt.requires_grad_()
    b = torch.from_numpy(_data((cout,), 2)).requires_grad_()

    def step():
        y = torch.nn.functional.conv2d(_torch_pad(torch, x, h, w, k, s, padding), wt, b, stride=s, groups=groups)
        y.backward(torch.ones_like(y))
        x.grad = wt.grad = b.grad = None
    return step


def torch_op(torch, spec):
    _, kind, n, h, w, c, p, s, padding = spec
    tf_ = torch.nn.functional
    if kind == "dense":
        x = torch.from_numpy(_data((n, c))).requires_grad_()
        lin = torch.nn.Linear(c, p)

        def dense():
            y = lin(x)
            y.backward(torch.ones_like(y))
            x.grad = None
            lin.zero_grad(set_to_none=True)
        return dense
    x = torch.from_numpy(_data((n, h, w, c))).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    if kind == "batchnorm":
        g, b = torch.ones(c, requires_grad=True), torch.zeros(c, requires_grad=True)
        fn = lambda: tf_.batch_norm(x, None, None, g, b, training=True, eps=1e-3)  # noqa: E731
    elif kind == "maxpool":
        fn = lambda: tf_.max_pool2d(_torch_pad(torch, x, h, w, p, s, padding, float("-inf")), p, s)  # noqa: E731
    else:
        fn = lambda: tf_.avg_pool2d(x, p, s)  # noqa: E731

    def step():
        y = fn()
        y.backward(torch.ones_like(y))
        x.grad = None
    return step


def tf_conv(tf, spec):
    _, n, h, w, cin, cout, k, s, padding, groups = spec
    x = tf.constant(_data((n, h, w, cin)))
    depthwise = groups == cin and groups > 1
    wt = tf.Variable(_data((k, k, cin, 1) if depthwise else (k, k, cin // groups, cout), 1))
    b = tf.Variable(_data((cout,), 2))

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch(x)
            if depthwise:
                y = tf.nn.depthwise_conv2d(x, wt, (1, s, s, 1), padding.upper())
            else:
                y = tf.nn.conv2d(x, wt, s, padding.upper())
            y = tf.nn.bias_add(y, b)
        # y is returned too: the gradients of a conv do not need its output, so a step that
        # returned only them let Grappler prune the forward conv (TF then timed 2 of the 3
        # passes: 56x56 64->128 s2 forward 27 ms, dx 28, dw 34, the step 61 ms of CPU).
        return y, tape.gradient(y, [x, wt, b])
    return step  # CPU execution is synchronous: the call returns when the gradients exist


def tf_op(tf, spec):
    _, kind, n, h, w, c, p, s, padding = spec
    if kind == "dense":
        x = tf.constant(_data((n, c)))
        layer = tf.keras.layers.Dense(p)
        layer.build((None, c))
        weights = layer.trainable_variables
        fn = layer
    else:
        x = tf.constant(_data((n, h, w, c)))
        if kind == "batchnorm":
            layer = tf.keras.layers.BatchNormalization(epsilon=1e-3)
            layer.build((None, h, w, c))
            weights = layer.trainable_variables
            fn = lambda t: layer(t, training=True)  # noqa: E731
        else:
            pool = tf.nn.max_pool2d if kind == "maxpool" else tf.nn.avg_pool2d
            weights = []
            fn = lambda t: pool(t, p, s, padding.upper())  # noqa: E731

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
        return y, tape.gradient(y, [x] + list(weights))  # y: keep the forward (see tf_conv)
    return step  # CPU execution is synchronous: the call returns when the gradients exist
