"""Views compared by their looks alone, as tiny images (8 x 8, area averaged: the classic "tiny
image" descriptor): before any pose exists, which views belong to the capture; once a scene is
trained, which of its training views a new frame resembles.

Belonging. The photometric tests of `core.outlier_correction` judge a view against the field,
but a field that trains on a foreign view learns it too. Measured on chair (60 views, 64 px, 30 min) with 5
temple images mixed in: three of the five ended with a photometric error at the chair median,
and the chair cameras collapsed (RRA@15 100% clean, 4% mixed). So the trainer keeps the views
`views_set_apart` finds out of pose learning, and lets the outlier correction decide on them once
a field of the others exists (re-posed and let in when they fit, flagged as outliers when not).
The minimum spanning tree of the views' distances links each view to the capture through its
nearest neighbours, so a ring, a video or a sweep stays one piece however far its two ends look
apart; an edge much longer than the tree's usual edges cuts it, and the views outside the largest
piece are set apart. Measured (the longest edge over the tree's 75th-percentile edge): chair 100
at 64 px 1.6, chair 8 and 16 at 400 px 1.5 and 1.8, temple 8 and 16 1.0 and 1.5, fern 1.1, DTU
49 1.2, the bundled room and object 1.1 and 1.2; chair 60 with 5 temple images: 14.6 for the
edge that joins the temple views to the chair, 2.3-2.9 among the temple views.

Retrieval. `most_alike` ranks a scene's training views by likeness to a new frame: their poses
are candidates of the frame's registration next to the encoder's (as relocalisers start from
retrieved images).
"""

import numpy as np
import torch
from scipy.sparse.csgraph import connected_components, minimum_spanning_tree

THUMBNAIL_SIDE = 8
APART_FACTOR = 4.0
"""An edge this many times the tree's 75th-percentile edge cuts it."""
MIN_VIEWS = 4
"""Fewer views tell no usual edge length from an unusual one."""


def thumbnails(images_NHW3: np.ndarray, side: int = THUMBNAIL_SIDE) -> np.ndarray:
    """(N, side * side * 3) every image area-averaged to side x side, values in [0, 1]."""
    pixels_N3HW = torch.from_numpy(np.ascontiguousarray(images_NHW3)).permute(0, 3, 1, 2).float() / 255.0
    return torch.nn.functional.adaptive_avg_pool2d(pixels_N3HW, side).reshape(len(images_NHW3), -1).numpy()


def views_set_apart(images_NHW3: np.ndarray, factor: float = APART_FACTOR) -> np.ndarray:
    """(N,) bool: the views outside the largest piece of the capture's appearance tree."""
    n = len(images_NHW3)
    if n < MIN_VIEWS:
        return np.zeros(n, dtype=bool)
    tiny_ND = thumbnails(images_NHW3).astype(np.float64)
    distance_NN = np.sqrt(((tiny_ND[:, None] - tiny_ND[None]) ** 2).mean(axis=-1))
    # the sparse graph reads a zero as "no edge": identical frames (a robot standing still) stay linked
    graph_NN = np.maximum(distance_NN, 1e-12)
    np.fill_diagonal(graph_NN, 0.0)
    tree = minimum_spanning_tree(graph_NN).tocoo()
    usual = np.quantile(tree.data, 0.75)
    kept = tree.data <= factor * usual
    pieces = np.zeros((n, n), dtype=bool)
    pieces[tree.row[kept], tree.col[kept]] = True
    _, label_N = connected_components(pieces, directed=False)
    return label_N != np.bincount(label_N).argmax()


def most_alike(thumbnails_ND: np.ndarray, query_BD: np.ndarray, count: int) -> np.ndarray:
    """(B, count) indices of the `count` thumbnails nearest to each query, nearest first."""
    distance_BN = ((query_BD[:, None].astype(np.float64) - thumbnails_ND[None]) ** 2).sum(axis=-1)
    return np.argsort(distance_BN, axis=1, kind="stable")[:, : min(count, len(thumbnails_ND))]
