"""Multi-host training run for real: 2 processes on this machine (``jax.distributed`` with a
localhost coordinator, gloo collectives between the CPU processes), 2 fake CPU devices each,
against 1 process with 4 devices."""

import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO, TINY

pytestmark = pytest.mark.slow


def free_port() -> int:
  with socket.socket() as sock:
    sock.bind(('localhost', 0))
    return sock.getsockname()[1]


def devices_env(count: int) -> dict:
  return dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL='2', PYTHONUNBUFFERED='1',
              XLA_FLAGS=f'--xla_force_host_platform_device_count={count}')


def start_processes(args, num_processes: int, port: int, extra=()) -> list[subprocess.Popen]:
  """``python -m flax_sr.main ARGS`` as processes 0..num_processes-1 of one run."""
  return [subprocess.Popen(
      [sys.executable, '-m', 'flax_sr.main', *args, '--coordinator_address', f'localhost:{port}',
       '--num_processes', str(num_processes), '--process_id', str(index), *extra],
      env=devices_env(4 // num_processes), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True) for index in range(num_processes)]


def finish(processes, timeout: float = 300) -> list[tuple[int, str, str]]:
  results = []
  for process in processes:
    out, err = process.communicate(timeout=timeout)
    results.append((process.returncode, out, err))
  return results


def run_multihost(args, port=None) -> list[tuple[int, str, str]]:
  results = finish(start_processes(args, 2, port or free_port()))
  for index, (code, _, err) in enumerate(results):
    assert code == 0, f'process {index}:\n{err[-3000:]}'
  return results


def run_one_process(args) -> subprocess.CompletedProcess:
  result = subprocess.run([sys.executable, '-m', 'flax_sr.main', *args], env=devices_env(4),
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  return result


def make_folder(directory: pathlib.Path, count: int = 8) -> pathlib.Path:
  from PIL import Image
  directory.mkdir()
  rng = np.random.default_rng(0)
  y, x = np.mgrid[0:40, 0:48]
  for i in range(count):
    smooth = 128 + 100 * np.sin(x / (3 + i) + y / 5.0)[..., None] * np.array([1, 0.7, 0.4])
    image = np.clip(smooth + rng.normal(0, 8, (40, 48, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(image).save(directory / f'{i}.png')
  return directory


def train_losses(workdir: pathlib.Path) -> dict[int, float]:
  losses = {}
  for line in (workdir / 'metrics.jsonl').read_text().splitlines():
    record = json.loads(line)
    if 'train/loss' in record:
      assert record['step'] not in losses, f'step {record["step"]} logged twice'
      losses[record['step']] = record['train/loss']
  return losses


def max_relative_difference(a, b) -> float:
  import jax
  return max(float(np.linalg.norm(np.asarray(x) - np.asarray(y)) / np.linalg.norm(np.asarray(y)))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def variables(workdir: pathlib.Path, step: int):
  from flax_sr import inference
  return inference.load_run(workdir, step).variables  # restored in this 1-device process


def test_two_processes_resume_and_train_as_one_process_does(tmp_path):
  data = make_folder(tmp_path / 'images')
  # BatchNorm (the reference model) makes the global batch matter: its statistics are reduced
  # across both processes. 8 images x 2 crops = 2 steps per epoch, augmented.
  common = ['--dataset', 'folder', '--data_dir', str(data), '--eval_data_dir', str(data),
            '--hr_size', '24', '--input_size', '12', '--patches_per_image', '2', '--augment',
            '--conv_impl', 'xla', *TINY, '--num_train_steps', '4', '--eval_every', '4',
            '--eval_examples', '4', '--checkpoint_every', '2']
  one, two = tmp_path / 'one_process', tmp_path / 'two_processes'
  run_one_process([*common, '--workdir', str(one)])
  # Two processes resume the checkpoint one process wrote at step 2 and train steps 3 and 4.
  shutil.copytree(one, two)
  shutil.rmtree(two / 'checkpoints' / '4')
  results = run_multihost([*common, '--workdir', str(two)])
  assert 'Resumed from step 2' in results[0][2]

  # Only process 0 reported and wrote logs (start-up block, table, TensorBoard, pictures).
  assert 'Run: ' in results[0][1] and '2 process(es)' in results[0][1]
  assert 'Run: ' not in results[1][1] and 'PSNR' not in results[1][1]
  events = lambda workdir: len(list((workdir / 'logs').rglob('events.out.tfevents.*')))
  assert events(two) == events(one) + 1  # the resumed start's writer, on process 0 alone
  assert sorted(p.name for p in (two / 'checkpoints').iterdir()) == ['2', '4']

  # The same numbers as one process with the same 4 devices (float32 reduction order aside).
  losses_one, losses_two = train_losses(one), train_losses(two)
  assert sorted(losses_two) == [1, 2, 3, 4]
  for step in (3, 4):
    assert abs(losses_two[step] - losses_one[step]) <= 1e-5 * abs(losses_one[step]), step
  # The checkpoint the two processes wrote restores in this single process, and equals the
  # one-process run's.
  assert max_relative_difference(variables(two, 4), variables(one, 4)) < 1e-5


def test_a_killed_process_stops_the_other_with_an_error_not_a_hang(tmp_path):
  data = make_folder(tmp_path / 'images')
  args = ['--dataset', 'folder', '--data_dir', str(data), '--eval_data_dir', str(data),
          '--hr_size', '24', '--input_size', '12', '--conv_impl', 'xla', *TINY,
          '--num_train_steps', '1000000', '--eval_every', '1000000', '--workdir',
          str(tmp_path / 'run'), '--distributed_timeout', '10']
  processes = start_processes(args, 2, free_port())
  try:
    metrics = tmp_path / 'run' / 'metrics.jsonl'
    deadline = time.time() + 240
    while not (metrics.exists() and 'train/loss' in metrics.read_text()):
      assert time.time() < deadline and processes[0].poll() is None, 'training did not start'
      time.sleep(0.5)
    processes[1].send_signal(signal.SIGKILL)
    killed_at = time.time()
    _, err = processes[0].communicate(timeout=120)
    waited = time.time() - killed_at
  finally:
    for process in processes:
      process.kill()
  assert processes[0].returncode != 0
  # Within the heartbeat timeout (10 s) and JAX's polling, with the reason in the output.
  assert waited < 60, waited
  assert 'another task died' in err or 'lost contact with another process' in err, err[-2000:]


def test_a_process_whose_partners_never_come_is_a_one_line_error(tmp_path):
  started = time.time()
  result = subprocess.run(
      [sys.executable, '-m', 'flax_sr.main', '--dataset', 'sample', '--workdir',
       str(tmp_path / 'run'), '--coordinator_address', f'localhost:{free_port()}',
       '--num_processes', '2', '--process_id', '0', '--distributed_timeout', '5'],
      env=devices_env(2), capture_output=True, text=True, timeout=120)
  assert result.returncode == 2 and 'Traceback' not in result.stderr, result.stderr[-2000:]
  assert 'error: multi-host start-up failed' in result.stderr
  assert 'localhost' in result.stderr and time.time() - started < 60
  assert not (tmp_path / 'run').exists()


@pytest.mark.parametrize('flags, message', [
    (dict(coordinator_address='localhost:1234'), 'go together (got only --coordinator_address)'),
    (dict(coordinator_address='localhost:1234', num_processes=2, process_id=2),
     '--process_id must be in 0..1'),
    (dict(coordinator_address='localhost', num_processes=2, process_id=0),
     '--coordinator_address must be HOST:PORT'),
    (dict(coordinator_address='h:1', num_processes=0, process_id=0),
     '--num_processes must be a positive integer'),
    (dict(distributed_timeout=0), '--distributed_timeout must be a positive number'),
])
def test_bad_multihost_flags_are_one_line_errors(flags, message):
  from flax_sr.config import Config, UserError
  with pytest.raises(UserError, match=message.replace('(', r'\(').replace(')', r'\)')):
    Config(dataset='sample', **flags).validate()
