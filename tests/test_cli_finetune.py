"""`fastconv train <application> --weights <file> --freeze-base --unfreeze-after N` on a small
generated RGB image folder: the base loads the file, stays frozen for N epochs (then only
BatchNormalization stays frozen), the usual run files are written and `evaluate` reads them."""
import json

import numpy as np
import pytest

pytest.importorskip("h5py")
Image = pytest.importorskip("PIL.Image")

import fastconv as fc  # noqa: E402
from fastconv.__main__ import main  # noqa: E402
from fastconv._cli_train import build_pretrained  # noqa: E402
from fastconv.applications import MobileNetV2  # noqa: E402


def _folder(root, size=32, per_class=8):
    rng = np.random.default_rng(0)
    for c, colour in enumerate([(220, 30, 30), (30, 220, 30)]):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(per_class):
            img = np.clip(np.array(colour) + rng.normal(0, 10, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / f"c{c}" / f"{i}.png")
    return root


def test_train_fine_tunes_a_pretrained_application(tmp_path, capsys):
    fc.set_seed(5)
    source = MobileNetV2(weights=None, include_top=False, input_shape=(32, 32, 3))
    weights = tmp_path / "base.weights.h5"
    source.save_weights(weights)
    out = tmp_path / "run"
    args = ["train", "mobilenet_v2", "--dataset", str(_folder(tmp_path / "images")), "--weights", str(weights),
            "--freeze-base", "--unfreeze-after", "1", "--epochs", "2", "--image-size", "32", "32",
            "--color-mode", "rgb", "--batch-size", "8", "--val-split", "0.25", "--out", str(out), "--verbose", "0"]
    assert main(args) == 0
    assert "unfroze the base" in capsys.readouterr().out
    run = json.loads((out / "run.json").read_text())
    assert run["weights"] == str(weights) and run["model"] == "mobilenet_v2"

    model, _ = build_pretrained("mobilenet_v2", (32, 32, 3), 2, None)
    model.load_weights(out / "last.weights.npz")
    # BN stayed frozen all along (its statistics are the file's); the convolutions trained after epoch 1.
    np.testing.assert_array_equal(model.get_layer("bn_Conv1").moving_mean.numpy(),
                                  source.get_layer("bn_Conv1").moving_mean.numpy())
    assert not np.array_equal(model.get_layer("Conv_1").kernel.numpy(), source.get_layer("Conv_1").kernel.numpy())
    assert main(["evaluate", str(out / "best.weights.npz")]) == 0
    assert "test accuracy" in capsys.readouterr().out


@pytest.mark.parametrize("extra, says", [
    (["--freeze-base"], "add --weights"),
    (["--weights", "imagenet", "--unfreeze-after", "2"], "add --freeze-base"),
    (["--weights", "nothere.h5"], "not a file"),
])
def test_fine_tune_arguments_are_checked_first(tmp_path, extra, says, capsys):
    name = "lenet5" if extra == ["--freeze-base"] else "resnet50"
    assert main(["train", name, "--dataset", "digits", "--out", str(tmp_path / "o"), *extra]) == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_weights_need_an_application(tmp_path, capsys):
    assert main(["train", "lenet5", "--dataset", "digits", "--weights", "imagenet", "--out", str(tmp_path / "o")]) == 2
    assert "fastconv.applications" in capsys.readouterr().err
