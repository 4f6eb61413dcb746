"""fastconv.applications without TensorFlow: Keras 3.15 parameter counts and layer names,
weights= resolution (the Keras cache, the error naming the file to put where), the per-family
preprocess_input values and decode_predictions. The numerical comparison with Keras itself is
tests/test_applications_keras.py (skipped without Keras)."""
import numpy as np
import pytest

import fastconv as fc
from fastconv import applications as apps
from fastconv.saving.keras_h5 import weighted_leaves


@pytest.mark.parametrize("name, expected", [
    ("ResNet50V2", 25_613_800), ("MobileNetV2", 3_538_984),  # Keras 3.15 applications
])
def test_keras_parameter_counts(name, expected):
    assert getattr(apps, name)(weights=None).count_params() == expected


def test_keras_layer_names_and_order():
    # The first weighted layers of Keras 3.15's ResNet50 / MobileNetV2, in Keras's model.layers order.
    names = [l.name for l in weighted_leaves(apps.ResNet50(weights=None, include_top=False, input_shape=(32, 32, 3)))]
    assert names[:12] == ["conv1_conv", "conv1_bn", "conv2_block1_1_conv", "conv2_block1_1_bn", "conv2_block1_2_conv",
                          "conv2_block1_2_bn", "conv2_block1_0_conv", "conv2_block1_3_conv", "conv2_block1_0_bn",
                          "conv2_block1_3_bn", "conv2_block2_1_conv", "conv2_block2_1_bn"]
    names = [l.name for l in weighted_leaves(apps.MobileNetV2(weights=None, alpha=0.35, input_shape=(32, 32, 3)))]
    assert names[:8] == ["Conv1", "bn_Conv1", "expanded_conv_depthwise", "expanded_conv_depthwise_BN",
                         "expanded_conv_project", "expanded_conv_project_BN", "block_1_expand", "block_1_expand_BN"]
    assert names[-3:] == ["Conv_1", "Conv_1_bn", "predictions"]


def test_imagenet_missing_file_says_which_file_where(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
        apps.ResNet50(include_top=False, input_shape=(64, 64, 3))
    msg = str(err.value)
    assert "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in msg
    assert str(tmp_path / "models" / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5") in msg
    assert "keras-applications/resnet/" in msg


def test_imagenet_loads_from_the_keras_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    fc.set_seed(3)
    source = apps.MobileNetV2(weights=None, alpha=0.35, include_top=False, input_shape=(32, 32, 3))
    (tmp_path / "models").mkdir()
    source.save_weights(tmp_path / "models" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_32_no_top.h5")
    fc.set_seed(4)
    loaded = apps.MobileNetV2(alpha=0.35, include_top=False, input_shape=(32, 32, 3))  # weights="imagenet"
    for a, b in zip(source.weights, loaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_argument_errors_name_the_argument(tmp_path):
    with pytest.raises(ValueError, match="classes=1000"):
        apps.VGG16(weights="imagenet", classes=10)
    with pytest.raises(ValueError, match="input_shape must be \\(224, 224, 3\\)"):
        apps.VGG16(weights="imagenet", input_shape=(96, 96, 3))
    with pytest.raises(ValueError, match="at least 32"):
        apps.MobileNet(weights=None, input_shape=(16, 16, 3))
    with pytest.raises(ValueError, match="pooling must be"):
        apps.DenseNet121(weights=None, include_top=False, pooling="mean")
    with pytest.raises(ValueError, match="weights must be None, 'imagenet' or the path"):
        apps.ResNet50(weights=3)
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        apps.ResNet50(weights=str(tmp_path / "nope.h5"))


def test_input_tensor_and_pooling():
    inputs = fc.Input((32, 32, 3))
    model = apps.MobileNetV2(weights=None, alpha=0.35, include_top=False, input_tensor=inputs, pooling="avg")
    assert model.inputs[0] is inputs and model.output_shape == (None, 1280)


def test_preprocess_input_modes_by_hand():
    x = np.array([[[[0.0, 127.5, 255.0]]]], np.float32)  # one RGB pixel
    keep = x.copy()
    np.testing.assert_allclose(apps.resnet50.preprocess_input(x)[0, 0, 0],
                               [255.0 - 103.939, 127.5 - 116.779, 0.0 - 123.68], rtol=1e-6)  # BGR, mean off
    np.testing.assert_allclose(apps.mobilenet_v2.preprocess_input(x)[0, 0, 0], [-1.0, 0.0, 1.0], atol=1e-7)
    np.testing.assert_allclose(apps.densenet.preprocess_input(x)[0, 0, 0],
                               [(0 - 0.485) / 0.229, (0.5 - 0.456) / 0.224, (1 - 0.406) / 0.225], rtol=1e-6)
    np.testing.assert_array_equal(x, keep)  # the input is never modified
    assert apps.vgg16.preprocess_input(np.zeros((2, 4, 4, 3), np.uint8)).dtype == np.float32
    with pytest.raises(ValueError, match="RGB"):
        apps.resnet.preprocess_input(np.zeros((2, 4, 4, 1)))


def test_decode_predictions():
    preds = np.zeros((2, 1000), np.float32)
    preds[0, 0], preds[0, 1] = 0.9, 0.1
    preds[1, 999] = 1.0
    top = apps.resnet50.decode_predictions(preds, top=2)
    assert top[0] == [("n01440764", "tench", pytest.approx(0.9)), ("n01443537", "goldfish", pytest.approx(0.1))]
    assert top[1][0] == ("n15075141", "toilet_tissue", 1.0)
    assert len(apps.imagenet_utils.class_index()) == 1000
    with pytest.raises(ValueError, match="\\(samples, 1000\\)"):
        apps.vgg16.decode_predictions(np.zeros((2, 10)))


def test_inception_xception_efficientnet_are_wired(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="https://storage.googleapis.com/keras-applications/efficientnetb0_notop.h5"):
        apps.EfficientNetB0(include_top=False)
    with pytest.raises(FileNotFoundError, match="keras-applications/xception/xception_weights_tf_dim_ordering_tf_kernels.h5"):
        apps.Xception()
    with pytest.raises(ValueError, match="at least 75"):
        apps.InceptionV3(weights=None, input_shape=(64, 64, 3))
    x = np.array([[[[0.0, 127.5, 255.0]]]], np.float32)
    np.testing.assert_allclose(apps.inception_v3.preprocess_input(x)[0, 0, 0], [-1.0, 0.0, 1.0], atol=1e-7)
    np.testing.assert_allclose(apps.xception.preprocess_input(x)[0, 0, 0], [-1.0, 0.0, 1.0], atol=1e-7)
    np.testing.assert_array_equal(apps.efficientnet.preprocess_input(x), x)  # the model rescales itself
    assert apps.InceptionV3.__module__ == "fastconv.applications.inception_v3"
