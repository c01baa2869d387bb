"""The training loop's bookkeeping: nothing written before a start is known to be valid, the
config left as given, logs of learning rate and norms, rolled-back steps dropped from the
metrics on resume, and a finished run recognised as finished."""

import json
import shutil

import pytest

from conftest import tiny_config
from flax_sr import checkpointing, reporting, trainer
from flax_sr.config import UserError


def records(workdir):
  return reporting.read_metrics(workdir)


def test_resume_bookkeeping(tmp_path, capsys):
  workdir = tmp_path / 'run'
  config = tiny_config(dataset='sample', num_train_steps=4, eval_every=4, checkpoint_every=2,
                       log_every=1, eval_examples=4, data_dir='relative/unused')
  given = json.loads(config.to_json())
  summary = trainer.train_and_evaluate(config, str(workdir))
  assert json.loads(config.to_json()) == given  # the caller's config is not modified
  out = capsys.readouterr().out
  assert 'Data: sample/train' in out and 'Model: reference' in out and 'Compiling' in out
  assert f'Best checkpoint: step {summary["best_step"]}' in out and 'Wall time' in out
  logged = [r for r in records(workdir) if 'train/loss' in r]
  assert [r['step'] for r in logged] == [1, 2, 3, 4]
  assert all(r['train/learning_rate'] == pytest.approx(1e-4) and r['train/grad_norm'] > 0
             and r['train/param_norm'] > 0 for r in logged)

  # Re-running the finished run says so; it neither trains nor evaluates nor logs again.
  before = (workdir / reporting.METRICS_FILE).read_text()
  again = trainer.train_and_evaluate(config, str(workdir))
  assert again['finished'] and 'is finished: step 4 of 4' in capsys.readouterr().out
  assert (workdir / reporting.METRICS_FILE).read_text() == before

  # A run killed after logging step 4 but before saving it resumes from step 2: the records
  # of steps 3 and 4 are dropped, so each step appears once in the resumed run's log.
  shutil.rmtree(workdir / 'checkpoints' / '4')
  trainer.train_and_evaluate(config, str(workdir))
  steps = [r['step'] for r in records(workdir) if 'train/loss' in r]
  assert steps == [1, 2, 3, 4]


def test_a_failed_start_writes_nothing(tmp_path):
  missing = tiny_config(dataset='folder', data_dir=str(tmp_path / 'no_such_folder'))
  with pytest.raises(UserError, match='does not exist'):
    trainer.train_and_evaluate(missing, str(tmp_path / 'fresh'))
  assert not (tmp_path / 'fresh').exists()
  a_file = tmp_path / 'a_file'
  a_file.write_text('x')
  with pytest.raises(UserError, match='is a file'):
    trainer.train_and_evaluate(tiny_config(dataset='sample'), str(a_file))


def test_a_rejected_resume_keeps_the_runs_config(trained_run):
  before = (trained_run / 'config.json').read_bytes()
  wider = checkpointing.load_config(trained_run)
  wider.features = 16
  with pytest.raises(UserError, match='features 8 \\(checkpoint\\) vs 16'):
    trainer.train_and_evaluate(wider, str(trained_run))
  assert (trained_run / 'config.json').read_bytes() == before
