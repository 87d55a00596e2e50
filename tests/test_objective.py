"""The shared objective f(θ) = (ℓ(θ) + log p(θ)) / N: the prior's density, the MAP M-step,
MAP-EM's identities, and EM and L-BFGS meeting at the same point (docs/math.md §2-§4)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_close, blobs, random_gmm
from scipy import stats

import gmmjax as gj
from gmmjax._prior import log_prior


def _prior(cov_type, d, *, kappa=0.01, alpha=1.0, seed=0):
    """A proper prior with a random mean and scale."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(d, d))
    scale = {
        "full": a @ a.T + d * np.eye(d),
        "tied": a @ a.T + d * np.eye(d),
        "diag": rng.uniform(0.5, 2.0, d),
        "spherical": 1.3,
    }[cov_type]
    dof = d + 2.0 if cov_type in ("full", "tied") else 3.0
    return gj.Prior(
        rng.normal(size=d), scale, dof, cov_type=cov_type, shrinkage=kappa, concentration=alpha
    )


PRIORS = {
    "mclust-like": dict(kappa=0.01, alpha=1.0),
    "dirichlet-and-strong-mean": dict(kappa=0.7, alpha=2.5),
    "no-mean-prior": dict(kappa=0.0, alpha=1.0),
}


@pytest.mark.parametrize("kind", PRIORS)
def test_log_prior_is_the_normalised_density(cov_type, kind):
    """Against scipy's Dirichlet, normal, inverse-Wishart and inverse-gamma densities."""
    k, d = 3, 3
    gmm = random_gmm(5, k, d, cov_type)
    prior = _prior(cov_type, d, **PRIORS[kind])
    kappa, alpha, nu = float(prior.shrinkage), float(prior.concentration), float(prior.dof)
    m, scale = np.asarray(prior.mean), np.asarray(prior.scale)
    covs = np.asarray(gmm.covariances)
    full = {
        "full": covs,
        "tied": np.broadcast_to(covs, (k, d, d)),
        "diag": np.stack([np.diag(c) for c in covs]) if cov_type == "diag" else None,
        "spherical": np.stack([c * np.eye(d) for c in covs]) if cov_type == "spherical" else None,
    }[cov_type]
    ref = stats.dirichlet.logpdf(np.asarray(gmm.weights), alpha * np.ones(k))
    if kappa > 0:
        ref += sum(
            stats.multivariate_normal.logpdf(np.asarray(gmm.means[j]), m, full[j] / kappa)
            for j in range(k)
        )
    if cov_type == "full":
        ref += sum(stats.invwishart.logpdf(c, df=nu, scale=scale) for c in covs)
    elif cov_type == "tied":
        ref += stats.invwishart.logpdf(covs, df=nu, scale=scale)
    elif cov_type == "diag":
        ref += stats.invgamma.logpdf(covs, a=nu / 2, scale=scale / 2).sum()
    else:
        ref += stats.invgamma.logpdf(covs, a=nu / 2, scale=scale / 2).sum()
    assert_close(log_prior(gmm, prior), ref, rtol=1e-12)


@pytest.mark.parametrize("kind", PRIORS)
def test_map_m_step_maximises_the_penalised_q(cov_type, kind):
    """The closed-form MAP M-step is a stationary point of Q(θ, θ^t) + log p(θ) (zero gradient
    in the unconstrained coordinates) and beats random nearby points."""
    X = blobs(21, n=400, d=3, k=3, sep=1.5)
    prior = _prior(cov_type, 3, **PRIORS[kind])
    theta_t = random_gmm(2, 3, 3, cov_type)
    resp_t, _ = gj.e_step(theta_t, X)
    new, _ = gj.em_step(theta_t, X, reg_covar=0.0, prior=prior)

    def penalised_q(u):
        g = gj.from_unconstrained(u)
        return gj.q_function(g, X, resp_t) + log_prior(g, prior)

    u = gj.to_unconstrained(new)
    grad = jax.grad(penalised_q)(u)
    grad_norm = max(float(jnp.max(jnp.abs(a))) for a in jax.tree.leaves(grad))
    assert grad_norm < 1e-8 * X.shape[0], grad_norm
    best = float(penalised_q(u))
    rng = np.random.default_rng(0)
    for _ in range(10):
        bumped = jax.tree.map(lambda a: a + 1e-3 * rng.normal(size=a.shape), u)
        assert float(penalised_q(bumped)) < best


