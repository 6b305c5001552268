"""The NumPy namespace the loop engine compiles the integrators with, with an exp the loop can vectorise.

:mod:`neurodsl.compile.loop` compiles each integrator of :data:`neurodsl.compile.kinetics.INTEGRATORS`
with ``jnp`` bound to this module: every name is NumPy's (module ``__getattr__``) except :func:`exp`.
Numba calls libm's scalar ``exp`` for ``np.exp``, which stops LLVM from vectorising the population
loop; exponential Euler spends most of a step there (one exp per neuron per step). pip's llvmlite is
built without a vector math library (Numba's SVML support needs Intel's patched LLVM), so the exp
here is the Cephes one (S. Moshier, ``exp.c``: the rational approximation of exp on
|r| <= ln2/2 after range reduction by ln2 in two parts) written with no branch and no call, so that
the loop vectorises. Against libm it is within 2 ulp over [-700, 700] (tests/compile/test_loop.py);
inf, -inf and NaN give inf, 0 and NaN, large arguments overflow to inf and small ones underflow
through the subnormals to 0.
"""
from __future__ import annotations

import numpy as np

_P = (1.26177193074810590878e-4, 3.02994407707441961300e-2, 9.99999999999999999910e-1)
_Q = (3.00198505138664455042e-6, 2.52448340349684104192e-3, 2.27265548208155028766e-1, 2.0)
_LN2_HI, _LN2_LO = 6.93145751953125e-1, 1.42860682030941723212e-6
_LOG2E = 1.4426950408889634


def __getattr__(name: str):
    return getattr(np, name)


def _build():
    import numba
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic

    @intrinsic
    def f64_from_bits(typingctx, bits):
        if bits != types.int64:
            return None

        def codegen(context, builder, sig, args):
            return builder.bitcast(args[0], ir.DoubleType())
        return types.float64(types.int64), codegen

    P0, P1, P2 = _P
    Q0, Q1, Q2, Q3 = _Q

    @numba.njit(inline="always", error_model="numpy")
    def exp(x):
        x = 710.0 if x > 710.0 else (-746.0 if x < -746.0 else x)  # NaN passes through
        k = np.floor(_LOG2E * x + 0.5)
        k = k if k == k else 0.0
        r = (x - k * _LN2_HI) - k * _LN2_LO
        rr = r * r
        p = r * ((P0 * rr + P1) * rr + P2)
        e = 1.0 + 2.0 * p / ((((Q0 * rr + Q1) * rr + Q2) * rr + Q3) - p)
        n = np.int64(k)
        h = n >> 1  # 2^n as two normal factors: n reaches -1076 (subnormal results) and 1024 (inf)
        return (e * f64_from_bits((h + 1023) << 52)) * f64_from_bits((n - h + 1023) << 52)
    return exp


exp = _build()
