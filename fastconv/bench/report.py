"""Benchmark output: a markdown table, the raw numbers as JSON, a bar chart of the ratios, and
the LeNet-5 time-to-accuracy run."""
import json
import os
import time

import numpy as np

from fastconv.saving.atomic import atomic_write

PEERS = ("torch", "tensorflow")


def _table(results, info):
    fws = [fw for fw in ("fastconv", "numpy", *PEERS) if any(fw in r["frameworks"] for r in results)]
    head = "| case | " + " | ".join(f"{fw} ms" for fw in fws)
    ratios = [p for p in ("numpy", *PEERS) if p in fws]
    head += "".join(f" | fastconv/{p}" for p in ratios) + " |"
    lines = [head, "|" + "---|" * (1 + len(fws) + len(ratios))]
    for r in results:
        f = r["frameworks"]
        cells = [f"{f[fw]['median_ms']:.2f} ({f[fw]['min_ms']:.2f}-{f[fw]['max_ms']:.2f})" if fw in f else "-" for fw in fws]
        rat = [f"{f['fastconv']['median_ms'] / f[p]['median_ms']:.2f}" if p in f and "fastconv" in f else "-"
               for p in ratios]
        lines.append(f"| {r['section']}: {r['case']} | " + " | ".join(cells + rat) + " |")
    machine = ", ".join(f"{k} {v}" for k, v in info.items())
    return f"Machine: {machine}\n\nmedian ms (min-max) of interleaved repeats; ratio < 1 means fastconv is faster.\n\n" + \
        "\n".join(lines) + "\n"


def write(out, info, results, memory, tta, quick=False):
    os.makedirs(out, exist_ok=True)
    md = "# fastconv benchmarks" + (" (quick)" if quick else "") + "\n\n" + _table(results, info)
    if memory:
        md += "\nPeak resident memory of a training step (MiB): " + \
            ", ".join(f"{k} {v:.0f}" if v else f"{k} n/a" for k, v in memory.items()) + "\n"
    if tta:
        md += "\nLeNet-5 on Fashion-MNIST (seconds per epoch / test accuracy per epoch):\n\n"
        for fw, rows in tta.items():
            md += f"- {fw}: " + ", ".join(f"{s:.1f}s/{a:.3f}" for s, a in rows) + "\n"
    paths = [os.path.join(out, "results.md"), os.path.join(out, "results.json")]
    with atomic_write(paths[0], "w") as f:
        f.write(md)
    with atomic_write(paths[1], "w") as f:
        json.dump({"machine": info, "results": results, "memory_mib": memory, "time_to_accuracy": tta}, f, indent=1)
    png = _chart(out, results)
    return paths + ([png] if png else [])


def _chart(out, results):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no ratios.png")
        return None
    peers = [p for p in PEERS if any(p in r["frameworks"] for r in results)]
    if not peers:
        return None
    labels = [r["case"] for r in results]
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(labels) + 1.5))
    y = np.arange(len(labels))
    for i, p in enumerate(peers):
        vals = [r["frameworks"]["fastconv"]["median_ms"] / r["frameworks"][p]["median_ms"] if p in r["frameworks"] else 0
                for r in results]
        ax.barh(y + i * 0.4, vals, height=0.4, label=f"fastconv / {p}")
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_yticks(y + 0.2, labels)
    ax.invert_yaxis()
    ax.set_xlabel("time ratio (< 1: fastconv faster)")
    ax.legend()
    fig.tight_layout()
    path = os.path.join(out, "ratios.png")
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
    return path


def time_to_accuracy(peers, epochs, threads, batch=256):
    """LeNet-5 on Fashion-MNIST, `epochs` epochs per framework; None when the files are missing."""
    try:
        from fastconv.datasets import fashion_mnist
        (xtr, ytr), (xte, yte) = fashion_mnist.load_data()
    except Exception as e:  # no data set module or no files: say so and skip
        print(f"time-to-accuracy skipped: {e}")
        return None
    xtr, xte = (xtr[..., None] / 255.0).astype(np.float32), (xte[..., None] / 255.0).astype(np.float32)
    out = {}
    import fastconv as fc
    from fastconv import models
    fc.set_seed(0)
    m = models.lenet5(variant="modern", classifier_activation=None)
    m.compile(fc.optimizers.Adam(1e-3), fc.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    rows = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        m.fit(xtr, ytr, batch_size=batch, epochs=1, verbose=0)
        rows.append((time.perf_counter() - t0, m.evaluate(xte, yte, verbose=0, return_dict=True)["accuracy"]))
    out["fastconv"] = rows
    if "torch" in peers:
        out["torch"] = _torch_tta(peers["torch"], xtr, ytr, xte, yte, epochs, batch)
    if "tensorflow" in peers:
        out["tensorflow"] = _tf_tta(peers["tensorflow"], xtr, ytr, xte, yte, epochs, batch)
    return out


def _torch_tta(torch, xtr, ytr, xte, yte, epochs, batch):
    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                          nn.Linear(84, 10))
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    xt, yt = torch.from_numpy(xtr).permute(0, 3, 1, 2), torch.from_numpy(ytr.astype(np.int64))
    xv = torch.from_numpy(xte).permute(0, 3, 1, 2)
    rows = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), batch):
            idx = perm[i:i + batch]
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
        with torch.no_grad():
            acc = float((model(xv).argmax(1).numpy() == yte).mean())
        rows.append((time.perf_counter() - t0, acc))
    return rows


def _tf_tta(tf, xtr, ytr, xte, yte, epochs, batch):
    L = tf.keras.layers
    model = tf.keras.Sequential([tf.keras.Input((28, 28, 1)), L.Conv2D(6, 5, padding="same", activation="relu"),
                                 L.MaxPooling2D(2), L.Conv2D(16, 5, activation="relu"), L.MaxPooling2D(2), L.Flatten(),
                                 L.Dense(120, activation="relu"), L.Dense(84, activation="relu"), L.Dense(10)])
    model.compile(tf.keras.optimizers.Adam(1e-3),
                  tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    rows = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        model.fit(xtr, ytr, batch_size=batch, epochs=1, verbose=0)
        rows.append((time.perf_counter() - t0, float(model.evaluate(xte, yte, verbose=0)[1])))
    return rows