@pytest.mark.parametrize(
    "kind", [pytest.param("mclust-like", marks=pytest.mark.slow), "dirichlet-and-strong-mean"]
)
def test_map_em_is_monotone_and_q_plus_entropy_is_the_objective(cov_type, kind):
    X = blobs(21, n=800, d=2, k=3, sep=1.0)
    prior = _prior(cov_type, 2, **PRIORS[kind])
    start = random_gmm(12, 3, 2, cov_type)
    res = gj.fit_em(
        X,
        3,
        key=jax.random.key(0),
        cov_type=cov_type,
        init_params=start,
        prior=prior,
        max_iter=150,
        tol=0.0,
    )
    h = np.asarray(res.history[0])
    assert np.all(np.isfinite(h)) and int(res.n_iter[0]) == 150
    assert np.all(np.diff(h) >= -1e-13), np.diff(h).min()
    assert h[-1] - h[0] > 0.05  # it climbed
    # history[0] is f at the start; the final objective is f at the returned parameters.
    assert_close(h[0], gj.objective(start, X, prior=prior), rtol=1e-12)
    assert_close(res.objective[0], gj.objective(res.params[0], X, prior=prior), rtol=1e-12)
    # ℓ(θ) + log p(θ) = [Q(θ, θ^t) + log p(θ)] + H(θ, θ^t) for any θ.
    theta_t = res.params[0]
    resp_t, _ = gj.e_step(theta_t, X)
    for theta in (theta_t, random_gmm(9, 3, 2, cov_type)):
        resp, _ = gj.e_step(theta, X)
        penalised_q = gj.q_function(theta, X, resp_t) + log_prior(theta, prior)
        entropy = -jnp.sum(resp_t * jnp.log(resp))
        assert_close(
            X.shape[0] * gj.objective(theta, X, prior=prior), penalised_q + entropy, rtol=1e-12
        )


def test_no_prior_objective_is_the_mean_log_likelihood():
    X = blobs(3, n=300, d=2, k=2)
    gmm = random_gmm(1, 2, 2, "full")
    assert_close(gj.objective(gmm, X), gj.log_likelihood(gmm, X) / 300, rtol=1e-14)
    w = np.random.default_rng(0).uniform(0.5, 2.0, 300)
    assert_close(
        gj.objective(gmm, X, sample_weight=w),
        gj.log_likelihood(gmm, X, w) / w.sum(),
        rtol=1e-14,
    )


@pytest.mark.parametrize(
    "cov_type",
    [
        "full",
        "spherical",
        pytest.param("tied", marks=pytest.mark.slow),
        pytest.param("diag", marks=pytest.mark.slow),
    ],
)
def test_em_and_lbfgs_meet_at_the_same_point(cov_type):
    """From the same start on the same penalised objective, EM and L-BFGS converge to the same
    parameters (1e-6) and objective (1e-10)."""
    X = blobs(5, n=300, d=2, k=3, sep=2.5)
    kw = dict(key=jax.random.key(3), cov_type=cov_type, n_restarts=1, prior="mclust")
    # EM converges linearly and its value stalls at rounding long before its parameters do,
    # so it runs a fixed 2000 steps; L-BFGS stops on its gradient.
    em = gj.fit(X, 3, method="em", max_iter=2000, tol=0.0, **kw)
    lbfgs = gj.fit(X, 3, method="lbfgs", max_iter=500, tol=1e-14, grad_tol=1e-10, **kw)
    assert int(em.status[0]) == gj.Status.MAX_ITER_REACHED
    assert int(lbfgs.status[0]) == gj.Status.CONVERGED, lbfgs.n_iter
    assert_close(em.objective, lbfgs.objective, rtol=0, atol=1e-10)
    for name in ("weights", "means", "covariances"):
        assert_close(getattr(em.params, name), getattr(lbfgs.params, name), rtol=0, atol=1e-6)


