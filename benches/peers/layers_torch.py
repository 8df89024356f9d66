#!/usr/bin/env python3
"""PyTorch peer of benches/layers.rs: forward + backward of one layer at batch 128, on one thread.

One iteration: forward, backward of sum(y) (y.backward(ones)) with gradients for the input and every weight
(`conv2d_first_layer`: no input gradient). Prints the median time and samples/s of each layer.
Times are the CPU time of the calling thread (time.thread_time), as benches/layers.rs reports, so
that concurrent work on the machine does not skew the comparison; WALL=1 for wall-clock times.
Usage: /work/peers-venv/bin/python benches/peers/layers_torch.py  (T=2 for two threads)
"""
import os
import statistics
import time

import torch
import torch.nn as nn

T = int(os.environ.get("T", "1"))
clock = time.perf_counter if os.environ.get("WALL") else time.thread_time
torch.set_num_threads(T)
torch.manual_seed(0)
B = 128


class LastStep(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(28, 64, batch_first=True)

    def forward(self, x):
        return self.lstm(x)[0][:, -1]


cases = [
    ("dense_784_128", nn.Sequential(nn.Linear(784, 128), nn.ReLU()), (B, 784), True),
    ("conv2d_28x28x1_32x3x3", nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU()), (B, 1, 28, 28), True),
    ("conv2d_first_layer", nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU()), (B, 1, 28, 28), False),
    ("maxpool2d_26x26x32", nn.MaxPool2d(2), (B, 32, 26, 26), True),
    ("lstm_28x28_64", LastStep(), (B, 28, 28), True),
]

for name, layer, shape, wrt_input in cases:
    x = torch.rand(shape, requires_grad=wrt_input)

    def step():
        layer.zero_grad(set_to_none=True)
        x.grad = None
        y = layer(x)
        y.backward(torch.ones_like(y))

    for _ in range(5):
        step()
    times = []
    deadline = time.perf_counter() + 4.0
    while time.perf_counter() < deadline or len(times) < 10:
        t = clock()
        step()
        times.append(clock() - t)
    med = statistics.median(times)
    print(f"torch T={T} {name:24} median {med * 1e3:8.3f} ms  {B / med:10.0f} samples/s  ({len(times)} runs)")
