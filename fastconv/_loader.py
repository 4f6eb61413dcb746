"""Loads OpenBLAS from the scipy-openblas32 wheel before the native module is imported.

The extension's RPATH finds the library for a normal install, but not for ``pip install
--target``, split site dirs or editable builds. Loading it by path (RTLD_LOCAL) works in every
layout. Importing ``scipy_openblas32`` would instead load it globally, where it can capture
SciPy's own BLAS symbols.
"""
import ctypes
import importlib.util
import os


def preload_openblas():
    spec = importlib.util.find_spec("scipy_openblas32")
    if spec is None or not spec.submodule_search_locations:
        return
    lib_dir = os.path.join(list(spec.submodule_search_locations)[0], "lib")
    if not os.path.isdir(lib_dir):
        return
    for name in sorted(os.listdir(lib_dir)):
        if name.startswith("libscipy_openblas") and ".so" in name:
            ctypes.CDLL(os.path.join(lib_dir, name), mode=os.RTLD_LOCAL)
            return
