#!/usr/bin/env python3
"""The MLP workload of /work/shared/peers/train_peers.py alone (PyTorch), for its peak RSS.

Same model, data, optimizer and loop as the shared script (one warm-up epoch, one timed epoch);
prints the same line. Usage: T=1 /work/peers-venv/bin/python benches/peers/torch_mlp.py
"""
import os
import time

import numpy as np
import torch
import torch.nn as nn

T = int(os.environ.get("T", "1"))
N = int(os.environ.get("N", "12800"))
B = 128
rng = np.random.default_rng(0)
x = rng.random((N, 28, 28), dtype=np.float32)
y = rng.integers(0, 10, N)
torch.set_num_threads(T)
torch.manual_seed(0)
m = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
opt = torch.optim.Adam(m.parameters(), 1e-3)
lf = nn.CrossEntropyLoss()
X = torch.from_numpy(x)
Y = torch.from_numpy(y)


def epoch():
    for i in range(0, N, B):
        opt.zero_grad()
        loss = lf(m(X[i:i + B]), Y[i:i + B])
        loss.backward()
        opt.step()
    return loss.item()


epoch()
t = time.perf_counter()
loss = epoch()
print(f"torch T={T} mlp: {time.perf_counter() - t:.3f} s/epoch ({N} samples)  loss {loss:.3f}")
