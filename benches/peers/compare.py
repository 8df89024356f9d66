#!/usr/bin/env python3
"""gradus vs PyTorch vs Keras: one epoch of the MLP, CNN and LSTM of issue 7, side by side.

Runs, REPEATS times each (interleaved, so that machine noise hits every contender alike):
  - gradus: target/release/examples/train_bench (GRADUS_NUM_THREADS=T),
  - the peers: /work/shared/peers/train_peers.py torch|keras (T=1 and T=2),
then prints the medians, the ratios gradus/peer, gradus' 2-thread speed-up, the Iris fit time, every
run's time, and
gradus' CPU time (its own report; the machine is shared, so wall time includes waiting for a core),
the peak RSS (/usr/bin/time -v) of the MLP run of gradus and of PyTorch (benches/peers/torch_mlp.py).

Usage (from the repository root, after `cargo build --release --example train_bench`):
  flock /tmp/gradus-bench.lock /work/peers-venv/bin/python benches/peers/compare.py [REPEATS]
Environment: PY (the peers' Python, default /work/peers-venv/bin/python), GRADUS_BIN (the example
binary; default $CARGO_TARGET_DIR or target, then release/examples/train_bench), PEERS (default
"torch keras"), THREADS (default "1 2"). Only the Python standard library is used here.
"""
import os
import re
import statistics
import subprocess
import sys

REPEATS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
PY = os.environ.get("PY", "/work/peers-venv/bin/python")
TARGET = os.environ.get("CARGO_TARGET_DIR", "target")
GRADUS = os.environ.get("GRADUS_BIN", os.path.join(TARGET, "release/examples/train_bench"))
PEERS = os.environ.get("PEERS", "torch keras").split()
THREADS = [int(t) for t in os.environ.get("THREADS", "1 2").split()]
SHARED = "/work/shared/peers/train_peers.py"
HERE = os.path.dirname(os.path.abspath(__file__))
WORKLOADS = ["mlp", "cnn", "lstm"]
LINE = re.compile(r"^(\w+) T=(\d+) (\w+): ([0-9.]+) s/.*?(?:cpu ([0-9.]+) s)?$")


def run(cmd, env):
    full = dict(os.environ, **env)
    out = subprocess.run(cmd, env=full, capture_output=True, text=True, check=True).stdout
    return [LINE.match(l).groups() for l in out.splitlines() if LINE.match(l)]


def peak_rss_kib(cmd, env):
    full = dict(os.environ, **env)
    err = subprocess.run(["/usr/bin/time", "-v"] + cmd, env=full, capture_output=True, text=True, check=True).stderr
    return int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", err).group(1))


times = {}  # (who, threads, workload) -> [seconds]
cpu = {}  # the same for gradus' CPU seconds (its lines end with `cpu X s`)
for rep in range(REPEATS):
    for t in THREADS:
        jobs = [("gradus", [GRADUS] + WORKLOADS + (["iris"] if t == 1 else []), {"GRADUS_NUM_THREADS": str(t)})]
        jobs += [(p, [PY, SHARED, p], {"T": str(t)}) for p in PEERS]
        for who, cmd, env in jobs:
            for name, threads, workload, secs, cpus in run(cmd, env):
                times.setdefault((name, int(threads), workload), []).append(float(secs))
                if cpus:
                    cpu.setdefault((name, int(threads), workload), []).append(float(cpus))
            print(f"# run {rep + 1}/{REPEATS} T={t} {who} done", file=sys.stderr, flush=True)


def med(who, t, w, table=times):
    v = table.get((who, t, w))
    return statistics.median(v) if v else None


def fmt(v, unit=" s"):
    return "—" if v is None else f"{v:.3f}{unit}"


def ratio(a, b):
    return "—" if a is None or b is None else f"{a / b:.2f}x"


print(f"\nMedians of {REPEATS} runs (seconds per epoch, 12,800 samples, batch 128, Adam).\n")
head = "| workload | T | gradus | gradus CPU | " + " | ".join(PEERS) + " | " + " | ".join(f"gradus/{p}" for p in PEERS) + " |"
print(head)
print("|" + "---|" * (head.count("|") - 1))
for w in WORKLOADS:
    for t in THREADS:
        g = med("gradus", t, w)
        peers = [med(p, t, w) for p in PEERS]
        print(f"| {w} | {t} | {fmt(g)} | {fmt(med('gradus', t, w, cpu))} | " + " | ".join(fmt(p) for p in peers) + " | " + " | ".join(ratio(g, p) for p in peers) + " |")
if 1 in THREADS and 2 in THREADS:
    print("\ngradus speed-up with 2 threads (T=1 / T=2): " + ", ".join(f"{w} {ratio(med('gradus', 1, w), med('gradus', 2, w))}" for w in WORKLOADS))
print(f"Iris (500 epochs, whole fit): {fmt(med('gradus', 1, 'iris'))} wall, {fmt(med('gradus', 1, 'iris', cpu))} CPU")

print("\nEvery run, in order (seconds):")
for (who, t, w), v in sorted(times.items()):
    print(f"  {who} T={t} {w}: " + " ".join(f"{x:.3f}" for x in v))

env1 = {"GRADUS_NUM_THREADS": "1", "T": "1"}
g_rss = peak_rss_kib([GRADUS, "mlp"], env1)
line = f"Peak RSS of the MLP run: gradus {g_rss / 1024:.1f} MiB"
if "torch" in PEERS:
    t_rss = peak_rss_kib([PY, os.path.join(HERE, "torch_mlp.py")], env1)
    line += f", PyTorch {t_rss / 1024:.1f} MiB (ratio {g_rss / t_rss:.2f})"
print(line)
