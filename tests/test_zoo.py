"""The model zoo: reference parameter counts and one training step per model on both backends."""
import numpy as np
import pytest

import fastconv as fc
from fastconv import models

# Parameter counts at 224x224x3 and 1000 classes, with the reference each one matches.
REFERENCE_COUNTS = {
    "vgg16": 138_357_544,       # Keras applications
    "vgg19": 143_667_240,       # Keras applications
    "resnet50": 25_636_712,     # Keras applications
    "densenet121": 8_062_504,   # Keras applications
    "mobilenet": 4_253_864,     # Keras applications (alpha 1.0)
    "resnet101": 44_707_176,    # Keras applications
    "resnet152": 60_419_944,    # Keras applications
    "densenet169": 14_307_880,  # Keras applications
    "densenet201": 20_242_984,  # Keras applications
    "vgg11": 132_863_336,       # torchvision
    "vgg13": 133_047_848,       # torchvision
}


@pytest.mark.parametrize("name,expected", sorted(REFERENCE_COUNTS.items()))
def test_reference_parameter_counts(name, expected):
    assert getattr(models, name)().count_params() == expected


def conv(k, cin, cout, bias=True):
    return k * k * cin * cout + (cout if bias else 0)


def test_resnet18_34_trainable_counts_match_torchvision():
    for ctor, expected in ((models.resnet18, 11_689_512), (models.resnet34, 21_797_672)):
        m = ctor()
        assert sum(int(np.prod(w.shape)) for w in m.trainable_weights) == expected


def test_counts_by_hand_for_the_rest():
    # AlexNet single tower at 227: conv1..5 + fc6 (6*6*256 -> 4096) + fc7 + fc8
    alex = (conv(11, 3, 96) + conv(5, 96, 256) + conv(3, 256, 384) + conv(3, 384, 384) + conv(3, 384, 256)
            + 9216 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 1000 + 1000)
    assert models.alexnet().count_params() == alex == 62_378_344
    nin = sum(conv(k, cin, c) + 2 * conv(1, c, c) for k, cin, c in ((11, 3, 96), (5, 96, 256), (3, 256, 384), (3, 384, 1000)))
    assert models.nin().count_params() == nin
    # GoogLeNet: stem + Table 1 inception blocks + classifier
    table1 = [(192, 64, 96, 128, 16, 32, 32), (256, 128, 128, 192, 32, 96, 64), (480, 192, 96, 208, 16, 48, 64),
              (512, 160, 112, 224, 24, 64, 64), (512, 128, 128, 256, 24, 64, 64), (512, 112, 144, 288, 32, 64, 64),
              (528, 256, 160, 320, 32, 128, 128), (832, 256, 160, 320, 32, 128, 128), (832, 384, 192, 384, 48, 128, 128)]
    incep = sum(conv(1, cin, a) + conv(1, cin, b) + conv(3, b, c) + conv(1, cin, d) + conv(5, d, e) + conv(1, cin, f)
                for cin, a, b, c, d, e, f in table1)
    g = conv(7, 3, 64) + conv(1, 64, 64) + conv(3, 64, 192) + incep + 1024 * 1000 + 1000
    assert models.googlenet().count_params() == g
    # LeNet-5 (d2l): 156 + 2416 + 48120 + 10164 + 850
    assert models.lenet5().count_params() == 61_706
    # CIFAR ResNet-20 with projection shortcuts: stem, 9 basic blocks, 2 projections, BN = 4 per channel
    blocks = sum(2 * conv(3, c, c, False) for c in (16, 32, 64)) * 3 - conv(3, 32, 32, False) - conv(3, 64, 64, False) \
        + conv(3, 16, 32, False) + conv(3, 32, 64, False)
    bn_channels = 16 + 3 * 2 * (16 + 32 + 64) + 32 + 64
    r20 = conv(3, 3, 16, False) + blocks + conv(1, 16, 32, False) + conv(1, 32, 64, False) + 4 * bn_channels + 64 * 10 + 10
    assert models.resnet20().count_params() == r20


def test_lenet5_layer_shapes():
    m = models.lenet5()
    shapes = [l.output_shape[1:] for l in m.layers]
    assert shapes == [(28, 28, 6), (14, 14, 6), (10, 10, 16), (5, 5, 16), (400,), (120,), (84,), (10,)]
    with pytest.raises(ValueError, match="variant"):
        models.lenet5(variant="tiny")


SMALL = [
    ("lenet5", dict(), (28, 28, 1)),
    ("lenet5", dict(variant="modern"), (28, 28, 1)),
    ("alexnet", dict(classes=10), (67, 67, 3)),
    ("nin", dict(classes=10), (67, 67, 3)),
    ("vgg11", dict(include_top=False, pooling="avg"), (32, 32, 3)),
    ("googlenet", dict(classes=10), (32, 32, 3)),
    ("resnet18", dict(classes=10, stem="cifar"), (32, 32, 3)),
    ("resnet50", dict(classes=10), (32, 32, 3)),
    ("resnet20", dict(), (32, 32, 3)),
    ("densenet121", dict(classes=10), (32, 32, 3)),
    ("small_densenet", dict(blocks=(2, 2, 2, 2)), (28, 28, 1)),
    ("mobilenet", dict(classes=10, alpha=0.25), (32, 32, 3)),
]


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@pytest.mark.parametrize("name,kwargs,shape", SMALL, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(SMALL)])
def test_one_training_step(backend, name, kwargs, shape):
    fc.set_seed(0)
    with fc.backend(backend):
        model = getattr(models, name)(input_shape=shape, **kwargs)
        out_dim = model.output_shape[-1]
        x = np.random.default_rng(0).random((2,) + shape).astype(np.float32)
        y = np.array([0, 1])
        model.compile(fc.optimizers.SGD(0.01), fc.losses.SparseCategoricalCrossentropy())
        loss = model.train_on_batch(x, y)
        assert np.isfinite(loss) and out_dim >= 2
        for w in model.trainable_weights:
            assert w.grad is not None and np.all(np.isfinite(w.grad)), w.name
            assert np.any(w.grad != 0), f"{name}: zero gradient for {w.name}"
