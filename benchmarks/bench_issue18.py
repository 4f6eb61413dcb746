"""Issue 18's scorecard: every item's measurement in one command, side by side with the peers,
written as one markdown report (machine, command, a table per item with the measured ratio,
the target and met / not met, and a summary).

    PYTHONPATH=. /work/peers-venv/bin/python benchmarks/bench_issue18.py [--threads 2] [--repeats 5]
        [--epoch-repeats 3] [--rounds 2] [--quick] [--items 1 2 4 5] [--sweep FILE] [--native FOLDER]
        [--no-peers] [--out FILE]

Items (issue 18, "What to reach"); each reuses the benchmark script named, run here as a function:
  1. LeNet-5 training step b256, both variants, against PyTorch (bench_small_channels; at
     --threads and at 1 thread), and one Fashion-MNIST epoch through model.fit, SGD and Adam,
     batch 128 and 256 (bench_fashion_epoch; PyTorch in its own process): <= 0.6x PyTorch.
  2. Every conv layer of fastconv/bench/specs.py, forward + backward (fastconv.bench.run's
     cases, bench_layer_passes' timing): <= 0.83x PyTorch channels_last and ahead of TensorFlow.
  3. The kernel sweep: read from a report of benchmarks/bench_sweep.py (--sweep FILE; the sweep
     itself takes longer than this whole card): no family with a case below half its median.
  4. Inference, b1 latency and b64 throughput, LeNet-5, ResNet-18 CIFAR, ResNet-50 224,
     MobileNet (bench_onnx; b1 also at 1 thread): <= 0.8x PyTorch eager, <= 1.0x onnxruntime.
  5. Instruction-set levels, 1 thread (bench_isa_levels, one process per level, profiled): the
     avx2 level within 25% of the avx512 one, and where the hardware floor lies (multiply-add
     work slowed by the two levels' sgemm ratio, the rest at avx512 speed); the avx512 level
     within 5% of a -march=native build when one is given (--native FOLDER: a folder holding a
     `fastconv` package built with -DFASTCONV_NATIVE_ARCH=ON).
  6. `python -m fastconv bench --quick` runs from a folder outside the checkout, and its model
     set has the max-pool LeNet-5.

Every figure is a median of interleaved repeats (fastconv and its peers take turns, so a shared
machine's drift hits all alike); ratios are fastconv / peer (< 1: fastconv faster). The summary
counts the rows at --threads; 1-thread rows are shown for information. Without a peer (not
installed, or --no-peers) its rows say so and the item counts as not measured.
The full run takes about 12-15 minutes on 2 quiet cores; --quick (tiny sizes, one configuration
per item) well under 2 minutes: it checks the card, not the targets. With --out, the card so far
is written after each item. On a machine shared with other jobs, 2 threads on 2 cores leave the
peers' and fastconv's thread teams waiting for each other (PyTorch's LeNet epoch went from seconds
to minutes at load 8): there, --threads 1 gives figures that mean something.
"""
import argparse
import datetime
import glob
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.append(REPO)  # after site-packages: `python benchmarks/bench_issue18.py` finds the package

ITEMS = (1, 2, 3, 4, 5, 6)
TITLES = {
    1: "LeNet-5 training step and Fashion-MNIST epoch (target <= 0.6x PyTorch)",
    2: "Conv layers of the benchmark set, forward + backward (target <= 0.83x PyTorch channels_last, "
       "< 1.0x TensorFlow)",
    3: "Kernel sweep: no case below half its family's median efficiency",
    4: "Inference latency b1 and throughput b64 (target <= 0.8x PyTorch, <= 1.0x onnxruntime)",
    5: "Instruction-set levels, 1 thread (target: the best level within 5% of native, avx2 within 25% of avx512)",
    6: "`fastconv bench` from anywhere, with the max-pool LeNet-5",
}
SOURCES = {
    1: "benchmarks/bench_small_channels.py (steps), benchmarks/bench_fashion_epoch.py (epochs)",
    2: "fastconv/bench/specs.py CONV_LAYERS, fastconv.bench.run.op_cases, benchmarks/bench_layer_passes.step_times",
    3: "a benchmarks/bench_sweep.py report",
    4: "benchmarks/bench_onnx.py measure()",
    5: "benchmarks/bench_isa_levels.py paired_with() (against a native build) / collect() / profile_split() / hardware_limit()",
    6: "python -m fastconv bench --quick --no-peers --skip-models",
}
PEER_NAMES = {"torch": "PyTorch", "tensorflow": "TensorFlow", "onnxruntime": "onnxruntime"}


