"""Adaptive frame selection (`frames.select: adaptive`): cluster a video's frames, caption one per cluster.

VideoTree-style (Wang et al., CVPR 2025), question-independent part:

    every decoded frame -> embedding (the captioner's vision tower, or `pixel_embedding`)
        -> k-means with an adaptive k -> one representative per cluster (the frame nearest its centre)
        -> each representative's caption stands for the time spans its cluster covers

The k rule. The smallest k whose clustering explains at least `explained` (default 0.9) of the
frames' variance around their mean, 1 - inertia(k) / inertia(1), capped at `max_k` (the caption
budget). This is the elbow criterion in its variance-explained form: it needs no scale of its own,
so the same rule works for ViT features and pixel thumbnails, a static video gives k = 1, and a
video of S distinct scenes gives k = S once the scenes are what varies (the test checks this on a
generated video with known scene boundaries). VideoTree's own rule (grow k until every cluster is
coherent) needs an absolute distance threshold, which depends on the embedding. The search doubles
k until the target is met, then bisects, so about 2 log2(max_k) k-means runs per video.

k-means is seeded (k-means++ initialisation, Lloyd iterations) and runs on the L2-normalised
embeddings projected to `PROJECTED_DIMS` dimensions by a seeded Gaussian random matrix
(Johnson-Lindenstrauss: squared distances are preserved in expectation, within about 1/sqrt(64)
each). A random projection rather than PCA: it is one matrix product, whereas an SVD through
OpenBLAS took seconds for 240 frames on a busy 2-core machine. scikit-learn is not a dependency;
k-means is 40 lines of numpy.

Each cluster also keeps its children (the same rule one level down, inside the cluster), so a
question-dependent step can expand the clusters that matter one level deeper (VideoTree's depth).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

PROJECTED_DIMS = 64  # embeddings are clustered after a random projection to this many dimensions
PIXEL_SIDE = 16  # pixel embedding: frames shrink to PIXEL_SIDE x PIXEL_SIDE RGB thumbnails


@dataclass(frozen=True)
class Cluster:
    """Frames that look alike: `members` index the video's decoded frames (time order)."""

    representative: int  # the member nearest the cluster's centre: the frame that gets captioned
    members: tuple[int, ...]
    spans: tuple[tuple[float, float], ...]  # the time the members cover, merged where contiguous
    children: tuple[Cluster, ...] = ()  # one level deeper (for question-dependent expansion)

    def to_dict(self) -> dict:
        return {
            "representative": self.representative,
            "members": list(self.members),
            "spans": [list(s) for s in self.spans],
            "children": [c.to_dict() for c in self.children],
        }


@dataclass
class Selection:
    """The clusters of one video (in time order of their first span) and how they were found."""

    clusters: list[Cluster]
    frames: int  # frames embedded
    explained: float  # variance explained by the chosen k
    stats: dict = field(default_factory=dict)

    @property
    def representatives(self) -> list[int]:
        return sorted(c.representative for c in self.clusters)


# ---------------------------------------------------------------------------- embeddings


def pixel_embedding(images: Sequence[np.ndarray] | np.ndarray, side: int = PIXEL_SIDE) -> np.ndarray:
    """Captioners without a vision tower: each frame as a `side` x `side` RGB thumbnail (block
    means over the centre square), mean-centred per frame, so (N, side * side * 3) float32.

    Centring makes a global brightness change (a fade, auto-exposure) move the embedding less than
    a change of what is on screen. Costs a few microseconds per frame."""
    out = []
    for image in images:
        h, w = image.shape[:2]
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        square = image[top : top + s, left : left + s].astype(np.float32)
        cell = s // side if s >= side else 1
        n = min(side, s)
        blocks = square[: cell * n, : cell * n].reshape(n, cell, n, cell, -1).mean(axis=(1, 3))
        vector = blocks.reshape(-1) / 255.0
        out.append(vector - vector.mean())
    return np.stack(out).astype(np.float32) if out else np.zeros((0, side * side * 3), np.float32)


