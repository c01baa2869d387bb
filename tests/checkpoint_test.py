"""Checkpoints and resume: exact resume, SIGTERM, SIGKILL mid-save, best-by-PSNR retention,
divergence, and mismatched checkpoints."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from conftest import REPO, run_module, tiny_config
from flax_sr import checkpointing, inference, trainer, train as train_lib
from flax_sr.config import UserError


def restore_latest(workdir):
  config = checkpointing.load_config(workdir)
  checkpointer = checkpointing.Checkpointer(workdir, read_only=True)
  state, meta = checkpointer.restore(checkpointer.latest_step(),
                                     train_lib.state_from_config(config, total_steps=1))
  checkpointer.close()
  return state, meta


def assert_states_equal(a, b):
  for x, y in zip(jax.tree.leaves((a.params, a.batch_stats, a.opt_state)),
                  jax.tree.leaves((b.params, b.batch_stats, b.opt_state))):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_exact_resume_equals_uninterrupted(mock_stl10, tmp_path):
  common = dict(dataset='stl10', data_dir=mock_stl10, augment=True, eval_every=100,
                eval_examples=8)
  trainer.train_and_evaluate(tiny_config(num_train_steps=10, **common), str(tmp_path / 'full'))
  # 48 images, batch 8: 6 steps per epoch, so the interruption falls inside epoch 2.
  trainer.train_and_evaluate(tiny_config(num_train_steps=5, **common), str(tmp_path / 'split'))
  summary = trainer.train_and_evaluate(tiny_config(num_train_steps=10, **common),
                                       str(tmp_path / 'split'))
  assert summary['step'] == 10
  full, full_meta = restore_latest(tmp_path / 'full')
  split, split_meta = restore_latest(tmp_path / 'split')
  assert int(full.step) == int(split.step) == 10
  assert full_meta['position'] == split_meta['position'] == [1, 4]
  assert_states_equal(full, split)


def test_resume_false_refuses_existing_run(mock_stl10, tmp_path):
  config = tiny_config(dataset='stl10', data_dir=mock_stl10, num_train_steps=2)
  trainer.train_and_evaluate(config, str(tmp_path))
  config.resume = False
  with pytest.raises(UserError, match='already holds a run'):
    trainer.train_and_evaluate(config, str(tmp_path))


def test_best_checkpoint_survives_rotation(tmp_path):
  state = train_lib.state_from_config(tiny_config())
  checkpointer = checkpointing.Checkpointer(tmp_path, keep=2)
  for step, psnr in [(1, 20.0), (2, 30.0), (3, None), (4, 21.0), (5, 22.0), (6, 23.0)]:
    metrics = None if psnr is None else {'psnr_y': psnr}
    checkpointer.save(step, state.replace(step=step), {'position': [0, step]}, metrics)
  checkpointer.close()
  checkpointer = checkpointing.Checkpointer(tmp_path, read_only=True)
  assert checkpointer.all_steps() == [2, 5, 6]
  assert checkpointer.best_step() == 2 and checkpointer.latest_step() == 6
  checkpointer.close()


def test_divergence_stops_with_message_and_keeps_last_good_checkpoint(tmp_path):
  config = tiny_config(dataset='sample', num_train_steps=20,
                       checkpoint_every=1, learning_rate=1e30, eval_every=100)
  with pytest.raises(trainer.TrainingDiverged) as error:
    trainer.train_and_evaluate(config, str(tmp_path))
  message = str(error.value)
  assert 'at step' in message and '\n' not in message
  bad_step = int(message.split('at step ')[1].split(';')[0])
  checkpointer = checkpointing.Checkpointer(tmp_path, read_only=True)
  steps = checkpointer.all_steps()
  assert steps and max(steps) < bad_step
  state, _ = restore_latest(tmp_path)
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(state.params))


def test_mismatched_checkpoint_is_a_one_line_error(trained_run, tmp_path):
  result = run_module('flax_sr.main', '--dataset', 'sample', '--workdir', str(trained_run),
                      '--features', '16', '--batch_size', '8', '--num_train_steps', '8')
  assert result.returncode == 2, result.stderr
  error_lines = [l for l in result.stderr.splitlines() if l.startswith('error:')]
  assert len(error_lines) == 1 and 'Traceback' not in result.stderr
  assert 'features 8 (checkpoint) vs 16 (requested)' in error_lines[0]
  # Restoring weights into a model of another width is the same kind of error.
  config = checkpointing.load_config(trained_run)
  config.features = 16
  checkpointer = checkpointing.Checkpointer(trained_run, read_only=True)
  with pytest.raises(checkpointing.CheckpointError, match='does not match the model'):
    checkpointer.restore(checkpointer.latest_step(), train_lib.state_from_config(config, 1))


def test_load_run_for_inference(trained_run):
  best = inference.load_run(trained_run)
  latest = inference.load_run(trained_run, 'latest')
  assert latest.step == 4 and best.step in (2, 4)
  assert best.model.scale == 3 and best.config.features == 8
  with pytest.raises(checkpointing.CheckpointError, match='no checkpoint at step 3'):
    inference.load_run(trained_run, 3)
  with pytest.raises(checkpointing.CheckpointError, match='not a flax_sr run'):
    inference.load_run(trained_run / 'checkpoints')


SLOW_RUN = ('--dataset', 'sample', '--input_size', '32', '--features', '8', '--batch_size', '8',
            '--num_train_steps', '150', '--eval_every', '1000', '--eval_examples', '8',
            '--log_every', '1', '--checkpoint_every', '1000')


def start_training(workdir, *extra):
  env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL='2', PYTHONUNBUFFERED='1')
  return subprocess.Popen([sys.executable, '-m', 'flax_sr.main', *SLOW_RUN, '--workdir',
                           str(workdir), *extra], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, env=env)


def wait_for_step(workdir, step, process, timeout=180):
  deadline = time.monotonic() + timeout
  metrics = workdir / 'metrics.jsonl'
  while time.monotonic() < deadline:
    if process.poll() is not None:
      raise AssertionError(f'training ended early: {process.stdout.read()}')
    if metrics.exists():
      lines = metrics.read_text().splitlines()
      if lines and json.loads(lines[-1]).get('step', 0) >= step:
        return
    time.sleep(0.05)
  raise AssertionError('training did not reach step %d' % step)


@pytest.mark.slow
def test_sigterm_saves_and_resume_matches_uninterrupted(tmp_path):
  process = start_training(tmp_path / 'interrupted')
  wait_for_step(tmp_path / 'interrupted', 20, process)
  process.send_signal(signal.SIGTERM)
  output, _ = process.communicate(timeout=120)
  # The documented preemption exit code; the checkpoint is saved and the evaluation skipped.
  assert process.returncode == 143, output
  assert 'Stopped by SIGTERM' in output and 'Resume with the same command' in output
  assert 'evaluation skipped' in output and 'Evaluation on' not in output
  stopped_state, _ = restore_latest(tmp_path / 'interrupted')
  assert 20 <= int(stopped_state.step) < 150
  resumed = run_module('flax_sr.main', *SLOW_RUN, '--workdir', str(tmp_path / 'interrupted'))
  assert resumed.returncode == 0, resumed.stderr
  full = run_module('flax_sr.main', *SLOW_RUN, '--workdir', str(tmp_path / 'full'))
  assert full.returncode == 0, full.stderr
  a, _ = restore_latest(tmp_path / 'interrupted')
  b, _ = restore_latest(tmp_path / 'full')
  assert int(a.step) == int(b.step) == 150
  assert_states_equal(a, b)


@pytest.mark.slow
def test_sigkill_during_saves_resumes_from_last_complete_checkpoint(tmp_path):
  workdir = tmp_path / 'killed'
  # A checkpoint every step: the kill lands while asynchronous saves are being written.
  process = start_training(workdir, '--checkpoint_every', '1')
  wait_for_step(workdir, 15, process)
  process.send_signal(signal.SIGKILL)
  process.wait(timeout=60)
  complete = checkpointing.Checkpointer(workdir, read_only=True).all_steps()
  assert complete
  resumed = run_module('flax_sr.main', *SLOW_RUN, '--workdir', str(workdir),
                       '--num_train_steps', str(max(complete) + 3))
  assert resumed.returncode == 0, resumed.stderr
  assert f'Resumed from step {max(complete)}' in resumed.stderr
  state, _ = restore_latest(workdir)
  assert int(state.step) == max(complete) + 3
  # No half-written step folder is left behind.
  leftovers = [p.name for p in (workdir / 'checkpoints').iterdir() if 'tmp' in p.name]
  assert not leftovers
