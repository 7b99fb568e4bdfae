#!/usr/bin/env python3
"""Fits the erf coefficients of `src/backbone/cpu/math.rs` and checks them in f32.

  python scripts/fit_erf.py

erf(x) = x·P(x²) on [0, 1) (degree 5 in x²) and 1 − e^{−x²}·Q(x − 2.5) on [1, 4) (degree 10),
weighted least squares on Chebyshev nodes, reweighted towards the largest relative error
(a cheap approach to minimax). Prints the coefficients highest power first, as math.rs holds
them, and the worst absolute error of the f32 evaluation against scipy's erf.
"""
import numpy as np
from scipy.special import erf, erfcx

SPLIT, CENTER, ONE = 1.0, 2.5, 4.0


def nodes(a, b, n):
    k = np.arange(n)
    return (a + b) / 2 + (b - a) / 2 * np.cos(np.pi * (2 * k + 1) / (2 * n))


def fit(t, f, deg):
    v = np.vander(t, deg + 1, increasing=True)
    w = np.ones_like(t)
    for _ in range(30):
        c, *_ = np.linalg.lstsq(v * w[:, None], f * w, rcond=None)
        e = np.abs(v @ c - f) / np.abs(f)
        w = w * (1 + e / e.max())
    return c.astype(np.float32)


def horner32(x, c):
    acc = np.full_like(x, c[-1])
    for cc in c[-2::-1]:
        acc = (acc * x + cc).astype(np.float32)
    return acc


def main():
    t = nodes(0.0, SPLIT * SPLIT, 400)
    small = fit(t, erf(np.sqrt(t)) / np.sqrt(t), 5)
    x = nodes(SPLIT, ONE, 600)
    large = fit(x - CENTER, erfcx(x), 10)
    print("ERF_SMALL =", [float(v) for v in small[::-1]])
    print("ERF_LARGE =", [float(v) for v in large[::-1]])
    xs = np.linspace(0, ONE, 400_001, dtype=np.float32)
    lo = xs < SPLIT
    y = np.where(
        lo,
        xs * horner32((xs * xs).astype(np.float32), small),
        np.float32(1) - np.exp(-(xs * xs)).astype(np.float32) * horner32((xs - np.float32(CENTER)).astype(np.float32), large),
    )
    print(f"max |erf32 - erf| on [0, {ONE}): {np.max(np.abs(y - erf(xs.astype(np.float64)))):.2e}")


if __name__ == "__main__":
    main()
