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
  python3 benches/peers/compare.py --pool OUT...   (earlier outputs pooled; see below)
Environment: PY (the peers' Python, default /work/peers-venv/bin/python), GRADUS_BIN (the example
binary; default $CARGO_TARGET_DIR or target, then release/examples/train_bench), PEERS (default
"torch keras"), THREADS (default "1 2"). Only the Python standard library is used here.

The issue's targets are then judged with a 90% bootstrap interval of each ratio of medians (each
contender's epochs resampled with replacement, 4,000 times, fixed seed): "met" when the whole
interval is on the target's side, "missed" when it is all on the other side, else "undecided".

Pooling: `compare.py --pool OUT...` runs nothing; it reads the "Every run" sections of earlier
outputs of this script (same binary and peers) and prints the same tables over all their epochs.
"""
import os
import random
import re
import statistics
import subprocess
import sys

POOL = sys.argv[2:] if sys.argv[1:2] == ["--pool"] else None
REPEATS = 0 if POOL else int(sys.argv[1]) if len(sys.argv) > 1 else 3
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
EVERY = re.compile(r"^  (\w+) T=(\d+) (\w+): ([0-9. ]+)$")
if POOL:
    for path in POOL:
        with open(path) as f:
            for l in f:
                m = EVERY.match(l.rstrip("\n"))
                if m:
                    key = (m.group(1), int(m.group(2)), m.group(3))
                    times.setdefault(key, []).extend(float(x) for x in m.group(4).split())
    THREADS = sorted({t for (_, t, _) in times})
    PEERS = [p for p in PEERS if any(who == p for (who, _, _) in times)]
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


runs = f"{len(POOL)} outputs pooled" if POOL else f"{REPEATS} runs"
print(f"\nMedians of {runs} (seconds per epoch, 12,800 samples, batch 128, Adam).\n")
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


def interval(a, b, draws=4000, level=0.90):
    """The bootstrap interval of median(a) / median(b): each list resampled with replacement."""
    rng = random.Random(7)
    r = sorted(
        statistics.median(rng.choices(a, k=len(a))) / statistics.median(rng.choices(b, k=len(b)))
        for _ in range(draws)
    )
    cut = int((1 - level) / 2 * draws)
    return r[cut], r[draws - 1 - cut]


TARGETS = [  # (what, numerator key, denominator key, bound, "<=" or ">=")
    ("MLP <= 0.45x PyTorch", ("gradus", 1, "mlp"), ("torch", 1, "mlp"), 0.45, "<="),
    ("CNN <= 0.35x Keras", ("gradus", 1, "cnn"), ("keras", 1, "cnn"), 0.35, "<="),
    ("LSTM <= 0.5x PyTorch", ("gradus", 1, "lstm"), ("torch", 1, "lstm"), 0.5, "<="),
    ("MLP two threads >= 1.6x", ("gradus", 1, "mlp"), ("gradus", 2, "mlp"), 1.6, ">="),
    ("CNN two threads >= 1.6x", ("gradus", 1, "cnn"), ("gradus", 2, "cnn"), 1.6, ">="),
]
print("\n| target | ratio of medians | 90% interval | epochs | verdict |")
print("|---|---|---|---|---|")
for what, num, den, bound, side in TARGETS:
    a, b = times.get(num), times.get(den)
    if not a or not b:
        continue
    lo, hi = interval(a, b)
    good, bad = (hi <= bound, lo > bound) if side == "<=" else (lo >= bound, hi < bound)
    verdict = "met" if good else "missed" if bad else "undecided"
    value = statistics.median(a) / statistics.median(b)
    print(f"| {what} | {value:.3f} | [{lo:.3f}, {hi:.3f}] | {len(a)} / {len(b)} | {verdict} |")

print("\nEvery run, in order (seconds):")
for (who, t, w), v in sorted(times.items()):
    print(f"  {who} T={t} {w}: " + " ".join(f"{x:.3f}" for x in v))

if POOL:
    sys.exit(0)
env1 = {"GRADUS_NUM_THREADS": "1", "T": "1"}
g_rss = peak_rss_kib([GRADUS, "mlp"], env1)
line = f"Peak RSS of the MLP run: gradus {g_rss / 1024:.1f} MiB"
if "torch" in PEERS:
    t_rss = peak_rss_kib([PY, os.path.join(HERE, "torch_mlp.py")], env1)
    line += f", PyTorch {t_rss / 1024:.1f} MiB (ratio {g_rss / t_rss:.2f})"
print(line)
