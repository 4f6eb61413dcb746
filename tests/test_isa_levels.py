"""_C's instruction-set levels (csrc/bindings/module.cpp): the kernels are compiled for
baseline x86-64, x86-64-v3 (avx2) and x86-64-v4 (avx512) and one is chosen at import, the
best the CPU runs or a lower one forced with FASTCONV_ISA.

Each level this machine runs is imported in a subprocess with FASTCONV_ISA set: it must
report that level and its kernels (conv with every algorithm, sgemm, pooling, batch norm,
softmax, dense) must agree with the NumPy oracle (float64) to 1e-4 of the output's magnitude,
the tolerance of tests/test_native_conv.py. The disassembly test checks that no code a
baseline CPU may run (the import, the baseline level, what they call) uses AVX or later
instructions.
"""
import bisect
import functools
import json
import os
import re
import shutil
import subprocess

import pytest

from fastconv import _C
from fastconv_subprocess import run_python

LEVELS = ("baseline", "avx2", "avx512")
RUNNABLE = _C.isa_levels()

# Runs in the subprocess: every kernel family on one level, errors relative to the oracle.
_CHECK_LEVEL = r"""
import json
import os
import numpy as np
from fastconv import _C
from fastconv import reference as R

rng = np.random.default_rng(0)
def rand(*shape):
    return rng.standard_normal(shape).astype(np.float32)
def err(got, ref):
    ref = np.asarray(ref, np.float64)
    assert np.shape(got) == ref.shape, (np.shape(got), ref.shape)
    return float(np.abs(got - ref).max() / max(1.0, np.abs(ref).max()))
errors = {}
f64 = lambda a: a.astype(np.float64)

# conv: 3x3 with few and many channels, stride-2 1x1, depthwise; each algorithm that applies
convs = {"3x3_c6": ((4, 12, 12, 6), (3, 3, 6, 16), (1, 1), (1, 1, 1, 1), 1),
         "3x3_c32": ((2, 10, 10, 32), (3, 3, 32, 48), (1, 1), (1, 1, 1, 1), 1),
         "1x1_s2": ((2, 9, 9, 24), (1, 1, 24, 40), (2, 2), (0, 0, 0, 0), 1),
         "depthwise": ((2, 11, 11, 32), (3, 3, 1, 32), (1, 1), (1, 1, 1, 1), 32)}
for algo in ("im2col", "winograd", "direct", "auto"):
    _C.set_conv_algorithm(algo)
    for name, (xs, ws, strides, pads, groups) in convs.items():
        x, w, b = rand(*xs), rand(*ws), rand(ws[3])
        args = (strides, pads, (1, 1), groups)
        y = _C.conv2d_forward(x, w, b, *args)
        errors[f"conv_fwd_{name}_{algo}"] = err(y, R.conv2d_forward(f64(x), f64(w), f64(b), *args))
        dy = rand(*y.shape)
        dx = _C.conv2d_backward_data(dy, w, x.shape, *args)
        errors[f"conv_bwd_data_{name}_{algo}"] = err(dx, R.conv2d_backward_data(f64(dy), f64(w), x.shape, *args))
        dw, db = _C.conv2d_backward_weights(dy, x, w.shape, *args, True)
        rdw, rdb = R.conv2d_backward_weights(f64(dy), f64(x), w.shape, *args, True)
        errors[f"conv_bwd_w_{name}_{algo}"] = max(err(dw, rdw), err(db, rdb))
_C.set_conv_algorithm("auto")

m, n, k = 97, 131, 75
a, b, c = rand(m * k), rand(k * n), np.zeros(m * n, np.float32)
_C._sgemm(False, False, m, n, k, 1.0, a, k, b, n, 0.0, c, n, "")
errors["sgemm"] = err(c.reshape(m, n), f64(a).reshape(m, k) @ f64(b).reshape(k, n))

for ch in (6, 64):
    x = rand(4, 14, 14, ch)
    pool = ((2, 2), (2, 2), (0, 0, 0, 0))
    y, arg = _C.max_pool2d_forward_with_argmax(x, *pool)
    ry, rarg = R.max_pool2d_forward_with_argmax(x, *pool)
    dy = rand(*y.shape)
    dx = _C.max_pool2d_backward_argmax(dy, arg, x.shape, *pool)
    errors[f"max_pool_c{ch}"] = max(err(y, ry), float(np.any(arg != rarg)),
                                    err(dx, R.max_pool2d_backward_argmax(f64(dy), rarg, x.shape, *pool)))
    errors[f"avg_pool_c{ch}"] = err(_C.avg_pool2d_forward(x, (3, 3), (1, 1), (1, 1, 1, 1)),
                                    R.avg_pool2d_forward(f64(x), (3, 3), (1, 1), (1, 1, 1, 1)))

x, gamma, beta = rand(8, 5, 5, 24), rand(24), rand(24)
y, mean, var, inv_std = _C.batch_norm_forward_train(x, gamma, beta, 1e-3)
ry, rmean, rvar, _ = R.batch_norm_forward_train(f64(x), f64(gamma), f64(beta), 1e-3)
errors["batch_norm"] = max(err(y, ry), err(mean, rmean), err(var, rvar))
# backward, plain and through a fused relu (register-wide vectors below avx512, batchnorm.cpp):
# c = 7 runs 37-row groups of 259 floats, so every level has a vector part and a scalar tail
for shape in ((8, 5, 5, 24), (5, 9, 7, 7)):
    x, gamma, beta, dy = rand(*shape), rand(shape[-1]), rand(shape[-1]), rand(*shape)
    _, mean, _, inv_std = _C.batch_norm_forward_train(x, gamma, beta, 1e-3)
    for relu_beta in (None, beta):
        got = _C.batch_norm_backward(dy, x, gamma, mean, inv_std, relu_beta)
        ref = R.batch_norm_backward(f64(dy), f64(x), f64(gamma), f64(mean), f64(inv_std),
                                    None if relu_beta is None else f64(relu_beta))
        name = f"batch_norm_backward{'_relu' if relu_beta is not None else ''}_c{shape[-1]}"
        errors[name] = max(err(g, r) for g, r in zip(got, ref))

logits = rand(33, 10) * 4
errors["softmax"] = err(_C.softmax_forward(logits), R.softmax_forward(f64(logits)))

x, w, b = rand(17, 40), rand(40, 23), rand(23)
errors["dense"] = err(_C.dense_forward(x, w, b), R.dense_forward(f64(x), f64(w), f64(b)))

import fastconv
try:
    fastconv.set_gemm_backend("native")
    native_gemm = "ok"
except ValueError as e:
    native_gemm = str(e)
fastconv.set_gemm_backend("auto")

print(json.dumps({"level": _C.isa_level(), "blas": _C.blas_corename(), "native_gemm": native_gemm,
                  "errors": errors}))
"""


