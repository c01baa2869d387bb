"""Perceptual (GAN) training: the losses and the pure ``gan_train_step``.

ESRGAN's second stage (Wang et al. 2018) and Real-ESRGAN's (2021): the generator minimises
``pixel_weight * pixel + perceptual_weight * perceptual + adversarial_weight * adversarial``
and a discriminator learns to tell HR images from its outputs. One step updates both, in
ESRGAN's order (BasicSR's ``ESRGANModel.optimize_parameters``): the generator's output is
computed once; the generator is updated against the discriminator as it was; then the
discriminator is updated on the real images and on that same output. The two optimisers live
in one state pytree (``GANTrainState``), so checkpoints, resume and multi-device are the PSNR
path's.

- perceptual: L1 between ImageNet VGG features (``flax_sr.vgg``) of output and HR, summed
  over layers with weights (Real-ESRGAN's by default; ESRGAN's single conv5_4 as a setting).
- adversarial, 'ragan' (ESRGAN): relativistic average, D(x) - mean D(y), binary cross-entropy
  on logits, both terms for the generator; 'vanilla' (Real-ESRGAN): the non-saturating
  -log D(G(x)) and the usual discriminator loss. Means over the batch (and, for the U-Net
  discriminator, over pixels).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from flax_sr import discriminators as discriminators_lib
from flax_sr import metrics as metrics_lib
from flax_sr import train as train_lib
from flax_sr import vgg as vgg_lib


class GANTrainState(train_lib.TrainState):
  """The generator's ``TrainState`` (params, EMA, BatchNorm statistics, optimiser) plus the
  discriminator's parameters, statistics and optimiser state."""
  disc_params: Any = None
  disc_batch_stats: Any = struct.field(default_factory=dict)
  disc_opt_state: Any = None
  disc_tx: optax.GradientTransformation = struct.field(pytree_node=False, default=None)
  discriminator: nn.Module = struct.field(pytree_node=False, default=None)


@dataclasses.dataclass(frozen=True)
class GANLosses:
  """The generator's loss terms and weights (static: hashable, for ``jit``)."""
  pixel_loss: str = 'l1'
  pixel_weight: float = 1e-2
  perceptual_weight: float = 1.0
  perceptual_layers: tuple[tuple[str, float], ...] = (('conv5_3', 1.0),)
  adversarial_weight: float = 5e-3
  gan_loss: str = 'ragan'
  vgg_conv_impl: str = 'xla'  # 'tuned' on CPU: the VGG is most of a GAN step's work there

  @classmethod
  def from_config(cls, config) -> 'GANLosses':
    return cls(pixel_loss=config.loss, pixel_weight=config.pixel_weight,
               perceptual_weight=config.perceptual_weight,
               perceptual_layers=config.perceptual_layer_weights(),
               adversarial_weight=config.adversarial_weight, gan_loss=config.gan_loss,
               vgg_conv_impl=config.resolved_conv_impl())


def gan_state(state: train_lib.TrainState, discriminator: nn.Module,
              disc_tx: optax.GradientTransformation, rng: jax.Array,
              hr_shape: Sequence[int]) -> GANTrainState:
  """A generator state with a freshly initialised discriminator for HR images of
  ``hr_shape`` (N, H, W, 3)."""
  # Compiled as one program: eagerly, each of the many small initialisation ops compiles alone.
  variables = jax.jit(lambda key: discriminator.init(key, jnp.zeros(hr_shape, jnp.float32),
                                                     train=False))(rng)
  fields = {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}
  return GANTrainState(**fields, disc_params=variables['params'],
                       disc_batch_stats=variables.get('batch_stats', {}),
                       disc_opt_state=disc_tx.init(variables['params']), disc_tx=disc_tx,
                       discriminator=discriminator)


def perceptual_loss(vgg_weights: dict[str, Any], outputs: jnp.ndarray, targets: jnp.ndarray,
                    layers: Sequence[tuple[str, float]], conv_impl: str = 'xla'
                    ) -> jnp.ndarray:
  """sum_l weight_l * mean |VGG_l(outputs) - VGG_l(targets)| (targets get no gradient)."""
  names = [name for name, _ in layers]
  out = vgg_lib.features(vgg_weights, outputs, names, conv_impl)
  ref = vgg_lib.features(vgg_weights, jax.lax.stop_gradient(targets), names, conv_impl)
  return sum(weight * jnp.mean(jnp.abs(out[name] - ref[name])) for name, weight in layers)


