"""Steps 3 and 4 of the PAF parser (:mod:`tfsp.postprocess.paf`): per-limb matching and assembly.

Numpy and the standard library only. Peaks are referred to by their index into the parser's
peak list; a connection is ``(limb, peak a, peak b, score)``.
"""

from __future__ import annotations

import math

import numpy as np

from tfsp.data.keypoints import NUM_KEYPOINTS


def _augment(edges: list[tuple[int, int, float]], mate: dict[int, tuple[int, float]]) -> None:
    """Raises the total score of one limb's matching by flipping alternating paths, in place.

    An alternating path starts at an unmatched a and alternates candidate and matched
    connections; flipping it adds a connection (it ends at an unmatched b) or moves one (it ends
    by unmatching the last a). Bellman-Ford over the alternating graph finds the flip of largest
    gain, or an alternating cycle of positive gain; flips are applied while they gain.

    Args:
        edges: the limb's candidates ``(a, b, score)``.
        mate: peak -> (matched peak, score) for both ends of every matched connection.
    """
    neighbours: dict[int, list[tuple[int, float]]] = {}
    for a, b, s in edges:
        neighbours.setdefault(a, []).append((b, s))
    while True:
        gain_a = {a: 0.0 for a in neighbours if a not in mate}
        gain_b: dict[int, float] = {}
        reached: dict[int, tuple[int, float]] = {}  # b -> (a before it, score of a-b)
        best, best_gain, frontier = -1, 0.0, list(gain_a)
        for _ in range(len(neighbours)):  # a simple path visits each a at most once
            following = []
            for a in frontier:
                own = mate.get(a, (-1,))[0]
                for b, s in neighbours[a]:
                    gain = gain_a[a] + s
                    if b == own or gain <= gain_b.get(b, -math.inf):
                        continue
                    gain_b[b], reached[b] = gain, (a, s)
                    if b in mate:  # unmatching b's mate ends a path, or continues it
                        gain -= mate[b][1]
                        if gain <= gain_a.get(mate[b][0], -math.inf):
                            continue
                        gain_a[mate[b][0]] = gain
                        following.append(mate[b][0])
                    if gain > best_gain:
                        best, best_gain = b, gain
            if not following:
                break
            frontier = following
        if best < 0:
            return
        flips, position, b = [], {}, best  # walk back from the end
        if best in mate:
            position[mate[best][0]] = -1
        while True:
            a, s = reached[b]
            flips.append((a, b, s))
            if a in position:  # the walk closed a cycle: flip only the cycle
                flips = flips[position[a] + 1:]
                break
            position[a] = len(flips) - 1
            if a not in mate:
                break
            b = mate[a][0]
        lost = {mate[b][0] for _, b, _ in flips if b in mate} | {a for a, _, _ in flips if a in mate}
        if sum(s for _, _, s in flips) - sum(mate[a][1] for a in lost) <= 0:
            return
        for a in lost:
            del mate[mate.pop(a)[0]]
        for a, b, s in flips:
            mate[a], mate[b] = (b, s), (a, s)


def match_limbs(limb: np.ndarray, peak_a: np.ndarray, peak_b: np.ndarray, score: np.ndarray
           ) -> list[tuple[int, int, int, float]]:
    """Per-limb matching: greedy by descending score, then augmenting flips (step 3 of :mod:`tfsp.postprocess.paf`).

    Returns:
        ``(limb, a, b, score)`` connections sorted by limb.
    """
    order = np.lexsort((-score, limb))
    limb = limb[order]
    edges = list(zip(peak_a[order].tolist(), peak_b[order].tolist(), score[order].tolist()))
    bounds = np.searchsorted(limb, np.arange(limb[-1] + 2 if len(limb) else 1)).tolist()
    matched: list[tuple[int, int, int, float]] = []
    for index in range(len(bounds) - 1):
        group = edges[bounds[index]:bounds[index + 1]]
        mate: dict[int, tuple[int, float]] = {}
        for a, b, s in group:
            if a not in mate and b not in mate:
                mate[a], mate[b] = (b, s), (a, s)
        starts = {a for a, _, _ in group}
        if any(a not in mate for a in starts):
            _augment(group, mate)
        matched += [(index, a, b, s) for a, (b, s) in mate.items() if a in starts]
    return matched


def assemble_people(connections: list[tuple[int, int, int, float]], types: list[int], peak_scores: list[float],
              num_tree_limbs: int) -> list[list]:
    """Grows people from the matched connections in limb order (step 4 of :mod:`tfsp.postprocess.paf`).

    Returns:
        ``[slots, score_sum, num_connections]`` per person: slots holds 17 peak indices (-1
        absent); score_sum adds its keypoint and connection scores.
    """
    owner = [-1] * len(types)
    people: list[list | None] = []
    for limb, a, b, score in connections:
        pa, pb = owner[a], owner[b]
        if pa >= 0 and pa == pb:
            people[pa][1] += score
            people[pa][2] += 1
        elif pa >= 0 and pb >= 0:
            keep, gone = people[pa], people[pb]
            if all(x < 0 or y < 0 for x, y in zip(keep[0], gone[0])):
                for k, peak in enumerate(gone[0]):
                    if peak >= 0:
                        keep[0][k], owner[peak] = peak, pa
                keep[1] += gone[1] + score
                keep[2] += gone[2] + 1
                people[pb] = None
        elif pa >= 0 or pb >= 0:
            person, new = (pa, b) if pa >= 0 else (pb, a)
            if people[person][0][types[new]] < 0:
                people[person][0][types[new]], owner[new] = new, person
                people[person][1] += peak_scores[new] + score
                people[person][2] += 1
        elif limb < num_tree_limbs:
            slots = [-1] * NUM_KEYPOINTS
            slots[types[a]], slots[types[b]] = a, b
            owner[a] = owner[b] = len(people)
            people.append([slots, peak_scores[a] + peak_scores[b] + score, 1])
    return [person for person in people if person is not None]
