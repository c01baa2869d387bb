#!/usr/bin/env python3
"""Benchmark: training throughput of every model, input pipeline, evaluation and predict speed.

    python experiments/bench.py                         # the full table on this machine
    python experiments/bench.py --quick                 # tiny sizes, a few steps (CI)
    python experiments/bench.py --vs-torch --torch_python /path/to/venv/bin/python
    python experiments/bench.py --dtype float32 bfloat16 --batch 64 256 --output_json out.json

Training rows: images/s is the batch over the median step time of at least ``--steps`` steps
after warm-up (compile time reported separately); GFLOP/s counts the model's FLOPs per step (XLA
cost analysis of the step with direct convolutions: forward, backward and Adam; Winograd's
saved multiplications count as speed) and is also given as a fraction of this machine's
float32 matmul rate. GB/step is XLA's estimate of the bytes the compiled step (the one timed)
reads and writes, operation by operation (its cost analysis: data that stays in cache between
two operations counts twice), and GB/s that over the step time: steps whose GB/s is about the
same whatever their FLOPs are bound by memory traffic, and get faster only by moving less.
With ``--vs-torch`` the PyTorch peer (experiments/torch_reference_step.py, the same network,
optimizer and loss; ``--torch_peer`` names another) runs the same reference-model configuration in the same run, alternating with ours, and the
ratio is ours / torch. "torch" runs with the fast malloc our entry points use
(flax_sr.host_allocator), "torch*" with glibc's default; both ratios are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import re
import resource
import statistics
import subprocess
import sys
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

if __name__ == '__main__':
  # Before JAX loads: the malloc tunables are read once, at process start (host_allocator).
  from flax_sr import host_allocator
  host_allocator.reexec_with_fast_malloc()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from flax_sr import host_allocator, inference, input_pipeline, models, parallel, resize  # noqa: E402
from flax_sr import train as train_lib  # noqa: E402

# The PyTorch peer of the reference rows: the project's own (its equality with flax_sr's model
# is tested in tests/torch_reference_test.py); --torch_peer runs another with the same flags.
TORCH_PEER = pathlib.Path(__file__).resolve().parent / 'torch_reference_step.py'


def device_name() -> str:
  device = jax.devices()[0]
  if device.platform == 'cpu':
    return f'CPU ({os.cpu_count()} cores, {platform.processor() or platform.machine()})'
  return f'{device.device_kind} x{jax.device_count()}'


def peak_memory_mb() -> float:
  device = jax.devices()[0]
  stats = device.memory_stats() if device.platform != 'cpu' else None
  if stats and 'peak_bytes_in_use' in stats:
    return stats['peak_bytes_in_use'] / 2**20
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # host RSS, KiB -> MiB


def matmul_gflops(size: int = 2048, repeats: int = 10) -> float:
  a = jnp.ones((size, size), jnp.float32)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    f(a).block_until_ready()
    times.append(time.perf_counter() - start)
  return 2 * size**3 / statistics.median(times) / 1e9


def time_steps(run, steps: int, warmup: int) -> tuple[float, float]:
  """(compile+first-step seconds, median step seconds)."""
  start = time.perf_counter()
  run()
  compile_s = time.perf_counter() - start
  for _ in range(warmup):
    run()
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    run()
    times.append(time.perf_counter() - start)
  return compile_s, statistics.median(times)


def time_alternating(runs: dict, steps: int, warmup: int, summary=statistics.median
                     ) -> dict[str, tuple[float, float]]:
  """``time_steps`` for several step functions side by side: each runs (compile, warm-up)
  first, then one timed step of each in turn, ``steps`` times, so that a drift of this shared
  machine's speed falls on all of them alike. name -> (compile+first-step s, ``summary``
  (median by default) of the step times in s)."""
  first = {}
  for name, run in runs.items():
    start = time.perf_counter()
    run()
    first[name] = time.perf_counter() - start
    for _ in range(warmup):
      run()
  times = {name: [] for name in runs}
  for _ in range(steps):
    for name, run in runs.items():
      start = time.perf_counter()
      run()
      times[name].append(time.perf_counter() - start)
  return {name: (first[name], summary(times[name])) for name in runs}


def step_flops(state, hr: np.ndarray) -> float | None:
  """The model's FLOPs for one training step (forward, backward, Adam): XLA:CPU's count for
  the same step with direct convolutions (``conv_impl='xla'``), so that Winograd's saved
  multiplications show as a higher rate rather than fewer FLOPs. Counted on the CPU backend
  everywhere: on GPUs the cuDNN convolutions are custom calls that XLA's cost analysis leaves
  out."""
  cpu = jax.devices('cpu')[0]
  model = state.model
  if hasattr(model, 'conv_impl'):
    model = model.clone(conv_impl='xla')
  try:
    with jax.default_device(cpu):
      host_state = jax.device_put(jax.device_get(state), cpu).replace(model=model)
      lowered = jax.jit(train_lib.train_step).lower(host_state, {'hr': jax.device_put(hr, cpu)})
      cost = lowered.compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get('flops', 0.0)) or None
  except Exception as error:  # best effort: a missing count leaves the column empty
    print(f'no FLOP count: {error}', file=sys.stderr)
    return None


def bytes_accessed(compiled) -> float | None:
  """XLA's estimate of the bytes a compiled program reads and writes (None where the backend
  gives none)."""
  try:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get('bytes accessed', 0.0)) or None
  except Exception as error:  # best effort, as step_flops
    print(f'no byte count: {error}', file=sys.stderr)
    return None


def bench_train(name: str, input_size: int, factors, batch: int, dtype: str, steps: int,
                warmup: int, features: int, extra: dict) -> dict:
  scale = 96 // input_size
  kwargs = dict(extra)
  if name == 'reference':
    kwargs['upsample_factors'] = factors
  model = models.create_model(name, scale=scale, features=features,
                              dtype=jnp.bfloat16 if dtype == 'bfloat16' else jnp.float32, **kwargs)
  state = train_lib.create_train_state(jax.random.key(0), model, optax.adam(1e-4),
                                       lr_shape=(1, input_size, input_size, 3))
  mesh = parallel.make_mesh()
  state = parallel.put_replicated(state, mesh)
  hr = np.random.default_rng(0).integers(0, 256, (batch, 96, 96, 3), np.uint8)
  batch_arrays = parallel.put_batch({'hr': hr}, mesh)
  step = parallel.compile_train_step(mesh)
  start = time.perf_counter()
  compiled = step.lower(state, batch_arrays).compile()
  compile_s = time.perf_counter() - start
  flops = step_flops(state, hr)
  step_bytes = bytes_accessed(compiled)
  holder = {'state': state}

  def run():
    holder['state'], metrics = step(holder['state'], batch_arrays)
    metrics['loss'].block_until_ready()

  _, median_s = time_steps(run, steps, warmup)
  return {
      'model': name, 'input_size': input_size,
      'factors': list(models.default_upsample_factors(scale) if factors is None else factors)
      if name == 'reference' else None,
      'batch': batch, 'dtype': dtype, 'features': features,
      'images_per_s': batch / median_s, 'median_step_ms': median_s * 1e3,
      'compile_s': compile_s,
      'gflops': flops * (1 / median_s) / 1e9 if flops else None,
      'gb_per_step': step_bytes / 1e9 if step_bytes else None,
      'gb_per_s': step_bytes / median_s / 1e9 if step_bytes else None,
      'torch_images_per_s': None, 'ratio_vs_torch': None,
      'torch_default_malloc_images_per_s': None, 'ratio_vs_torch_default_malloc': None,
  }


def bench_gan(preset: str, steps: int, warmup: int, quick: bool = False) -> dict:
  """The GAN step (``gan.gan_train_step``: generator, discriminator, VGG perceptual loss) of a
  preset beside the PSNR step (``train.train_step``) of the same generator on the same batch,
  each timed twice, alternating, so that drift on a shared machine hits both."""
  from flax_sr import configs, gan, vgg
  from flax_sr.config import Config
  name, values = configs.load(preset)
  if quick:  # a tiny generator, discriminator and VGG depth: compiles in seconds
    values = dict(values, features=8, num_rrdb=1, disc_features=8, batch_size=2, hr_size=32,
                  input_size=8, perceptual_layers='conv1_2:1')
  config = Config(**dict(values, data_dir='unused')).validate()
  mesh = parallel.make_mesh()
  hr = np.random.default_rng(0).integers(0, 256, (config.batch_size, config.hr_size,
                                                  config.hr_size, 3), np.uint8)
  batch = parallel.put_batch({'hr': hr}, mesh)
  gan_state = parallel.put_replicated(gan.state_from_config(config, config.num_train_steps),
                                      mesh)
  weights = parallel.put_replicated(vgg.load_weights(config.vgg_weights), mesh)
  psnr_state = parallel.put_replicated(
      train_lib.state_from_config(config, config.num_train_steps), mesh)
  gan_step = parallel.compile_gan_train_step(mesh, losses=gan.GANLosses.from_config(config))
  psnr_step = parallel.compile_train_step(mesh, loss=config.loss)
  holder = {'gan': gan_state, 'psnr': psnr_state}

  def run_gan():
    holder['gan'], metrics = gan_step(holder['gan'], batch, weights)
    metrics['loss'].block_until_ready()

  def run_psnr():
    holder['psnr'], metrics = psnr_step(holder['psnr'], batch)
    metrics['loss'].block_until_ready()

  parts = gan_step_parts(gan_state, weights, batch, gan.GANLosses.from_config(config))
  times = {'gan': [], 'psnr': [], **{name: [] for name in parts}}
  for _ in range(2):
    for key, run in (('psnr', run_psnr), ('gan', run_gan), *parts.items()):
      times[key].append(time_steps(run, steps, warmup)[1])
  gan_s, psnr_s = statistics.mean(times['gan']), statistics.mean(times['psnr'])
  peer = torch_gan_peer(config, weights, hr, steps, warmup, run_gan)
  return {'preset': name, 'generator': config.model, 'discriminator': config.discriminator,
          **peer,
          'disc_features': config.disc_features, 'perceptual_net': config.perceptual_net,
          'batch': config.batch_size, 'hr_size': config.hr_size,
          'psnr_step_ms': psnr_s * 1e3, 'gan_step_ms': gan_s * 1e3,
          'gan_over_psnr': gan_s / psnr_s,
          **{f'{part}_ms': statistics.mean(times[part]) * 1e3 for part in parts}}


def torch_gan_peer(config, vgg_weights, hr: np.ndarray, steps: int, warmup: int,
                   run_gan) -> dict:
  """The same GAN step in PyTorch (``experiments/torch_esrgan_step.py``: spandrel's RRDBNet,
  the U-Net discriminator, VGG16, BasicSR's update order) on the same batch, timed
  alternating with flax_sr's ``run_gan``: {} when torch or spandrel is missing or the preset's
  networks have no PyTorch peer here."""
  import importlib.util
  if not (importlib.util.find_spec('torch') and importlib.util.find_spec('spandrel')):
    print('GAN step vs PyTorch: skipped (needs torch and spandrel)')
    return {}
  losses_config = config.perceptual_layer_weights()
  if (config.model != 'rrdb' or config.discriminator != 'unet' or config.perceptual_net != 'vgg16'
      or any(not layer.startswith('conv') for layer, _ in losses_config)):
    print('GAN step vs PyTorch: skipped (a peer only for rrdb + unet + VGG16 conv layers)')
    return {}
  import torch
  import torch_esrgan_step
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / 'tests'))
  import zoo_test  # spandrel's import with its torchvision stand-in
  from flax_sr import gan, metrics as metrics_lib
  torch.set_num_threads(os.cpu_count())
  generator = zoo_test.spandrel_class('ESRGAN', 'RRDB', 'RRDBNet')(
      num_filters=config.features, num_blocks=config.num_rrdb, scale=config.scale)
  losses = gan.GANLosses.from_config(config)
  step = torch_esrgan_step.ESRGANStep(
      generator, torch_esrgan_step.UNetDiscriminatorSN(config.disc_features),
      jax.device_get(vgg_weights), perceptual_layers=losses.perceptual_layers,
      pixel_weight=losses.pixel_weight, perceptual_weight=losses.perceptual_weight,
      adversarial_weight=losses.adversarial_weight, learning_rate=config.learning_rate)
  as_torch = lambda images: torch.from_numpy(np.asarray(images).transpose(0, 3, 1, 2).copy())
  lr = as_torch(metrics_lib.to_float(train_lib.degrade(jnp.asarray(hr), config.scale)))
  target = as_torch(metrics_lib.to_float(jnp.asarray(hr)))
  timed = time_alternating({'jax': run_gan, 'torch': lambda: step(lr, target)}, steps, warmup)
  return {'torch_gan_step_ms': timed['torch'][1] * 1e3,
          'gan_step_alternating_ms': timed['jax'][1] * 1e3,
          'gan_vs_torch': timed['torch'][1] / timed['jax'][1]}


def gan_step_parts(gan_state, vgg_weights, batch, losses) -> dict:
  """Where a GAN step's time goes beyond the generator's own step, as separately jitted
  pieces of the same work on the same batch (so their sum only approximates the fused step):
  'perceptual' is the VGG loss's forward on output and HR and its backward to the output;
  'discriminator' is the two passes a step asks of it (real: forward and parameter gradient;
  fake: one forward, pulled back to the images for the generator and to the parameters for
  itself)."""
  from flax_sr import gan, metrics as metrics_lib
  real = metrics_lib.to_float(batch['hr'])
  fake = jnp.clip(real + 0.01, 0.0, 1.0)  # any image: the cost does not depend on values
  disc = gan_state.discriminator
  # Copies: the timed GAN step donates the state's buffers.
  disc_params, disc_stats = jax.tree.map(jnp.copy, (gan_state.disc_params,
                                                    gan_state.disc_batch_stats))

  def apply(params, stats, images):
    logits, updates = disc.apply({'params': params, 'batch_stats': stats}, images, train=True,
                                 mutable=['batch_stats'])
    return jnp.mean(logits), updates['batch_stats'] if 'batch_stats' in updates else {}

  @jax.jit
  def discriminator_work(params, stats, real, fake):
    (_, stats), real_grad = jax.value_and_grad(apply, has_aux=True)(params, stats, real)
    _, fake_vjp, _ = jax.vjp(lambda p, images: apply(p, stats, images), params, fake,
                             has_aux=True)
    image_grad = fake_vjp(jnp.float32(1.0))[1]
    fake_grad = fake_vjp(jnp.float32(0.5))[0]  # another cotangent, as the step's two losses
    return real_grad, image_grad, fake_grad

  # Weights and images are arguments, as in the step: XLA would fold work on constants.
  perceptual_work = jax.jit(jax.grad(lambda out, ref, weights: gan.perceptual_loss(
      weights, out, ref, losses.perceptual_layers, losses.vgg_conv_impl)))
  return {
      'perceptual': lambda: jax.block_until_ready(perceptual_work(fake, real, vgg_weights)),
      'discriminator': lambda: jax.block_until_ready(discriminator_work(
          disc_params, disc_stats, real, fake)),
  }


def bench_degradation(batch: int, hr_size: int, scale: int, steps: int, warmup: int) -> dict:
  """The Real-ESRGAN degradation alone and inside an EDSR-baseline train step (16 blocks, 64
  features), beside the bicubic step, on the same uint8 HR batch, alternating twice."""
  import jax
  from flax_sr import degradations, models
  mesh = parallel.make_mesh()
  hr = np.random.default_rng(0).integers(0, 256, (batch, hr_size, hr_size, 3), np.uint8)
  batch_on_devices = parallel.put_batch({'hr': hr}, mesh)
  from flax_sr.config import Config
  features = 8 if hr_size < 64 else 64
  model = models.create_model('edsr', scale=scale, features=features,
                              num_res_blocks=16, conv_impl=Config().resolved_conv_impl())
  degradation = degradations.TrainingDegradation()
  # A new step (key) each call: the cost depends on the draws (the first stage's buffer).
  degrade = jax.jit(lambda x, step: degradation(x, scale, step))
  calls = iter(range(10**9))
  states = {}
  steps_by_kind = {}
  for kind, deg in (('bicubic', None), ('realesrgan', degradation)):
    states[kind] = parallel.put_replicated(train_lib.create_train_state(
        jax.random.key(0), model, optax.adam(1e-4), lr_shape=(1, hr_size // scale,
                                                          hr_size // scale, 3)), mesh)
    steps_by_kind[kind] = parallel.compile_train_step(mesh, loss='l1', degradation=deg)

  def runner(kind):
    def run():
      states[kind], metrics = steps_by_kind[kind](states[kind], batch_on_devices)
      metrics['loss'].block_until_ready()
    return run

  def run_degrade():
    degrade(batch_on_devices['hr'], next(calls)).block_until_ready()

  times = {'bicubic': [], 'realesrgan': [], 'alone': []}
  for _ in range(2):
    for key, run in (('bicubic', runner('bicubic')), ('realesrgan', runner('realesrgan')),
                     ('alone', run_degrade)):
      times[key].append(time_steps(run, steps, warmup)[1])
  bicubic, realistic, alone = (statistics.mean(times[k]) for k in ('bicubic', 'realesrgan',
                                                                      'alone'))
  return {'batch': batch, 'hr_size': hr_size, 'scale': scale, 'model': f'edsr 16x{features}',
          'degradation_ms': alone * 1e3, 'bicubic_step_ms': bicubic * 1e3,
          'realesrgan_step_ms': realistic * 1e3,
          'degradation_share_of_step': alone / realistic,
          'step_cost_increase': realistic / bicubic - 1}


def torch_degradation_peer(batch: int, hr_size: int, scale: int, calls: int) -> dict:
  """flax_sr's jitted ``realesrgan`` (a new key each call) against the same pipeline as
  Real-ESRGAN runs it in NumPy + PyTorch (``experiments/torch_degradation.py``: kernels drawn
  per image in NumPy, the batch through ``filter2D``, ``F.interpolate``, noise and a float
  JPEG), alternating, on the same uint8 HR batch. The PyTorch side's cost depends on its
  draws (it resizes the whole batch by one random factor; flax_sr works in a buffer of the
  largest size), so both report the mean of ``calls`` calls. Then each stage alone at HR size
  in both frameworks, which says where the difference comes from. {} without torch."""
  import importlib.util
  if not importlib.util.find_spec('torch'):
    print('degradation vs PyTorch: skipped (needs torch)')
    return {}
  import torch
  import torch.nn.functional as F
  import torch_degradation
  from flax_sr import degradations
  from flax_sr.degradation_settings import RealESRGANSettings
  torch.set_num_threads(os.cpu_count())
  settings = RealESRGANSettings()
  rng = np.random.default_rng(0)
  generator = torch.Generator().manual_seed(0)
  hr = rng.integers(0, 256, (batch, hr_size, hr_size, 3), np.uint8)
  hr_device = jnp.asarray(hr)
  degrade = jax.jit(lambda key, x: degradations.realesrgan(key, x, scale, settings))
  counter = iter(range(10**9))
  runs = {'jax': lambda: degrade(jax.random.key(next(counter)), hr_device).block_until_ready(),
          'torch': lambda: torch_degradation.degrade_uint8(hr, scale, rng, generator, settings)}
  timed = time_alternating(runs, calls, 0, summary=statistics.mean)
  compile_s = timed['jax'][0]
  kernel_times = []
  for _ in range(calls):
    start = time.perf_counter()
    torch_degradation.draw_kernels(rng, batch, settings)
    kernel_times.append(time.perf_counter() - start)
  jax_ms, torch_ms = (timed[k][1] * 1e3 for k in ('jax', 'torch'))

  # Each stage at HR size, both frameworks on the same arrays.
  images = hr.astype(np.float32) / 255.0
  kernels = np.stack([np.asarray(degradations.random_kernel(jax.random.key(i), settings))
                      for i in range(batch)])
  keys = jax.random.split(jax.random.key(0), batch)
  x, k = jnp.asarray(images), jnp.asarray(kernels)
  t_images = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
  t_kernels = torch.from_numpy(kernels)
  sigma = jnp.full((batch,), 10 / 255.0)
  gray = jnp.zeros((batch,), bool)
  quality = jnp.full((batch,), 50.0)
  stage_jax = {
      'blur 21x21': jax.jit(degradations.blur),
      'bicubic resize to LR': jax.jit(lambda x: degradations.resize(
          x, (hr_size // scale,) * 2, 'bicubic')),
      'gaussian noise': jax.jit(lambda x: jax.vmap(degradations.gaussian_noise)(
          keys, x, sigma, gray)),
      'poisson noise': jax.jit(lambda x: jax.vmap(degradations.poisson_noise)(
          keys, x, sigma * 25.5, gray)),
      'JPEG': jax.jit(lambda x: degradations.jpeg(
          jnp.clip(jnp.round(x * 255), 0, 255).astype(jnp.uint8), quality)),
  }
  t_sigma, t_gray = torch.full((batch,), 10 / 255.0), torch.zeros(batch, dtype=torch.bool)
  stage_torch = {
      'blur 21x21': lambda: torch_degradation.filter2d(t_images, t_kernels),
      'bicubic resize to LR': lambda: F.interpolate(t_images, size=(hr_size // scale,) * 2,
                                                    mode='bicubic', align_corners=False),
      'gaussian noise': lambda: torch_degradation.gaussian_noise(t_images, t_sigma, t_gray,
                                                                 generator),
      'poisson noise': lambda: torch_degradation.poisson_noise(t_images, t_sigma * 25.5,
                                                               t_gray, generator),
      'JPEG': lambda: torch_degradation.jpeg(t_images, torch.full((batch,), 50.0)),
  }
  stages = []
  for name, fn in stage_jax.items():
    args = (x, k) if name.startswith('blur') else (x,)
    timed = time_alternating({'jax': lambda: jax.block_until_ready(fn(*args)),
                              'torch': torch.inference_mode()(stage_torch[name])},
                             max(calls // 2, 3), 1)
    stages.append({'stage': name, 'jax_ms': timed['jax'][1] * 1e3,
                   'torch_ms': timed['torch'][1] * 1e3})
  # Pixels the first stage's noise, JPEG and second blur work on, over HR's, on average over
  # the random factor f: PyTorch works at f^2, flax_sr in the smallest buffer that holds f.
  (p_up, p_down, p_keep), (low, high) = settings.resize_prob, settings.resize_range
  draws = np.random.default_rng(0)
  kind = draws.choice(3, 10**6, p=np.array([p_up, p_down, p_keep]) / (p_up + p_down + p_keep))
  u = draws.random(10**6)
  factor = np.where(kind == 0, 1 + (high - 1) * u, np.where(kind == 1, low + (1 - low) * u, 1.0))
  buffers = degradations._first_stage_buffers(hr_size, hr_size, settings.resize_range)
  sizes = np.maximum(np.floor(hr_size * factor), 1)
  buffer_sides = np.array([b[0] for b in buffers])
  chosen = buffer_sides[np.searchsorted(buffer_sides, sizes)]
  return {'torch_degradation_ms': torch_ms, 'torch_kernels_ms': statistics.mean(kernel_times) * 1e3,
          'jax_degradation_ms': jax_ms, 'jax_compile_s': compile_s,
          'degradation_vs_torch': torch_ms / jax_ms, 'calls': calls,
          'stage1_buffer_area_over_hr': float(np.mean((chosen / hr_size) ** 2)),
          'torch_stage1_mean_area_over_hr': float(np.mean((sizes / hr_size) ** 2)),
          'stages': stages}


def run_torch(torch_python: str, input_size: int, factors, batch: int, steps: int,
              warmup: int, fast_malloc: bool, peer: pathlib.Path = TORCH_PEER) -> float | None:
  """The PyTorch peer's images/s; ``fast_malloc`` gives it the malloc tunables our own entry
  points use (flax_sr.host_allocator), else glibc's default."""
  spec = f'{input_size}:{",".join(map(str, factors))}'
  command = [torch_python, str(peer), '--sizes', str(input_size), '--batch', str(batch),
             '--steps', str(steps), '--warmup', str(warmup), '--factors', spec]
  env = host_allocator.set_malloc_tunables(
      dict(os.environ), host_allocator.fast_malloc_tunables(), fast_malloc)
  result = subprocess.run(command, capture_output=True, text=True, env=env)
  match = re.search(r'([\d.]+) images/s', result.stdout)
  if not match:
    print(f'torch peer failed: {result.stderr[-500:]}', file=sys.stderr)
    return None
  return float(match.group(1))


def bench_pipeline(quick: bool, data_dir: str | None) -> list[dict]:
  rows = []
  sources = []
  if data_dir:
    # One-time start-up (TensorFlow import, tfds builder) first, then the decode rate.
    start = time.perf_counter()
    input_pipeline.load_stl10(data_dir, 'test', max_examples=1, download=False)
    print(f'tfds start-up: {time.perf_counter() - start:.1f} s')
    start = time.perf_counter()
    source = input_pipeline.load_stl10(data_dir, 'unlabelled', download=False)
    cold = len(source) / (time.perf_counter() - start)
    sources.append(('stl10', source, cold))
  start = time.perf_counter()
  sample = input_pipeline.load_sample('train')
  sources.append(('sample', sample, len(sample) / (time.perf_counter() - start)))
  for name, source, cold in sources:
    stream = input_pipeline.TrainStream(source, 64, seed=0, prefetch=4)
    batches = 20 if quick else 300
    next(stream)
    start = time.perf_counter()
    for _ in range(batches):
      next(stream)
    warm = batches * 64 / (time.perf_counter() - start)
    stream.close()
    rows.append({'source': name, 'cold_images_per_s': cold, 'warm_images_per_s': warm})
  return rows


def synthetic_photos(directory: pathlib.Path, count: int, height: int, width: int) -> None:
  """Photo-like PNGs (smooth colour fields, edges and sensor noise): DIV2K-size stand-ins."""
  from PIL import Image
  directory.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(0)
  y, x = np.mgrid[0:height, 0:width].astype(np.float32)
  for i in range(count):
    field = np.stack([np.sin(x / rng.uniform(20, 200) + y / rng.uniform(20, 200) + c)
                      for c in range(3)], axis=-1)
    image = 128 + 90 * field + rng.normal(0, 4, field.shape)
    image[(x + 2 * y) % rng.integers(100, 400) < 8] = 30  # a few hard edges
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(directory / f'{i:04d}.png')


def div2k_tfds_from_photos(image_dir: pathlib.Path, data_dir: pathlib.Path) -> str:
  """A real tfds ``div2k/bicubic_x4`` prepared as ArrayRecord (what flax_sr streams through
  ``as_data_source``) from local HR photos: tfds' own builder, its download replaced by the
  photos and their bicubic x4 copies (every photo in both splits). Made once; returns the
  data dir."""
  import tensorflow_datasets as tfds
  from PIL import Image
  if tfds.builder('div2k/bicubic_x4', data_dir=str(data_dir)).is_prepared():
    return str(data_dir)
  raw = data_dir / 'raw'
  folders = {}
  for split, first in (('train', 1), ('valid', 801)):
    hr_dir = raw / f'{split}_hr' / f'DIV2K_{split}_HR'
    lr_dir = raw / f'{split}_lr' / 'X4'
    hr_dir.mkdir(parents=True, exist_ok=True)
    lr_dir.mkdir(parents=True, exist_ok=True)
    for number, path in enumerate(sorted(image_dir.glob('*.png')), first):
      image = Image.open(path)
      image.save(hr_dir / f'{number:04d}.png')
      image.resize((image.width // 4, image.height // 4), Image.Resampling.BICUBIC).save(
          lr_dir / f'{number:04d}x4.png')
    folders |= {f'{split}_hr_url': str(raw / f'{split}_hr'),
                f'{split}_lr_url': str(raw / f'{split}_lr')}
  original = tfds.download.DownloadManager.download_and_extract
  tfds.download.DownloadManager.download_and_extract = lambda self, urls: folders
  try:
    tfds.builder('div2k/bicubic_x4', data_dir=str(data_dir)).download_and_prepare(
        file_format='array_record')
  finally:
    tfds.download.DownloadManager.download_and_extract = original
  return str(data_dir)


def bench_streaming(quick: bool, image_dir: str | None, work_dir: str) -> list[dict]:
  """Crops/s delivered into device arrays (augmented, batch 32) from the in-memory folder
  source, from a tfds DIV2K copy's data source (made from the photos) and from prepared stores (``flax_sr.prepare``, 480/240 sub-images, uncompressed and
  zstd), with 0, 1 and 2 worker processes, at 96, 192 and 256 px crops; and the seconds to the
  first batch (worker start-up included)."""
  from flax_sr import prepare, subimage_store
  work = pathlib.Path(work_dir)
  if image_dir is None:
    image_dir = work / 'photos'
    if not image_dir.exists():
      synthetic_photos(image_dir, 4 if quick else 12, 1356, 2040)  # DIV2K 0001.png's size
  stores = {}
  for compression in ('none', 'zstd'):
    prepare.prepare(image_dir, work / f'store_{compression}', compression=compression,
                    progress=False)
    stores[f'prepared/{compression}'] = subimage_store.SubimageStore(work / f'store_{compression}')
  images = input_pipeline.load_folder_images(image_dir).images
  tfds_dir = div2k_tfds_from_photos(pathlib.Path(image_dir), work / 'tfds')
  mesh = parallel.make_mesh()
  rows = []
  # A tfds data source (DIV2K as ArrayRecord) decodes one whole PNG per crop: its rate per
  # worker is bounded by this (no DIV2K here to stream; the tfds path is tested on a small copy).
  first_png = sorted(pathlib.Path(image_dir).glob('*.png'))[0]
  start = time.perf_counter()
  for _ in range(3):
    input_pipeline.read_image(first_png)
  png_s = (time.perf_counter() - start) / 3
  shape = images[0].shape
  rows.append({'source': 'png decode (tfds data source bound)', 'crop': None, 'workers': 1,
               'crops_per_s': 1 / png_s, 'first_batch_s': None})
  print(f'one {shape[1]}x{shape[0]} PNG decode: {png_s * 1e3:.0f} ms: a tfds data source '
        f'delivers at most {1 / png_s:.0f} crops/s per worker process', flush=True)
  batch, batches = 32, (4 if quick else 40)
  for crop in ((96,) if quick else (96, 192, 256)):
    for kind in ('memory', 'tfds data source', *stores):
      if kind == 'memory':
        source = input_pipeline.FolderSource(images, [str(i) for i in range(len(images))],
                                             crop, 64, 'memory')
      elif kind == 'tfds data source':  # one whole 2K PNG decoded per crop
        source = input_pipeline.TfdsImageSource(tfds_dir, 'bicubic_x4', 'train', crop, 8,
                                                kind, len(images))
      else:
        source = input_pipeline.StoreSource(stores[kind], crop, 8, kind)
      for workers in ((0, 2) if quick else (0, 1, 2)):
        start = time.perf_counter()
        stream = input_pipeline.TrainStream(source, batch, seed=0, augment=True, prefetch=4,
                                            workers=workers,
                                            put=lambda b: parallel.put_batch(b, mesh))
        try:
          jax.block_until_ready(next(stream)[0])
          first = time.perf_counter() - start
          for _ in range(2):  # fill the workers' buffers
            next(stream)
          start, done = time.perf_counter(), 0
          # At least `batches`, and at least 2 s: a fast source's 40 batches take a fraction
          # of a second, too short to average this machine's noise.
          least = 2 if kind == 'tfds data source' else batches  # ~1 s per batch there
          while done < least or (not quick and time.perf_counter() - start < 2.0):
            jax.block_until_ready(next(stream)[0])
            done += 1
          rate = done * batch / (time.perf_counter() - start)
        finally:
          stream.close()
        rows.append({'source': kind, 'crop': crop, 'workers': workers,
                     'crops_per_s': rate, 'first_batch_s': first})
        print(f'{kind:<16} {crop:>4} px  workers {workers}  {rate:8.0f} crops/s   first batch '
              f'{first:5.1f} s', flush=True)
  return rows


def bench_inference(quick: bool) -> list[dict]:
  """Evaluation and predict throughput (output megapixels/s) of the reference x3 model."""
  from flax_sr.config import Config
  config = Config(features=8 if quick else None)
  state = train_lib.state_from_config(config, total_steps=1)
  loaded = inference.LoadedModel(config, state.model, train_lib.inference_variables(state), 0,
                                 'random init')
  mesh = parallel.make_mesh()
  rows = []
  images = np.random.default_rng(0).integers(0, 256, (64, 96, 96, 3), np.uint8)
  eval_set = input_pipeline.EvalSet(images, [str(i) for i in range(64)], 'random 96x96')
  eval_fn = parallel.compile_eval_sums(mesh, loaded.model)
  variables = parallel.put_replicated(loaded.variables, mesh)
  from flax_sr import evaluation
  compile_s, median_s = time_steps(
      lambda: evaluation.evaluate_images(eval_fn, variables, eval_set, mesh, 32), 3, 1)
  rows.append({'task': 'evaluate (model+bicubic, PSNR/SSIM)', 'megapixels_per_s':
               64 * 96 * 96 / median_s / 1e6})
  upscaler = inference.Upscaler(loaded, tile=128, tile_overlap=8, mesh=mesh)
  lr = np.random.default_rng(1).integers(0, 256, (160 if quick else 320, 240 if quick else 480, 3),
                                         np.uint8)
  compile_s, median_s = time_steps(lambda: upscaler(lr), 3, 1)
  rows.append({'task': f'predict {lr.shape[1]}x{lr.shape[0]} -> x3 (tiled)',
               'megapixels_per_s': lr.shape[0] * lr.shape[1] * 9 / median_s / 1e6})
  return rows


def bench_eval_buckets(folder: str, count: int, pretrained: str, bucket_counts) -> list[dict]:
  """``evaluate``'s wall time on the first ``count`` images of ``folder`` (different sizes, a
  benchmark set's situation) with each number of shape buckets: compilations included, as a
  user waits for them. Every row must give the same table (checked here)."""
  from flax_sr import evaluation, lpips, shape_buckets
  loaded = inference.load_pretrained(pretrained)
  scale = loaded.model.scale
  paths = sorted(pathlib.Path(folder).glob('*.png'))[:count]
  images = [resize.crop_to_multiple(input_pipeline.read_image(p), scale) for p in paths]
  eval_set = input_pipeline.EvalSet(images, [p.stem for p in paths], pathlib.Path(folder).name,
                                    np.zeros(len(images), bool))
  mesh = parallel.make_mesh()
  variables = parallel.put_replicated(loaded.variables, mesh)
  weights = lpips.installed_weights('alex')
  rows, first = [], None
  for buckets in bucket_counts:
    eval_fn = parallel.compile_eval_sums(mesh, loaded.model, weights,
                                         baselines=('bicubic', 'nearest'))
    start = time.perf_counter()
    table = evaluation.evaluate_images(eval_fn, variables, eval_set, mesh, 1, buckets)
    seconds = time.perf_counter() - start
    own_shapes = [i.shape[:2] for i in images]
    shapes = shape_buckets.plan_buckets(own_shapes, buckets) if buckets else own_shapes
    first = first or table
    rows.append({'shape_buckets': buckets, 'images': len(images),
                 'compilations': len(set(shapes)),
                 'padded_pixels_ratio': (sum(h * w for h, w in shapes)
                                         / sum(h * w for h, w in own_shapes)),
                 'seconds': seconds, 'psnr_y': table['model']['psnr_y'],
                 'max_abs_diff_vs_first': max(abs(table[r][m] - first[r][m])
                                              for r in first for m in first[r])})
    r = rows[-1]
    print(f'shape_buckets {buckets}: {r["compilations"]:2d} compilations, '
          f'{r["padded_pixels_ratio"]:.2f}x pixels, {seconds:6.1f} s, PSNR-Y '
          f'{r["psnr_y"]:.4f} (max diff of any number vs the first row '
          f'{r["max_abs_diff_vs_first"]:.1e})', flush=True)
  return rows


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--quick', action='store_true', help='tiny sizes and few steps (CI)')
  parser.add_argument('--steps', type=int, default=10)
  parser.add_argument('--warmup', type=int, default=3)
  parser.add_argument('--batch', type=int, nargs='+', default=[64])
  parser.add_argument('--dtype', nargs='+', default=['float32'], choices=['float32', 'bfloat16'])
  parser.add_argument('--models', nargs='+', default=['reference', 'espcn', 'edsr'])
  parser.add_argument('--conv_impl', nargs='+', default=['auto'],
                      choices=['auto', 'xla', 'matmul', 'tuned'],
                      help='convolution implementations to compare (auto: tuned on CPU)')
  parser.add_argument('--placements', nargs='+', default=['late', 'early'],
                      choices=['late', 'early'], help='reference-model upsample placements')
  parser.add_argument('--sizes', type=int, nargs='+', default=[16, 32], choices=[16, 32],
                      help='reference-model input sizes')
  parser.add_argument('--data_dir', help='a prepared tfds data dir for the STL-10 pipeline row')
  parser.add_argument('--vs-torch', dest='vs_torch', action='store_true',
                      help='run the PyTorch peer alternately on the reference rows')
  parser.add_argument('--torch_python', default=sys.executable,
                      help='an interpreter that has torch (default: this one)')
  parser.add_argument('--torch_peer', type=pathlib.Path, default=TORCH_PEER,
                      help='the PyTorch peer script (default: experiments/torch_reference_step.py'
                           '; any script with its flags and its "N images/s" output)')
  parser.add_argument('--skip', nargs='*', default=[], choices=['pipeline', 'inference'])
  parser.add_argument('--pipeline', action='store_true',
                      help='only the streaming table: crops/s into device arrays from memory '
                           'and from a prepared store with 0/1/2 worker processes at 96/192/256 '
                           'px (writes --output_json); no model rows')
  parser.add_argument('--pipeline_images', metavar='DIR',
                      help='with --pipeline: HR images to use (default: synthetic 2040x1356 '
                           'photos, made once under --pipeline_workdir)')
  parser.add_argument('--pipeline_workdir', default='/tmp/flax_sr_pipeline_bench',
                      help='with --pipeline: where the synthetic photos and the store go')
  parser.add_argument('--eval_buckets', metavar='DIR',
                      help='only the evaluation-compile table: evaluate --pretrained x3 on the '
                           'first --eval_count images of DIR (PNG, different sizes) with 0 (a '
                           'compilation per shape), 1, 2 and 4 shape buckets (writes '
                           '--output_json); no model rows')
  parser.add_argument('--eval_count', type=int, default=14,
                      help='with --eval_buckets: how many images (default 14, as Set14)')
  parser.add_argument('--output_json', help='write the training rows as JSON')
  parser.add_argument('--gan', metavar='PRESET', nargs='?', const='esrgan_cpu_gan_x4',
                      help='also time the GAN step of this preset (default esrgan_cpu_gan_x4) '
                           'beside the PSNR step of its generator')
  parser.add_argument('--degradation', action='store_true',
                      help="also time Real-ESRGAN's degradation alone and inside an "
                           'EDSR-baseline train step (batch 16 of 256x256 HR at x4; tiny with '
                           '--quick)')
  args = parser.parse_args(argv)
  if args.quick:
    args.steps, args.warmup = 2, 1
    args.batch = [4]
  features = 8 if args.quick else 64

  print(f'device: {device_name()}; jax {jax.__version__}; devices {jax.device_count()}')
  if args.eval_buckets:
    rows = bench_eval_buckets(args.eval_buckets, args.eval_count, 'x3', (0, 1, 2, 4))
    if args.output_json:
      pathlib.Path(args.output_json).write_text(json.dumps(
          {'device': device_name(), 'eval_buckets': rows}, indent=2))
    return 0
  if args.pipeline:
    rows = bench_streaming(args.quick, args.pipeline_images, args.pipeline_workdir)
    if args.output_json:
      pathlib.Path(args.output_json).write_text(json.dumps(
          {'device': device_name(), 'streaming': rows}, indent=2))
    return 0
  matmul = matmul_gflops(512 if args.quick else 2048)
  print(f'float32 matmul: {matmul:.1f} GFLOP/s')
  auto = 'tuned' if jax.default_backend() == 'cpu' else 'xla'
  args.conv_impl = list(dict.fromkeys(auto if i == 'auto' else i for i in args.conv_impl))
  configs = []
  for name in args.models:
    if name == 'reference':
      for size in args.sizes:
        scale = 96 // size
        late = models.default_upsample_factors(scale)
        # Early: the factors on the first blocks, smallest first (the PyTorch peer's
        # definition: 16 -> 2,3,1,1; 32 -> 3,1,1,1).
        upsampling = tuple(f for f in late if f > 1)
        placements = {'late': late,
                      'early': upsampling + (1,) * (len(late) - len(upsampling))}
        for factors in (placements[p] for p in args.placements):
          for impl in args.conv_impl:
            configs.append((name, size, factors, {'conv_impl': impl}))
    elif name == 'edsr':
      for impl in args.conv_impl:
        configs.append((name, 32, None, {'num_res_blocks': 2 if args.quick else 8,
                                         'conv_impl': impl}))
    else:
      for impl in args.conv_impl:
        configs.append((name, 32, None, {'conv_impl': impl}))

  rows = []
  header = (f'{"model":<10} {"in":>3} {"factors":<12} {"impl":<6} {"batch":>5} {"dtype":<8} '
            f'{"img/s":>9} {"step ms":>8} {"compile s":>9} {"GFLOP/s":>8} {"of mm":>6} '
            f'{"GB/step":>7} {"GB/s":>6} '
            f'{"torch":>8} {"ratio":>6} {"torch*":>8} {"ratio*":>6}')
  print(f'host malloc: GLIBC_TUNABLES={os.environ.get("GLIBC_TUNABLES", "(unset)")}')
  print(header)
  for batch in args.batch:
    for dtype in args.dtype:
      for name, size, factors, extra in configs:
        row = bench_train(name, size, factors, batch, dtype, args.steps, args.warmup, features,
                          extra)
        row['conv_impl'] = extra.get('conv_impl')
        if args.vs_torch and name == 'reference' and dtype == 'float32' and not args.quick:
          # Alternate ours and torch (with glibc's default malloc, and with the fast malloc
          # ours runs with), twice, so drift on a shared machine hits every column.
          ours, torch_same, torch_default = [row['images_per_s']], [], []
          for round_ in range(2):
            if round_:
              ours.append(bench_train(name, size, factors, batch, dtype, args.steps,
                                      args.warmup, features, extra)['images_per_s'])
            for fast_malloc, rates in ((True, torch_same), (False, torch_default)):
              rate = run_torch(args.torch_python, size, row['factors'], batch, args.steps,
                               args.warmup, fast_malloc, args.torch_peer)
              if rate:
                rates.append(rate)
          row['images_per_s'] = statistics.mean(ours)
          if torch_same:
            row['torch_images_per_s'] = statistics.mean(torch_same)
            row['ratio_vs_torch'] = row['images_per_s'] / row['torch_images_per_s']
          if torch_default:
            row['torch_default_malloc_images_per_s'] = statistics.mean(torch_default)
            row['ratio_vs_torch_default_malloc'] = (row['images_per_s'] /
                                                    row['torch_default_malloc_images_per_s'])
        rows.append(row)
        gflops = row['gflops']
        print(f'{name:<10} {size:>3} {str(row["factors"] or "-"):<12} '
              f'{row["conv_impl"] or "-":<6} {batch:>5} {dtype:<8} {row["images_per_s"]:9.1f} '
              f'{row["median_step_ms"]:8.1f} {row["compile_s"]:9.1f} '
              f'{gflops if gflops else float("nan"):8.1f} '
              f'{(gflops / matmul) if gflops else float("nan"):6.2f} '
              f'{row["gb_per_step"] or float("nan"):7.2f} {row["gb_per_s"] or float("nan"):6.1f} '
              f'{row["torch_images_per_s"] or float("nan"):8.1f} '
              f'{row["ratio_vs_torch"] or float("nan"):6.2f} '
              f'{row["torch_default_malloc_images_per_s"] or float("nan"):8.1f} '
              f'{row["ratio_vs_torch_default_malloc"] or float("nan"):6.2f}', flush=True)
  extra_rows = {}
  if 'pipeline' not in args.skip:
    extra_rows['pipeline'] = bench_pipeline(args.quick, args.data_dir)
    for r in extra_rows['pipeline']:
      print(f'input pipeline {r["source"]:<8} cold {r["cold_images_per_s"]:10.0f} images/s   '
            f'warm {r["warm_images_per_s"]:10.0f} images/s')
  if 'inference' not in args.skip:
    extra_rows['inference'] = bench_inference(args.quick)
    for r in extra_rows['inference']:
      print(f'{r["task"]:<42} {r["megapixels_per_s"]:8.2f} megapixels/s')
  if args.gan:
    extra_rows['gan'] = [bench_gan(args.gan, args.steps, args.warmup, args.quick)]
    for r in extra_rows['gan']:
      print(f'GAN step of {r["preset"]} ({r["generator"]} + {r["discriminator"]} '
            f'discriminator + {r["perceptual_net"]}, batch {r["batch"]} of {r["hr_size"]}^2): '
            f'{r["gan_step_ms"]:.0f} ms vs PSNR step {r["psnr_step_ms"]:.0f} ms: '
            f'{r["gan_over_psnr"]:.2f}x; jitted alone, the VGG loss (forward on output and '
            f'HR, backward) {r["perceptual_ms"]:.0f} ms and the discriminator\'s passes (real; '
            f'fake, pulled back twice) {r["discriminator_ms"]:.0f} ms')
      if 'torch_gan_step_ms' in r:
        print(f'GAN step vs PyTorch (experiments/torch_esrgan_step.py, alternating): flax_sr '
              f'{r["gan_step_alternating_ms"]:.0f} ms, PyTorch {r["torch_gan_step_ms"]:.0f} ms: '
              f'{r["gan_vs_torch"]:.2f}x')
  if args.degradation:
    sizes = (2, 32, 4) if args.quick else (16, 256, 4)
    extra_rows['degradation'] = [{**bench_degradation(*sizes, args.steps, args.warmup),
                                  # 96 px: Real-ESRGAN's reflect padding needs 11 LR pixels
                                  **torch_degradation_peer(*((2, 96, 4) if args.quick else sizes),
                                                           4 if args.quick else 20)}]
    for r in extra_rows['degradation']:
      print(f'Real-ESRGAN degradation, batch {r["batch"]} of {r["hr_size"]}^2 at x{r["scale"]}: '
            f'{r["degradation_ms"]:.0f} ms alone; {r["model"]} step {r["bicubic_step_ms"]:.0f} '
            f'ms bicubic vs {r["realesrgan_step_ms"]:.0f} ms realesrgan: the degradation is '
            f'{100 * r["degradation_share_of_step"]:.0f}% of the step')
      if 'torch_degradation_ms' in r:
        print(f'degradation vs NumPy + PyTorch (experiments/torch_degradation.py, mean of '
              f'{r["calls"]} calls each, alternating): flax_sr {r["jax_degradation_ms"]:.0f} ms '
              f'(compile {r["jax_compile_s"]:.1f} s), PyTorch {r["torch_degradation_ms"]:.0f} ms '
              f'(of which NumPy kernels {r["torch_kernels_ms"]:.1f} ms): '
              f'{r["degradation_vs_torch"]:.2f}x; first-stage pixels over HR, mean: flax_sr '
              f'{r["stage1_buffer_area_over_hr"]:.2f} (its buffers), PyTorch '
              f'{r["torch_stage1_mean_area_over_hr"]:.2f}')
        print(f'{"stage at HR size":<24} {"flax_sr ms":>10} {"PyTorch ms":>10} {"ratio":>6}')
        for stage in r['stages']:
          print(f'{stage["stage"]:<24} {stage["jax_ms"]:10.1f} {stage["torch_ms"]:10.1f} '
                f'{stage["torch_ms"] / stage["jax_ms"]:6.2f}x')
  print(f'peak memory: {peak_memory_mb():.0f} MiB')
  if args.output_json:
    path = pathlib.Path(args.output_json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=2))
    path.with_name(path.stem + '_extra.json').write_text(json.dumps(
        {'device': device_name(), 'matmul_gflops': matmul, 'peak_memory_mb': peak_memory_mb(),
         **extra_rows}, indent=2))
    print(f'wrote {path}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
