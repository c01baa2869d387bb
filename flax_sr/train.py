"""Training state and the pure steps: ``train_step``, ``eval_step`` and ``upscale``.

The steps are pure functions of arrays (no globals, no Python side effects); the loop in
``trainer.py`` compiles them with ``jax.jit`` over a device mesh. They are also ``pmap``-ready:
given ``axis_name`` they average gradients, BatchNorm statistics and the loss across devices
with ``lax.pmean`` (and BatchNorm normalises over the global batch), and without it they run on
one device unchanged.

A batch carries HR images as uint8 (``batch['hr']``: (B, H, W, 3)); the step makes the LR input
itself with the MATLAB-compatible bicubic downscale (``imresize.bicubic_downscale``), so LR
images are exactly what the SR literature feeds its models. A batch of real LR/HR pairs also
carries ``batch['lr']`` (uint8 (B, H/scale, W/scale, 3)), which is then the input as it is.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct
from flax.training import train_state

from flax_sr import lpips as lpips_lib
from flax_sr import resize as resize_lib
from flax_sr import metrics as metrics_lib
from flax_sr import models
from flax_sr import shape_buckets
from flax_sr.config import LOSSES, LR_SCHEDULES as SCHEDULES


class TrainState(train_state.TrainState):
  """``TrainState`` plus BatchNorm statistics, an optional weight EMA and the model itself.

  ``model`` is static (not a pytree leaf): it is the configuration the steps rebuild the network
  from, so a state is all a step needs.
  """
  batch_stats: Any = struct.field(default_factory=dict)
  ema_params: Any = None
  model: nn.Module = struct.field(pytree_node=False, default=None)


def make_schedule(learning_rate: float = 1e-4, *, schedule: str = 'constant',
                  total_steps: int | None = None, warmup_steps: int = 0) -> optax.Schedule:
  """The learning rate as a function of the step: constant, or warm-up + cosine decay to 1%."""
  if schedule == 'constant':
    return optax.constant_schedule(learning_rate)
  if schedule == 'cosine':
    if not total_steps:
      raise ValueError('the cosine schedule needs total_steps')
    return optax.warmup_cosine_decay_schedule(
        0.0, learning_rate, warmup_steps=max(warmup_steps, 1),
        decay_steps=max(total_steps, warmup_steps + 1), end_value=learning_rate * 1e-2)
  raise ValueError(f'schedule must be one of {SCHEDULES}, got {schedule!r}')


def make_optimizer(learning_rate: float = 1e-4, *, schedule: str = 'constant',
                   total_steps: int | None = None, warmup_steps: int = 0,
                   grad_clip_norm: float | None = None) -> optax.GradientTransformation:
  """Adam with ``make_schedule``'s learning rate (the schedule lives in the optimizer state's
  step count, so a resumed run continues it exactly)."""
  lr = make_schedule(learning_rate, schedule=schedule, total_steps=total_steps,
                     warmup_steps=warmup_steps)
  if schedule == 'constant':
    lr = learning_rate  # a float keeps the optimizer state of earlier checkpoints
  adam = optax.adam(lr)
  if grad_clip_norm:
    return optax.chain(optax.clip_by_global_norm(grad_clip_norm), adam)
  return adam


def create_train_state(rng: jax.Array, model: nn.Module, tx: optax.GradientTransformation, *,
                       lr_shape: Sequence[int] = (1, 16, 16, 3), ema: bool = False) -> TrainState:
  """Initialises parameters (and BatchNorm statistics) for ``model`` with an LR input shape."""
  # Only the initialisers run (the forward pass is traced for shapes, not computed): 2-2.5x
  # faster than model.init for the zoo's models, and the same values. Compiling init instead
  # helps small models but takes 3x longer for RRDBNet (it compiles the whole forward).
  variables = model.lazy_init(rng, jax.ShapeDtypeStruct(tuple(lr_shape), jnp.float32),
                              train=False)
  params = variables['params']
  return TrainState.create(
      apply_fn=model.apply, params=params, tx=tx,
      batch_stats=variables.get('batch_stats', {}),
      ema_params=jax.tree.map(jnp.copy, params) if ema else None, model=model)


def degrade(hr_images: jnp.ndarray, scale: int) -> jnp.ndarray:
  """HR uint8 -> LR uint8, the SR degradation (MATLAB bicubic downscale by ``scale``)."""
  return resize_lib.bicubic_downscale(hr_images, scale)


def training_lr(hr_images: jnp.ndarray, scale: int, step, degradation=None,
                axis_name: str | None = None, paired_lr: jnp.ndarray | None = None
                ) -> jnp.ndarray:
  """A train step's uint8 LR input: ``paired_lr`` when the data brings it (real LR/HR pairs,
  ``batch['lr']``), else the bicubic ``degrade``, or ``degradation`` (a
  ``degradations.TrainingDegradation``: random per image, drawn from its seed and ``step``)."""
  if paired_lr is not None:
    expected = (hr_images.shape[0], hr_images.shape[1] // scale, hr_images.shape[2] // scale,
                hr_images.shape[3])
    if paired_lr.shape != expected:
      raise ValueError(f"batch['lr'] is {paired_lr.shape}; x{scale} of HR {hr_images.shape} "
                       f'needs {expected}')
    return paired_lr
  if degradation is None:
    return degrade(hr_images, scale)
  return degradation(hr_images, scale, step, axis_name)


def degradation_from_config(config):
  """The ``degradation`` argument of the train steps for ``config`` (None: bicubic)."""
  settings = config.degradation_settings()
  if settings is None:
    return None
  from flax_sr import degradations  # JAX-heavy; only runs that use it import it
  return degradations.TrainingDegradation(settings, config.seed)


def pixel_loss(outputs: jnp.ndarray, targets: jnp.ndarray, kind: str = 'mse') -> jnp.ndarray:
  """Mean pixel loss in float32: 'mse', 'l1' or 'charbonnier' (sqrt(d^2 + 1e-6))."""
  diff = outputs.astype(jnp.float32) - targets.astype(jnp.float32)
  if kind == 'mse':
    return jnp.mean(jnp.square(diff))
  if kind == 'l1':
    return jnp.mean(jnp.abs(diff))
  if kind == 'charbonnier':
    return jnp.mean(jnp.sqrt(jnp.square(diff) + 1e-6))
  raise ValueError(f'loss must be one of {LOSSES}, got {kind!r}')


def _model_with_axis(model: nn.Module, axis_name: str | None) -> nn.Module:
  """The model with cross-device BatchNorm when the step runs under a named axis."""
  if axis_name is not None and hasattr(model, 'axis_name'):
    return model.clone(axis_name=axis_name)
  return model


def _variables(params, batch_stats):
  return {'params': params, 'batch_stats': batch_stats} if batch_stats else {'params': params}


def update_ema(state: TrainState, new_state: TrainState, ema_decay: float) -> TrainState:
  """``new_state`` with its weight EMA moved towards its new parameters (when kept).

  Warm-up (as TensorFlow's ExponentialMovingAverage with num_updates): early on the average
  follows the weights closely instead of clinging to the initialisation for ~1/(1-decay)
  steps, which matters for short runs.
  """
  if state.ema_params is None:
    return new_state
  step = state.step.astype(jnp.float32)
  decay = jnp.minimum(ema_decay, (1.0 + step) / (10.0 + step))
  return new_state.replace(ema_params=optax.incremental_update(
      new_state.params, state.ema_params, step_size=1.0 - decay))


def train_step(state: TrainState, batch: dict[str, jnp.ndarray], *, loss: str = 'mse',
               axis_name: str | None = None, ema_decay: float = 0.999, degradation=None
               ) -> tuple[TrainState, dict[str, jnp.ndarray]]:
  """One optimisation step on a batch of uint8 HR images; returns the new state and metrics
  (the loss and the global norms of the gradient and of the updated parameters). The LR
  input is made on the device: bicubic, or ``degradation`` (see ``training_lr``)."""
  model = _model_with_axis(state.model, axis_name)
  hr = batch['hr']
  lr = metrics_lib.to_float(training_lr(hr, model.scale, state.step, degradation, axis_name,
                                        paired_lr=batch.get('lr')))
  target = metrics_lib.to_float(hr)

  def loss_fn(params):
    outputs, updates = model.apply(_variables(params, state.batch_stats), lr, train=True,
                                   mutable=['batch_stats'])
    return pixel_loss(outputs, target, loss), updates.get('batch_stats', {})

  (loss_value, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  if axis_name is not None:
    grads = jax.lax.pmean(grads, axis_name)
    batch_stats = jax.lax.pmean(batch_stats, axis_name)
    loss_value = jax.lax.pmean(loss_value, axis_name)
  new_state = update_ema(state, state.apply_gradients(grads=grads, batch_stats=batch_stats),
                         ema_decay)
  # Global norms, logged as big_vision does: a spike in the gradient norm precedes divergence.
  return new_state, {'loss': loss_value, 'grad_norm': optax.tree.norm(grads),
                     'param_norm': optax.tree.norm(new_state.params)}


def inference_variables(state: TrainState) -> dict[str, Any]:
  """The variables used for evaluation: the weight EMA when kept, else the trained weights."""
  params = state.ema_params if state.ema_params is not None else state.params
  return _variables(params, state.batch_stats)


def _dihedral(x: jnp.ndarray, k: int, flip: bool) -> jnp.ndarray:
  """One of the 8 flips/rotations of NHWC images."""
  x = jnp.flip(x, axis=2) if flip else x
  return jnp.rot90(x, k, axes=(1, 2))


def _undo_dihedral(y: jnp.ndarray, k: int, flip: bool) -> jnp.ndarray:
  y = jnp.rot90(y, -k, axes=(1, 2))
  return jnp.flip(y, axis=2) if flip else y


def upscale(variables: dict[str, Any], lr_images: jnp.ndarray, *, model: nn.Module,
            self_ensemble: bool = False, lr_size: jnp.ndarray | None = None) -> jnp.ndarray:
  """Super-resolves LR images (float in [0, 1] or uint8; (N, H, W, 3) or one (H, W, 3)) with
  ``model`` and its ``variables``; returns float32 in [0, 1] of (H*s, W*s).

  ``self_ensemble``: the geometric self-ensemble of EDSR+ (Lim et al. 2017): the mean of the
  outputs for the 8 flips/rotations of the input, each transformed back. 8x the compute, and
  usually +0.1 dB; papers report it as a separate row ("+").
  ``lr_size`` (N, 2): images padded into a shape bucket, each with this real size; their
  outputs equal, on the real region (the top-left ``lr_size * s``), those of each image alone
  (``shape_buckets``; convolutional models only, without the self-ensemble).
  """
  x = metrics_lib.to_float(lr_images)
  single = x.ndim == 3
  if single:
    x = x[None]
  if lr_size is not None:
    if not shape_buckets.supports_model(model, self_ensemble):
      raise ValueError(f'{type(model).__name__}{" with the self-ensemble" * self_ensemble} '
                       'cannot run on shape buckets (see shape_buckets.supports_model)')
    x = shape_buckets.edge_fill(x, lr_size)  # what a bicubic global residual reads
    with shape_buckets.masked_convolutions(lr_size, x.shape[1:3]):
      out = model.apply(variables, x, train=False)
  elif self_ensemble:
    out = sum(_undo_dihedral(model.apply(variables, _dihedral(x, k, flip), train=False), k, flip)
              for k in range(4) for flip in (False, True)) / 8.0
  else:
    out = model.apply(variables, x, train=False)
  out = jnp.clip(out, 0.0, 1.0)
  return out[0] if single else out


def nearest_upscale(lr_images: jnp.ndarray, scale: int) -> jnp.ndarray:
  return models.upsample_nearest(lr_images, scale)


def eval_sums(model: nn.Module, variables: dict[str, Any], batch: dict[str, jnp.ndarray], *,
              axis_name: str | None = None, baselines: Sequence[str] = ('bicubic',),
              self_ensemble: bool = False, lpips_weights: dict[str, Any] | None = None
              ) -> dict[str, jnp.ndarray]:
  """Evaluates ``model`` with ``variables`` on a batch of uint8 HR images: per-row sums of
  PSNR/SSIM (Y and RGB, shave = scale) and of the MSE.

  Rows are 'model' and each baseline ('bicubic', 'nearest'). ``batch['mask']`` (optional, bool
  (B,)) marks real images in a padded last batch; ``count`` is the number of real images, so
  means are ``sums / count``. ``batch['gray']`` (optional, bool (B,)) marks grayscale HR
  images, whose Y is their grey level. Outputs are quantized to 8 bits, as saved images are.
  ``self_ensemble`` evaluates the model with the x8 geometric self-ensemble (see ``upscale``).
  ``lpips_weights`` (``lpips.load_weights``) add each row's LPIPS, on RGB of the whole image.
  ``batch['hr_size']`` (optional, int (B, 2)): images padded into a shape bucket, each scored
  on its real top-left region exactly as alone (``shape_buckets``).
  """
  model = _model_with_axis(model, axis_name)
  scale = model.scale
  hr = batch['hr']
  mask = batch.get('mask', jnp.ones(hr.shape[:1], bool)).astype(jnp.float32)
  # Images padded into a shape bucket (``shape_buckets``): the padding is edge-filled, which
  # is what the MATLAB resizes below read beyond a border, and every score is masked to it.
  hr_size = batch.get('hr_size')
  lr_size = None if hr_size is None else hr_size // scale
  if hr_size is not None:
    hr = shape_buckets.edge_fill(hr, hr_size)
  # Precomputed LR (``batch['lr']``, e.g. realistically degraded evaluation inputs) or bicubic.
  lr_uint8 = batch['lr'] if 'lr' in batch else degrade(hr, scale)
  if lr_size is not None:
    lr_uint8 = shape_buckets.edge_fill(lr_uint8, lr_size)
  target = metrics_lib.to_float(hr)
  outputs = upscale(variables, lr_uint8, model=model, self_ensemble=self_ensemble,
                    lr_size=lr_size)
  rows = {'model': metrics_lib.quantize(outputs)}
  if 'bicubic' in baselines:
    rows['bicubic'] = metrics_lib.to_float(resize_lib.imresize(lr_uint8, scale))
  if 'nearest' in baselines:
    rows['nearest'] = metrics_lib.to_float(nearest_upscale(lr_uint8, scale))
  sums = {'count': jnp.sum(mask),
          'model/loss': jnp.sum(metrics_lib.mean_over_images(jnp.square(outputs - target),
                                                             hr_size) * mask)}
  for row, images in rows.items():
    for name, values in metrics_lib.sr_metrics(images, target, scale, batch.get('gray'),
                                               hr_size).items():
      sums[f'{row}/{name}'] = jnp.sum(values * mask)
    if lpips_weights is not None:
      sums[f'{row}/lpips'] = jnp.sum(lpips_lib.lpips_distance(
          lpips_weights, images, target, valid_hw=hr_size) * mask)
  if axis_name is not None:
    sums = jax.lax.psum(sums, axis_name)
  return sums


def eval_step(state: TrainState, batch: dict[str, jnp.ndarray], *,
              axis_name: str | None = None, baselines: Sequence[str] = ('bicubic',),
              lpips_weights: dict[str, Any] | None = None) -> dict[str, jnp.ndarray]:
  """``eval_sums`` of the state's model with its inference weights (the EMA when kept)."""
  return eval_sums(state.model, inference_variables(state), batch, axis_name=axis_name,
                   baselines=baselines, lpips_weights=lpips_weights)


def summarize_eval(sums: dict[str, Any]) -> dict[str, dict[str, float]]:
  """Host side: {'model/psnr_y': sum, ..., 'count': n} -> {'model': {'psnr_y': mean, ...}}."""
  count = float(sums['count'])
  table: dict[str, dict[str, float]] = {}
  for key, value in sums.items():
    if key == 'count':
      continue
    row, name = key.split('/')
    table.setdefault(row, {})[name] = float(value) / max(count, 1.0)
  return table


def sum_eval(a: dict[str, Any] | None, b: dict[str, Any]) -> dict[str, Any]:
  """Accumulates eval sums across batches (on the host, in float64)."""
  b = {k: float(v) for k, v in b.items()}
  if a is None:
    return b
  return {k: a[k] + b[k] for k in a}


def model_from_config(config) -> nn.Module:
  """The network a ``Config`` describes (the single place that maps options to a model)."""
  dtype = jnp.bfloat16 if config.dtype == 'bfloat16' else jnp.float32
  return models.create_model(config.model, scale=config.scale, dtype=dtype,
                             global_residual=config.global_residual, **config.model_kwargs())


def state_from_config(config, total_steps: int | None = None) -> TrainState:
  """A freshly initialised training state for ``config`` (seeded by ``config.seed``)."""
  model = model_from_config(config)
  tx = make_optimizer(config.learning_rate, schedule=config.lr_schedule, total_steps=total_steps,
                      warmup_steps=config.warmup_steps, grad_clip_norm=config.grad_clip_norm)
  lr_shape = (1, config.input_size, config.input_size, 3)
  return create_train_state(jax.random.key(config.seed), model, tx, lr_shape=lr_shape,
                            ema=config.ema_decay > 0)


def with_weights(state: TrainState, variables: dict[str, Any]) -> TrainState:
  """``state`` with its parameters (and EMA, and BatchNorm statistics when the model has them)
  taken from ``variables``, which must have the same structure and shapes (``--init_from``).
  The optimiser state stays fresh: fine-tuning starts its own moments."""
  params = variables['params']
  expected = jax.tree.map(jnp.shape, state.params)
  if jax.tree.map(jnp.shape, params) != expected:
    raise ValueError('the weights do not have the shapes of the model')
  params = jax.tree.map(lambda new, old: jnp.asarray(new, old.dtype), params, state.params)
  replaced = state.replace(params=params)
  if state.ema_params is not None:
    # Copies: the compiled step donates the state, and one buffer cannot be donated twice.
    replaced = replaced.replace(ema_params=jax.tree.map(jnp.copy, params))
  if state.batch_stats and 'batch_stats' in variables:
    replaced = replaced.replace(batch_stats=variables['batch_stats'])
  return replaced
