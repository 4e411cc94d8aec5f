"""Progress of a phased run: plain lines when not a terminal, a phase bar on one."""

from types import SimpleNamespace

import lightning as L
import pytest
import torch

from loclin.runs.progress import PhaseBar, PhaseLines, phase_progress


def drive(callback, steps: int, rank_zero: bool = True) -> None:
    trainer = SimpleNamespace(global_step=0, max_steps=steps, is_global_zero=rank_zero)
    callback.on_train_start(trainer, None)
    for step in range(1, steps + 1):
        trainer.global_step = step
        callback.on_train_batch_end(trainer, None, None, None, step - 1)


def test_lines_come_every_twentieth_of_a_phase_with_the_run_step_and_say_a_replay_is_off_the_axis(capsys):
    drive(PhaseLines("recover", run_offset=4500, run_total=4800), 300)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 20
    assert lines[0].startswith("[loclin] recover step 15/300 (run 4515/4800), ")
    assert lines[-1].startswith("[loclin] recover step 300/300 (run 4800/4800), ") and lines[-1].endswith("ETA 0:00:00")
    drive(PhaseLines("recover_constrained", run_offset=None, run_total=4800), 7)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 7 and "(a replay, off the run's step axis)" in lines[-1]
    drive(PhaseLines("train", 0, 10), 10, rank_zero=False)
    assert capsys.readouterr().err == ""  # one rank speaks


def test_piped_output_gets_lines_and_no_progress_when_disabled():
    assert [type(c) for c in phase_progress("train", 0, 10, enabled=True)] == [PhaseLines]  # pytest's stderr
    assert phase_progress("train", 0, 10, enabled=False) == []


class Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(3, 1)

    def training_step(self, batch, batch_idx):
        loss = self.layer(batch[0]).pow(2).mean()
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


@pytest.mark.parametrize(("offset", "position"), [(100, "run=130/130"), (None, "run=replay")])
def test_the_bar_counts_the_phases_steps_with_the_run_step_and_no_version(tmp_path, offset, position):
    bar = PhaseBar("recover", run_offset=offset, run_total=130)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 3)), batch_size=2)  # 4 a epoch
    trainer = L.Trainer(
        max_steps=30,
        max_epochs=-1,
        callbacks=[bar],
        logger=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(Tiny(), data)
    progress = bar.train_progress_bar
    assert (progress.total, progress.n, progress.desc) == (30, 30, "recover: ")  # tqdm adds ": "
    assert progress.postfix.startswith(position) and "v_num" not in progress.postfix
