# Reference fixture: R SQUAREM 2021.1 and daarem 0.7 accelerating the EM map of a
# full-covariance Gaussian mixture (maximum likelihood, no prior, no regulariser), plus plain
# EM, on the data and starts written by benchmarks/em_family_reference.py.
#
# Output: benchmarks/fixtures/em_family/reference.json. R is never needed at test time; rerun
# this only to regenerate the JSON (about a minute). From the repository root:
#   python benchmarks/em_family_reference.py           # data CSVs and starts.json
#   Rscript benchmarks/em_family_reference.R [DIR]     # DIR defaults to the fixture folder
#   python benchmarks/em_family_reference.py --check   # gmmjax EM vs this EM map
#
# Packages (Debian bookworm: apt-get install r-base-core r-cran-jsonlite r-cran-squarem).
# daarem is on CRAN (install.packages("daarem")); offline, install it from its source, e.g.
# from a git mirror of the CRAN package:
#   mkdir -p /tmp/daarem_src && git -C <cran/daarem repo> archive HEAD | tar -x -C /tmp/daarem_src
#   R CMD INSTALL /tmp/daarem_src          # or: R CMD INSTALL -l /tmp/rlib ..., then R_LIBS=/tmp/rlib
#
# Every algorithm runs on one EM map M(par) over an unconstrained parameter vector, so the
# extrapolations of SQUAREM and DAAREM always land on a valid mixture:
#   a) centred logits a_k = log(pi_k) - mean_j log(pi_j), k = 1..K;
#   b) the means, component by component: mu_1[1..D], mu_2[1..D], ...;
#   c) per component, the lower Cholesky factor L_k of Sigma_k (Sigma_k = L_k L_k^T) with
#      log(L_k[d,d]) on its diagonal, row by row over the lower triangle (L[1,1]; L[2,1],
#      L[2,2]; ...).
# Cases:
#   em:      par <- M(par) until |l(par_t) - l(par_{t-1})| < 1e-10 or 20000 steps, l the
#            total log-likelihood (each step computes l of its input in the same E-step);
#   squarem: SQUAREM::squarem(par, M, -l, control = list(tol = 1e-9, maxiter = 20000)),
#            package defaults otherwise (method 3, step.min0 = step.max0 = 1, mstep 4,
#            objfn.inc 1); SQUAREM minimises, hence -l;
#   daarem:  daarem::daarem(par, M, l, control = list(tol = 1e-9, maxiter = 20000)),
#            defaults otherwise (order 5, mon.tol 0.01, kappa 25, alpha 1.2); daarem maximises.
# Per data set and start (0-based, as in starts.json) and case, reference.json holds:
#   fpevals, objfevals: as the package reports them (em: fpevals = iterations, objfevals = 0);
#   n_fixptfn, n_objfn, n_calls: every call actually made; compare methods on these: daarem
#     reports one fixptfn call fewer than it makes when it converges, and not its closing
#     objfn call; n_failed: calls that raised an error (a covariance that is not positive
#     definite, e.g. an emptied component);
#   loglik: the package's final objective as a total log-likelihood (em: l of the last input);
#   loglik_final: l at the returned parameters (an extra evaluation, not counted);
#   convergence, error (the message when the package stopped on an error, else null),
#   n_samples, par (the returned parameter vector), and
#   trace: [count, l] for every call in order, count = calls made so far including this one,
#     l = total log-likelihood of the point evaluated (for M: of its input).
# jsonlite 1.8 prints doubles with 15 significant digits.

suppressPackageStartupMessages({
  library(jsonlite)
  library(SQUAREM)
  library(daarem)
})

args <- commandArgs(trailingOnly = TRUE)
dir <- if (length(args) >= 1) args[1] else "benchmarks/fixtures/em_family"
EM_TOL <- 1e-10
ACC_TOL <- 1e-9
MAXITER <- 20000

