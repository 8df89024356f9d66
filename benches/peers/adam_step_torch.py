"""PyTorch Adam step time on one thread, for side-by-side runs with `benches/optimizers.rs`.

Same workloads as the Rust bench: 1x10M, 1000x10k, 100x100 float32 parameters, lr=1e-3.
Usage: T=1 python3 benches/peers/adam_step_torch.py [fused|foreach|forloop ...]
Prints the median of 15 timed steps after 3 warm-up steps.
"""
import os
import sys
import time

import torch

torch.set_num_threads(int(os.environ.get("T", "1")))
MODES = sys.argv[1:] or ["fused", "foreach", "forloop"]


def median_seconds(step, reps=15, warm=3):
    for _ in range(warm):
        step()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


for count, size in ((1, 10_000_000), (1000, 10_000), (100, 100)):
    params = [torch.nn.Parameter(torch.randn(size)) for _ in range(count)]
    for p in params:
        p.grad = torch.randn(size)
    n = count * size
    for mode in MODES:
        kwargs = {"fused": {"fused": True}, "foreach": {"foreach": True}, "forloop": {"foreach": False}}[mode]
        opt = torch.optim.Adam(params, lr=1e-3, **kwargs)
        t = median_seconds(opt.step)
        print(f"torch Adam {mode:8s} {count}x{size}: {t * 1e3:8.3f} ms/step  "
              f"{n / t / 1e9:.3f} Gelem/s  {28 * n / t / 1e9:.1f} GB/s", flush=True)
