"""fastconv: a convolution engine with C++/CUDA kernels, a NumPy oracle and a Keras-style API.

`import fastconv as keras` gives Keras's names: Input, Model, Sequential and the modules
layers, models, optimizers, losses, metrics, callbacks, regularizers, initializers,
activations, utils, datasets, preprocessing, applications.

>>> import numpy as np, fastconv
>>> x = np.ones((1, 5, 5, 1), np.float32); w = np.ones((3, 3, 1, 1), np.float32)
>>> fastconv.functional.conv2d(x, w, padding="same")[0, :, :, 0][0]
array([4., 6., 6., 6., 4.], dtype=float32)
"""

from . import _loader

_loader.preload_openblas()
with _loader.openmp_environment(), _loader.blas_environment():
    from . import _C  # noqa: E402
from .backend import Backend, backend, get_backend, set_backend  # noqa: E402,F401
from . import functional  # noqa: E402,F401
from .random import set_seed  # noqa: E402,F401
from . import autograd, initializers, regularizers, losses, metrics, optimizers  # noqa: E402,F401
from . import activations, layers, models, callbacks, training, utils  # noqa: E402,F401
from .autograd import Tensor, Variable, no_grad  # noqa: E402,F401
from .engine import Model, Sequential  # noqa: E402,F401
from .layers import Input  # noqa: E402,F401
from .engine.fusion import get_fusion, set_fusion  # noqa: E402,F401
from .engine.inference import get_inference_plan, set_inference_plan  # noqa: E402,F401

__version__ = "0.1.0"
from .config import (get_conv_algorithm, get_gemm_backend, get_num_threads, set_conv_algorithm,  # noqa: E402,F401
                     set_gemm_backend, set_num_threads, set_workspace_limit)

# Keras's face (`import fastconv as keras`): one missing-name hook per public module, set here so
# the modules' own files stay free of it. Data sets, preprocessing and applications load on
# first use: they are not needed to build and train a model (onnx needs the optional extra).
from . import _missing, config  # noqa: E402

for _module in (activations, callbacks, initializers, layers, losses, metrics, models, optimizers,
                optimizers.schedules, regularizers, utils):
    _missing.install(_module)
del _module
_missing.install(config, hints=_missing.CONFIG_HINTS)
__getattr__ = _missing.module_getattr(
    __name__, lazy={"applications": ".applications", "data": ".data", "datasets": ".datasets",
                    "image": ".image", "onnx": ".onnx", "preprocessing": ".preprocessing",
                    "distribute": ".distribute"},
    hints=_missing.TENSORFLOW_ONLY)
