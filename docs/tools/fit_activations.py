"""Fits the rational tanh of gradus' fused LSTM cell (crates/layers/src/layers/lstm/act.rs) and
prints its f32 coefficients:

    tanh(x) ~ x P(x^2) / Q(x^2)   on [0, 9]

P and Q have degree 4 in x^2 and Q(0) = 1. The cell's sigmoid is 1/2 + tanh(x/2)/2 with the same
function, its coefficients scaled by powers of two in act.rs (fitting sigmoid(x) - 1/2 on
[0, 18] gives those same values). The fit minimizes the relative error of f(x) / x by
linearized least squares (P - f Q = 0, weighted by 1 / (f Q_previous)), with the weights
raised where the error is largest (Lawson's iteration), which approaches the minimax fit.
Needs numpy and mpmath; for reproducing the constants only (gradus builds without Python).
"""
import mpmath as mp
import numpy as np

mp.mp.dps = 30


def target(kind, xs):
    if kind == "tanh":
        return np.array([float(mp.tanh(mp.mpf(float(x))) / float(x)) for x in xs])
    return np.array(
        [float((1 / (1 + mp.exp(-mp.mpf(float(x)))) - mp.mpf(0.5)) / float(x)) for x in xs]
    )


def fit(kind, X, p=4, q=4, iters=300):
    xs = np.linspace(0, X, 12000)[1:]
    f = target(kind, xs)
    t = xs * xs / (X * X)  # the fit runs on t in [0, 1]; the result is rescaled to x^2
    cols = [t**k for k in range(p + 1)] + [-f * t**k for k in range(1, q + 1)]
    A = np.vstack(cols).T
    q_prev, w, best = np.ones_like(xs), np.ones_like(xs), None
    for _ in range(iters):
        sc = np.sqrt(w) / (f * q_prev)
        c, *_ = np.linalg.lstsq(A * sc[:, None], f * sc, rcond=None)
        a, b = c[: p + 1], np.concatenate([[1.0], c[p + 1 :]])
        P, Q = np.polyval(a[::-1], t), np.polyval(b[::-1], t)
        err = (P / Q - f) / f
        m = np.abs(err).max()
        if best is None or m < best[0]:
            best = (m, a, b)
        q_prev = Q
        w = w * (np.abs(err) / m) ** 0.5 + 1e-12
        w /= w.sum()
    m, a, b = best
    scale = np.array([X ** (2 * k) for k in range(p + 1)])
    return m, a / scale, b / scale[: q + 1]


for kind, X in [("tanh", 9.0)]:
    m, a, b = fit(kind, X)
    f32 = lambda v: repr(float(np.float32(v)))
    print(f"{kind}: max relative error of f(x)/x in exact arithmetic {m:.2e}")
    print("  P", ", ".join(f32(v) for v in a))
    print("  Q", ", ".join(f32(v) for v in b))
