"""Config loading: schema, overrides and one-line errors with exit code 2, nothing written."""

import subprocess
import sys
from pathlib import Path

import pytest

from loclin import config as config_module
from loclin.config import ConfigError, load_config
from loclin.protocols import PROTOCOLS

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
        (["experiment=a\nb: c"], "'experiment' has a value that is not valid YAML"),
        (["phases=[{name: train, steps: 100, batch_size: 0}]"], "phases[0].batch_size=0 must be >= 1"),
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
    stand_ins = {
        "smollm2-135m-instruct": tiny_gpt2,
        "tiny-gpt2": tiny_gpt2,
        "gemma3-270m": tiny_gpt2,
        "qwen2.5-coder-0.5b-instruct": tiny_gpt2,
        "bigbench-coqa-yes-no": tmp_path,
    }
    monkeypatch.setattr(config_module, "asset_path", lambda name: stand_ins.get(name) or real(name))
    for path in sorted((REPO / "conf").glob("*.yaml")):
        assert load_config(path).protocol in PROTOCOLS, path


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
    result = subprocess.run(
        [sys.executable, str(REPO / "train.py"), *args, f"output_root={tmp_path / 'runs'}"]
        if args[0] == "--config"
        else [sys.executable, str(REPO / "train.py"), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
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
    with pytest.raises(RunDirError, match="unreadable: not a torch checkpoint"):
        check_resumable(run)
    import torch

    torch.save({"state_dict": {}}, run / "checkpoints" / "train" / "last.ckpt")
    assert check_resumable(run) == run / "config.yaml"
    (run / "summary.json").write_text("{}")
    with pytest.raises(RunDirError, match="already finished"):
        check_resumable(run)


@pytest.mark.parametrize(
    "overrides",
    [
        ["protocol=cubic"],
        ["family=cubic", "protocol=train"],
        ["quadratic.lr_scale=2.5"],
        ["quadratic.prefix_ms=[5000]"],
    ],
)
def test_bad_protocol_family_and_quadratic_values(overrides):
    with pytest.raises(ConfigError):
        load_config(REPO / "conf" / "quadratic.yaml", overrides)


def corrupt_run(root: Path) -> Path:
    """A run directory whose only checkpoint was truncated (a killed copy, a full disk)."""
    run = root / "tiny_synthetic" / "version_0"
    (run / "checkpoints" / "train").mkdir(parents=True)
    (run / "config.yaml").write_text(TINY.read_text())
    (run / "checkpoints" / "train" / "last.ckpt").write_bytes(b"PK\x03\x04 truncated")
    return run


BAD_INPUT = [  # (arguments after train.py, fragment of the one error line)
    (["geometry.windw=4"], "Key 'windw' not in 'GeometryConfig'"),
    (["optim.lr=fast"], "optim.lr"),
    (["geometry.k=9"], "geometry.k=9 must be between 1 and geometry.window=8"),
    (["geometry.window=300"], "longer than the first phase"),
    (["data.train_tasks=[]"], "data.train_tasks is empty"),
    (["data.tasks=[add,foo]"], "unknown task(s) ['foo']"),
    (["family=lora", "data.tasks=[arith]", "lm.model=asset:no-such-model"], "unknown asset 'no-such-model'"),
    (["family=lora", "data.tasks=[arith]", "lm.model=/nonexistent/model-dir"], "/nonexistent/model-dir"),
    (["protocol=random_search", "random_search.at_steps=[999]"], "random_search.at_steps [999]"),
    (["geometry.sketch_dim=4"], "geometry.sketch_dim=4"),
    (["trainer.devices=3"], "data.batch_size=16 is the global batch: it must split evenly over trainer.devices=3"),
    (["trainer.grad_shards=3"], "trainer.grad_shards=3 must be >= 1 and split data.batch_size=16 evenly"),
    (["trainer.strategy=fsdp", "trainer.devices=2"], "trainer.strategy=fsdp: the geometry reads whole parameters"),
    (
        ["geometry.shard_windows=true"],
        "geometry.shard_windows shards the windows, bases and drift only; geometry.per_task",
    ),
]


@pytest.mark.parametrize(("overrides", "fragment"), BAD_INPUT)
def test_bad_input_table_is_one_line_exit_2_nothing_written(overrides, fragment, tmp_path):
    command = [
        sys.executable,
        str(REPO / "train.py"),
        "--config",
        str(TINY),
        f"output_root={tmp_path / 'runs'}",
        *overrides,
    ]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("loclin: error:"), result.stderr
    assert fragment in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_unreadable_checkpoint_and_unwritable_output_are_one_line(tmp_path):
    run = corrupt_run(tmp_path / "runs")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    result = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "--resume", str(run)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        result.returncode == 2
        and result.stderr.count("\n") == 1
        and "is unreadable: not a torch checkpoint" in result.stderr
    ), result.stderr
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "--config", str(TINY), f"output_root={blocker / 'runs'}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        result.returncode == 2 and result.stderr.count("\n") == 1 and "cannot create run directory" in result.stderr
    ), result.stderr