# ---- one row of a table: a fastconv figure against a reference and a target ----

def check(case, threads, fc, ref_name, ref, target, primary=True, unit="ms", note="", missing=None):
    """fc and ref: the two medians (None when not measured; missing says why). The row is met
    when fc / ref <= target."""
    ratio = fc / ref if fc is not None and ref else None
    if ratio is None:
        status = missing or "not measured"
    else:
        status = "met" if ratio <= target else "NOT met"
    return {"case": case, "threads": threads, "fastconv": fc, "ref_name": ref_name, "ref": ref, "unit": unit,
            "ratio": ratio, "target": target, "status": status, "primary": primary, "note": note}


def flag(case, ok, detail, primary=True):
    """A yes/no row (items 3 and 6); ok None: not measured."""
    status = "not measured" if ok is None else "met" if ok else "NOT met"
    return {"case": case, "ok": ok, "status": status, "detail": detail, "primary": primary}


class Context:
    """Options and the peers found, shared by the items."""

    def __init__(self, args):
        self.args = args
        self.quick = args.quick
        self.threads = args.threads
        self.peers = {}
        self.ort = None
        self.why_no = {}
        if args.no_peers:
            self.why_no = {name: "no peers (--no-peers)" for name in PEER_NAMES}
            return
        from fastconv.bench import harness
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        for name in ("torch", "tensorflow"):
            try:
                self.peers[name] = __import__(name)
            except ImportError:
                self.why_no[name] = f"no peer ({name} not installed)"
        try:
            import onnxruntime
            self.ort = onnxruntime
        except ImportError:
            self.why_no["onnxruntime"] = "no peer (onnxruntime not installed)"
        # TensorFlow takes its thread counts once, before its first op: here, for every item
        harness.set_threads(args.threads, self.peers)

    def thread_counts(self):
        """--threads, then 1 thread for the cheap cases (unless --threads is 1)."""
        return [self.threads] + ([1] if self.threads != 1 else [])

    def set_threads(self, threads):
        import fastconv
        fastconv.set_num_threads(threads)
        if "torch" in self.peers:
            self.peers["torch"].set_num_threads(threads)


# ---- item 1 ----

def item1(ctx):
    from benchmarks import bench_fashion_epoch as epoch
    from benchmarks import bench_small_channels as small
    from fastconv.bench.harness import summarize, time_interleaved
    torch = ctx.peers.get("torch")
    batch = 32 if ctx.quick else 256
    rows, notes = [], []
    for threads in ctx.thread_counts():
        ctx.set_threads(threads)
        fc_cases = small.fastconv_cases(batch)
        th_cases = small.torch_cases(torch, batch) if torch else {}
        for name in ("LeNet-5 modern step", "LeNet-5 classic step"):
            runs = {"fastconv": fc_cases[name]}
            if name in th_cases:
                runs["torch"] = th_cases[name]
            # steps are milliseconds: three times the repeats cost little and steady the medians
            med = {k: summarize(v)["median_ms"]
                   for k, v in time_interleaved(runs, 3 * ctx.args.repeats, warmup=2).items()}
            rows.append(check(f"{name} b{batch}", threads, med["fastconv"], "PyTorch", med.get("torch"), 0.6,
                              primary=threads == ctx.threads, missing=ctx.why_no.get("torch")))
    ctx.set_threads(ctx.threads)
    repeats = 1 if ctx.quick else ctx.args.epoch_repeats or min(3, ctx.args.repeats)
    argv = ["--threads", str(ctx.threads), "--repeats", str(repeats)]
    argv += ["--torch-python", sys.executable] if torch else ["--no-torch"]
    if ctx.quick:
        argv += ["--samples", "512", "--variants", "modern", "--optimizers", "sgd", "--batches", "128"]
    epochs, text = epoch.main(argv)
    data = next((part for part in text.split("; ") if part.startswith("data: ")), "")
    notes.append(f"Epochs: medians of {repeats} timed epochs per side, PyTorch in its own process "
                 f"(`python benchmarks/bench_fashion_epoch.py {' '.join(argv)}`); {data}.")
    for r in epochs:
        rows.append(check(f"Fashion-MNIST epoch, {r['variant']} {r['optimizer']} b{r['batch']}", ctx.threads,
                          r["fastconv_s"], "PyTorch", r["torch_s"], 0.6, unit="s",
                          note=f"final loss {r['fastconv_loss']:.3f}"
                          + (f" / {r['torch_loss']:.3f}" if r["torch_loss"] is not None else ""),
                          missing=ctx.why_no.get("torch")))
    return rows, notes


