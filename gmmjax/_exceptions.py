"""The estimator's exception and warning classes: scikit-learn's own where it is installed.

Subclassing scikit-learn's classes lets drop-in code (`except NotFittedError`, warning filters
on `ConvergenceWarning`) catch ours; scikit-learn stays a test-only dependency.
"""

from __future__ import annotations

try:
    from sklearn.exceptions import ConvergenceWarning as _ConvergenceBase
    from sklearn.exceptions import NotFittedError as _NotFittedBase
except ImportError:  # pragma: no cover - scikit-learn is a test-only dependency

    class _NotFittedBase(ValueError, AttributeError):
        pass

    class _ConvergenceBase(UserWarning):
        pass


class NotFittedError(_NotFittedBase):
    """The estimator is used before `fit`."""


class ConvergenceWarning(_ConvergenceBase):
    """The best restart stopped at max_iter before meeting tol."""


class InvalidParameterError(ValueError, TypeError):
    """A constructor parameter of the wrong type or value (scikit-learn raises an error of both
    kinds for these, so `except ValueError` and `except TypeError` both catch it)."""


class FitFailedError(ValueError):
    """Every restart of a fit failed before reaching any valid parameters (its start already
    had a covariance that is not positive definite), so there is no mixture to return."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status
