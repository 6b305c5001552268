"""kind: rnn_fit specs: the shipped example, defaults from the issue, errors that point at fields."""
from __future__ import annotations

from pathlib import Path

import pytest

from neurodsl.errors import SpecError
from neurodsl.spec import KINDS, load_spec, load_spec_text
from neurodsl.spec.rnn import RNNFitSpec

ROOT = Path(__file__).resolve().parents[2]


def test_registered_and_example_loads():
    assert KINDS["rnn_fit"] is RNNFitSpec
    s = load_spec(ROOT / "spec" / "final_rnn.yaml").spec
    assert isinstance(s, RNNFitSpec) and s.name == "final_rnn" and s.seed == 42
    assert Path(s.data.file).is_file() and Path(s.data.file).parent.name == "data"
    assert s.dt.internal == 25.0 and s.data.mask == "none"


def test_defaults_match_the_issue():
    s = load_spec_text("name: x\nkind: rnn_fit\ndata: {file: 'neurodsl:synthetic_rnn_export.mat'}\n").spec
    m, t, ls = s.model, s.training, s.training.losses
    assert (m.tau.internal, m.noise, m.nonlinearity, m.spectral_radius, m.h0_init) == (50.0, 0.1, "softplus", 0.9, 0.1)
    assert (m.embedding.kind, m.embedding.heads, m.embedding.dim) == ("attention", 4, 56)
    assert (t.learning_rate, t.lr_factor, t.lr_patience, t.min_lr, t.clip_norm) == (1e-3, 0.5, 50, 1e-5, 1.0)
    assert (t.epochs, t.early_stopping_patience, t.test_epochs) == (2000, 300, 5)
    assert (ls.ltrial_scale, ls.lambda_reg, ls.lambda_scale, ls.lambda_var) == (0.5, 1e-4, 0.1, 0.05)
    assert ls.use_grad_balancing and s.data.val_fraction == 0.2
    assert (t.batch_size, t.plateau_on, t.warmup_epochs) == (None, "val_loss", 0)
    assert s.data.condition_keys == ["location", "identity", "reward"]


BASE = "name: x\nkind: rnn_fit\ndata: {file: 'neurodsl:synthetic_rnn_export.mat'}\n"


@pytest.mark.parametrize("override, field", [
    ("model.embedding.dim=30", "model.embedding.dim"),
    ("data.mask=sometimes", "data.mask"),
    ("data.file=nope.mat", "data.file"),
    ("training.min_lr=0.1", "training.min_lr"),
    ("model.tau=10 ms", "dt"),
    ("model.nonlinearity=cube", "model.nonlinearity"),
    ("data.val_fraction=1.5", "data.val_fraction"),
    ("model.tau=50", "model.tau"),
    ("training.plateau_on=loss", "training.plateau_on"),
])
def test_errors_point_at_the_field(override, field):
    with pytest.raises(SpecError) as e:
        load_spec_text(BASE, overrides=[override])
    assert field in e.value.one_line()


def test_unknown_key_rejected():
    with pytest.raises(SpecError, match="model"):
        load_spec_text(BASE + "model: {hiden_exc: 3}\n")
