"""Central-difference gradient checks in float64, for testing any backward pass.

Typical use, for a kernel pair forward(x) / backward(dy, ...) -> dx:

    dy = rng.standard_normal(forward(x).shape)
    check_grad(lambda x: np.sum(forward(x) * dy), x, backward(dy, ...))

Because sum(forward(x) * dy) is a scalar whose gradient is exactly the vector-Jacobian
product the backward pass computes, one random dy checks the whole Jacobian action.
Non-differentiable points (ReLU at 0, max-pool ties) can be skipped with skip_kinks=True:
an element whose one-sided slopes disagree is reported as skipped instead of failing.
"""
import numpy as np


def numeric_grad(f, x, eps=1e-6):
    """d f / d x by central differences; f maps a float64 array shaped like x to a scalar."""
    x = np.array(x, dtype=np.float64)  # a private copy, perturbed in place below
    grad = np.empty_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        orig = flat[i]
        flat[i] = orig + eps
        f_plus = float(f(x))
        flat[i] = orig - eps
        f_minus = float(f(x))
        flat[i] = orig
        gflat[i] = (f_plus - f_minus) / (2 * eps)
    return grad


def _kinks(f, x, eps, kink_tol):
    """Bool mask of elements where the forward and backward one-sided slopes disagree."""
    x = np.array(x, dtype=np.float64)
    f0 = float(f(x))
    mask = np.zeros(x.shape, bool)
    flat, mflat = x.reshape(-1), mask.reshape(-1)
    for i in range(flat.size):
        orig = flat[i]
        flat[i] = orig + eps
        right = (float(f(x)) - f0) / eps
        flat[i] = orig - eps
        left = (f0 - float(f(x))) / eps
        flat[i] = orig
        mflat[i] = abs(right - left) > kink_tol * max(1.0, abs(right), abs(left))
    return mask


def check_grad(f, x, analytic, *, eps=1e-6, rtol=1e-5, atol=1e-7, skip_kinks=False,
               kink_tol=1e-3, name="x"):
    """Assert that `analytic` matches the numeric gradient of scalar f at x.

    Passes when |analytic - numeric| <= atol + rtol * |numeric| elementwise (the np.allclose
    rule). With skip_kinks, elements at a kink (one-sided slopes differing by more than
    kink_tol, relative) are left out. Returns the number of elements skipped. Raises
    AssertionError naming `name`, the worst element and both values otherwise.
    """
    analytic = np.asarray(analytic, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    if analytic.shape != x.shape:
        raise AssertionError(f"gradient of {name}: shape {analytic.shape} != input shape {x.shape}")
    numeric = numeric_grad(f, x, eps)
    keep = ~_kinks(f, x, eps, kink_tol) if skip_kinks else np.ones(x.shape, bool)
    err = np.where(keep, np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric)), -np.inf)
    if err.size and err.max() > 0:
        i = np.unravel_index(np.argmax(err), err.shape)
        bad = int(np.sum(err > 0))
        raise AssertionError(
            f"gradient of {name}: {bad} of {int(keep.sum())} checked elements differ; worst at "
            f"index {tuple(int(k) for k in i)}: analytic {analytic[i]!r}, numeric {numeric[i]!r} "
            f"(rtol={rtol}, atol={atol}, eps={eps})")
    return int((~keep).sum())
