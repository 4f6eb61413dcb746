"""ab_strided_pointwise.py A.so B.so WHAT "N,HW,C;..." REPS -- two builds of _C in ONE process, calls alternating A B B A, 1 thread, thread CPU time; WHAT: s2f (1x1 s2 forward, no pads, bias), s2d (backward data), s2w (weight pass + db), res (1x1 s1 Ci->4Ci + residual + relu, prepared), nores. Prints medians of REPS, B/A, roofline at 106 GFLOP/s and the minima (helper W2 stop 35, W stop 36)."""
import importlib.machinery, importlib.util, statistics, sys, time
import numpy as np
def load(path, tag):
    name = tag + "._C"
    loader = importlib.machinery.ExtensionFileLoader(name, path)
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    mod = importlib.util.module_from_spec(spec); loader.exec_module(mod); return mod

def main():
    a, b = load(sys.argv[1], "a"), load(sys.argv[2], "b")
    for m in (a, b): m.set_num_threads(1)
    what, reps = sys.argv[3], int(sys.argv[5])
    for case in sys.argv[4].split(";"):
        n, hw, c = (int(v) for v in case.split(","))
        rng = np.random.default_rng(0)
        one, z = (1, 1), (0, 0, 0, 0)
        if what in ("res", "nores"):
            co = 4 * c
            x = rng.standard_normal((n, hw, hw, c), dtype=np.float32)
            w = rng.standard_normal((1, 1, c, co), dtype=np.float32) * 0.1
            bias = rng.standard_normal(co, dtype=np.float32)
            r = rng.standard_normal((n, hw, hw, co), dtype=np.float32)
            pa = a.conv2d_prepare(w, x.shape, one, z, one, 1); pb = b.conv2d_prepare(w, x.shape, one, z, one, 1)
            rr = r if what == "res" else None
            f = lambda k: k.conv2d_forward(x, w, bias, one, z, one, 1, "relu", rr, pa if k is a else pb)
            flops = 2.0 * n * hw * hw * c * co
        else:
            oh = -(-hw // 2)
            x = rng.standard_normal((n, hw, hw, c), dtype=np.float32)
            w = rng.standard_normal((1, 1, c, c), dtype=np.float32)
            bias = rng.standard_normal(c, dtype=np.float32)
            dy = rng.standard_normal((n, oh, oh, c), dtype=np.float32)
            s = (2, 2)
            f = {"s2f": lambda k: k.conv2d_forward(x, w, bias, s, z, one, 1),
                 "s2d": lambda k: k.conv2d_backward_data(dy, w, x.shape, s, z, one, 1),
                 "s2w": lambda k: k.conv2d_backward_weights(dy, x, w.shape, s, z, one, 1, True)}[what]
            flops = 2.0 * n * oh * oh * c * c
        f(a), f(b)
        t0 = time.thread_time(); f(a); el = time.thread_time() - t0
        inner = max(1, int(0.01 / max(el, 1e-6)))
        ta, tb = [], []
        for i in range(reps):
            for k, ts in ((a, ta), (b, tb)) if i % 2 == 0 else ((b, tb), (a, ta)):
                t = time.thread_time()
                for _ in range(inner): f(k)
                ts.append((time.thread_time() - t) / inner)
        ma, mb = statistics.median(ta) * 1e3, statistics.median(tb) * 1e3
        print(f"{what} N={n} {hw}x{hw} C={c}: A {ma:.4f} B {mb:.4f} ratio {mb / ma:.3f} roof {flops/106e9/ma*1e3:.3f}/{flops/106e9/mb*1e3:.3f} (min A {min(ta)*1e3:.4f} B {min(tb)*1e3:.4f})", flush=True)


if __name__ == "__main__":
    main()
