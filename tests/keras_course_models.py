"""The course models, written once against Keras's API and built by either framework.

Every builder takes the `keras` module to use: `fastconv` in the tests, real Keras 3 in
tests/golden/keras_summaries/make_summaries.py (which records Keras's own summaries of these
very models). The code is what a Keras tutorial types, so running it under fastconv is the
"only the import changed" check; `layers` is reached as `keras.layers` on purpose.

SUMMARY_CASES maps a golden file's name to a function `keras -> model` that leaves the model
in the state whose summary was recorded (built, unbuilt, or compiled and fitted).
"""
import numpy as np


# -- the MLP in Keras's three styles ---------------------------------------------------------
def mlp_sequential(keras):
    return keras.Sequential([
        keras.Input(shape=(784,)),
        keras.layers.Dense(512, activation="relu"),
        keras.layers.Dropout(0.2),
        keras.layers.Dense(256, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])


def mlp_functional(keras):
    inputs = keras.Input(shape=(784,))
    x = keras.layers.Dense(512, activation="relu")(inputs)
    x = keras.layers.Dropout(0.2)(x)
    x = keras.layers.Dense(256, activation="relu")(x)
    outputs = keras.layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def mlp_subclassed(keras):
    class MLP(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.hidden1 = keras.layers.Dense(512, activation="relu")
            self.dropout = keras.layers.Dropout(0.2)
            self.hidden2 = keras.layers.Dense(256, activation="relu")
            self.classifier = keras.layers.Dense(10, activation="softmax")

        def call(self, x, training=False):
            x = self.hidden1(x)
            x = self.dropout(x, training=training)
            return self.classifier(self.hidden2(x))

    model = MLP()
    model(np.zeros((2, 784), np.float32))  # Keras 3 builds a subclass's layers by calling it
    return model


def mlp_unbuilt(keras):
    """No input shape anywhere: Keras prints '?' shapes and '0 (unbuilt)' counts."""
    return keras.Sequential([
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(10),
    ])


# -- classic CNNs -----------------------------------------------------------------------------
def lenet5(keras, input_shape=(28, 28, 1), classes=10):
    return keras.Sequential([
        keras.Input(shape=input_shape),
        keras.layers.Conv2D(6, 5, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(16, 5, activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(120, activation="relu"),
        keras.layers.Dense(84, activation="relu"),
        keras.layers.Dense(classes, activation="softmax"),
    ])


def vgg_block(keras):
    """Two VGG blocks (conv-conv-pool) and a classifier, added layer by layer."""
    model = keras.Sequential()
    model.add(keras.Input(shape=(32, 32, 3)))
    for filters in (32, 64):
        model.add(keras.layers.Conv2D(filters, 3, padding="same", activation="relu"))
        model.add(keras.layers.Conv2D(filters, 3, padding="same", activation="relu"))
        model.add(keras.layers.MaxPooling2D(2))
    model.add(keras.layers.Flatten())
    model.add(keras.layers.Dense(128, activation="relu"))
    model.add(keras.layers.Dense(10, activation="softmax"))
    return model


def inception_block(keras):
    """A GoogLeNet-style block: four branches concatenated on channels."""
    inputs = keras.Input(shape=(28, 28, 64))
    b1 = keras.layers.Conv2D(16, 1, padding="same", activation="relu")(inputs)
    b2 = keras.layers.Conv2D(24, 1, padding="same", activation="relu")(inputs)
    b2 = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(b2)
    b3 = keras.layers.Conv2D(4, 1, padding="same", activation="relu")(inputs)
    b3 = keras.layers.Conv2D(8, 5, padding="same", activation="relu")(b3)
    b4 = keras.layers.MaxPooling2D(3, strides=1, padding="same")(inputs)
    b4 = keras.layers.Conv2D(8, 1, padding="same", activation="relu")(b4)
    x = keras.layers.Concatenate()([b1, b2, b3, b4])
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="inception_block")


def resnet_block_functional(keras):
    """One residual block with a projection shortcut, merged by Add."""
    inputs = keras.Input(shape=(32, 32, 16))
    x = keras.layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.Conv2D(32, 3, padding="same", use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    shortcut = keras.layers.Conv2D(32, 1, strides=2, use_bias=False)(inputs)
    shortcut = keras.layers.BatchNormalization()(shortcut)
    x = keras.layers.Add()([x, shortcut])
    outputs = keras.layers.Activation("relu")(x)
    return keras.Model(inputs, outputs, name="resnet_block")


def resnet_subclassed(keras):
    """A small ResNet whose residual blocks are keras.Model subclasses holding Python lists of
    layers (the style of the course's subclassing notebook)."""

    class ResidualBlock(keras.Model):
        def __init__(self, filters, strides=1, **kwargs):
            super().__init__(**kwargs)
            self.main = [
                keras.layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False),
                keras.layers.BatchNormalization(),
                keras.layers.Activation("relu"),
                keras.layers.Conv2D(filters, 3, padding="same", use_bias=False),
                keras.layers.BatchNormalization(),
            ]
            self.skip = []
            if strides > 1:
                self.skip = [
                    keras.layers.Conv2D(filters, 1, strides=strides, use_bias=False),
                    keras.layers.BatchNormalization(),
                ]

        def call(self, inputs, training=False):
            x = inputs
            for layer in self.main:
                x = layer(x, training=training)
            shortcut = inputs
            for layer in self.skip:
                shortcut = layer(shortcut, training=training)
            return keras.activations.relu(x + shortcut)

    class SmallResNet(keras.Model):
        def __init__(self, classes=10, **kwargs):
            super().__init__(**kwargs)
            self.stem = keras.layers.Conv2D(16, 3, padding="same", use_bias=False)
            self.stem_bn = keras.layers.BatchNormalization()
            self.blocks = [ResidualBlock(16), ResidualBlock(32, strides=2), ResidualBlock(64, strides=2)]
            self.pool = keras.layers.GlobalAveragePooling2D()
            self.classifier = keras.layers.Dense(classes, activation="softmax")

        def call(self, inputs, training=False):
            x = keras.activations.relu(self.stem_bn(self.stem(inputs), training=training))
            for block in self.blocks:
                x = block(x, training=training)
            return self.classifier(self.pool(x))

    model = SmallResNet()
    model(np.zeros((2, 32, 32, 3), np.float32))
    return model


def mobilenet_like(keras):
    """Depthwise-separable blocks as MobileNet v1 builds them."""
    inputs = keras.Input(shape=(32, 32, 3))
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU(6.0)(x)
    for filters, strides in ((32, 1), (64, 2)):
        x = keras.layers.DepthwiseConv2D(3, strides=strides, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU(6.0)(x)
        x = keras.layers.Conv2D(filters, 1, use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU(6.0)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="mobilenet_like")


def shared_layer(keras):
    """One Dense layer called on two inputs (shared weights): Keras adds the Connected to column
    and the layer's row lists both calls."""
    left, right = keras.Input(shape=(16,)), keras.Input(shape=(16,))
    encoder = keras.layers.Dense(8, activation="relu")
    merged = keras.layers.Concatenate()([encoder(left), encoder(right)])
    outputs = keras.layers.Dense(1, activation="sigmoid")(merged)
    return keras.Model([left, right], outputs, name="siamese")


def l2_dropout_cnn(keras):
    """The regularised CNN of the course: L2 on every kernel, Dropout between the blocks."""
    l2 = keras.regularizers.l2(1e-4)
    return keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        keras.layers.Conv2D(32, 3, activation="relu", kernel_regularizer=l2),
        keras.layers.MaxPooling2D(2),
        keras.layers.Dropout(0.25),
        keras.layers.Conv2D(64, 3, activation="relu", kernel_regularizer=l2),
        keras.layers.MaxPooling2D(2),
        keras.layers.Dropout(0.25),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu", kernel_regularizer=l2),
        keras.layers.Dropout(0.5),
        keras.layers.Dense(10, activation="softmax"),
    ])


def lenet5_fitted(keras):
    """LeNet after compile + one short fit with Adam: Keras adds the 'Optimizer params' line
    (Adam's two slots per weight, its iteration count and learning rate)."""
    model = lenet5(keras)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x = rng.random((8, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, size=8)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    return model


def lenet5_frozen(keras):
    """LeNet with its feature extractor (conv - pool - conv - pool) frozen for fine-tuning."""
    model = lenet5(keras)
    for layer in model.layers[:4]:
        layer.trainable = False
    return model


def multi_output(keras):
    """Two heads on one trunk, and a nested Sequential used as a layer."""
    inputs = keras.Input(shape=(32,), name="features")
    trunk = keras.Sequential([keras.layers.Dense(16, activation="relu"), keras.layers.Dense(8)], name="trunk")
    h = trunk(inputs)
    return keras.Model(inputs, [keras.layers.Dense(3, name="kind")(h), keras.layers.Dense(1, name="size")(h)],
                       name="two_heads")


def lenet5_feature_extractor(keras):
    """The first conv block of LeNet as its own model, from layer outputs (feature maps)."""
    model = lenet5(keras)
    return keras.Model(inputs=model.inputs, outputs=model.get_layer("max_pooling2d").output,
                       name="features")


SUMMARY_CASES = {
    "mlp_sequential": mlp_sequential,
    "mlp_functional": mlp_functional,
    "mlp_subclassed": mlp_subclassed,
    "mlp_unbuilt": mlp_unbuilt,
    "lenet5": lenet5,
    "lenet5_fitted": lenet5_fitted,
    "vgg_block": vgg_block,
    "inception_block": inception_block,
    "resnet_block_functional": resnet_block_functional,
    "resnet_subclassed": resnet_subclassed,
    "mobilenet_like": mobilenet_like,
    "shared_layer": shared_layer,
    "l2_dropout_cnn": l2_dropout_cnn,
    "lenet5_frozen": lenet5_frozen,
    "multi_output": multi_output,
    "lenet5_feature_extractor": lenet5_feature_extractor,
}

# Golden name -> (model case, summary() keyword arguments): Keras's other summary options.
SUMMARY_OPTIONS = {
    "lenet5_frozen_show_trainable": ("lenet5_frozen", {"show_trainable": True}),
    "resnet_subclassed_expand_nested": ("resnet_subclassed", {"expand_nested": True}),
    "multi_output_expand_nested": ("multi_output", {"expand_nested": True}),
    "resnet_block_layer_range": ("resnet_block_functional", {"layer_range": ["conv2d_1", "add"]}),
    "mlp_sequential_line_length_120": ("mlp_sequential", {"line_length": 120}),
    "inception_block_positions": ("inception_block", {"positions": [0.4, 0.6, 0.7, 1.0]}),
}
