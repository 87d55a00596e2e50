"""`FitConfig`: a fit's options, validated once, in one place.

Static fields fix shapes or the program's structure and are compiled in (K, cov_type, init,
max_iter, restarts, chunking, halving); `tol` and `reg_covar` are traced numbers, so changing
them reuses the compiled program.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from ._halving import check_halving, halving_schedule
from ._validate import check_fit_options, check_missing_option, is_int

_COUNTS = (
    "n_components",
    "n_restarts",
    "max_iter",
    "chunk_size",
    "halving_every",
    "halving_survivors",
)


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """The options every method shares (see `gmmjax.fit` for their meaning)."""

    n_components: int
    cov_type: str = "full"
    n_restarts: int = 1
    init: str = "kmeans++"
    max_iter: int = 100
    tol: float = 1e-3
    reg_covar: float = 1e-6
    chunk_size: int | None = None
    # A method's own rows-per-chunk rule (online / incremental EM), used when chunk_size is None.
    chunk_rule: Callable[[int], int] | None = None
    halving_every: int | None = None
    halving_survivors: int = 1
    # "raise": NaN in X is an error; "em": NaN marks a value missing at random (`_missing.py`).
    missing: str = "raise"

    def __post_init__(self):
        # NumPy integers (np.int64(2), as GridSearchCV passes them) are valid counts; they
        # become Python ints here so shapes, static arguments and messages see one type.
        for name in _COUNTS:
            value = getattr(self, name)
            if is_int(value):
                object.__setattr__(self, name, int(value))

    def check(self, n_samples: int) -> None:
        """ValueError (before anything is traced) for any option out of range for N rows."""
        check_fit_options(
            n_samples=n_samples,
            n_components=self.n_components,
            cov_type=self.cov_type,
            init=self.init,
            n_restarts=self.n_restarts,
            max_iter=self.max_iter,
            tol=self.tol,
            reg_covar=self.reg_covar,
            chunk_size=self.chunk_size,
        )
        check_halving(self.halving_every, self.halving_survivors, self.n_restarts)
        check_missing_option(self.missing)

    @property
    def stages(self) -> tuple[tuple[int, int], ...] | None:
        """Successive halving's stages, or None for the plain loop."""
        if self.halving_every is None:
            return None
        return halving_schedule(
            self.n_restarts, self.halving_every, self.halving_survivors, self.max_iter
        )
