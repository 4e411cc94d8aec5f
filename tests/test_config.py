"""Config loading: schema, overrides and one-line errors with exit code 2, nothing written."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from loclin import schema
from loclin.config import ConfigError, load_config
from loclin.protocols.registry import PROTOCOLS

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
    real = schema.asset_path
    stand_ins = {
        "smollm2-135m-instruct": tiny_gpt2,
        "tiny-gpt2": tiny_gpt2,
        "gemma3-270m": tiny_gpt2,
        "qwen2.5-coder-0.5b-instruct": tiny_gpt2,
        "bigbench-coqa-yes-no": tmp_path,
    }
    monkeypatch.setattr(schema, "asset_path", lambda name: stand_ins.get(name) or real(name))
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


def test_resume_takes_a_run_without_checkpoint_and_refuses_a_finished_or_corrupt_one(tmp_path):
    from loclin.runs.rundir import RunDirError, check_resumable

    run = tmp_path / "exp" / "version_0"
    (run / "checkpoints" / "train").mkdir(parents=True)
    (run / "config.yaml").write_text("experiment: exp\n")
    assert check_resumable(run) == run / "config.yaml"  # killed before its first checkpoint: starts again
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
    (["geometry.window=1", "geometry.k=1", "geometry.basis_stride=1"], "geometry.window=1 must be >= 2"),
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
    (["trainer.precision=bogus"], "trainer.precision='bogus' must be one of ['transformer-engine'"),
    (["trainer.accelerator=quantum"], "trainer.accelerator='quantum' must be one of ['cpu'"),
    (["trainer.accelerator=gpu", "trainer.devices=64"], "trainer.accelerator=gpu needs trainer.devices=64 GPU(s)"),
    (["seed=-1"], "seed=-1 must be in [0, 2**32)"),
    (["data.modulus=2", "data.heldout_fraction=0.9"], "holds out all 4 inputs of task 'add'"),
    (
        ["data.tasks=[copy]", "data.modulus=2", "data.length=17", "data.heldout_size=1500000"],
        "data.heldout_size=1500000 would hold out 100% of task 'copy''s 131,072 inputs",
    ),
    (["data.tasks=[add,add,copy]"], "names ['add'] more than once"),
    (["experiment=/tmp/elsewhere"], "experiment='/tmp/elsewhere' must be a name (or relative path) under output_root"),
    (["experiment=../up"], "experiment='../up' must be a name"),
    (["trainer.divergence_share=0"], "trainer.divergence_share=0.0 must be in (0, 1]"),
    (["trainer.live_figures_seconds=-1"], "trainer.live_figures_seconds=-1.0 must be >= 0 (0: every checkpoint)"),
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
    before = files_under(tmp_path)
    assert "is unreadable: not a torch checkpoint" in one_line(cli(tmp_path, "--resume", str(run)))
    assert files_under(tmp_path) == before
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    line = one_line(cli(tmp_path, "--config", str(TINY), f"output_root={blocker / 'runs'}"))
    assert "cannot create run directory" in line


def cli(
    tmp_path: Path, *args: str, script: str | None = "train.py", env: dict | None = None, umask: int | None = None
) -> subprocess.CompletedProcess:
    """``python <script> args`` (``python args`` without a script) in tmp_path, with more
    environment variables and a umask if given."""
    import os

    return subprocess.run(
        [sys.executable, *([str(REPO / script)] if script else []), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        preexec_fn=None if umask is None else (lambda: os.umask(umask) and None),
    )


def one_line(result: subprocess.CompletedProcess, code: int = 2, after_logs: bool = False) -> str:
    """The single ``loclin: error:`` line of a failed command: nothing else on stderr, or, for a
    fault in a run that had started (``after_logs``), the run's own log lines and no traceback."""
    lines = result.stderr.strip().splitlines()
    if after_logs:
        assert "Traceback" not in result.stderr, result.stderr
        lines = [line for line in lines if line.startswith("loclin: error:")]
    assert result.returncode == code and len(lines) == 1 and lines[0].startswith("loclin: error:"), result.stderr
    return lines[0]


def files_under(folder: Path) -> list[Path]:
    return sorted(p.relative_to(folder) for p in folder.rglob("*"))