# ---- item 2 ----

def item2(ctx):
    from benchmarks.bench_layer_passes import step_times
    from fastconv.bench import specs
    from fastconv.bench.run import op_cases
    ctx.set_threads(ctx.threads)
    layers = specs.quick(specs.CONV_LAYERS, "conv") if ctx.quick else specs.CONV_LAYERS
    rows = []
    for spec in layers:
        wall, cpu = step_times(op_cases("conv", spec, ["cpu"], ctx.peers), ctx.args.repeats)
        med = {fw: 1e3 * statistics.median(t) for fw, t in wall.items()}
        cpu_med = {fw: 1e3 * statistics.median(t) for fw, t in cpu.items()}
        case = f"{spec[0]} (N={spec[1]})"
        for peer, target in (("torch", 0.83), ("tensorflow", 1.0)):
            note = (f"CPU-time ratio {cpu_med['fastconv'] / cpu_med[peer]:.2f}" if peer in cpu_med else "")
            rows.append(check(case, ctx.threads, med["fastconv"], PEER_NAMES[peer], med.get(peer), target,
                              note=note, missing=ctx.why_no.get(peer)))
    notes = ["Wall-clock medians of interleaved repeats of one forward + backward (data and weights) "
             "step; the note gives the same ratio in process CPU time (less sensitive to other jobs)."]
    return rows, notes


# ---- item 3 ----

def _table_after(lines, heading):
    """The markdown table rows (split cells) of the first table after a line starting with heading."""
    start = next((i for i, line in enumerate(lines) if line.startswith(heading)), None)
    if start is None:
        return None, []
    table = []
    for line in lines[start + 1:]:
        if line.startswith("## "):
            break
        if line.startswith("|"):
            table.append(line)
        elif table:
            break
    return table, [[c.strip() for c in line.strip().strip("|").split("|")] for line in table[2:]]


def item3(ctx):
    path = ctx.args.sweep
    if not path:
        return [], ["Not run here: the sweep (benchmarks/bench_sweep.py) takes longer than this card; "
                    "pass its report with --sweep FILE."]
    with open(path) as f:
        lines = f.read().splitlines()
    header, families = _table_after(lines, "## Per-family")
    if not families:
        raise ValueError(f"{path}: no '## Per-family ...' table (not a bench_sweep.py report?)")
    head = [c.strip().lower() for c in header[0].strip().strip("|").split("|")]
    col = {name: head.index(name) for name in ("family", "median roofline", "min roofline", "below half median")}
    rows = []
    for cells in families:
        if not cells[col["below half median"]].isdigit():  # a family the sweep measured no case of
            rows.append(flag(cells[col["family"]], None, "no case measured"))
            continue
        below = int(cells[col["below half median"]])
        rows.append(flag(cells[col["family"]], below == 0,
                         f"{below} case(s) below half the median (median roofline {cells[col['median roofline']]}, "
                         f"min {cells[col['min roofline']]})"))
    worst, _ = _table_after(lines, "## Worst ten")
    title = next((line for line in lines if line.startswith("Machine:")), "")
    notes = [f"From `{path}`" + (f" ({title})" if title else "") + "."]
    if worst:
        notes += ["Worst ten (copied from the report):", ""] + worst
    return rows, notes


