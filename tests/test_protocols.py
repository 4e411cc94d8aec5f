"""The protocol registry: every shipped config names its protocol, a config written before
``protocol`` and ``family`` existed loads to the same config, summaries are recognised, and a new
protocol is one runner plus one registry line (docs/design.md)."""

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

import train
from loclin.config import ExperimentConfig, load_config
from loclin.protocols import registry as protocols
from loclin.protocols.train.config import validate_phased

REPO = Path(__file__).resolve().parents[1]
EXPECTED = {  # what each file is for (its name and header comment)
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


def legacy(raw: dict) -> dict:
    """The same config as a run directory written before the split keeps it: ``kind`` and the
    ``enabled`` switches (written independently of loclin.config.migrate, as the old schema had them)."""
    raw = dict(raw)
    protocol, family = raw.pop("protocol", "train"), raw.pop("family", None)
    if protocol in ("quadratic", "steer"):
        raw["kind"] = protocol
    elif family is not None:
        raw["kind"] = family
    if protocol in ("recovery", "random_search"):
        raw[protocol] = {**raw.get(protocol, {}), "enabled": True}
    return raw


@pytest.mark.parametrize("name", ["tiny_synthetic", "tiny_recovery", "tiny_random_search", "quadratic", "tiny_lora"])
def test_a_config_written_before_protocol_and_family_loads_the_same(name, tmp_path):
    shipped = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / f"{name}.yaml"))
    old = tmp_path / "config.yaml"
    old.write_text(OmegaConf.to_yaml(legacy(shipped)))
    assert not {"protocol", "family"} & set(OmegaConf.load(old))
    assert OmegaConf.to_container(load_config(old)) == OmegaConf.to_container(
        load_config(REPO / "conf" / f"{name}.yaml")
    )


def test_old_switches_on_the_command_line_name_a_protocol():
    tiny = REPO / "conf" / "tiny_recovery.yaml"
    assert load_config(tiny, ["recovery.enabled=false"]).protocol == "train"
    assert load_config(tiny, ["random_search.enabled=true", "random_search.at_steps=[100]"]).protocol == "random_search"
    assert load_config(REPO / "conf" / "tiny_synthetic.yaml", ["kind=quadratic"]).protocol == "quadratic"


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
    assert protocols.protocol_of_summary({"protocol": "recovery", "curves": {}}) == "recovery"  # since the key exists


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
    toy = protocols.Protocol("toy", f"{__name__}:run_toy", validate_phased)
    monkeypatch.setitem(protocols.PROTOCOLS, "toy", toy)  # what register(toy) does, undone after the test
    tiny = str(REPO / "conf" / "tiny_synthetic.yaml")
    assert train.main(["--config", tiny, "protocol=toy", "experiment=toy", f"output_root={tmp_path}"]) == 0
    summary = json.loads((tmp_path / "toy" / "version_0" / "summary.json").read_text())
    assert summary["curves"] == {"toy.points": [1, 2]} and summary["resume"] is False
    assert protocols.protocol_of_summary({**summary, "protocol": "toy"}) == "toy"
    assert protocols.protocol_for(load_config(tiny)).name == "train"  # other configs keep theirs


@pytest.mark.parametrize("name", ["quadratic", "steer"])
def test_standalone_protocols_take_resume_like_the_phased_runner(name):
    import inspect

    module, function = protocols.PROTOCOLS[name].runner.split(":")
    parameters = inspect.signature(getattr(__import__(module, fromlist=[function]), function)).parameters
    assert list(parameters)[:3] == ["cfg", "run_dir", "resume"]
