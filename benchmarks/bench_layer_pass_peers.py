"""Each pass of chosen conv layers side by side with the peers: forward, backward data and
backward weights of fastconv (fastconv._C via fastconv.backend.kernels), PyTorch channels_last
(conv2d; aten.convolution_backward with output masks) and TensorFlow (conv2d, Conv2DBackpropInput,
Conv2DBackpropFilter + bias sum), repeats interleaved, medians of wall and process CPU time.

    PYTHONPATH=. /work/peers-venv/bin/python benchmarks/bench_layer_pass_peers.py THREADS REPEATS \
        "56x56 64->128 k3 s2,28x28 256->64 k1" [peers]

Without "peers" fastconv's passes only. Layer names are specs.CONV_LAYERS' (issue 18 item 2).
"""
import sys, time, statistics, os
import numpy as np
threads = int(sys.argv[1]); reps = int(sys.argv[2]); which = sys.argv[3].split(",")
peers = len(sys.argv) > 4 and sys.argv[4] == "peers"
from fastconv.bench import specs
import fastconv
from fastconv import functional as F
from fastconv.backend import kernels
kern = kernels()
fastconv.set_num_threads(threads)
if peers:
    import torch, tensorflow as tf
    torch.set_num_threads(threads)
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
for spec in specs.CONV_LAYERS:
    if spec[0] not in which: continue
    _, n, h, w, cin, cout, k, s, padding, groups = spec
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, h, w, cin)).astype(np.float32)
    wt = rng.standard_normal((k, k, cin // groups, cout)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    strides, pads, dil = F.conv._conv_args(x, wt, s, padding, 1, groups)
    y = kern.conv2d_forward(x, wt, b, strides, pads, dil, groups)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    fns = {
        "fc fwd": lambda: kern.conv2d_forward(x, wt, b, strides, pads, dil, groups),
        "fc bwd_data": lambda: kern.conv2d_backward_data(dy, wt, x.shape, strides, pads, dil, groups),
        "fc bwd_w": lambda: kern.conv2d_backward_weights(dy, x, wt.shape, strides, pads, dil, groups, True),
    }
    if peers:
        tx = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
        tw = torch.from_numpy(wt).permute(3, 2, 0, 1).contiguous(memory_format=torch.channels_last)
        tb = torch.from_numpy(b)
        tdy = torch.from_numpy(dy).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
        # torch pads symmetrically: an asymmetric "same" pad is applied to x beforehand
        tpad = [pads[0], pads[2]] if len(pads)==4 else list(pads)
        if len(pads)==4 and (pads[0]!=pads[1] or pads[2]!=pads[3]):
            tx_p = torch.nn.functional.pad(tx, (pads[2], pads[3], pads[0], pads[1])).contiguous(memory_format=torch.channels_last)
            tpad = [0, 0]
        else:
            tx_p = tx
        def tfwd():
            with torch.no_grad():
                return torch.nn.functional.conv2d(tx_p, tw, tb, s, tpad, 1, groups)
        def tbd():
            return torch.ops.aten.convolution_backward(tdy, tx_p, tw, [cout], [s, s], tpad, [1, 1], False, [0, 0], groups, [True, False, False])
        def tbw():
            return torch.ops.aten.convolution_backward(tdy, tx_p, tw, [cout], [s, s], tpad, [1, 1], False, [0, 0], groups, [False, True, True])
        fns.update({"pt fwd": tfwd, "pt bwd_data": tbd, "pt bwd_w": tbw})
        gx = tf.constant(x); gw = tf.constant(wt); gdy = tf.constant(dy)
        tfpad = "SAME" if padding == "same" else "VALID"
        xs = tf.constant(x.shape, dtype=tf.int32); ws = tf.constant(wt.shape, dtype=tf.int32)
        f1 = tf.function(lambda: tf.nn.bias_add(tf.nn.conv2d(gx, gw, s, tfpad), b))
        f2 = tf.function(lambda: tf.raw_ops.Conv2DBackpropInput(input_sizes=xs, filter=gw, out_backprop=gdy, strides=[1, s, s, 1], padding=tfpad))
        f3 = tf.function(lambda: (tf.raw_ops.Conv2DBackpropFilter(input=gx, filter_sizes=ws, out_backprop=gdy, strides=[1, s, s, 1], padding=tfpad), tf.reduce_sum(gdy, [0,1,2])))
        fns.update({"tf fwd": lambda: f1().numpy(), "tf bwd_data": lambda: f2().numpy(), "tf bwd_w": lambda: f3()[0].numpy()})
    for f in fns.values(): f(); f()
    wall = {k_: [] for k_ in fns}; cpu = {k_: [] for k_ in fns}
    for _ in range(reps):
        for k_, f in fns.items():
            c0 = time.process_time(); t0 = time.perf_counter(); f()
            wall[k_].append(time.perf_counter() - t0); cpu[k_].append(time.process_time() - c0)
    print(f"== {spec[0]} threads={threads} load={os.getloadavg()[0]:.1f}")
    for k_ in fns:
        print(f"  {k_:<12} wall {1e3*statistics.median(wall[k_]):8.2f}  cpu {1e3*statistics.median(cpu[k_]):8.2f}")
    if peers:
        for p in ("fwd", "bwd_data", "bwd_w"):
            fc = statistics.median(wall["fc "+p]); fcc = statistics.median(cpu["fc "+p])
            print(f"  ratio {p:<9} pt {fc/statistics.median(wall['pt '+p]):.2f} (cpu {fcc/statistics.median(cpu['pt '+p]):.2f})  tf {fc/statistics.median(wall['tf '+p]):.2f} (cpu {fcc/statistics.median(cpu['tf '+p]):.2f})")
    sys.stdout.flush()