# ---- item 4 ----

def item4(ctx):
    from benchmarks import bench_onnx
    rows = []
    runs = [(ctx.threads, (1,) if ctx.quick else (1, 64))]
    if ctx.threads != 1:
        runs.append((1, (1,)))  # b1 latency is cheap: one thread too
    for threads, batches in runs:
        ctx.set_threads(threads)
        measured, _ = bench_onnx.measure(threads, ctx.args.repeats, batches, quick=ctx.quick, columns=("predict",),
                                         peers=not ctx.args.no_peers, rounds=ctx.args.rounds)
        for r in measured:
            note = f"predict() {r['predict_ms']:.3f} ms"
            if r["max_abs_diff"] == r["max_abs_diff"]:
                note += f"; max abs diff to ORT {r['max_abs_diff']:.1e}"
            primary = threads == ctx.threads
            rows.append(check(r["case"], threads, r["fastconv_ms"], "PyTorch eager", _finite(r["torch_ms"]), 0.8,
                              primary=primary, note=note, missing=ctx.why_no.get("torch")))
            rows.append(check(r["case"], threads, r["fastconv_ms"], "onnxruntime", _finite(r["onnxruntime_ms"]), 1.0,
                              primary=primary, note="same model, exported by fastconv.onnx",
                              missing=ctx.why_no.get("onnxruntime")))
    ctx.set_threads(ctx.threads)
    notes = ["fastconv = `model.predict_on_batch(x)` (the inference plan); PyTorch eager: eval, no_grad, "
             "channels_last; onnxruntime: intra-op threads as fastconv, one inter-op thread. Wall clock. "
             f"Medians of {ctx.args.rounds} rounds of blocks of {ctx.args.repeats} back-to-back calls per "
             "framework, blocks alternating and each after a 0.2 s pause (harness.time_blocks): a loop of "
             "calls, each framework warm in its own turn. Until stop 28 the card interleaved single calls, "
             "which timed each framework just after another's (onnxruntime's pool spins ~50 ms after a run)."]
    return rows, notes


def _finite(x):
    return x if x == x else None


# ---- item 5 ----

