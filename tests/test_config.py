"""Config loading: schema, overrides and one-line errors with exit code 2, nothing written."""

import subprocess
import sys
from pathlib import Path

import pytest

from loclin import config as config_module
from loclin.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "conf" / "tiny_synthetic.yaml"


def test_yaml_and_overrides_merge_over_the_schema():
    cfg = load_config(TINY, ["geometry.k=2", "optim.lr=0.01"])
    assert cfg.geometry.k == 2
    assert cfg.optim.lr == 0.01
    assert cfg.geometry.window == 8  # from the file
    assert cfg.model.dropout == 0.0  # from the schema


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (["geometry.windw=4"], "windw"),
        (["geometry.window=abc"], "geometry.window"),
        (["geometry.window=0"], "geometry.window=0"),
        (["geometry.k=9"], "geometry.k=9"),
        (["optim.lr=-1"], "optim.lr=-1"),
        (["data.tasks=[add,foo]"], "unknown task"),
        (["data.tasks=[]"], "data.tasks is empty"),
        (["geometry.drift_lags=[10,500]"], "first phase"),
        (["geometry.drift_lags=[15]"], "multiple"),
        (["geometry.window=300"], "longer than the first phase"),
        (["data.length=4"], "odd"),
        (["trainer.max_steps"], "key=value"),
    ],
)
def test_bad_values_raise_one_line_naming_the_key(overrides, fragment):
    with pytest.raises(ConfigError) as error:
        load_config(TINY, overrides)
    message = str(error.value)
    assert fragment in message
    assert "\n" not in message


def test_missing_file():
    with pytest.raises(ConfigError, match="not found"):
        load_config(REPO / "conf" / "nope.yaml")


def test_every_shipped_config_is_valid(tiny_gpt2, text_assets, contrast_assets, monkeypatch, tmp_path):
    # assets are checked when they exist; stand-ins for the big ones CI does not fetch
    real = config_module.asset_path
    stand_ins = {"smollm2-135m-instruct": tiny_gpt2, "tiny-gpt2": tiny_gpt2, "bigbench-coqa-yes-no": tmp_path}
    monkeypatch.setattr(config_module, "asset_path", lambda name: stand_ins.get(name) or real(name))
    for path in sorted((REPO / "conf").glob("*.yaml")):
        assert load_config(path).kind in ("synthetic", "lora", "quadratic", "steer"), path


@pytest.mark.parametrize(
    "args",
    [
        ["--config", str(TINY), "geometry.windw=4"],
        ["--config", str(TINY), "geometry.window=abc"],
        ["--config", "conf/does_not_exist.yaml"],
        ["--resume", "runs/never/version_0"],
    ],
)
def test_cli_error_is_one_line_exit_2_and_writes_nothing(tmp_path, args):
    result = subprocess.run([sys.executable, str(REPO / "train.py"), *args, f"output_root={tmp_path / 'runs'}"] if args[0] == "--config" else [sys.executable, str(REPO / "train.py"), *args], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("loclin: error:"), result.stderr
    assert list(tmp_path.iterdir()) == []


def test_resume_refuses_a_finished_run_and_a_run_without_checkpoint(tmp_path):
    from loclin.rundir import RunDirError, check_resumable

    run = tmp_path / "exp" / "version_0"
    (run / "checkpoints" / "train").mkdir(parents=True)
    (run / "config.yaml").write_text("experiment: exp\n")
    with pytest.raises(RunDirError, match="no checkpoint yet"):
        check_resumable(run)
    (run / "checkpoints" / "train" / "last.ckpt").write_bytes(b"x")
    assert check_resumable(run) == run / "config.yaml"
    (run / "summary.json").write_text("{}")
    with pytest.raises(RunDirError, match="already finished"):
        check_resumable(run)


@pytest.mark.parametrize("overrides", [["kind=cubic"], ["kind=quadratic", "quadratic.lr_scale=2.5"], ["kind=quadratic", "quadratic.prefix_ms=[5000]"]])
def test_bad_kind_and_quadratic_values(overrides):
    with pytest.raises(ConfigError):
        load_config(REPO / "conf" / "quadratic.yaml", overrides)
