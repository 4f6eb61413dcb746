"""Training steps (forward + backward + SGD-momentum update) of the same architectures in each
framework. fastconv's come from fastconv.models; the peers' are written here to match."""
import numpy as np


def _batch(batch, shape, classes, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((batch,) + tuple(shape), dtype=np.float32), rng.integers(0, classes, batch)


def fastconv_model(name, shape, classes):
    from fastconv import models
    if name in ("lenet5", "lenet5_maxpool"):  # sigmoid + average pooling (d2l), ReLU + max pooling
        return models.lenet5(shape, classes, variant="classic" if name == "lenet5" else "modern",
                             classifier_activation=None)
    if name == "resnet18_cifar":
        return models.resnet18(shape, classes, stem="cifar")
    if name == "small_densenet":
        return models.small_densenet(shape, classes)
    if name == "mobilenet":
        return models.mobilenet(shape, classes)
    return models.resnet50(shape, classes)


def fastconv_step(name, batch, shape, classes):
    import fastconv as fc
    model = fastconv_model(name, shape, classes)
    model.compile(fc.optimizers.SGD(0.01, momentum=0.9), fc.losses.SparseCategoricalCrossentropy(from_logits=name.startswith("lenet5")))
    x, y = _batch(batch, shape, classes)
    return lambda: model.train_on_batch(x, y)


# ---- PyTorch (channels_last) ----
def torch_model(torch, name, shape, classes):
    nn = torch.nn
    h, w, c = shape
    if name in ("lenet5", "lenet5_maxpool"):
        act, pool = (nn.Sigmoid, nn.AvgPool2d) if name == "lenet5" else (nn.ReLU, nn.MaxPool2d)
        return nn.Sequential(nn.Conv2d(c, 6, 5, padding=2), act(), pool(2), nn.Conv2d(6, 16, 5),
                             act(), pool(2), nn.Flatten(), nn.Linear(16 * ((h // 2 - 4) // 2) ** 2, 120),
                             act(), nn.Linear(120, 84), act(), nn.Linear(84, classes))

    def bn(ch):
        return nn.BatchNorm2d(ch, eps=1e-3, momentum=0.01)

    class Block(nn.Module):
        def __init__(self, cin, f, stride, bottleneck):
            super().__init__()
            out = 4 * f if bottleneck else f
            if bottleneck:
                self.path = nn.Sequential(nn.Conv2d(cin, f, 1, stride), bn(f), nn.ReLU(), nn.Conv2d(f, f, 3, 1, 1), bn(f),
                                          nn.ReLU(), nn.Conv2d(f, out, 1), bn(out))
            else:
                self.path = nn.Sequential(nn.Conv2d(cin, f, 3, stride, 1, bias=False), bn(f), nn.ReLU(),
                                          nn.Conv2d(f, f, 3, 1, 1, bias=False), bn(f))
            self.proj = (nn.Sequential(nn.Conv2d(cin, out, 1, stride, bias=bottleneck), bn(out))
                         if stride != 1 or cin != out else nn.Identity())

        def forward(self, x):
            return torch.relu(self.path(x) + self.proj(x))

    if name in ("resnet18_cifar", "resnet50"):
        bottleneck = name == "resnet50"
        layers_ = ([nn.Conv2d(c, 64, 3, 1, 1, bias=False), bn(64), nn.ReLU()] if not bottleneck else
                   [nn.Conv2d(c, 64, 7, 2, 3), bn(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)])
        cin = 64
        for stage, (n, f) in enumerate(zip((3, 4, 6, 3) if bottleneck else (2, 2, 2, 2), (64, 128, 256, 512))):
            for i in range(n):
                layers_.append(Block(cin, f, 2 if stage and not i else 1, bottleneck))
                cin = 4 * f if bottleneck else f
        return nn.Sequential(*layers_, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes))

    if name == "mobilenet":  # MobileNet v1 as fastconv.models.mobilenet (Keras applications) builds it
        def unit(cin, cout, kernel, stride, groups=1):  # conv (TF 'same' padding) - BN - ReLU6
            pad = [nn.ZeroPad2d((0, 1, 0, 1))] if stride == 2 else []
            same = 0 if stride == 2 or kernel == 1 else 1
            return pad + [nn.Conv2d(cin, cout, kernel, stride, same, groups=groups, bias=False), bn(cout), nn.ReLU6()]
        mods, cin = unit(c, 32, 3, 2), 32
        for f, s in [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]:
            mods += unit(cin, cin, 3, s, groups=cin) + unit(cin, f, 1, 1)
            cin = f
        return nn.Sequential(*mods, nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, classes, 1), nn.Flatten(), nn.Softmax(1))

    class Dense(nn.Module):  # small DenseNet (d2l): BN-ReLU-conv3x3 layers, concatenated
        def __init__(self, cin, n, k=32):
            super().__init__()
            self.units = nn.ModuleList(nn.Sequential(bn(cin + i * k), nn.ReLU(), nn.Conv2d(cin + i * k, k, 3, 1, 1, bias=False))
                                       for i in range(n))

        def forward(self, x):
            for unit in self.units:
                x = torch.cat([x, unit(x)], 1)
            return x

    mods, cin = [nn.Conv2d(c, 64, 3, 1, 1, bias=False), bn(64), nn.ReLU()], 64
    if min(h, w) >= 64:  # d2l's downsampling stem, as fastconv.models.small_densenet uses there
        mods = [nn.Conv2d(c, 64, 7, 2, 3, bias=False), bn(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    for i in range(4):
        mods.append(Dense(cin, 4))
        cin += 4 * 32
        if i < 3:
            mods += [bn(cin), nn.ReLU(), nn.Conv2d(cin, cin // 2, 1, bias=False), nn.AvgPool2d(2)]
            cin //= 2
    return nn.Sequential(*mods, bn(cin), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes))


def torch_step(torch, name, batch, shape, classes):
    model = torch_model(torch, name, shape, classes).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = _batch(batch, shape, classes)
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
    yt = torch.from_numpy(y)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(xt), yt)
        loss.backward()
        opt.step()
    return step


# ---- TensorFlow / Keras ----
def tf_model(tf, name, shape, classes):
    L = tf.keras.layers
    if name == "resnet50":
        return tf.keras.applications.ResNet50(weights=None, input_shape=shape, classes=classes,
                                              classifier_activation=None)
    inputs = tf.keras.Input(shape)
    if name in ("lenet5", "lenet5_maxpool"):
        act, pool = ("sigmoid", L.AveragePooling2D) if name == "lenet5" else ("relu", L.MaxPooling2D)
        x = L.Conv2D(6, 5, padding="same", activation=act)(inputs)
        x = pool(2)(x)
        x = L.Conv2D(16, 5, activation=act)(x)
        x = pool(2)(x)
        x = L.Flatten()(x)
        x = L.Dense(120, activation=act)(x)
        x = L.Dense(84, activation=act)(x)
        return tf.keras.Model(inputs, L.Dense(classes)(x))

    def conv_bn(x, f, k, s=1, relu=True):
        x = L.BatchNormalization()(L.Conv2D(f, k, s, padding="same", use_bias=False)(x))
        return L.ReLU()(x) if relu else x

    if name == "small_densenet" and min(shape[:2]) >= 64:
        x = L.MaxPooling2D(3, 2, padding="same")(conv_bn(inputs, 64, 7, 2))
    else:
        x = conv_bn(inputs, 64, 3)
    if name == "resnet18_cifar":
        for stage, f in enumerate((64, 128, 256, 512)):
            for i in range(2):
                s = 2 if stage and not i else 1
                short = conv_bn(x, f, 1, s, relu=False) if s != 1 or x.shape[-1] != f else x
                x = L.ReLU()(L.Add()([conv_bn(conv_bn(x, f, 3, s), f, 3, relu=False), short]))
    else:
        for i in range(4):
            for _ in range(4):
                x = L.Concatenate()([x, L.Conv2D(32, 3, padding="same", use_bias=False)(L.ReLU()(L.BatchNormalization()(x)))])
            if i < 3:
                x = L.ReLU()(L.BatchNormalization()(x))
                x = L.AveragePooling2D(2)(L.Conv2D(x.shape[-1] // 2, 1, use_bias=False)(x))
        x = L.ReLU()(L.BatchNormalization()(x))
    x = L.GlobalAveragePooling2D()(x)
    return tf.keras.Model(inputs, L.Dense(classes)(x))


def tf_step(tf, name, batch, shape, classes):
    model = tf_model(tf, name, shape, classes)
    opt = tf.keras.optimizers.SGD(0.01, momentum=0.9)
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    x, y = _batch(batch, shape, classes)
    x, y = tf.constant(x), tf.constant(y)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss
    return step
