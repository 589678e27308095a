"""Pick the three classes for the diffusion analysis when the user names none.

The paper hand-picked two semantically similar ImageNet classes (two poodles) and a dissimilar one
(submarine). Without labels of meaning, the classifier itself is the best guide: classes whose template
rows point the same way are the ones a model treats as similar.
"""

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from lskd.analysis import as_array
from lskd.errors import InvalidConfig


@dataclass(frozen=True)
class SuggestedClasses:
    target: int
    similar: int
    control: int
    similar_cosine: float
    control_cosine: float

    @property
    def classes(self) -> tuple[int, int, int]:
        return self.target, self.similar, self.control


def suggest_classes(
    weight, counts: Sequence[int], min_count: int, pool_size: int = 500, excluded: Sequence[int] = ()
) -> SuggestedClasses:
    """Among the ``pool_size`` most frequent classes with at least ``min_count`` samples (``excluded``
    left out): the pair with the highest template cosine, the more frequent of the two as the target,
    and as control the class whose larger cosine to either of them is smallest."""
    weight = as_array(weight, "classifier weight", 2)
    counts = np.asarray(counts)
    if counts.shape != (weight.shape[0],):
        raise InvalidConfig(f"counts must have one entry per classifier row ({weight.shape[0]}), got {counts.shape}")
    eligible = np.flatnonzero(counts >= min_count)
    eligible = np.setdiff1d(eligible, np.asarray(excluded, dtype=np.int64))
    pool = eligible[np.argsort(-counts[eligible], kind="stable")][:pool_size]
    if pool.size < 3:
        raise InvalidConfig(
            f"only {pool.size} class(es) have at least {min_count} samples; 3 are needed "
            "(lower the minimum count or name the classes)"
        )
    norms = np.linalg.norm(weight[pool], axis=1)
    if np.any(norms == 0):
        raise InvalidConfig(f"class {int(pool[np.argmin(norms)])} has an all-zero template; its cosine is undefined")
    unit = weight[pool] / norms[:, None]
    cosine = unit @ unit.T
    np.fill_diagonal(cosine, -np.inf)
    first, second = np.unravel_index(np.argmax(cosine), cosine.shape)
    target, similar = (first, second) if counts[pool[first]] >= counts[pool[second]] else (second, first)
    closeness = np.maximum(cosine[target], cosine[similar])
    closeness[[target, similar]] = np.inf
    control = int(np.argmin(closeness))
    return SuggestedClasses(
        target=int(pool[target]),
        similar=int(pool[similar]),
        control=int(pool[control]),
        similar_cosine=float(cosine[target, similar]),
        control_cosine=float(closeness[control]),
    )