def test_config_files_that_are_not_configs_are_one_line(tmp_path):
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    assert "the top level must be a mapping" in one_line(cli(tmp_path, "--config", str(listed)))
    assert "is a directory; give a YAML file" in one_line(cli(tmp_path, "--config", str(REPO / "conf")))
    quadratic = one_line(cli(tmp_path, "--config", str(REPO / "conf" / "quadratic.yaml"), "quadratic.prefix_ms=[]"))
    assert "quadratic.prefix_ms=[] must name at least one positive prefix length" in quadratic
    quadratic_config = str(REPO / "conf" / "quadratic.yaml")
    for lags in ("[]", "[0]", "[-1]"):
        line = one_line(cli(tmp_path, "--config", quadratic_config, f"quadratic.drift_lags={lags}"))
        assert f"quadratic.drift_lags={lags} must name at least one positive lag" in line
    assert files_under(tmp_path) == [Path("list.yaml")]


def started_run(root: Path, *overrides: str) -> Path:
    """A run directory as train.py leaves it at its start: config.yaml and its digest, no checkpoint."""
    from loclin.runs.rundir import write_config

    cfg = load_config(TINY, [f"output_root={root}", *overrides])
    run = root / cfg.experiment / "version_0"
    run.mkdir(parents=True)
    from omegaconf import OmegaConf

    write_config(run, OmegaConf.to_yaml(cfg))
    return run


def test_resume_refuses_an_edited_config_and_a_truncated_recovery_file(tmp_path):
    run = started_run(tmp_path / "runs")
    config = run / "config.yaml"
    edited = re.sub(r"d_model: \d+", "d_model: 48", config.read_text())
    assert edited != config.read_text()
    config.write_text(edited)
    before = files_under(tmp_path)
    assert "config.yaml' was edited after the run started" in one_line(cli(tmp_path, "--resume", str(run)))
    run = started_run(tmp_path / "runs2")
    (run / "recovery").mkdir()
    (run / "recovery" / "theta_init.pt").write_bytes(b"PK\x03\x04 truncated")
    line = one_line(cli(tmp_path, "--resume", str(run)))
    assert "recovery/theta_init.pt' is unreadable" in line and "written once, at the end of its phase" in line
    assert files_under(tmp_path / "runs") == [p.relative_to("runs") for p in before if p.parts[0] == "runs"][1:]


@pytest.mark.slow
def test_a_live_run_directory_is_refused_and_a_stale_lock_is_not(tmp_path):
    """The test process holds the lock as a live run would; once it lets go (as a killed process
    does), the lock file stays behind and a resume goes ahead. Files are 0644 under umask 022."""
    import os
    import stat

    from loclin.runs.rundir import lock_run_dir, release_run_dir

    run = started_run(tmp_path / "runs", "phases=[{name: train, steps: 60}]", "geometry.drift_lags=[10,20]")
    lock_run_dir(run)
    try:
        line = one_line(cli(tmp_path, "--resume", str(run)))
        assert f"is in use by a live process (pid {os.getpid()})" in line
    finally:
        release_run_dir(run)
    assert (run / ".lock").is_file()
    resumed = cli(tmp_path, "--resume", str(run), umask=0o022)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    for name in ("summary.json", "phases/train.json"):
        assert stat.S_IMODE((run / name).stat().st_mode) == 0o644, name


@pytest.mark.slow
def test_a_full_disk_while_checkpointing_is_one_line_exit_1_and_resumes(tmp_path):
    """ENOSPC half-way through the first last.ckpt (tests/fault_injection.py): exit 1, one line,
    no partial file left, and the run resumes to its end once there is space."""
    command = [str(REPO / "tests" / "fault_injection.py"), '{"enospc": "train/last.ckpt.tmp"}', "--config", str(TINY)]
    result = cli(tmp_path, *command, f"output_root={tmp_path / 'runs'}", "trainer.progress_bar=false", script=None)
    line = one_line(result, code=1, after_logs=True)
    assert "No space left on device" in line and "--resume" in line
    run = tmp_path / "runs" / "tiny_synthetic" / "version_0"
    assert not list(run.rglob("*.tmp")) and not (run / "summary.json").exists()
    assert cli(tmp_path, "--resume", str(run)).returncode == 0
    assert (run / "summary.json").is_file()


@pytest.mark.slow
def test_analyze_refuses_what_is_not_a_loclin_summary_and_an_output_file(tmp_path):
    for name, text in (("empty", "{}"), ("list", "[1, 2]"), ("text", '"abc"')):
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(text)
        line = one_line(cli(tmp_path, str(tmp_path / name), script="analyze.py"))
        assert "is JSON but not a loclin summary" in line, name
        assert not (tmp_path / name / "analysis").exists()  # no empty folder left by a failure
    (tmp_path / "a-file").write_text("x")
    line = one_line(cli(tmp_path, str(tmp_path / "empty"), "--out", str(tmp_path / "a-file"), script="analyze.py"))
    assert "--out" in line and "is a file" in line


