"""dataset select's two methods written with numpy, for bench batch.

Usage: select_numpy.py FILE N D K METHOD

FILE holds N vectors of D little-endian float32s, one after another (as
bench batch writes them). The script normalizes them once, then selects
K with METHOD (centroid or fps) exactly as internal/batch does (DESIGN.md,
"Batch commands"), with no tripwire, and prints one JSON line: the
seconds spent normalizing and selecting, and the picks.
"""

import json
import sys
import time

import numpy as np


def first_pick(x):
    mean = x.sum(axis=0, dtype=np.float64)
    norm = np.linalg.norm(mean)
    direction = (mean / norm if norm > 0 else mean).astype(np.float32)
    sims = x @ direction
    return int(np.argmin(sims))


def centroid(x, k):
    first = first_pick(x)
    picks = [first]
    taken = np.zeros(x.shape[0], dtype=bool)
    taken[first] = True
    total = x[first].astype(np.float64)
    dots = (x @ x[first]).astype(np.float64)
    while len(picks) < k:
        sims = dots / np.linalg.norm(total)
        sims[taken] = np.inf
        j = int(np.argmin(sims))
        picks.append(j)
        taken[j] = True
        total += x[j]
        dots += x @ x[j]
    return picks


def fps(x, k):
    first = first_pick(x)
    picks = [first]
    taken = np.zeros(x.shape[0], dtype=bool)
    taken[first] = True
    highest = (x @ x[first]).astype(np.float64)
    while len(picks) < k:
        h = highest.copy()
        h[taken] = np.inf
        j = int(np.argmin(h))
        picks.append(j)
        taken[j] = True
        np.maximum(highest, x @ x[j], out=highest)
    return picks


def main():
    path, n, d, k, method = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    x = np.fromfile(path, dtype="<f4", count=n * d).reshape(n, d)
    start = time.perf_counter()
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1
    x /= norms
    picks = (fps if method == "fps" else centroid)(x, k)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "picks": picks}))


if __name__ == "__main__":
    main()
