"""What the benchmarks run (NHWC). Full sizes from issues 3 and 8; --quick shrinks them."""

# name, N, H, W, Cin, Cout, k, stride, padding, groups
CONV_LAYERS = [
    ("lenet conv1", 256, 28, 28, 1, 6, 5, 1, "same", 1),
    ("lenet conv2", 256, 14, 14, 6, 16, 5, 1, "valid", 1),
    ("stem 7x7 s2", 8, 224, 224, 3, 64, 7, 2, "same", 1),
    ("56x56 64->64 k3", 32, 56, 56, 64, 64, 3, 1, "same", 1),
    ("56x56 64->128 k3 s2", 32, 56, 56, 64, 128, 3, 2, "same", 1),
    ("14x14 256->256 k3", 32, 14, 14, 256, 256, 3, 1, "same", 1),
    ("28x28 256->64 k1", 32, 28, 28, 256, 64, 1, 1, "valid", 1),
    ("depthwise 56x56 64 k3", 32, 56, 56, 64, 64, 3, 1, "same", 64),
]

# name, kind, N, H, W, C, pool, stride, padding
OTHER_OPS = [
    ("max pool 3x3 s2 same", "maxpool", 32, 112, 112, 64, 3, 2, "same"),
    ("avg pool 2x2", "avgpool", 32, 112, 112, 64, 2, 2, "valid"),
    ("batch norm train", "batchnorm", 32, 56, 56, 64, None, None, None),
    ("dense 4096->1000", "dense", 256, 1, 1, 4096, 1000, None, None),
]

# name, batch, input shape (HWC), classes
MODELS = [
    ("lenet5", 256, (28, 28, 1), 10),
    ("lenet5_maxpool", 256, (28, 28, 1), 10),  # LeNet-5 as written today: ReLU + max pooling
    ("resnet18_cifar", 64, (32, 32, 3), 10),
    ("small_densenet", 64, (96, 96, 1), 10),
    ("resnet50", 16, (224, 224, 3), 1000),
]


def quick(spec_list, kind):
    """Tiny versions of the same cases, for smoke runs."""
    if kind == "conv":
        return [(n, min(N, 2), min(H, 16), min(W, 16), Ci, Co, k, s, p, g)
                for n, N, H, W, Ci, Co, k, s, p, g in spec_list[:4] + spec_list[-1:]]
    if kind == "ops":
        return [(n, kd, 2, min(H, 16), min(W, 16), min(C, 64), p, s, pad) for n, kd, _, H, W, C, p, s, pad in spec_list]
    return [(n, 4, (min(s[0], 32), min(s[1], 32), s[2]), c) for n, _, s, c in spec_list[:3]]