def _bce(logits: jnp.ndarray, label: float) -> jnp.ndarray:
  return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, jnp.full_like(logits, label)))


def _mean(x: jnp.ndarray, axis_name: str | None) -> jnp.ndarray:
  """The mean over the global batch, and over pixels for a per-pixel discriminator (BasicSR's
  ``torch.mean(pred)``): what the relativistic loss compares each logit with."""
  mean = jnp.mean(x)
  return jax.lax.pmean(mean, axis_name) if axis_name is not None else mean


def generator_adversarial_loss(real_logits: jnp.ndarray, fake_logits: jnp.ndarray,
                               kind: str = 'ragan', axis_name: str | None = None
                               ) -> jnp.ndarray:
  """The generator's adversarial loss; ``real_logits`` are treated as constants."""
  real_logits = jax.lax.stop_gradient(real_logits)
  if kind == 'ragan':
    return (_bce(real_logits - _mean(fake_logits, axis_name), 0.0)
            + _bce(fake_logits - _mean(real_logits, axis_name), 1.0)) / 2
  if kind == 'vanilla':
    return _bce(fake_logits, 1.0)
  raise ValueError(f'gan_loss must be ragan or vanilla, got {kind!r}')


def discriminator_loss(real_logits: jnp.ndarray, fake_logits: jnp.ndarray,
                       kind: str = 'ragan', axis_name: str | None = None) -> jnp.ndarray:
  """The discriminator's loss; each term's relativistic mean is a constant, as in ESRGAN."""
  if kind == 'ragan':
    fake_mean = jax.lax.stop_gradient(_mean(fake_logits, axis_name))
    real_mean = jax.lax.stop_gradient(_mean(real_logits, axis_name))
    return (_bce(real_logits - fake_mean, 1.0) + _bce(fake_logits - real_mean, 0.0)) / 2
  if kind == 'vanilla':
    return _bce(real_logits, 1.0) + _bce(fake_logits, 0.0)
  raise ValueError(f'gan_loss must be ragan or vanilla, got {kind!r}')


def _apply_generator(model, params, batch_stats, lr):
  outputs, updates = model.apply(train_lib._variables(params, batch_stats), lr, train=True,
                                 mutable=['batch_stats'])
  return outputs, updates.get('batch_stats', {})


