"""Short human-readable summaries of validated specs (no JAX)."""
from __future__ import annotations

from neurodsl.spec.network import Bernoulli, FixedIndegree, PoissonGroup


def _expected_synapses(pr, n_pre: int, n_post: int) -> str:
    c = pr.connectivity
    same = pr.pre == pr.post
    if isinstance(c, Bernoulli):
        pairs = n_pre * n_post - (n_pre if same and not c.allow_self else 0)
        return f"~{c.p * pairs:,.0f}"
    if isinstance(c, FixedIndegree):
        return f"{c.k * n_post:,}"
    if c.kind == "all_to_all":
        return f"{n_pre * n_post - (n_pre if same and not c.allow_self else 0):,}"
    if c.kind == "one_to_one":
        return f"{n_pre:,}"
    if c.kind == "assemblies":
        within = n_pre * n_post / c.n
        return f"~{c.p_within * within + c.p_between * (n_pre * n_post - within):,.0f}"
    return "from file"


def summarize(spec) -> str:
    """Populations, sizes and synapse counts of a spec (other kinds: header and sections)."""
    lines = [f"{spec.name} ({spec.kind}): valid; dt {spec.dt}, duration {spec.duration}, "
             f"seed {spec.seed}, {spec.precision}"]
    pops = getattr(spec, "populations", None)
    if not pops:
        extra = [k for k, v in spec if v is not None and k not in ("name", "kind")]
        return "\n".join(lines + ["  sections: " + ", ".join(extra)])
    sizes = {n: p.size for n, p in pops.items()}
    lines.append("  populations:")
    for n, p in pops.items():
        lines.append(f"    {n:<12s} {p.size:>7,} {p.cell_type}  {p.neuron.model}")
    for n, inp in spec.inputs.items():
        if isinstance(inp, PoissonGroup):
            sizes[n] = inp.size
            lines.append(f"    {n:<12s} {inp.size:>7,} Poisson input")
    if spec.projections:
        lines.append("  projections:")
        for pr in spec.projections:
            rec = pr.receptor or "+".join(pr.receptors)
            lines.append(f"    {pr.label:<16s} {pr.connectivity.kind:<14s} {rec:<10s} "
                         f"{_expected_synapses(pr, sizes[pr.pre], sizes[pr.post]):>12s} synapses"
                         + (f", delay {pr.delay}" if pr.delay.si else ""))
    return "\n".join(lines)
