"""The protocol registry: every shipped config selects the protocol its file asks for, summaries
are recognised, and a new protocol is one runner plus one registry line (docs/design.md)."""

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

import train
from loclin import protocols
from loclin.config import ExperimentConfig, load_config

REPO = Path(__file__).resolve().parents[1]
EXPECTED = {  # read off each file: kind, recovery.enabled, random_search.enabled
    "synthetic": "train",
    "tiny_synthetic": "train",
    "recovery_synthetic": "recovery",
    "tiny_recovery": "recovery",
    "tiny_lora": "recovery",
    "lora_smollm2": "recovery",
    "lora_gpt2": "recovery",
    "lora_distilgpt2": "recovery",
    "random_search_synthetic": "random_search",
    "random_search_lora": "random_search",
    "tiny_random_search": "random_search",
    "quadratic": "quadratic",
    "tiny_steer": "steer",
    "steer_smollm2": "steer",
    "steer_gemma": "steer",
    "steer_qwen_offline": "steer",
    "steer_qwen_boolq": "steer",
}


def schema_merged(name: str):
    """A shipped config on the schema, not validated: selection must not need its assets fetched."""
    return OmegaConf.merge(OmegaConf.structured(ExperimentConfig), OmegaConf.load(REPO / "conf" / f"{name}.yaml"))


def test_every_shipped_config_selects_its_protocol():
    assert sorted(EXPECTED) == sorted(p.stem for p in (REPO / "conf").glob("*.yaml"))
    chosen = {name: protocols.protocol_for(schema_merged(name)).name for name in EXPECTED}
    assert chosen == EXPECTED


def test_summaries_name_the_protocol_that_wrote_them():
    assert protocols.protocol_of_summary({"kind": "steer", "curves": {}}) == "steer"
    assert (
        protocols.protocol_of_summary({"curves": {"recovery.prefix": {"krylov_exact": [1.0]}, "recovery.table": {}}})
        == "quadratic"
    )
    assert (
        protocols.protocol_of_summary({"curves": {"random_search.points": [], "recovery.table": {}}}) == "random_search"
    )
    assert protocols.protocol_of_summary({"curves": {"recovery.table": {}}}) == "recovery"
    assert protocols.protocol_of_summary({"curves": {}}) == "train"


def run_toy(cfg, run_dir, resume=False) -> dict:
    summary = {
        "experiment": cfg.experiment,
        "seed": cfg.seed,
        "resume": resume,
        "metrics": {},
        "curves": {"toy.points": [1, 2]},
    }
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return summary


def test_a_new_protocol_is_one_runner_and_one_registry_line(tmp_path, monkeypatch, capsys):
    toy = protocols.Protocol(
        "toy", f"{__name__}:run_toy", lambda c: c.experiment == "toy", lambda s: "toy.points" in s["curves"]
    )
    monkeypatch.setattr(protocols, "PROTOCOLS", {"toy": toy, **protocols.PROTOCOLS})
    tiny = str(REPO / "conf" / "tiny_synthetic.yaml")
    assert train.main(["--config", tiny, "experiment=toy", f"output_root={tmp_path}"]) == 0
    summary = json.loads((tmp_path / "toy" / "version_0" / "summary.json").read_text())
    assert summary["curves"] == {"toy.points": [1, 2]} and summary["resume"] is False
    assert protocols.protocol_of_summary(summary) == "toy"
    assert protocols.protocol_for(load_config(tiny)).name == "train"  # other configs keep theirs


@pytest.mark.parametrize("name", ["quadratic", "steer"])
def test_standalone_protocols_take_resume_like_the_phased_runner(name):
    import inspect

    module, function = protocols.PROTOCOLS[name].runner.split(":")
    parameters = inspect.signature(getattr(__import__(module, fromlist=[function]), function)).parameters
    assert list(parameters)[:3] == ["cfg", "run_dir", "resume"]
