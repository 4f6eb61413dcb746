"""Side-by-side benchmarks: fastconv (native), the NumPy oracle, PyTorch and TensorFlow (CPU).

    fastconv bench [--quick] [--threads N] [--repeats R] [--no-peers] [--out DIR]
    (also python -m fastconv.bench, or python -m benchmarks in a checkout)

Per op (forward + backward data and weights), per model (training step with SGD momentum),
peak memory of a training step per framework (subprocesses) and, when Fashion-MNIST is
installed, LeNet-5 time-to-accuracy. Every framework runs with the same thread count; cases
are interleaved; medians, min and max of the repeats; ratios are fastconv / peer (< 1: faster).
Writes results.md, results.json and ratios.png (matplotlib optional) into --out
(default: fastconv-bench-results in the current folder).
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

from . import harness, models, ops, specs


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="fastconv bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes, a smoke run (well under 3 minutes)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for every framework")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats (default 5; 3 with --quick)")
    p.add_argument("--no-peers", action="store_true", help="fastconv and the NumPy oracle only")
    p.add_argument("--skip-models", action="store_true")
    p.add_argument("--backends", default="cpu,numpy", help="fastconv backends to time (cpu,numpy)")
    p.add_argument("--epochs", type=int, default=5, help="epochs of the time-to-accuracy run")
    p.add_argument("--out", default="fastconv-bench-results", help="folder for the report (created)")
    p.add_argument("--memory-child", nargs=4, metavar=("FRAMEWORK", "MODEL", "BATCH", "THREADS"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def op_cases(kind, spec, backends, peers):
    import fastconv as fc
    cases = {}
    for b in backends:
        with fc.backend(b):
            fn = ops.fastconv_conv(spec) if kind == "conv" else ops.fastconv_op(spec)

        def run(fn=fn, b=b):
            with fc.backend(b):
                fn()
        cases["fastconv" if b == "cpu" else "numpy"] = run
    for name, mod in peers.items():
        maker = {"torch": (ops.torch_conv, ops.torch_op), "tensorflow": (ops.tf_conv, ops.tf_op)}[name]
        cases[name] = (maker[0] if kind == "conv" else maker[1])(mod, spec)
    return cases


def model_cases(spec, peers, with_oracle):
    import fastconv as fc
    name, batch, shape, classes = spec
    cases = {"fastconv": models.fastconv_step(name, batch, shape, classes)}
    if with_oracle:
        with fc.backend("numpy"):
            oracle_step = models.fastconv_step(name, batch, shape, classes)

        def run_oracle():
            with fc.backend("numpy"):
                oracle_step()
        cases["numpy"] = run_oracle
    if "torch" in peers:
        cases["torch"] = models.torch_step(peers["torch"], name, batch, shape, classes)
    if "tensorflow" in peers:
        cases["tensorflow"] = models.tf_step(peers["tensorflow"], name, batch, shape, classes)
    return cases


def measure(section, label, cases, repeats, results, extra=None):
    times = harness.time_interleaved(cases, repeats)
    row = {"section": section, "case": label, **(extra or {}),
           "frameworks": {fw: harness.summarize(t) for fw, t in times.items()}}
    results.append(row)
    med = {fw: v["median_ms"] for fw, v in row["frameworks"].items()}
    print(f"  {label:<28} " + "  ".join(f"{fw} {ms:9.2f} ms" for fw, ms in med.items()), flush=True)
    return row


def peak_memory(framework, model, batch, threads):
    """Peak resident MiB of a process that builds `model` and runs two training steps."""
    # The folder holding the fastconv package in use goes at the END of sys.path: the child
    # imports the same fastconv (an in-place build under PYTHONPATH=. too) unless one is installed.
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = (f"import sys; sys.path.append({root!r}); from fastconv.bench.run import main; "
            f"main(['--memory-child', {framework!r}, {model!r}, '{batch}', '{threads}'])")
    # cwd elsewhere: `python -c` puts the cwd first on sys.path, which could shadow the install.
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tempfile.gettempdir())
    try:
        return float(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def memory_child(framework, model, batch, threads):
    import resource
    spec = next(s for s in specs.MODELS if s[0] == model)
    peers = harness.load_peers({framework})
    harness.set_threads(threads, peers)
    if framework == "fastconv":
        step = models.fastconv_step(model, batch, spec[2], spec[3])
    elif framework == "torch":
        step = models.torch_step(peers["torch"], model, batch, spec[2], spec[3])
    else:
        step = models.tf_step(peers["tensorflow"], model, batch, spec[2], spec[3])
    step()
    step()
    # VmHWM is this process's own peak; ru_maxrss can report the parent's after fork/exec.
    try:
        with open("/proc/self/status") as f:
            kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(kib / 1024.0)


def main(argv=None):
    args = parse_args(argv)
    if args.memory_child:
        fw, model, batch, threads = args.memory_child
        return memory_child(fw, model, int(batch), int(threads))
    from . import report
    repeats = args.repeats or (3 if args.quick else 5)
    peers = {} if args.no_peers else harness.load_peers({"torch", "tensorflow"})
    harness.set_threads(args.threads, peers)
    backends = [b for b in args.backends.split(",") if b]
    conv = specs.quick(specs.CONV_LAYERS, "conv") if args.quick else specs.CONV_LAYERS
    other = specs.quick(specs.OTHER_OPS, "ops") if args.quick else specs.OTHER_OPS
    model_specs = specs.quick(specs.MODELS, "models") if args.quick else specs.MODELS
    results, t0 = [], time.time()
    print(f"threads={args.threads} repeats={repeats} peers={sorted(peers) or 'none'}")
    print("per-op (forward + backward):")
    for spec in conv:
        measure("op", spec[0], op_cases("conv", spec, backends, peers), repeats, results,
                {"gflop": 3 * ops.conv_flops(spec) / 1e9})
    for spec in other:
        measure("op", spec[0], op_cases("other", spec, backends, peers), repeats, results)
    memory = {}
    if not args.skip_models:
        print("per-model training step:")
        for spec in model_specs:
            measure("model", f"{spec[0]} b{spec[1]}", model_cases(spec, peers, args.quick and "numpy" in backends),
                    repeats, results)
        name, batch = model_specs[0][0], model_specs[0][1]
        for fw in ["fastconv", *peers]:
            memory[fw] = peak_memory(fw, name, batch, args.threads)
        print(f"peak RSS of a {name} b{batch} training step (MiB): {memory}")
    tta = None if args.quick else report.time_to_accuracy(peers, args.epochs, args.threads)
    info = harness.machine_info(args.threads, peers)
    paths = report.write(args.out, info, results, memory, tta, quick=args.quick)
    print(f"done in {time.time() - t0:.0f} s; wrote {', '.join(paths)}")


if __name__ == "__main__":
    main()
