"""gmmjax: Gaussian mixture models in JAX.

EM and gradient methods on one objective (log-likelihood plus an optional conjugate
log-prior), many restarts in one compiled program.
"""

from . import plot as plot  # matplotlib itself is imported on first use only
from ._compare import Comparison as Comparison
from ._compare import compare as compare
from ._criteria import aic as aic
from ._criteria import bic as bic
from ._criteria import icl as icl
from ._criteria import n_parameters as n_parameters
from ._daarem import DAAREM as DAAREM
from ._datasets import load_dataset as load_dataset
from ._datasets import make_mixture as make_mixture
from ._em import e_step as e_step
from ._em import em_step as em_step
from ._em import m_step as m_step
from ._em import m_step_from_statistics as m_step_from_statistics
from ._em import q_function as q_function
from ._em_method import EM as EM
from ._estimator import GaussianMixture as GaussianMixture
from ._exceptions import ConvergenceWarning as ConvergenceWarning
from ._exceptions import FitFailedError as FitFailedError
from ._exceptions import NotFittedError as NotFittedError
from ._fit import fit as fit
from ._fit import fit_em as fit_em
from ._fit import fit_gradient as fit_gradient
from ._gradient import Gradient as Gradient
from ._implicit import fit_differentiable as fit_differentiable
from ._incremental_em import IncrementalEM as IncrementalEM
from ._init import initialize as initialize
from ._io import load as load
from ._io import save as save
from ._likelihood import component_log_prob as component_log_prob
from ._likelihood import log_likelihood as log_likelihood
from ._likelihood import log_prob as log_prob
from ._missing import impute as impute
from ._objective import objective as objective
from ._online_em import OnlineEM as OnlineEM
from ._params import GMM as GMM
from ._prior import Prior as Prior
from ._result import FitResult as FitResult
from ._sample import sample as sample
from ._select import Selection as Selection
from ._select import select as select
from ._solver import Status as Status
from ._squarem import SQUAREM as SQUAREM
from ._standard_errors import StandardErrors as StandardErrors
from ._standard_errors import standard_errors as standard_errors
from ._stats import SufficientStatistics as SufficientStatistics
from ._stats import sufficient_statistics as sufficient_statistics
from ._transforms import Unconstrained as Unconstrained
from ._transforms import from_unconstrained as from_unconstrained
from ._transforms import to_unconstrained as to_unconstrained

__version__ = "0.1.0"

# Last, so that the import itself has compiled nothing: JAX's persistent compilation cache in
# a per-user directory unless the user configured one or turned it off (see the module).
from ._compilation_cache import configure_at_import as _configure_compilation_cache  # noqa: E402
from ._compilation_cache import set_compilation_cache as set_compilation_cache  # noqa: E402

_configure_compilation_cache()
