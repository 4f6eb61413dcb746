"""A small branchy graph (Inception-like module, shortcut convolution) built the same way in Keras and
fastconv: where Keras 3 orders layers (and numbers them in .weights.h5) differently from a plain
depth-first walk. build(layers_module, Input, Model)."""


def build(L, Input, Model):
    inp = Input((16, 16, 3))
    x = L.Conv2D(8, 3, padding="same", name="stem")(inp)
    b1 = L.Conv2D(4, 1, name="b1_1x1")(x)
    b2 = L.Conv2D(4, 1, name="b2_1x1")(x)
    b2 = L.BatchNormalization(name="b2_bn")(b2)
    b2 = L.Conv2D(6, 3, padding="same", name="b2_3x3")(b2)
    b3 = L.Conv2D(4, 1, name="b3_1x1")(x)
    b3 = L.Conv2D(6, 3, padding="same", name="b3_3x3a")(b3)
    b3 = L.Conv2D(6, 3, padding="same", name="b3_3x3b")(b3)
    b4 = L.MaxPooling2D(3, strides=1, padding="same", name="b4_pool")(x)
    b4 = L.Conv2D(2, 1, name="b4_1x1")(b4)
    y = L.Concatenate(name="mix")([b1, b2, b3, b4])
    s = L.Conv2D(18, 1, name="shortcut")(x)
    y = L.Add(name="add")([y, s])
    y = L.BatchNormalization(name="post_bn")(y)
    y = L.GlobalAveragePooling2D(name="gap")(y)
    return Model(inp, L.Dense(3, name="head")(y))
