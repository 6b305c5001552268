"""LICENSE and CITATION.cff exist and agree with setup.cfg."""
import configparser
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def test_license_matches_setup_cfg():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    assert cfg["metadata"]["license"] == "MIT"
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License") and "neurodsl developers" in text


def test_citation_cff_is_valid_yaml_with_the_package_version():
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    assert cff["cff-version"] == "1.2.0" and cff["license"] == "MIT"
    assert str(cff["version"]) == cfg["metadata"]["version"]
    assert cff["title"] and cff["authors"]