decode <- function(par, K, D) {
  a <- par[1:K]
  w <- exp(a - max(a))
  m <- D * (D + 1) / 2
  off <- K + K * D
  list(
    w = w / sum(w),
    mu = matrix(par[K + 1:(K * D)], K, D, byrow = TRUE),
    L = lapply(1:K, function(k) {
      # Column-major order over the upper triangle of U = L^T is row-major order over the
      # lower triangle of L.
      U <- matrix(0, D, D)
      U[upper.tri(U, diag = TRUE)] <- par[off + (k - 1) * m + 1:m]
      diag(U) <- exp(diag(U))
      t(U)
    })
  )
}

encode <- function(w, mu, L) {
  lw <- log(w)
  tri <- unlist(lapply(L, function(Lk) {
    U <- t(Lk)
    diag(U) <- log(diag(U))
    U[upper.tri(U, diag = TRUE)]
  }))
  c(lw - mean(lw), t(mu), tri)
}

# (N, K) log pi_k + log N(x_i | mu_k, Sigma_k) from the Cholesky factor: a triangular solve
# for the Mahalanobis term, log|Sigma_k| = 2 sum log L_k[d,d].
log_joint <- function(theta, tX) {
  D <- nrow(tX)
  sapply(seq_along(theta$w), function(k) {
    L <- theta$L[[k]]
    z <- forwardsolve(L, tX - theta$mu[k, ])
    log(theta$w[k]) - 0.5 * colSums(z * z) - sum(log(diag(L))) - 0.5 * D * log(2 * pi)
  })
}

row_logsumexp <- function(lp) {
  m <- lp[, 1]
  for (k in seq_len(ncol(lp))[-1]) m <- pmax(m, lp[, k])
  m + log(rowSums(exp(lp - m)))
}

m_step <- function(resp, X) {
  Nk <- colSums(resp)
  mu <- crossprod(resp, X) / Nk
  L <- lapply(seq_along(Nk), function(k) {
    Xc <- X - rep(mu[k, ], each = nrow(X))
    t(chol(crossprod(Xc * resp[, k], Xc) / Nk[k]))
  })
  encode(Nk / nrow(X), mu, L)
}

# The EM map and the log-likelihood for one data set, both counted and traced: the trace is
# what lets a benchmark compare progress per E-step, not just final counts.
problem <- function(X, K) {
  tX <- t(X)
  D <- ncol(X)
  st <- new.env()
  st$n <- 0L
  st$n_fix <- 0L
  st$n_obj <- 0L
  st$n_failed <- 0L
  st$trace <- matrix(NA_real_, 4 * MAXITER + 10, 2)
  e_step <- function(par) {
    lp <- log_joint(decode(par, K, D), tX)
    lse <- row_logsumexp(lp)
    list(lp = lp, lse = lse, ll = sum(lse))
  }
  record <- function(ll) {
    st$n <- st$n + 1L
    st$trace[st$n, ] <- c(st$n, ll)
  }
  fixptfn <- function(par) {
    st$n_fix <- st$n_fix + 1L
    e <- e_step(par)
    record(e$ll)
    st$last_ll <- e$ll
    tryCatch(m_step(exp(e$lp - e$lse), X), error = function(err) {
      st$n_failed <- st$n_failed + 1L
      stop(err)
    })
  }
  loglik <- function(par) {
    st$n_obj <- st$n_obj + 1L
    ll <- e_step(par)$ll
    record(ll)
    ll
  }
  list(fixptfn = fixptfn, loglik = loglik, plain_loglik = function(par) e_step(par)$ll,
       state = st)
}

run_em <- function(par, p) {
  ll_prev <- -Inf
  conv <- FALSE
  for (it in 1:MAXITER) {
    par <- p$fixptfn(par)
    ll <- p$state$last_ll
    if (abs(ll - ll_prev) < EM_TOL) {
      conv <- TRUE
      break
    }
    ll_prev <- ll
  }
  list(par = par, fpevals = it, objfevals = 0L, iterations = it, loglik = ll, convergence = conv)
}

