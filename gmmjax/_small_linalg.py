"""Cholesky factors and triangular solves of many small matrices, as plain array operations.

Every batched factorisation in the fitting programs goes through here: the covariances of all
restarts and components (`_params.precision_cholesky`, the gradient methods' parameterisation,
`sample`) and the missing-value formulas' one small D x D matrix per row and component
(`_missing.py`). Not `jnp.linalg.cholesky`: jaxlib's CPU Cholesky (LAPACK potrf through XLA's
FFI, jaxlib 0.10) splits a large batch over the intra-op thread pool from inside a pool thread
and blocks until the pieces finish, so when XLA runs two such factorisations at once (two
independent ones in a program, or a forward pass and its copy recomputed for a gradient) each
holds a pool thread the other's pieces need and the program never returns. Measured on a
2-core machine, two independent factorisations in a loop hang from 256 matrices of 16 x 16,
64 of 64 x 64 or 16000 of 4 x 4 (every pool thread waiting in `jax::ParallelBatchMap`); L-BFGS
and SQUAREM with 64 restarts of 16 components in 16 dimensions hung that way. Elementwise
operations over the whole batch have no such hazard, and for small D they are as fast.

The recurrences are the textbook ones (Golub & Van Loan §4.2, §3.1), column by column,
    L_jj = sqrt(A_jj − Σ_{k<j} L_jk²),   L_ij = (A_ij − Σ_{k<j} L_ik L_jk) / L_jj  (i > j),
so a matrix that is not positive definite gets NaN on its diagonal, as from LAPACK in JAX.
Loops over up to `BLOCK` columns are unrolled (static slices, fused elementwise work); larger
matrices are split into a leading block and the rest (the blocked algorithm of §4.2.6):
L11 = chol(A11), L21 = A21 L11⁻ᵀ, L22 = chol(A22 − L21 L21ᵀ), recursively.
Shapes: A, L (..., d, d); right-hand sides B (..., d, m).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

# Blocks of up to this many columns are unrolled (O(BLOCK²) operations in the program);
# larger matrices are factored block by block with batched products in between.
BLOCK = 8


def cholesky(A: Float[Array, "... d d"]) -> Float[Array, "... d d"]:
    """Lower-triangular L with L Lᵀ = A for every matrix of the batch (A's lower triangle is
    read, its upper triangle ignored)."""
    d = A.shape[-1]
    if d <= BLOCK:
        return _unrolled_cholesky(A)
    # [[A11, ·], [A21, A22]] = [[L11, 0], [L21, L22]] [[L11ᵀ, L21ᵀ], [0, L22ᵀ]]
    L11 = _unrolled_cholesky(A[..., :BLOCK, :BLOCK])
    L21 = jnp.swapaxes(solve_lower(L11, jnp.swapaxes(A[..., BLOCK:, :BLOCK], -1, -2)), -1, -2)
    L22 = cholesky(A[..., BLOCK:, BLOCK:] - _matmul(L21, jnp.swapaxes(L21, -1, -2)))
    top = jnp.concatenate([L11, jnp.zeros(L11.shape[:-1] + (d - BLOCK,), A.dtype)], axis=-1)
    return jnp.concatenate([top, jnp.concatenate([L21, L22], axis=-1)], axis=-2)


def solve_lower(L: Float[Array, "... d d"], B: Float[Array, "... d m"]) -> Float[Array, "... d m"]:
    """X with L X = B (forward substitution), L lower triangular."""
    d = L.shape[-1]
    if d <= BLOCK:
        return _unrolled_solve_lower(L, B)
    X1 = _unrolled_solve_lower(L[..., :BLOCK, :BLOCK], B[..., :BLOCK, :])
    rest = B[..., BLOCK:, :] - _matmul(L[..., BLOCK:, :BLOCK], X1)
    return jnp.concatenate([X1, solve_lower(L[..., BLOCK:, BLOCK:], rest)], axis=-2)


def solve_lower_transposed(
    L: Float[Array, "... d d"], B: Float[Array, "... d m"]
) -> Float[Array, "... d m"]:
    """X with Lᵀ X = B (back substitution), L lower triangular."""
    d = L.shape[-1]
    if d <= BLOCK:
        return _unrolled_solve_lower_transposed(L, B)
    X2 = solve_lower_transposed(L[..., BLOCK:, BLOCK:], B[..., BLOCK:, :])
    rest = B[..., :BLOCK, :] - _matmul(jnp.swapaxes(L[..., BLOCK:, :BLOCK], -1, -2), X2)
    return jnp.concatenate(
        [_unrolled_solve_lower_transposed(L[..., :BLOCK, :BLOCK], rest), X2], axis=-2
    )


def cho_solve(L: Float[Array, "... d d"], B: Float[Array, "... d m"]) -> Float[Array, "... d m"]:
    """X with L Lᵀ X = B."""
    return solve_lower_transposed(L, solve_lower(L, B))


def _matmul(a, b):
    # Full precision: a factor is only as accurate as its Schur complements (on a GPU the
    # default float32 product may round its inputs to TF32).
    return jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST)


def _unrolled_cholesky(A):
    d = A.shape[-1]
    rows = jnp.arange(d)
    cols: list[Array] = []  # column k of L, (..., d), zero above row k
    for j in range(d):
        v = A[..., :, j]
        for c in cols:
            v = v - c * c[..., j, None]
        pivot = jnp.sqrt(v[..., j, None])
        cols.append(jnp.where(rows > j, v / pivot, jnp.where(rows == j, pivot, 0.0)))
    return jnp.stack(cols, axis=-1)


def _unrolled_solve_lower(L, B):
    xs: list[Array] = []  # row k of X, (..., m)
    for j in range(L.shape[-1]):
        r = B[..., j, :]
        for k, x in enumerate(xs):
            r = r - L[..., j, k, None] * x
        xs.append(r / L[..., j, j, None])
    return jnp.stack(xs, axis=-2)


def _unrolled_solve_lower_transposed(L, B):
    d = L.shape[-1]
    xs: dict[int, Array] = {}  # row k of X, (..., m)
    for j in reversed(range(d)):
        r = B[..., j, :]
        for k, x in xs.items():  # Lᵀ's row j is L's column j
            r = r - L[..., k, j, None] * x
        xs[j] = r / L[..., j, j, None]
    return jnp.stack([xs[j] for j in range(d)], axis=-2)
