"""Pictures: array helpers always; PNG files written and non-empty when matplotlib is present."""
import numpy as np
import pytest

from fastconv import viz


def test_confusion_matrix_counts():
    cm = viz.confusion_matrix([0, 1, 2, 2, 1], [0, 2, 2, 2, 1])
    np.testing.assert_array_equal(cm, [[1, 0, 0], [0, 1, 1], [0, 0, 2]])
    scores = np.eye(3)[[0, 2, 2, 2, 1]]
    np.testing.assert_array_equal(viz.confusion_matrix([0, 1, 2, 2, 1], scores), cm)
    assert viz.confusion_matrix([0], [0], num_classes=4).shape == (4, 4)
    with pytest.raises(ValueError, match="same length"):
        viz.confusion_matrix([0, 1], [0])


def test_tile_layout_and_normalisation():
    a = np.arange(2 * 3 * 2 * 2, dtype=float).reshape(2, 3, 2, 2)
    t = viz.tile(a, pad=1)
    assert t.shape == (2 * 3 - 1, 3 * 3 - 1)
    np.testing.assert_array_equal(t[:2, :2], [[0, 1 / 3], [2 / 3, 1]])  # each tile scaled to [0, 1]
    assert np.isnan(t[2]).all() and np.isnan(t[:, 2]).all()   # the gutters
    np.testing.assert_array_equal(viz.tile(np.zeros((1, 1, 2, 2)))[:2, :2], 0)  # flat tile: no 0/0


def _png(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    return data


def test_pngs_written(tmp_path):
    pytest.importorskip("matplotlib")
    hist = {"loss": [1.0, 0.6, 0.4], "accuracy": [0.5, 0.7, 0.8],
            "val_loss": [0.9, 0.7, 0.6], "val_accuracy": [0.55, 0.7, 0.75]}
    assert viz.plot_history(hist, str(tmp_path / "c.png")) == str(tmp_path / "c.png")
    _png(tmp_path / "c.png")

    class H:
        history = hist
    viz.plot_history(H(), str(tmp_path / "h.png"))
    _png(tmp_path / "h.png")
    acts = np.random.default_rng(0).random((3, 8, 8, 6))
    viz.plot_feature_maps(acts, str(tmp_path / "f.png"))
    _png(tmp_path / "f.png")
    viz.plot_filters(np.random.default_rng(1).normal(size=(5, 5, 1, 6)), str(tmp_path / "w.png"))
    _png(tmp_path / "w.png")
    cm = viz.plot_confusion_matrix([0, 1, 1, 2], [0, 1, 2, 2], str(tmp_path / "m.png"),
                                   class_names=["a", "b", "c"])
    assert cm.sum() == 4
    _png(tmp_path / "m.png")
    with pytest.raises(ValueError, match="NHWC"):
        viz.plot_feature_maps(np.zeros((2, 2)), str(tmp_path / "x.png"))


def test_missing_matplotlib_message(monkeypatch, tmp_path):
    import builtins
    real = builtins.__import__

    def no_mpl(name, *a, **k):
        if name.startswith("matplotlib"):
            raise ImportError("no matplotlib")
        return real(name, *a, **k)
    monkeypatch.setattr(builtins, "__import__", no_mpl)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        viz.plot_history({"loss": [1.0]}, str(tmp_path / "c.png"))