@pytest.mark.parametrize("level", LEVELS)
def test_forced_level_is_reported_and_matches_the_oracle(level):
    if level not in RUNNABLE:
        pytest.skip(f"this CPU or build does not run the {level} level (runs {RUNNABLE})")
    proc = run_python(["-c", _CHECK_LEVEL], env={"FASTCONV_ISA": level}, capture_output=True,
                      text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["level"] == level
    # OpenBLAS runs the kernels it would pick on a CPU of that level (fastconv/_loader.py)
    expected_blas = {"avx2": "haswell", "baseline": "nehalem"}.get(level)
    if expected_blas and "OPENBLAS_CORETYPE" not in os.environ:
        assert result["blas"].lower() == expected_blas
    # fastconv's own sgemm is AVX-512 code: below that level asking for it says why not
    if level == "avx512":
        assert result["native_gemm"] == "ok"
    else:
        assert "needs the avx512 kernel level" in result["native_gemm"] and level in result["native_gemm"]
    bad = {name: e for name, e in result["errors"].items() if not e <= 1e-4}  # NaN fails too
    assert not bad, f"{level}: kernels off the oracle: {bad}"
    assert len(result["errors"]) == 4 * 4 * 3 + 8 + 4  # every case ran (+4: batch norm backward)


@pytest.mark.skipif("OPENBLAS_CORETYPE" in os.environ, reason="the environment picks OpenBLAS's kernels")
def test_forced_level_picks_blas_kernels_without_the_wheel_importable():
    """Where scipy_openblas32 is not importable (_C's RPATH loads the library: a venv without
    the wheel), FASTCONV_ISA=avx2 still gets OpenBLAS's Haswell kernels, not AVX-512 ones."""
    if "avx2" not in RUNNABLE:
        pytest.skip(f"this CPU or build does not run the avx2 level (runs {RUNNABLE})")
    code = ("import importlib.util, sys\n"
            "find = importlib.util.find_spec\n"
            "importlib.util.find_spec = lambda name, *a: None if name == 'scipy_openblas32' else find(name, *a)\n"
            "from fastconv import _C\n"
            "print(_C.isa_level(), _C.blas_corename())")
    proc = run_python(["-c", code], env={"FASTCONV_ISA": "avx2"}, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-2:] == ["avx2", "Haswell"]


def test_default_is_the_best_level_the_cpu_runs():
    proc = run_python(["-c", "from fastconv import _C; print(_C.isa_level())"],
                      env={"FASTCONV_ISA": ""}, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [RUNNABLE[-1]]


def test_fastconv_info_shows_the_level(capsys):
    from fastconv.__main__ import main
    assert main(["info"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"isa_levels: {', '.join(RUNNABLE)}" in lines
    assert any(ln.startswith(f"isa_level: {_C.isa_level()}") for ln in lines)


@pytest.mark.parametrize("value", ["avx1024", "AVX2", "native-ish"])
def test_unknown_level_is_an_import_error_naming_the_variable(value):
    proc = run_python(["-c", "import fastconv"], env={"FASTCONV_ISA": value},
                      capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "ImportError" in proc.stderr and "FASTCONV_ISA" in proc.stderr and value in proc.stderr


def test_a_level_above_the_cpu_is_refused():
    missing = [lv for lv in LEVELS if lv not in RUNNABLE]
    if not missing or "baseline" not in RUNNABLE:
        pytest.skip("this CPU runs every level compiled in")
    proc = run_python(["-c", "import fastconv"], env={"FASTCONV_ISA": missing[-1]},
                      capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "lacks the instructions" in proc.stderr


# ---- no AVX where a baseline CPU goes ----

# AVX/AVX2/AVX-512/FMA (VEX/EVEX mnemonics start with v; ymm/zmm/mask registers), the BMI,
# LZCNT, MOVBE and POPCNT of x86-64-v2/v3, and SSE3-4.2 forms. (tzcnt is left out: GCC emits
# `rep bsf`, which runs as bsf on CPUs without BMI and which objdump prints as tzcnt.)
_NEWER = re.compile(
    r"%[yz]mm\d|%k[0-7]\b|^(v\w+|andn|shlx|shrx|sarx|rorx|bzhi|pdep|pext|lzcnt|movbe|popcnt|"
    r"blsr|blsi|blsmsk|pshufb|pmulld|round[sp][sd]|blendv?p[sd]|pblend\w+|pmin(sb|sd|uw|ud)|"
    r"pmax(sb|sd|uw|ud)|ptest|pextr[dbq]|pinsr[dbq]|insertps|extractps|dpp[sd]|pmov[zs]x\w+|"
    r"pcmpeqq|pcmpgtq|pcmp[ei]str[im]|packusdw|pabs[bwd]|palignr|ph(add|sub)\w+|crc32|lddqu|movddup|"
    r"hadd\w+|hsub\w+|addsubp\w)\b")
_LEVEL_CODE = ("isa_avx2", "isa_avx512")  # the namespaces of the higher levels' code
_FUNC = re.compile(r"^([0-9a-f]+) <(.+)>:$")
_INSN = re.compile(r"^\s*([0-9a-f]+):\s+(\S+)\s*(.*)$")
_REF = re.compile(r"\b([0-9a-f]+) <[^>]+>")


@functools.lru_cache(maxsize=2)
def _functions(so_path):
    """{start address: (name, [(address, mnemonic, operands)])} from objdump's disassembly of
    .text."""
    out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", "-j", ".text", so_path],
                         capture_output=True, text=True, check=True, timeout=120).stdout
    funcs, current = {}, None
    for line in out.splitlines():
        m = _FUNC.match(line)
        if m:
            current = []
            funcs[int(m.group(1), 16)] = (m.group(2), current)
        elif current is not None and (insn := _INSN.match(line)):
            current.append((int(insn.group(1), 16), insn.group(2), insn.group(3)))
    return funcs


# Where a baseline CPU's execution starts: the import (PyInit), static initialisers (they run
# at load whatever the level), and the baseline level's own code.
_BASELINE_ENTRY = ("PyInit_", "_GLOBAL__sub_I", "frame_dummy")
_BASELINE_CODE = "isa_baseline"


def newer_instructions_reachable(so_path, entry=_BASELINE_ENTRY, code=_BASELINE_CODE):
    """{function: first offending instruction} for the code a baseline CPU may run: a walk
    over direct calls, jumps and address references from the entry points and the baseline
    level's functions, not entering the avx2/avx512 namespaces (their code runs only when
    that level was chosen at import). Copies of inline functions that several levels share
    (pybind11's, the standard library's) are reached this way, whichever level's copy the
    linker kept."""
    funcs = _functions(so_path)
    starts = sorted(funcs)

    def owner(addr):  # the function whose code holds addr (None for data)
        i = bisect.bisect_right(starts, addr) - 1
        if i < 0:
            return None
        lines = funcs[starts[i]][1]
        return starts[i] if lines and addr <= lines[-1][0] else None

    todo = [a for a, (name, _) in funcs.items() if name.startswith(entry) or code in name]
    seen, bad = set(), {}
    while todo:
        addr = todo.pop()
        if addr in seen:
            continue
        seen.add(addr)
        name, lines = funcs[addr]
        if any(ns in name for ns in _LEVEL_CODE):
            continue
        for _, mnemonic, operands in lines:
            if _NEWER.search(mnemonic) or _NEWER.search(operands):
                bad.setdefault(name, f"{mnemonic} {operands}")
            for ref in _REF.findall(operands):
                target = owner(int(ref, 16))
                if target is not None and target not in seen:
                    todo.append(target)
    return bad, len(seen), len(funcs)


@pytest.mark.skipif(shutil.which("objdump") is None, reason="needs objdump (binutils)")
def test_no_newer_instructions_where_a_baseline_cpu_goes():
    if RUNNABLE == ["native"] or len(RUNNABLE) < 2:
        pytest.skip("single-level build")
    bad, walked, total = newer_instructions_reachable(_C.__file__)
    if total < 500:
        pytest.skip("the module is stripped: no symbols to tell the levels apart")
    assert walked > 300  # the walk did follow the calls
    assert not bad, f"newer instructions reachable from baseline code: {bad}"
    # and the check can fail: the pattern finds the avx2 level's own AVX code
    avx2_code = [insns for name, insns in _functions(_C.__file__).values() if "isa_avx2" in name]
    assert sum(any(_NEWER.search(m) or _NEWER.search(o) for _, m, o in insns)
               for insns in avx2_code) > len(avx2_code) // 4