def item5(ctx):
    from benchmarks import bench_isa_levels as isa
    from fastconv import _C
    levels = _C.isa_levels()
    top = levels[-1]  # the level this CPU gets from the portable build
    if top == "baseline":
        return [], [f"This CPU runs the levels {levels}: nothing to compare."]
    # Without AVX-512 (a Zen 3, say) the portable build's best level is avx2: it is what
    # `pip wheel .` runs here, so it is the one held to 5% of the -march=native build.
    compared = ["avx512", "avx2"] if top == "avx512" else [top]
    # 1 thread, so the process CPU clock is the kernels' own time: robust to the other jobs of a
    # shared machine (wall-clock steps ran 2-3x slow at load 7 on 2 cores)
    argv = ["--threads", "1", "--levels", *compared, "--clock", "cpu"]
    argv += (["--rounds", "1", "--repeats", "1", "--profile", "1", "--quick"] if ctx.quick else
             ["--rounds", str(ctx.args.rounds), "--repeats", "3", "--profile", "2"])
    variants, samples, heads = isa.collect(isa.parse_args(argv))
    by_level = {samples[v][0]["level"]: v for v in variants if samples[v][0]["level"] in levels}
    # The native build is held to this build's best level in ONE process, calls alternating
    # (isa.paired_with): a process per build moved the same step by up to 1.3x here.
    native = None
    if ctx.args.native:
        found = glob.glob(os.path.join(ctx.args.native, "fastconv", "_C*.so"))
        native = isa.paired_with(found[0], quick=ctx.quick) if found else None
    vtop = by_level[top]
    ms = {v: isa.case_medians(samples, v) for v in variants}
    split = isa.profile_split(variants, samples)
    rows = []
    for case in ms[vtop]:
        sgemm = case.startswith("sgemm")
        if native is not None and case in native:
            this_ms, native_ms = native[case]
            rows.append(check(case, 1, this_ms, "native build", native_ms, 1.05, primary=not sgemm,
                              note=f"{top} level / -march=native build, paired in one process"))
        if top != "avx512":
            continue
        v512, v2 = vtop, by_level["avx2"]
        r, limit = (isa.hardware_limit(samples, v512, v2, split[v512, case]) if (v512, case) in split
                    else (None, None))
        row = check(case, 1, ms[v2][case], "avx512 level", ms[v512][case], 1.25, primary=not sgemm,
                    note="avx2 / avx512" + (f"; hardware floor {limit:.2f}" if limit else
                                            f"; not split (sgemm ratio {r:.2f})" if r else ""))
        if row["status"] == "NOT met" and limit and limit > 1.25:
            # the target is below what the hardware allows: say so, and how close the level is
            row["status"] = ("at hardware limit" if row["ratio"] <= 1.05 * limit else "NOT met (floor above target)")
        rows.append(row)
    peaks = samples[vtop][0]["peaks"]
    notes = [f"`python -m benchmarks.bench_isa_levels {' '.join(argv)}`: one process per level, process CPU time, "
             "medians over rounds" + ("; 'hardware floor' = (other work at avx512 + multiply-add work at avx512 x the "
                                      "two levels' best-sgemm ratio) / avx512 step (bench_isa_levels --profile)."
                                      if top == "avx512" else "."),
             f"FMA peak per vector width, 1 thread (GFLOP/s, {top} process): "
             + ", ".join(f"{bits}-bit {g:.0f}" for bits, g in sorted(peaks.items(), key=lambda kv: int(kv[0])))
             + (f"; 256-bit / 512-bit = {peaks['256'] / peaks['512']:.2f}" if "256" in peaks and "512" in peaks else "")]
    if top != "avx512":
        notes.append(f"This CPU has no AVX-512 (levels {levels}): the avx2-within-25%-of-avx512 rows need one; "
                     f"the {top} level is held to the native build instead.")
    if native is None:
        notes.append(f"{top} level against a -march=native build: not measured (no --native FOLDER given)."
                     if not ctx.args.native else f"--native {ctx.args.native}: no fastconv/_C*.so in it.")
    notes.append("Split per step (ms, multiply-add kernels / other): " + "; ".join(
        f"{case}: " + ", ".join(f"{lv} {split[by_level[lv], case][1]:.2f} / {split[by_level[lv], case][2]:.2f}"
                                for lv in compared if (by_level[lv], case) in split)
        for case in ms[vtop] if (vtop, case) in split))
    return rows, notes


# ---- item 6 ----

