"""Bad input answered in one line, checkpoints that do not fit named, a corrupt checkpoint
survived, one writer per workdir, and means that stay finite."""

import json
import pathlib
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import tiny_config
from flax_sr import checkpointing, cli, evaluate, main, metrics, predict, run_lock, trainer
from flax_sr import train as train_lib
from flax_sr.config import UserError


def run(tool, argv, capsys):
  try:
    code = cli.run_cli(tool.main, [str(a) for a in argv])
  except SystemExit as stop:
    code = stop.code
  out, err = capsys.readouterr()
  return code, out, err


def bad_inputs(tmp_path):
  a_file = tmp_path / 'a_file'
  a_file.write_text('x')
  image = tmp_path / 'in.png'
  from PIL import Image
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
  sample = ['--dataset', 'sample', '--features', '8', '--batch_size', '8']
  return [
      (evaluate, ['--pretrained', 'x3', '--batch_size', '0'], '--batch_size'),
      (evaluate, ['--pretrained', 'x3', '--eval_examples', '0'], '--eval_examples'),
      (evaluate, ['--workdir', tmp_path, '--step', 'abc'], "got 'abc'"),
      (predict, ['--pretrained', 'x3', '--input', image, '--output', tmp_path / 'o.png',
                 '--batch_size', '0'], '--batch_size'),
      (predict, ['--workdir', tmp_path, '--step', 'abc', '--input', image, '--output',
                 tmp_path / 'o.png'], "got 'abc'"),
      (predict, ['--pretrained', 'x3', '--input', image, '--output', tmp_path / 'o.png',
                 '--tile', '16', '--tile_overlap', '8'], 'twice --tile_overlap'),
      (main, [*sample, '--workdir', a_file], 'is a file'),
      (main, [*sample, '--workdir', '/proc/flax_sr_cannot_be_here'], 'cannot create --workdir'),
      (main, ['--warmup_steps', '-5', '--lr_schedule', 'cosine'], '--warmup_steps must be 0'),
      (main, ['--warmup_steps', '50', '--lr_schedule', 'cosine', '--num_train_steps', '50'],
       'not shorter than the whole run'),
      (main, ['--warmup_steps', '10'], 'needs --lr_schedule cosine'),
      (main, ['--hr_size', '0'], '--hr_size must be a positive integer'),
      (main, ['--learning_rate', 'nan'], '--learning_rate must be a positive number'),
      (main, ['--learning_rate', 'inf'], '--learning_rate must be a positive number'),
      (main, ['--num_epochs', 'ten'], "invalid int value: 'ten'"),
  ]


def test_bad_input_is_one_line_without_traceback(tmp_path, capsys):
  for tool, argv, expected in bad_inputs(tmp_path):
    code, _, err = run(tool, argv, capsys)
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert code == 2 and 'Traceback' not in err, (argv, err)
    assert lines[-1].startswith('error: ') and sum(l.startswith('error: ') for l in lines) == 1
    assert expected in lines[-1], (argv, lines[-1])
  assert not (tmp_path / 'runs').exists()


def test_resume_mismatch_names_each_option_and_keeps_the_config(trained_run):
  before = (trained_run / 'config.json').read_bytes()
  saved = checkpointing.load_config(trained_run)
  cases = [({'ema_decay': 0.99}, 'ema_decay 0.0 (checkpoint, EMA off) vs 0.99 (requested, EMA on)'),
           ({'features': 16}, 'features 8 (checkpoint) vs 16 (requested)'),
           ({'dtype': 'bfloat16'}, 'dtype float32 (checkpoint) vs bfloat16 (requested)'),
           ({'loss': 'l1', 'seed': 7}, 'loss mse (checkpoint) vs l1 (requested); seed 0')]
  for change, expected in cases:
    requested = checkpointing.Config(**{**vars(saved), **change})
    with pytest.raises(UserError) as error:
      trainer.train_and_evaluate(requested, str(trained_run))
    message = str(error.value)
    assert expected in message and '\n' not in message, message
    assert '--workdir' in message
    assert (trained_run / 'config.json').read_bytes() == before


