"""The affine matrix of Keras's ImageDataGenerator transform, for fastconv.data.kernels.warp_affine.

Keras composes rotation @ shift @ shear @ zoom about the image centre and samples the source
image at ``M @ (row, col, 1)`` with scipy.ndimage (bilinear). Parameter names are Keras's:
`theta` and `shear` in degrees, `tx` shifts along rows (height), `ty` along columns (width),
`zx`/`zy` zoom factors (> 1 shows less of the image: the sampling grid spreads out).

Keras builds the matrix in (x, y) order and swaps it into (row, col) order after centring,
which for a non-square image centres the rotation at (W/2 - 0.5, H/2 - 0.5) in (row, col)
terms; that is reproduced here, since matching Keras's output is the point.
"""
import numpy as np


def keras_transform_matrix(theta=0.0, tx=0.0, ty=0.0, shear=0.0, zx=1.0, zy=1.0, height=1, width=1):
    """(2, 3) float64 matrix mapping an output (row, col, 1) to its source (row, col)."""
    m = np.eye(3)
    if theta:
        t = np.deg2rad(theta)
        m = m @ np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    if tx or ty:
        m = m @ np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]], float)
    if shear:
        s = np.deg2rad(shear)
        m = m @ np.array([[1, -np.sin(s), 0], [0, np.cos(s), 0], [0, 0, 1]])
    if zx != 1 or zy != 1:
        m = m @ np.diag([zx, zy, 1.0])
    oy, ox = height / 2 - 0.5, width / 2 - 0.5
    m = np.array([[1, 0, oy], [0, 1, ox], [0, 0, 1]]) @ m @ np.array([[1, 0, -oy], [0, 1, -ox], [0, 0, 1]])
    # Keras's (x, y) -> (row, col) swap: P M P with P the 2-axis permutation
    m = m[[1, 0, 2]][:, [1, 0, 2]]
    return m[:2].copy()