def test_prior_values_do_not_recompile():
    from gmmjax._program import n_compiled

    X = blobs(8, n=300, d=2, k=2)
    kw = dict(key=jax.random.key(0), n_restarts=2, max_iter=5, tol=0.0)
    gj.fit_em(X, 2, prior=_prior("full", 2, seed=1), **kw)
    before = n_compiled()
    res = gj.fit_em(X, 2, prior=_prior("full", 2, seed=2, kappa=0.3, alpha=3.0), **kw)
    assert n_compiled() == before
    assert np.all(np.isfinite(np.asarray(res.objective)))


@pytest.mark.parametrize(
    ("prior", "match"),
    [
        ("flat", "prior must be None"),
        (_prior("diag", 2), "cov_type='diag'"),
        (_prior("full", 3), "3 features"),
    ],
)
def test_bad_prior_is_refused(prior, match):
    X = blobs(8, n=100, d=2, k=2)
    with pytest.raises(ValueError, match=match):
        gj.fit_em(X, 2, key=jax.random.key(0), prior=prior)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(dof=1.0), "dof must be > 2"),
        (dict(shrinkage=-1.0), "shrinkage"),
        (dict(concentration=0.5), "concentration"),
        (dict(scale=-np.eye(3)), "positive definite"),
        (dict(scale=np.eye(2)), "shape"),
    ],
)
def test_prior_values_are_checked(kwargs, match):
    base = dict(mean=np.zeros(3), scale=np.eye(3), dof=5.0)
    base.update(kwargs)
    with pytest.raises(ValueError, match=match):
        gj.Prior(base.pop("mean"), base.pop("scale"), base.pop("dof"), cov_type="full", **base)


# Long; `make test-all` runs it (keeping the default suite short).
@pytest.mark.slow
def test_estimator_and_compare_take_the_prior():
    X = blobs(6, n=400, d=2, k=3, sep=2.0)
    prior = gj.Prior.mclust(X, 3, "full")
    est = gj.GaussianMixture(
        3, prior="mclust", reg_covar=0.0, tol=1e-12, max_iter=500, random_state=0
    ).fit(X)
    fitted = gj.GMM(est.weights_, est.means_, est.covariances_, "full")
    again, _ = gj.em_step(fitted, X, reg_covar=0.0, prior=prior)
    # The estimator's fit is a fixed point of MAP-EM (to its tol), not of plain EM.
    assert_close(again.means, fitted.means, rtol=0, atol=1e-5)
    assert_close(again.covariances, fitted.covariances, rtol=0, atol=1e-5)
    plain, _ = gj.em_step(fitted, X, reg_covar=0.0)
    assert float(jnp.max(jnp.abs(plain.covariances - fitted.covariances))) > 1e-4
    assert_close(est.lower_bounds_[-1], gj.objective(fitted, X, prior=prior), rtol=0, atol=1e-10)

    c = gj.compare(
        X,
        3,
        key=jax.random.key(2),
        methods=("em", "lbfgs"),
        n_restarts=2,
        max_iter=400,
        tol=1e-12,
        prior="mclust",
    )
    start = c.histories["em"][:, 0]
    assert_close(c.histories["lbfgs"][:, 0], start, rtol=1e-12)  # same starts, same objective
    starts = gj.initialize(X, 3, key=jax.random.split(jax.random.key(2), 2), prior="mclust")
    assert_close(start[1], gj.objective(starts[1], X, prior=prior), rtol=1e-12)
    em_best, lbfgs_best = (r["best_value"] for r in c.rows)
    assert abs(em_best - lbfgs_best) < 1e-8
    assert c.rows[0]["compile_seconds"] > 0 and c.rows[0]["seconds"] > 0


def test_mclust_prior_with_integer_weights_is_the_prior_of_repeated_rows():
    X = blobs(2, n=50, d=3, k=2)
    w = np.random.default_rng(0).integers(0, 4, 50)
    for cov_type in ("full", "diag"):
        weighted = gj.Prior.mclust(X, 2, cov_type, sample_weight=w)
        repeated = gj.Prior.mclust(np.repeat(X, w, axis=0), 2, cov_type)
        assert_close(weighted.mean, repeated.mean, rtol=1e-12)
        assert_close(weighted.scale, repeated.scale, rtol=1e-12)