def test_a_corrupt_or_misplaced_asset_cache_is_one_line_with_the_fix(tmp_path, tiny_gpt2):
    """A cached asset whose file no longer matches its manifest is named with the command that
    fetches it again; $LOCLIN_CACHE pointing at a file is named as such; nothing is written."""
    import json
    import shutil

    from loclin.assets import MANIFEST, file_records

    cache = tmp_path / "cache"
    shutil.copytree(tiny_gpt2, cache / "tiny-gpt2")
    (cache / "tiny-gpt2" / MANIFEST).write_text(
        json.dumps({"name": "tiny-gpt2", "files": file_records(cache / "tiny-gpt2")})
    )
    lora = [
        "--config",
        str(REPO / "conf" / "tiny_lora.yaml"),
        "lm.model=asset:tiny-gpt2",
        f"output_root={tmp_path / 'runs'}",
    ]
    weights = cache / "tiny-gpt2" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    line = one_line(cli(tmp_path, *lora, env={"LOCLIN_CACHE": str(cache)}))
    assert "cached asset 'tiny-gpt2' is corrupt (model.safetensors has 1,000 bytes" in line
    assert line.endswith("fetch it again with: python -m loclin.assets fetch --force tiny-gpt2")
    (tmp_path / "not-a-dir").write_text("x")
    for args, script in ((lora, "train.py"), (["-m", "loclin.assets", "fetch", "tiny-gpt2"], None)):
        result = cli(tmp_path, *args, script=script, env={"LOCLIN_CACHE": str(tmp_path / "not-a-dir")})
        assert "the asset cache" in one_line(result) and "is a file, not a directory" in one_line(result)
    assert not (tmp_path / "runs").exists()


def test_an_unwritable_asset_cache_is_one_line(tmp_path, monkeypatch, capsys):
    """A read-only $LOCLIN_CACHE (simulated: root may write anywhere) fails the fetch in one line."""
    from loclin import assets

    monkeypatch.setenv("LOCLIN_CACHE", str(tmp_path / "cache"))

    def read_only(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)
    assert assets.main(["fetch", "tiny-gpt2"]) == 2
    error = capsys.readouterr().err.strip()
    cache = tmp_path / "cache"
    assert error == f"loclin: error: cannot write the asset cache '{cache}' ($LOCLIN_CACHE): Permission denied"


def test_lightnings_precision_values_are_the_ones_the_config_accepts():
    from typing import get_args

    from lightning.fabric.connector import _PRECISION_INPUT

    from loclin.config import PRECISIONS

    accepted = set()
    for part in get_args(_PRECISION_INPUT):
        accepted |= {str(v) for v in get_args(part)} if get_args(part) else {str(part)}
    assert set(PRECISIONS) == accepted


@pytest.mark.slow
def test_a_lora_target_found_wrong_only_once_the_model_is_built_leaves_no_run_directory(tmp_path, tiny_gpt2):
    lora = ["--config", str(REPO / "conf" / "tiny_lora.yaml"), f"lm.model={tiny_gpt2}", f"output_root={tmp_path / 'r'}"]
    line = one_line(cli(tmp_path, *lora, "lm.lora.target_modules=[h]"), after_logs=True)
    assert line.startswith("loclin: error: lora.target_modules ['h']: Target module")
    assert not list((tmp_path / "r").rglob("version_*"))


def test_print_config_shows_the_resolved_config_by_packaged_name_and_writes_nothing(tmp_path):
    """``--print-config`` resolves a packaged config by name with the overrides, prints the YAML
    load_config gives, exits 0, and makes no run directory; a bad override is still one line."""
    from omegaconf import OmegaConf

    from loclin.config import load_config

    done = cli(tmp_path, "--config", "tiny_synthetic", "geometry.k=3", "--print-config")
    assert done.returncode == 0, done.stderr
    printed = OmegaConf.create(done.stdout)
    expected = load_config(REPO / "conf" / "tiny_synthetic.yaml", ["geometry.k=3"])
    assert printed == expected and printed.geometry.k == 3
    assert list(tmp_path.iterdir()) == []
    bad = cli(tmp_path, "--config", "tiny_synthetic", "geometry.k=99", "--print-config")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "geometry.k=99" in bad.stderr
