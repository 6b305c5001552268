"""Odour-modulated Poisson inputs: odour patterns, presentation schedules, the ``odour`` input kind.

Used by ``kind: teacher`` (``odours`` / ``schedule`` / ``mitral``) and, as an ordinary input of
any network spec, by ``inputs: {NAME: {kind: odour, ...}}`` -- the olfactory template expands
into a network whose mitral layer is such an input.  Rates (see
:mod:`neurodsl.compile.odour`): ``rate[b, i](n) = baseline_i + sum_k w[b, k](n) delta[k, i]``.
"""
from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, ValidationInfo, field_validator

from neurodsl import units as U
from neurodsl.spec.base import NonNegRate, Rate, SpecModel, Time, existing_file

q = U.parse_quantity


def _existing(v: str, info: ValidationInfo, what: str) -> str:
    return existing_file(v, info, what)



class RandomOdours(SpecModel):
    """``n`` odours; odour k raises a random ``fraction`` of mitral cells by ``modulation``."""

    kind: Literal["random"] = "random"
    n: int = Field(10, gt=0)
    fraction: float = Field(0.1, gt=0, le=1)
    modulation: Rate = q("30 Hz", U.FREQUENCY)


class TableOdours(SpecModel):
    """Per-odour rates per input channel from a CSV (odour x channel).

    Rows whose first cell equals the first header cell (e.g. ``odor``) are header
    rows (the last one names the channels); non-numeric columns (e.g. CAS numbers)
    are ignored.  ``values: change``: the table holds changes from the row named
    ``spontaneous`` (absolute rate = spontaneous + gain * change, clipped at 0);
    ``absolute``: rates as they are (baseline = ``mitral.baseline``).  Channels map
    onto mitral cells by ``channel_map``: ``blocks`` (mitral i -> channel
    floor(i C / N)) or ``cycle`` (i mod C).  ``select``: odour names (default all).
    """

    kind: Literal["table"]
    file: str
    select: list[str] | None = None
    values: Literal["change", "absolute"] = "change"
    spontaneous: str = "spontaneous firing rate"
    gain: float = Field(1.0, ge=0)
    channel_map: Literal["blocks", "cycle"] = "blocks"

    @field_validator("file")
    @classmethod
    def _exists(cls, v: str, info: ValidationInfo) -> str:
        return _existing(v, info, "odour table")


Odours = Annotated[Union[RandomOdours, TableOdours], Field(discriminator="kind")]


class FixedSchedule(SpecModel):
    """One odour held for a whole trial: trial i presents ``odours[i % len(odours)]``
    (odour indices from 0; -1 = baseline, no odour).  Default: trial i -> odour i mod n."""

    kind: Literal["fixed"] = "fixed"
    odours: list[int] | None = None


class OUSchedule(SpecModel):
    """Odour mixture weights ``softmax(x / temperature)`` of an OU process x per odour and trial.

    ``dx = -x/tau dt + sigma sqrt(2/tau) dW`` (``sigma`` is the stationary std; x
    starts from the stationary distribution); updated every ``update``.
    """

    kind: Literal["ou"]
    tau: Time = q("700 s", U.TIME)
    sigma: float = Field(5.0, ge=0)
    temperature: float = Field(0.2, gt=0)
    update: Time = q("10 ms", U.TIME)


Schedule = Annotated[Union[FixedSchedule, OUSchedule], Field(discriminator="kind")]


class OdourInput(SpecModel):
    """``size`` Poisson cells (e.g. mitral cells) whose rates follow ``odours`` presented by
    ``schedule`` on top of ``baseline`` (a presynaptic source for projections, like ``poisson``)."""

    kind: Literal["odour"]
    size: int = Field(gt=0)
    baseline: NonNegRate = q("6 Hz", U.FREQUENCY)
    odours: Odours = Field(default_factory=RandomOdours)
    schedule: Schedule = Field(default_factory=FixedSchedule)
    cell_type: Literal["E", "I"] = "E"