def _prepare(embeddings: np.ndarray, seed: int) -> np.ndarray:
    """L2-normalised, centred rows (cosine geometry), randomly projected to PROJECTED_DIMS dimensions."""
    x = np.asarray(embeddings, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.where(norms > 0, norms, 1.0)
    x = x - x.mean(axis=0, keepdims=True)
    if x.shape[1] > PROJECTED_DIMS:
        projection = np.random.default_rng(seed).standard_normal((x.shape[1], PROJECTED_DIMS))
        x = x @ (projection / np.sqrt(PROJECTED_DIMS))
    return x


# ---------------------------------------------------------------------------- k-means


def kmeans(
    x: np.ndarray, k: int, seed: int, iterations: int = 50, restarts: int = 3
) -> tuple[np.ndarray, np.ndarray, float]:
    """(labels, centres, inertia) of k-means on the rows of x: the best of `restarts` seeded runs
    (k-means++ seeding, Lloyd steps); one run alone sometimes merges two scenes."""
    runs = [_kmeans_once(x, k, seed * 1000 + restart, iterations) for restart in range(restarts)]
    return min(runs, key=lambda run: run[2])


def _kmeans_once(x: np.ndarray, k: int, seed: int, iterations: int) -> tuple[np.ndarray, np.ndarray, float]:
    n = len(x)
    k = max(1, min(k, n))
    rng = np.random.default_rng(seed)
    centres = np.empty((k, x.shape[1]))
    centres[0] = x[rng.integers(n)]
    closest = ((x - centres[0]) ** 2).sum(1)
    for i in range(1, k):
        total = closest.sum()
        pick = rng.choice(n, p=closest / total) if total > 0 else rng.integers(n)
        centres[i] = x[pick]
        closest = np.minimum(closest, ((x - centres[i]) ** 2).sum(1))
    labels = np.full(n, -1)
    for _ in range(iterations):
        distances = (x**2).sum(1)[:, None] - 2 * x @ centres.T + (centres**2).sum(1)[None, :]
        new = distances.argmin(1)
        if np.array_equal(new, labels):
            break
        labels = new
        for i in range(k):
            members = x[labels == i]
            if len(members):  # an emptied cluster keeps its centre
                centres[i] = members.mean(0)
    inertia = float(((x - centres[labels]) ** 2).sum())
    return labels, centres, inertia


def adaptive_kmeans(x: np.ndarray, max_k: int, explained: float, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """(labels, centres, explained variance) for the smallest k (<= max_k) explaining `explained`."""
    total = float(((x - x.mean(0)) ** 2).sum())
    max_k = max(1, min(max_k, len(x)))
    if total <= 1e-12 * max(1, len(x)) or max_k == 1:  # nothing varies: one cluster
        return np.zeros(len(x), dtype=int), x.mean(0, keepdims=True), 1.0
    runs: dict[int, tuple[np.ndarray, np.ndarray, float]] = {}

    def fit(k: int) -> float:
        if k not in runs:
            runs[k] = kmeans(x, k, seed)
        return 1.0 - runs[k][2] / total

    low, high = 1, 2
    while high < max_k and fit(high) < explained:  # double until the target is met (or the budget)
        low, high = high, min(2 * high, max_k)
    high = min(high, max_k)
    if fit(high) >= explained:
        while high - low > 1:  # bisect for the smallest k that meets it
            middle = (low + high) // 2
            low, high = (low, middle) if fit(middle) >= explained else (middle, high)
    labels, centres, _ = runs[high]
    return labels, centres, fit(high)


# ---------------------------------------------------------------------------- spans and clusters


def frame_spans(
    times: Sequence[float], members: Sequence[int], interval: float, duration: float
) -> tuple[tuple[float, float], ...]:
    """The time the member frames cover: each frame its sampling interval around its time,
    consecutive frames merged into one span; rounded to 0.1 s."""
    spans: list[list[float]] = []
    previous = None
    for i in sorted(members):
        start = max(0.0, times[i] - interval / 2)
        end = min(duration, times[i] + interval / 2) if duration > 0 else times[i] + interval / 2
        if previous is not None and i == previous + 1:
            spans[-1][1] = end
        else:
            spans.append([start, end])
        previous = i
    return tuple((round(a, 1), round(b, 1)) for a, b in spans)


def sampling_interval(times: Sequence[float], duration: float) -> float:
    """The spacing of the decoded frames (their median gap; the whole video for one frame)."""
    if len(times) > 1:
        return float(np.median(np.diff(np.asarray(times, dtype=np.float64))))
    return duration if duration > 0 else 1.0


def _clusters(
    x: np.ndarray,
    index: np.ndarray,
    times: Sequence[float],
    interval: float,
    duration: float,
    max_k: int,
    explained: float,
    seed: int,
    depth: int,
    branch: int,
) -> tuple[list[Cluster], float]:
    labels, centres, fraction = adaptive_kmeans(x, max_k, explained, seed)
    clusters = []
    for label in range(len(centres)):
        rows = np.flatnonzero(labels == label)
        if len(rows) == 0:
            continue
        nearest = rows[((x[rows] - centres[label]) ** 2).sum(1).argmin()]
        children: list[Cluster] = []
        if depth > 1 and len(rows) > 1:
            children, _ = _clusters(
                x[rows], index[rows], times, interval, duration, branch, explained, seed, depth - 1, branch
            )
            children = [] if len(children) < 2 else children  # one child would be the cluster again
        members = tuple(int(i) for i in index[rows])
        clusters.append(
            Cluster(int(index[nearest]), members, frame_spans(times, members, interval, duration), tuple(children))
        )
    clusters.sort(key=lambda c: (c.spans[0][0], c.representative))
    return clusters, fraction


def select_frames(
    embeddings: np.ndarray,
    times: Sequence[float],
    duration: float,
    *,
    max_captions: int,
    explained: float = 0.9,
    seed: int = 0,
    depth: int = 2,
    branch: int = 4,
) -> Selection:
    """Cluster a video's frames (rows of `embeddings`, at `times` seconds) and pick one
    representative per cluster; at most `max_captions` clusters at the top level. `depth` 2 also
    clusters inside each cluster (children, at most `branch` per cluster: VideoTree's width 4), for
    question-dependent expansion."""
    if len(embeddings) != len(times):
        raise ValueError(f"{len(embeddings)} embeddings for {len(times)} frame times")
    if max_captions < 1:
        raise ValueError(f"max_captions must be >= 1, got {max_captions}")
    if len(times) == 0:
        return Selection([], 0, 1.0)
    x = _prepare(embeddings, seed)
    interval = sampling_interval(times, duration)
    clusters, fraction = _clusters(
        x, np.arange(len(times)), times, interval, duration, max_captions, explained, seed, depth, branch
    )
    return Selection(clusters, len(times), fraction, {"k": len(clusters), "interval_s": interval})
