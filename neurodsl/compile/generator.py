"""Connectome generators: spec -> :class:`~neurodsl.io.structure.NetworkStructure` (numpy only).

Registered by kind in :data:`GENERATORS`.
"""
from __future__ import annotations

import numpy as np

from neurodsl.compile.connectivity import assembly_labels
from neurodsl.io.structure import NetworkStructure
from neurodsl.spec.connectome import GeneratorSpec, PairProbability, WeightDist, _default_p


def _draw_weights(d: WeightDist, n: int, rng: np.random.Generator) -> np.ndarray:
    if d.dist == "constant" or d.std == 0:
        return np.full(n, d.mean)
    if d.dist == "normal":
        return np.clip(rng.normal(d.mean, d.std, n), 0.0, None)
    sigma2 = np.log1p((d.std / d.mean) ** 2)
    return rng.lognormal(np.log(d.mean) - sigma2 / 2, np.sqrt(sigma2), n)


def _block(rng, pre_idx, post_idx, pre_lab, post_lab, p: PairProbability, no_self: bool):
    """Bernoulli connections between two index sets, probability by assembly membership."""
    same = pre_lab[:, None] == post_lab[None, :]
    prob = np.where(same, p.within, p.between)
    mask = rng.random(prob.shape) < prob
    if no_self:
        mask &= pre_idx[:, None] != post_idx[None, :]
    i, j = np.nonzero(mask)
    return pre_idx[i], post_idx[j]


def assemblies(g: GeneratorSpec, seed: int) -> NetworkStructure:
    """E/I network with assemblies; neurons ordered E then I (see GeneratorSpec)."""
    rng = np.random.default_rng([seed, 7])
    n, ne = g.n_neurons, g.n_exc
    cell_type = np.array(["E"] * ne + ["I"] * (n - ne))
    assembly = np.concatenate([assembly_labels(ne, g.n_assemblies), assembly_labels(n - ne, g.n_assemblies)])
    idx = {"E": np.arange(ne), "I": np.arange(ne, n)}
    probs = {**_default_p(), **g.p}
    pres, posts, ws = [], [], []
    for pair in ("EE", "EI", "IE", "II"):
        a, b = pair[0], pair[1]
        pre, post = _block(rng, idx[a], idx[b], assembly[idx[a]], assembly[idx[b]], probs[pair],
                           no_self=(a == b and not g.allow_self))
        w = _draw_weights(g.weights.get(pair, WeightDist()), len(pre), rng)
        pres.append(pre)
        posts.append(post)
        ws.append(w if a == "E" else -w)
    rec_pre, rec_post, rec_w = (np.concatenate(x) for x in (pres, posts, ws))
    order = np.lexsort((rec_post, rec_pre))
    ff_mask = np.concatenate([rng.random((g.n_inputs, ne)) < g.p_ff.get("E", 0.0),
                              rng.random((g.n_inputs, n - ne)) < g.p_ff.get("I", 0.0)], axis=1)
    ff_pre, ff_post = np.nonzero(ff_mask)
    ff_w = _draw_weights(g.weights.get("ff", WeightDist()), len(ff_pre), rng)
    meta = {"generator": "assemblies", "seed": seed, "params": g.model_dump(mode="json")}
    return NetworkStructure(cell_type, rec_pre[order].astype(np.int32), rec_post[order].astype(np.int32),
                            rec_w[order].astype(np.float32), ff_pre.astype(np.int32), ff_post.astype(np.int32),
                            ff_w.astype(np.float32), g.n_inputs, assembly.astype(np.int32),
                            meta=meta).validate("<generated>")


GENERATORS = {"assemblies": assemblies}


def generate(g: GeneratorSpec, seed: int) -> NetworkStructure:
    return GENERATORS[g.kind](g, seed)