def gan_train_step(state: GANTrainState, batch: dict[str, jnp.ndarray],
                   vgg_weights: dict[str, Any], *, losses: GANLosses = GANLosses(),
                   axis_name: str | None = None, ema_decay: float = 0.999, degradation=None
                   ) -> tuple[GANTrainState, dict[str, jnp.ndarray]]:
  """One generator update and one discriminator update on a batch of uint8 HR images.

  ``vgg_weights`` (``vgg.load_weights()``) are an argument rather than part of the state: the
  frozen network is neither trained nor checkpointed. Returns the new state and metrics:
  ``loss`` (the generator's total, which the NaN guard watches), each weighted term's raw
  value, ``d_loss``, the discriminator's mean logits on real and fake (``d_real``,
  ``d_fake``), and the generator's gradient and parameter norms.
  """
  model = train_lib._model_with_axis(state.model, axis_name)
  disc = train_lib._model_with_axis(state.discriminator, axis_name)
  hr = batch['hr']
  lr = metrics_lib.to_float(train_lib.training_lr(hr, model.scale, state.step, degradation,
                                                  axis_name, paired_lr=batch.get('lr')))
  target = metrics_lib.to_float(hr)

  def apply_disc(variables, images):
    logits, updates = disc.apply(variables, images, train=True, mutable=['batch_stats'])
    return logits, updates.get('batch_stats', {})

  # The discriminator's pass on the real images is the same in both updates (the same
  # parameters, statistics and images; the power iteration and BatchNorm's running averages
  # carry no gradient), so it runs once: the generator reads its logits, and the
  # discriminator's gradient goes back through its saved linearisation.
  real_logits, real_vjp, real_stats = jax.vjp(
      lambda disc_params: apply_disc({'params': disc_params,
                                      'batch_stats': state.disc_batch_stats}, target),
      state.disc_params, has_aux=True)

  outputs, generator_vjp, batch_stats = jax.vjp(
      lambda params: _apply_generator(model, params, state.batch_stats, lr), state.params,
      has_aux=True)

  def reference_losses(outputs):
    pixel = train_lib.pixel_loss(outputs, target, losses.pixel_loss)
    perceptual = perceptual_loss(vgg_weights, outputs, target, losses.perceptual_layers,
                                 losses.vgg_conv_impl)
    return (losses.pixel_weight * pixel + losses.perceptual_weight * perceptual,
            {'pixel_loss': pixel, 'perceptual_loss': perceptual})

  (reference_total, terms), reference_cotangent = jax.value_and_grad(
      reference_losses, has_aux=True)(outputs)
  # The fake pass, like the real one, runs once for both updates: the generator's
  # adversarial gradient goes back through it to the images (the discriminator as it is,
  # with the spectral norms' state the real pass left), the discriminator's to its parameters.
  fake_logits, fake_vjp, disc_stats = jax.vjp(
      lambda disc_params, images: apply_disc({'params': disc_params,
                                              'batch_stats': real_stats}, images),
      state.disc_params, outputs, has_aux=True)
  adversarial, adversarial_cotangent = jax.value_and_grad(
      lambda fake_logits: generator_adversarial_loss(real_logits, fake_logits,
                                                     losses.gan_loss, axis_name))(fake_logits)
  _, adversarial_image_cotangent = fake_vjp(
      losses.adversarial_weight * adversarial_cotangent)
  total = reference_total + losses.adversarial_weight * adversarial
  terms['adversarial_loss'] = adversarial
  (grads,) = generator_vjp(reference_cotangent
                           + adversarial_image_cotangent.astype(reference_cotangent.dtype))

  d_loss, (real_cotangent, fake_cotangent) = jax.value_and_grad(
      lambda real_logits, fake_logits: discriminator_loss(
          real_logits, fake_logits, losses.gan_loss, axis_name), argnums=(0, 1))(
              real_logits, fake_logits)
  disc_grads = jax.tree.map(jnp.add, real_vjp(real_cotangent)[0],
                            fake_vjp(fake_cotangent)[0])
  scalars = {'loss': total, 'd_loss': d_loss, 'd_real': jnp.mean(real_logits),
             'd_fake': jnp.mean(fake_logits), **terms}
  if axis_name is not None:
    grads, disc_grads, batch_stats, disc_stats, scalars = jax.lax.pmean(
        (grads, disc_grads, batch_stats, disc_stats, scalars), axis_name)
  disc_updates, disc_opt_state = state.disc_tx.update(disc_grads, state.disc_opt_state,
                                                      state.disc_params)
  new_state = state.apply_gradients(grads=grads, batch_stats=batch_stats).replace(
      disc_params=optax.apply_updates(state.disc_params, disc_updates),
      disc_opt_state=disc_opt_state, disc_batch_stats=disc_stats)
  new_state = train_lib.update_ema(state, new_state, ema_decay)
  return new_state, {**scalars, 'grad_norm': optax.tree.norm(grads),
                     'param_norm': optax.tree.norm(new_state.params),
                     'd_grad_norm': optax.tree.norm(disc_grads)}


def create_discriminator(config) -> nn.Module:
  """The discriminator a ``Config`` describes."""
  dtype = jnp.bfloat16 if config.dtype == 'bfloat16' else jnp.float32
  return discriminators_lib.create_discriminator(
      config.discriminator, features=config.disc_features, input_size=config.hr_size,
      dtype=dtype, conv_impl=config.resolved_conv_impl())


def state_from_config(config, total_steps: int | None = None) -> GANTrainState:
  """``train.state_from_config`` plus the discriminator and its optimiser (seeded from
  ``config.seed``, independently of the generator's initialisation)."""
  state = train_lib.state_from_config(config, total_steps)
  disc_tx = train_lib.make_optimizer(
      config.disc_learning_rate or config.learning_rate, schedule=config.lr_schedule,
      total_steps=total_steps, warmup_steps=config.warmup_steps)
  rng = jax.random.fold_in(jax.random.key(config.seed), 1)
  return gan_state(state, create_discriminator(config), disc_tx, rng,
                   (1, config.hr_size, config.hr_size, 3))


def run_state_from_config(config, total_steps: int | None = None) -> train_lib.TrainState:
  """The training state of a run of ``config`` (what its checkpoints hold): the generator's,
  plus the discriminator's when the run is adversarial (``--discriminator``)."""
  if config.discriminator:
    return state_from_config(config, total_steps)
  return train_lib.state_from_config(config, total_steps)