def test_prior_mismatch_and_misuse_are_refused():
    X = blobs(8, n=120, d=2, k=2)
    full = gj.Prior.mclust(X, 2, "full")
    with pytest.raises(ValueError, match="cov_type='diag'"):
        gj.objective(random_gmm(1, 2, 2, "diag"), X, prior=full)
    with pytest.raises(ValueError, match="cov_type='spherical'"):
        gj.m_step(X, np.full((120, 2), 0.5), cov_type="spherical", prior=full)
    with pytest.raises(ValueError, match="cov_types"):  # before fitting anything
        gj.select(X, range(1, 3), key=jax.random.key(0), prior=full)
    with pytest.raises(ValueError, match="collinear"):
        gj.Prior.mclust(np.c_[X, X[:, :1] * 2.0], 2, "full")
    with pytest.raises(ValueError, match="finite"):
        gj.Prior(np.array([0.0, np.nan]), np.eye(2), 4.0, cov_type="full")
    with pytest.raises(ValueError, match="finite"):
        gj.Prior(np.zeros(2), np.eye(2), 4.0, cov_type="full", shrinkage=np.inf)
    with pytest.raises(ValueError, match="only for the gradient methods"):
        gj.fit(X, 2, key=jax.random.key(0), learning_rate=0.1)
    with pytest.raises(ValueError, match="full-data objective"):
        gj.fit(X, 2, key=jax.random.key(0), method="lbfgs", batch_size=16)
    with pytest.raises(ValueError, match="method must be one of"):
        gj.compare(X, 2, key=jax.random.key(0), methods=("em", "newton"))


def test_iterator_input_takes_a_prior_object():
    X = blobs(9, n=600, d=2, k=2)
    prior = gj.Prior.mclust(X, 2, "full")
    kw = dict(key=jax.random.key(1), n_restarts=2, max_iter=10, tol=0.0, prior=prior)
    from_chunks = gj.fit_em(iter([X[:250], X[250:]]), 2, **kw)
    assert np.all(np.isfinite(np.asarray(from_chunks.objective)))
    with pytest.raises(ValueError, match="whole data set"):
        gj.fit_em(iter([X[:250], X[250:]]), 2, **{**kw, "prior": "mclust"})


@pytest.mark.slow
def test_an_optax_lbfgs_object_climbs_the_objective():
    import optax

    X = blobs(4, n=300, d=2, k=2, sep=3.0)
    kw = dict(key=jax.random.key(0), n_restarts=1, prior="mclust", max_iter=60)
    named = gj.fit(X, 2, method="lbfgs", **kw)
    given = gj.fit(X, 2, method=optax.lbfgs(), **kw)
    assert abs(float(given.objective[0]) - float(named.objective[0])) < 1e-8


def test_a_new_method_plugs_in_with_one_class():
    """A method written outside the library (plain EM steps counted twice as expensive) gets
    restarts, priors, halving and the solver's statuses from `fit`."""
    import dataclasses

    from gmmjax._em import m_step_from_statistics, streamed_e_statistics
    from gmmjax._solver import OK, StepOutput

    @dataclasses.dataclass(frozen=True)
    class SlowEM:
        name = "slow_em"
        default_max_iter = 50
        default_tol = 1e-8

        def hyper(self, options):
            return {}

        def init(self, gmm, key, problem, hyper):
            return gmm, None

        def step(self, gmm, aux, problem, hyper):
            stats, ll = streamed_e_statistics(gmm, problem.data)
            new = m_step_from_statistics(
                stats, cov_type=gmm.cov_type, reg_covar=0.0, prior=problem.prior
            )
            return StepOutput(new, aux, problem.value(gmm, ll), OK, evals_value=2.0)

        def to_gmm(self, params):
            return params

    X = blobs(7, n=300, d=2, k=2)
    kw = dict(key=jax.random.key(0), n_restarts=4, prior="mclust", tol=1e-8, max_iter=50)
    mine = gj.fit(X, 2, method=SlowEM(), halving_every=5, **kw)
    em = gj.fit(X, 2, method="em", halving_every=5, **kw)
    assert_close(mine.history, em.history, rtol=1e-12)
    assert_close(mine.n_evals, 2 * np.asarray(em.n_evals), rtol=0)
    assert np.array_equal(np.asarray(mine.status), np.asarray(em.status))
