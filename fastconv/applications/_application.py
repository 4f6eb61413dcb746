"""What every Keras application constructor shares: Keras's signature, input-shape checks and
`weights=` (None, "imagenet" from the Keras cache, or a weights file) on top of a zoo builder.

Adding a family is a few lines: `application(__name__, keras_name, zoo_builder, default_size, min_size, imagenet_file, ...)`
in its module (see resnet.py), plus its preprocess_input mode.
"""
import os

KERAS_APPLICATIONS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"


def keras_cache_dir():
    """Where Keras keeps downloaded application weights: $KERAS_HOME/models or ~/.keras/models."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "models")


def imagenet_weights_path(keras_name, file_name, url_folder):
    """The Keras cache path of an application's ImageNet file; raises FileNotFoundError saying
    exactly which file to put where when it is absent (fastconv never downloads)."""
    path = os.path.join(keras_cache_dir(), file_name)
    if os.path.isfile(path):
        return path
    # url_folder: a folder under Keras's usual address, or a whole address (EfficientNet's differs).
    url = (url_folder if url_folder.startswith("https://") else f"{KERAS_APPLICATIONS_URL}{url_folder}/") + file_name
    raise FileNotFoundError(
        f"{keras_name}(weights='imagenet') needs Keras's weight file {file_name}, which is not in the Keras "
        f"cache: put it at {path} (set KERAS_HOME to use another folder). fastconv does not download; get "
        f"the file from {url}, or run "
        f"keras.applications.{keras_name}(weights='imagenet') once where Keras is installed (it saves it "
        f"there), or pass weights='path/to/{file_name}'.")


def _input_shape(keras_name, input_shape, input_tensor, include_top, weights, default_size, min_size):
    if input_tensor is not None:
        shape = getattr(input_tensor, "shape", None)
        if shape is None or len(shape) != 4:
            raise ValueError(f"{keras_name}: input_tensor must be a Keras tensor of shape (batch, height, width, "
                             f"channels), e.g. fastconv.Input((224, 224, 3)); got {input_tensor!r}")
        input_shape = tuple(shape[1:])
    if input_shape is None:
        input_shape = (default_size, default_size, 3)
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or any(not isinstance(d, int) or d <= 0 for d in input_shape):
        raise ValueError(f"{keras_name}: input_shape must be (height, width, channels) of positive ints (NHWC), "
                         f"got {input_shape!r}")
    if weights == "imagenet" and include_top and input_shape != (default_size, default_size, 3):
        raise ValueError(f"{keras_name}: with weights='imagenet' and include_top=True, input_shape must be "
                         f"({default_size}, {default_size}, 3) (the classifier's size); got {input_shape}. "
                         "Use include_top=False for other sizes.")
    if weights == "imagenet" and input_shape[-1] != 3:
        raise ValueError(f"{keras_name}: weights='imagenet' needs 3 input channels, got input_shape {input_shape}")
    if min(input_shape[:2]) < min_size:
        raise ValueError(f"{keras_name}: input height and width must be at least {min_size}, got input_shape "
                         f"{input_shape}")
    return input_shape


def application(family, keras_name, builder, default_size, min_size, imagenet_file, url_folder, doc):
    """A Keras-named constructor over a zoo builder, belonging to the `family` module (which has
    its preprocess_input). imagenet_file(include_top, input_shape, **extra) gives Keras's file
    name for weights='imagenet'."""

    def constructor(include_top=True, weights="imagenet", input_tensor=None, input_shape=None, pooling=None,
                    classes=1000, classifier_activation="softmax", name=None, **extra):
        if not (weights in (None, "imagenet") or isinstance(weights, (str, os.PathLike))):
            raise ValueError(f"{keras_name}: weights must be None, 'imagenet' or the path to a weights file, "
                             f"got {weights!r}")
        if weights not in (None, "imagenet") and not os.path.isfile(weights):
            raise FileNotFoundError(f"{keras_name}: weights file {os.fspath(weights)!r} not found")
        if weights == "imagenet" and include_top and classes != 1000:
            raise ValueError(f"{keras_name}: weights='imagenet' with include_top=True needs classes=1000, got "
                             f"{classes}")
        if pooling not in (None, "avg", "max"):
            raise ValueError(f"{keras_name}: pooling must be None, 'avg' or 'max', got {pooling!r}")
        shape = _input_shape(keras_name, input_shape, input_tensor, include_top, weights, default_size, min_size)
        if weights == "imagenet":  # fail before building: the file decides
            weights = imagenet_weights_path(keras_name, imagenet_file(include_top, shape, **extra), url_folder)
        kwargs = dict(input_shape=shape, classes=classes, include_top=include_top, pooling=pooling,
                      classifier_activation=classifier_activation, input_tensor=input_tensor, **extra)
        if name is not None:
            kwargs["name"] = name
        model = builder(**kwargs)
        if weights is not None:
            model.load_weights(weights)
        return model

    constructor.__name__ = constructor.__qualname__ = keras_name
    constructor.__module__ = family
    constructor.__doc__ = (f"{doc}\n\nKeras's signature: include_top, weights (None, 'imagenet' from the Keras "
                           "cache, or a weights file: legacy .h5 or Keras 3 .weights.h5), input_tensor, input_shape "
                           "(NHWC), pooling (None, 'avg', 'max'), classes, classifier_activation.")
    return constructor


def legacy_file(stem):
    """Keras's usual naming: <stem>_weights_tf_dim_ordering_tf_kernels[_notop].h5."""
    def name(include_top, input_shape, **extra):
        return f"{stem}_weights_tf_dim_ordering_tf_kernels{'' if include_top else '_notop'}.h5"
    return name