def test_recipe_change_allowed_explicitly_is_recorded(tmp_path):
  workdir = tmp_path / 'run'
  config = tiny_config(dataset='sample', num_train_steps=2, eval_every=2, eval_examples=4)
  trainer.train_and_evaluate(config, str(workdir))
  changed = tiny_config(dataset='sample', num_train_steps=4, eval_every=2, eval_examples=4,
                        learning_rate=3e-4, allow_recipe_change=True)
  trainer.train_and_evaluate(changed, str(workdir))
  history = [json.loads(l) for l in (workdir / checkpointing.HISTORY_FILE).read_text().splitlines()]
  assert [h['step'] for h in history] == [0, 2]
  assert history[0]['config']['learning_rate'] == 1e-4  # the original recipe stays on record
  assert history[1]['changes'] == ['learning_rate 0.0001 (checkpoint) vs 0.0003 (requested)']


def states_equal(a, b):
  for x, y in zip(jax.tree.leaves((a.params, a.batch_stats, a.opt_state)),
                  jax.tree.leaves((b.params, b.batch_stats, b.opt_state))):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def latest_state(workdir):
  config = checkpointing.load_config(workdir)
  checkpointer = checkpointing.Checkpointer(workdir, read_only=True)
  state, _ = checkpointer.restore(checkpointer.latest_step(),
                                  train_lib.state_from_config(config, 100))
  checkpointer.close()
  return state


def test_truncated_latest_checkpoint_falls_back_to_the_previous(tmp_path, caplog):
  common = dict(dataset='sample', eval_every=100, eval_examples=4, checkpoint_every=2)
  corrupt, clean = tmp_path / 'corrupt', tmp_path / 'clean'
  trainer.train_and_evaluate(tiny_config(num_train_steps=4, **common), str(corrupt))
  shutil.copytree(corrupt, clean)
  shutil.rmtree(clean / 'checkpoints' / '4')  # what the fallback must be equivalent to
  largest = max((p for p in (corrupt / 'checkpoints' / '4').rglob('*') if p.is_file()),
                key=lambda p: p.stat().st_size)
  largest.write_bytes(largest.read_bytes()[:len(largest.read_bytes()) // 3])
  with caplog.at_level('WARNING'):
    summary = trainer.train_and_evaluate(tiny_config(num_train_steps=6, **common), str(corrupt))
  assert 'cannot be restored' in caplog.text and 'continuing from checkpoint step 2' in caplog.text
  assert summary['step'] == 6
  # Nothing is deleted: the unreadable checkpoint was moved aside (its step is trained again).
  assert [p.name.split('-')[0] for p in (corrupt / 'corrupt_checkpoints').iterdir()] == ['4']
  trainer.train_and_evaluate(tiny_config(num_train_steps=6, **common), str(clean))
  states_equal(latest_state(corrupt), latest_state(clean))


def test_one_writer_per_workdir(tmp_path):
  workdir = tmp_path / 'run'
  workdir.mkdir()
  owner = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])
  try:
    (workdir / run_lock.LOCK_FILE).write_text(json.dumps(
        {'pid': owner.pid, 'host': __import__('socket').gethostname(), 'since': 0}))
    config = tiny_config(dataset='sample', num_train_steps=2, eval_every=2, eval_examples=4)
    with pytest.raises(UserError, match=f'in use by training process {owner.pid}'):
      trainer.train_and_evaluate(config, str(workdir))
  finally:
    owner.kill()
    owner.wait()
  # Its process is gone (as after a SIGKILL): the stale lock is taken over, and released.
  trainer.train_and_evaluate(config, str(workdir))
  assert not (workdir / run_lock.LOCK_FILE).exists()


def test_identical_images_score_a_finite_capped_psnr():
  flat = np.full((1, 24, 24, 3), 128, np.uint8)
  value = float(metrics.psnr(flat, flat, shave=3, y_channel=True)[0])
  assert value == pytest.approx(metrics.PSNR_CAP_DB)
  off_by_one = flat.copy()
  off_by_one[0, 10, 10, 0] += 1
  assert float(metrics.psnr(off_by_one, flat)[0]) < metrics.PSNR_CAP_DB
  sums = metrics.sr_metrics(flat, flat, 3)
  json.dumps({k: float(v[0]) for k, v in sums.items()}, allow_nan=False)