run_squarem <- function(par, p) {
  res <- squarem(par, p$fixptfn, function(x) -p$loglik(x),
                 control = list(tol = ACC_TOL, maxiter = MAXITER))
  list(par = res$par, fpevals = res$fpevals, objfevals = res$objfevals, iterations = res$iter,
       loglik = -res$value.objfn, convergence = res$convergence)
}

run_daarem <- function(par, p) {
  res <- suppressWarnings(daarem(par, p$fixptfn, p$loglik,
                                 control = list(tol = ACC_TOL, maxiter = MAXITER)))
  list(par = res$par, fpevals = res$fpevals, objfevals = res$objfevals,
       loglik = res$value.objfn, convergence = res$convergence)
}

run_case <- function(runner, par0, X, K) {
  p <- problem(X, K)
  out <- tryCatch(runner(par0, p), error = function(err) {
    list(par = NULL, convergence = FALSE, error = conditionMessage(err))
  })
  st <- p$state
  out$n_fixptfn <- st$n_fix
  out$n_objfn <- st$n_obj
  out$n_calls <- st$n
  out$n_failed <- st$n_failed
  out$n_samples <- nrow(X)
  out$loglik_final <- if (is.null(out$par)) NA else p$plain_loglik(out$par)
  if (is.null(out$error)) out$error <- NA
  out$trace <- st$trace[seq_len(st$n), , drop = FALSE]
  out
}

starts <- fromJSON(file.path(dir, "starts.json"), simplifyVector = FALSE)$datasets
runners <- list(em = run_em, squarem = run_squarem, daarem = run_daarem)
results <- list()
t0 <- proc.time()[["elapsed"]]
for (entry in starts) {
  X <- as.matrix(read.csv(file.path(dir, entry$file), header = FALSE))
  dimnames(X) <- NULL
  K <- entry$K
  results[[entry$dataset]] <- lapply(seq_along(entry$starts), function(r) {
    s <- entry$starts[[r]]
    means <- do.call(rbind, lapply(s$means, unlist))
    L <- lapply(s$covariances, function(S) t(chol(do.call(rbind, lapply(S, unlist)))))
    par0 <- encode(unlist(s$weights), means, L)
    cases <- lapply(runners, function(run) run_case(run, par0, X, K))
    cat(sprintf("%-12s start %d: EM %5d it l=%.10f | SQUAREM %4d+%4d l=%.10f | DAAREM %4d+%4d l=%.10f  (%.0f s)\n",
                entry$dataset, r - 1,
                cases$em$n_fixptfn, cases$em$loglik_final,
                cases$squarem$n_fixptfn, cases$squarem$n_objfn, cases$squarem$loglik_final,
                cases$daarem$n_fixptfn, cases$daarem$n_objfn, cases$daarem$loglik_final,
                proc.time()[["elapsed"]] - t0))
    c(list(start = r - 1, K = K), cases)
  })
}

versions <- list(R = paste(R.version$major, R.version$minor, sep = "."),
                 SQUAREM = as.character(packageVersion("SQUAREM")),
                 daarem = as.character(packageVersion("daarem")),
                 jsonlite = as.character(packageVersion("jsonlite")))
out <- list(
  description = paste(
    "Plain EM, SQUAREM and DAAREM (R packages) on the EM map of a full-covariance Gaussian",
    "mixture (ML, no prior, no regulariser); see benchmarks/em_family_reference.R."),
  packages = versions,
  settings = list(em_tol = EM_TOL, tol = ACC_TOL, maxiter = MAXITER,
                  parameterisation = paste(
                    "centred logits; means by component; per component the row-major lower",
                    "triangle of the Cholesky factor of the covariance, log on the diagonal")),
  results = results
)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, na = "null", null = "null"),
           file.path(dir, "reference.json"))
cat(sprintf("wrote %s (%.0f s)\n", file.path(dir, "reference.json"), proc.time()[["elapsed"]] - t0))
