"""Shared test fixtures: paths to ../shared data (tests skip when it is absent), mocked STL-10,
tiny configurations and a helper to run the command-line tools in a subprocess."""

from __future__ import annotations

import atexit
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# One persistent XLA compilation cache for this test session, shared with the subprocesses the
# tests start and with pytest-xdist's workers (both inherit the environment): the many runs of
# the same tiny models then compile each program once. A fresh directory per session, so no
# stale entries are reused; the process that made it (the xdist controller) removes it.
_COMPILE_CACHE = os.environ.get('FLAX_SR_TEST_XLA_CACHE')
if _COMPILE_CACHE is None or not os.path.isdir(_COMPILE_CACHE):
  _COMPILE_CACHE = tempfile.mkdtemp(prefix='flax_sr_tests_xla_cache_')
  os.environ['FLAX_SR_TEST_XLA_CACHE'] = _COMPILE_CACHE
  atexit.register(shutil.rmtree, _COMPILE_CACHE, ignore_errors=True)
os.environ['JAX_COMPILATION_CACHE_DIR'] = _COMPILE_CACHE
os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0.2'

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
SHARED = REPO.parent / 'shared'
SHARED_TFDS = SHARED / 'data' / 'tfds'
SHARED_SR = SHARED / 'data' / 'sr'


def require(path: pathlib.Path) -> pathlib.Path:
  if not path.exists():
    pytest.skip(f'{path} is not present (../shared is only beside a developer checkout or CI)')
  return path


@pytest.fixture
def shared_tfds() -> pathlib.Path:
  return require(SHARED_TFDS / 'stl10')


@pytest.fixture
def shared_sr() -> pathlib.Path:
  return require(SHARED_SR / 'Set5').parent


@pytest.fixture
def mock_stl10(monkeypatch, tmp_path):
  """tfds.testing.mock_data for STL-10 (random 96x96 images in every split); returns a data dir.

  Under the mock, tfds' download is a no-op, so the 'is the download host reachable' check is
  answered yes, as on an online machine.
  """
  import tensorflow_datasets as tfds
  from flax_sr import input_pipeline
  monkeypatch.setattr(input_pipeline, '_host_reachable', lambda *args, **kwargs: True)
  with tfds.testing.mock_data(num_examples=48):
    yield str(tmp_path / 'tfds')


def run_module(module: str, *args: str, timeout: float = 300, env: dict | None = None,
               cwd: str | None = None) -> subprocess.CompletedProcess:
  """Runs ``python -m module args`` and returns the completed process (text output)."""
  full_env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL='2',
                  PYTHONUNBUFFERED='1')
  full_env.update(env or {})
  return subprocess.run([sys.executable, '-m', module, *args], capture_output=True, text=True,
                        timeout=timeout, env=full_env, cwd=cwd)


# Options that make a training run take seconds on a CPU: a 8-channel model, small batches.
TINY = ('--features', '8', '--batch_size', '8', '--log_every', '1', '--num_grid_images', '2')


def tiny_config(**overrides):
  """A Config that trains in seconds on a CPU (8 channels, batch 8, 32 -> 96)."""
  from flax_sr.config import Config
  values = dict(features=8, batch_size=8, log_every=1, num_grid_images=2, eval_examples=16,
                input_size=32)
  values.update(overrides)
  return Config(**values)


@pytest.fixture(scope='session')
def trained_run(tmp_path_factory):
  """A tiny run trained for a few steps on the embedded sample (a workdir with checkpoints)."""
  from flax_sr import trainer
  workdir = tmp_path_factory.mktemp('trained_run')
  config = tiny_config(dataset='sample', num_train_steps=4, eval_every=2)
  trainer.train_and_evaluate(config, str(workdir))
  return workdir