def item6(ctx):
    from fastconv.bench import specs
    root = os.path.dirname(os.path.dirname(os.path.abspath(sys.modules["fastconv"].__file__)))
    rows = [flag("max-pool LeNet-5 in fastconv.bench's model set",
                 any(name == "lenet5_maxpool" for name, *_ in specs.MODELS),
                 "fastconv/bench/specs.py MODELS: " + ", ".join(name for name, *_ in specs.MODELS))]
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "results")
        # from a folder outside the checkout, with the package on the path as an install puts it
        env = dict(os.environ, PYTHONPATH=root)
        cmd = [sys.executable, "-m", "fastconv", "bench", "--quick", "--no-peers", "--skip-models", "--threads", "1",
               "--repeats", "1", "--backends", "cpu", "--out", out]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        ok = proc.returncode == 0 and os.path.exists(os.path.join(out, "results.md"))
        detail = (f"exit 0, results.md written, {seconds:.0f} s" if ok else
                  f"exit {proc.returncode}: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
    rows.append(flag("`python -m fastconv bench --quick` from a temporary folder", ok, detail))
    notes = [f"Run: `{' '.join(['python'] + cmd[1:-1])} DIR` with cwd outside the checkout and the package "
             f"folder ({root}) as the only PYTHONPATH entry (an installed package's situation; the wheel "
             "install itself is CI's job, .ci/run)."]
    return rows, notes


RUNNERS = {1: item1, 2: item2, 3: item3, 4: item4, 5: item5, 6: item6}


# ---- report ----

def machine_lines(ctx):
    import numpy as np

    import fastconv
    from fastconv import _C
    from fastconv.bench.harness import cpu_model
    peaks = ""
    if hasattr(_C, "_fma_peak_widths"):
        peaks = ", ".join(f"{bits}-bit {_C._fma_peak_gflops(0.05, 5, bits):.0f}" for bits in _C._fma_peak_widths())
    versions = [f"Python {platform.python_version()}", f"NumPy {np.__version__}", f"fastconv {fastconv.__version__}"]
    for name, mod in list(ctx.peers.items()) + ([("onnxruntime", ctx.ort)] if ctx.ort else []):
        versions.append(f"{PEER_NAMES[name]} {getattr(mod, '__version__', '?')}")
    try:
        commit = subprocess.run(["git", "-C", REPO, "describe", "--always", "--dirty"], capture_output=True,
                                text=True).stdout.strip()
    except OSError:
        commit = ""
    return [f"- CPU: {cpu_model()}, {os.cpu_count()} logical cores; threads: {ctx.threads}"
            + (" (and 1 where marked)" if ctx.threads != 1 else ""),
            f"- ISA level: {_C.isa_level()} (levels this CPU runs: {', '.join(_C.isa_levels())}); "
            f"FMA peak, 1 thread: {peaks or 'unknown'} GFLOP/s; OpenBLAS kernels {_C.blas_corename()}",
            f"- Versions: {', '.join(versions)}" + (f"; source {commit}" if commit else "")
            + (f"; peers absent: {', '.join(sorted(set(ctx.why_no.values())))}" if ctx.why_no else "")]


def _fmt(x):
    if x is None:
        return "-"
    return f"{x:.3f}" if x < 10 else f"{x:.1f}"


def item_table(rows):
    if not rows:
        return []
    if "ok" in rows[0]:
        lines = ["| case | result | detail |", "|---|---|---|"]
        return lines + [f"| {r['case']} | {r['status']} | {r['detail']} |" for r in rows]
    lines = ["| case | threads | fastconv | against | reference | ratio | target | result | note |",
             "|---|---:|---:|---|---:|---:|---:|---|---|"]
    for r in rows:
        unit = r["unit"]
        ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else "-"
        status = r["status"] if r["primary"] else f"{r['status']} (info)"
        lines.append(f"| {r['case']} | {r['threads']} | {_fmt(r['fastconv'])} {unit} | {r['ref_name']} | "
                     f"{_fmt(r['ref']) + (' ' + unit if r['ref'] is not None else '')} | {ratio} | <= {r['target']:g} | "
                     f"{status} | {r['note']} |")
    return lines


def verdict(rows):
    """(word, detail) for an item's primary rows."""
    primary = [r for r in rows if r["primary"]]
    measured = [r for r in primary if r["status"] in ("met", "NOT met", "at hardware limit")
                or r["status"].startswith("NOT met")]
    if not measured:
        why = sorted({r["status"] for r in primary})
        return "not measured", "; ".join(why) if why else "no rows"
    met = sum(r["status"] == "met" for r in measured)
    limit = sum(r["status"] == "at hardware limit" for r in measured)
    word = ("met" if met == len(measured) else
            "at hardware limit" if met + limit == len(measured) else "not met")
    detail = f"{met} of {len(measured)} rows met"
    if limit:
        detail += f", {limit} at the hardware limit"
    ratios = [r for r in measured if r.get("ratio") is not None]
    if ratios:
        worst = max(ratios, key=lambda r: r["ratio"] / r["target"])
        detail += (f"; worst: {worst['case']} vs {worst['ref_name']} {worst['ratio']:.2f} "
                   f"(target {worst['target']:g})")
    unmeasured = len(primary) - len(measured)
    if unmeasured:
        detail += f"; {unmeasured} row(s) not measured"
    return word, detail


def render(ctx, results, started, load_before, command, partial=False):
    load_after = os.getloadavg()
    lines = [f"# Issue 18 scorecard ({started:%Y-%m-%d %H:%M} UTC{', quick smoke run' if ctx.quick else ''})", "",
             f"Command: `{command}`", ""]
    if partial:
        lines += [f"**Partial: items {', '.join(map(str, results))} of {', '.join(map(str, ctx.args.items))} "
                  "done; the run goes on.**", ""]
    lines += machine_lines(ctx)
    lines.append(f"- Load average (1, 5, 15 min): {' '.join(f'{x:.2f}' for x in load_before)} at the start, "
                 f"{' '.join(f'{x:.2f}' for x in load_after)} at the end; "
                 f"repeats {ctx.args.repeats}; ratios fastconv / reference (< 1: fastconv faster)")
    lines += ["", "## Summary", "", "| item | result | detail | time |", "|---|---|---|---:|"]
    for item, res in results.items():
        lines.append(f"| {item}. {TITLES[item]} | {res['verdict']} | {res['detail']} | {res['seconds']:.0f} s |")
    for item, res in results.items():
        lines += ["", f"## Item {item}: {TITLES[item]}", "", f"Source: {SOURCES[item]}.", ""]
        if res.get("error"):
            lines += [f"Failed: `{res['error']}`", ""]
        lines += item_table(res["rows"])
        if res["notes"]:
            lines += [""] + [n if n.startswith("|") or not n else f"{n}" for n in res["notes"]]
    return "\n".join(lines) + "\n"


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="benchmarks/bench_issue18.py", description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2, help="threads for every framework (default 2)")
    ap.add_argument("--repeats", type=int, default=5, help="interleaved repeats per case (default 5; epochs: "
                    "at most 3)")
    ap.add_argument("--epoch-repeats", type=int, default=None,
                    help="item 1: timed Fashion-MNIST epochs per side and configuration (default: --repeats, at most 3)")
    ap.add_argument("--rounds", type=int, default=2, help="item 4: rounds of call blocks per framework; item 5: rounds of one process per level for the split (default 2)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, one configuration per item: a smoke run")
    ap.add_argument("--items", type=int, nargs="+", choices=ITEMS, default=list(ITEMS))
    ap.add_argument("--sweep", metavar="FILE", help="a bench_sweep.py report to fold in as item 3")
    ap.add_argument("--native", metavar="FOLDER", help="item 5: a folder holding a -march=native fastconv build")
    ap.add_argument("--no-peers", action="store_true", help="fastconv only (every peer row says so)")
    ap.add_argument("--out", metavar="FILE", help="write the markdown scorecard here (atomically)")
    args = ap.parse_args(argv)
    for name in ("threads", "repeats", "epoch_repeats", "rounds"):
        value = getattr(args, name)
        if value is not None and value < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.sweep and not os.path.isfile(args.sweep):
        ap.error(f"--sweep: no such file {args.sweep}")
    if args.native and not os.path.isdir(os.path.join(args.native, "fastconv")):
        ap.error(f"--native: {args.native} holds no fastconv package")
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg()
    import fastconv
    threads_before = fastconv.get_num_threads()
    ctx = Context(args)
    command = ("PYTHONPATH=. python benchmarks/bench_issue18.py " + " ".join(argv)).rstrip()
    results = {}
    try:
        for item in sorted(set(args.items)):
            print(f"item {item}: {TITLES[item]}", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            try:
                rows, notes = RUNNERS[item](ctx)
                error = None
            except Exception as e:  # noqa: BLE001 - one item's failure is reported, the card goes on
                rows, notes, error = [], [], f"{type(e).__name__}: {e}"
                print(f"item {item} failed: {error}", file=sys.stderr, flush=True)
            word, detail = verdict(rows) if rows else ("failed" if error else "not measured",
                                                          error or (notes[0] if notes else ""))
            results[item] = {"rows": rows, "notes": notes, "error": error, "verdict": word, "detail": detail,
                             "seconds": time.perf_counter() - t0}
            if args.out and item != max(args.items):  # a long run leaves the items done so far
                _write(args.out, render(ctx, results, started, load_before, command, partial=True))
    finally:
        fastconv.set_num_threads(threads_before)
    text = render(ctx, results, started, load_before, command)
    print(text)
    if args.out:
        _write(args.out, text)
    return results, text


def _write(path, text):
    from fastconv.saving.atomic import atomic_write
    with atomic_write(path, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
