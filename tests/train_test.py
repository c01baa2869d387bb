"""The pure steps: a real step on mock STL-10, overfitting, BatchNorm state, and composition
with jit / vmap / grad and pmap's axis name."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import flax_sr
from flax_sr import input_pipeline, train


def tiny_state(scale=3, features=8, lr=1e-3, lr_size=8, model='reference', **kwargs):
  model = flax_sr.create_model(model, scale=scale, features=features, **kwargs)
  return train.create_train_state(jax.random.key(0), model, optax.adam(lr),
                                  lr_shape=(1, lr_size, lr_size, 3))


def random_hr(n=4, size=24, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_train_step_on_mock_stl10(mock_stl10):
  source = input_pipeline.load_stl10(mock_stl10, 'unlabelled')
  stream = input_pipeline.TrainStream(source, 8, seed=0)
  batch, _ = next(stream)
  stream.close()
  state = tiny_state(lr_size=32)
  step = jax.jit(train.train_step)
  new_state, metrics = step(state, batch)
  assert int(new_state.step) == 1
  assert np.isfinite(float(metrics['loss']))
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state.params, new_state.params)
  assert all(jax.tree.leaves(changed))


@pytest.mark.parametrize('model, kwargs', [('reference', {}), ('espcn', {}),
                                           ('edsr', {'num_res_blocks': 2})])
def test_overfits_a_fixed_batch(model, kwargs):
  """Gradients, BatchNorm and the optimizer are wired: loss falls 10x on one small batch."""
  hr = random_hr(4, 24)
  # A smooth target is learnable by a tiny net; random noise is not.
  hr = np.asarray(jax.image.resize(hr[:, :6, :6].astype(np.float32), (4, 24, 24, 3), 'linear'),
                  np.uint8)
  state = tiny_state(features=16, lr=3e-3, model=model, **kwargs)
  step = jax.jit(train.train_step)
  first = None
  for _ in range(300):
    state, metrics = step(state, {'hr': hr})
    first = float(metrics['loss']) if first is None else first
  assert float(metrics['loss']) < first / 10, (first, float(metrics['loss']))


@pytest.mark.parametrize('model, kwargs', [('reference', {}), ('swinir', {'depths': (1,),
                                                                            'num_heads': (2,)})])
def test_initial_state_equals_model_init_bitwise(model, kwargs):
  """The state's initialisation runs only the initialisers (lazily), and a seed still gives
  exactly the weights and BatchNorm statistics that ``model.init`` gives."""
  state = tiny_state(model=model, lr_size=12, **kwargs)
  variables = state.model.init(jax.random.key(0), jnp.zeros((1, 12, 12, 3)), train=False)
  assert jax.tree.structure(state.params) == jax.tree.structure(variables['params'])
  for got, want in zip(jax.tree.leaves((state.params, state.batch_stats)),
                       jax.tree.leaves((variables['params'], variables.get('batch_stats', {})))):
    np.testing.assert_array_equal(got, want)


def test_batchnorm_statistics_change_in_train_step_only():
  state = tiny_state()
  batch = {'hr': random_hr()}
  trained, _ = jax.jit(train.train_step)(state, batch)
  before = jax.tree.leaves(state.batch_stats)
  after = jax.tree.leaves(trained.batch_stats)
  assert all(not np.allclose(a, b) for a, b in zip(before, after))
  sums = jax.jit(train.eval_step)(trained, batch)
  assert float(sums['count']) == 4
  # eval_step returns metrics only; the state (and its statistics) is untouched.
  for a, b in zip(jax.tree.leaves(trained.batch_stats), after):
    np.testing.assert_array_equal(a, b)


def test_eval_step_mask_excludes_padding():
  state = tiny_state()
  hr = random_hr(4)
  full = jax.jit(train.eval_step)(state, {'hr': hr[:2]})
  padded = jax.jit(train.eval_step)(state, {'hr': hr, 'mask': np.array([1, 1, 0, 0], bool)})
  assert float(padded['count']) == 2
  for key in full:
    np.testing.assert_allclose(float(padded[key]), float(full[key]), rtol=1e-5)


def test_public_functions_compose_with_jit_vmap_grad():
  state = tiny_state()
  model = state.model
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  hr = random_hr(6, 24)
  lr = flax_sr.degrade(hr, 3)
  assert lr.shape == (6, 8, 8, 3) and lr.dtype == jnp.uint8

  up = jax.jit(functools.partial(flax_sr.upscale, model=model))(variables, lr)
  assert up.shape == (6, 24, 24, 3)
  # vmap over a leading axis: per-image calls give the batched result.
  per_image = jax.vmap(functools.partial(flax_sr.upscale, model=model), in_axes=(None, 0))(
      variables, lr)
  np.testing.assert_allclose(per_image, up, atol=1e-5)
  # vmap of the training step over two independent batches.
  stacked = {'hr': hr.reshape(2, 3, 24, 24, 3)}
  new_states, metrics = jax.vmap(train.train_step, in_axes=(None, 0))(state, stacked)
  assert metrics['loss'].shape == (2,)
  # grad through the model, the degradation and the metric.
  def objective(params, images):
    sr = flax_sr.upscale({**variables, 'params': params},
                         flax_sr.imresize(images, 1 / 3), model=model)
    return -flax_sr.psnr(sr, images).mean()
  grads = jax.jit(jax.grad(objective))(state.params, hr.astype(np.float32) / 255)
  assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
  assert any(np.abs(g).sum() > 0 for g in jax.tree.leaves(grads))
  sums = jax.jit(flax_sr.eval_step)(state, {'hr': hr})
  assert set(sums) >= {'count', 'model/psnr_y', 'bicubic/psnr_y'}


def test_axis_name_averages_like_one_device():
  """Under a named axis (vmap stands in for pmap on one CPU), two half-batches give the same
  update as the whole batch: gradients and BatchNorm statistics are averaged."""
  state = tiny_state()
  hr = random_hr(8)
  whole, whole_metrics = jax.jit(train.train_step)(state, {'hr': hr})
  step = functools.partial(train.train_step, axis_name='batch')
  halves, half_metrics = jax.vmap(step, in_axes=(None, 0), out_axes=(None, 0),
                                  axis_name='batch')(state, {'hr': hr.reshape(2, 4, 24, 24, 3)})
  np.testing.assert_allclose(half_metrics['loss'], [whole_metrics['loss']] * 2, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(halves.params), jax.tree.leaves(whole.params)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  for a, b in zip(jax.tree.leaves(halves.batch_stats), jax.tree.leaves(whole.batch_stats)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize('kind', ['mse', 'l1', 'charbonnier'])
def test_pixel_losses(kind):
  a, b = jnp.zeros((1, 2, 2, 1)), jnp.full((1, 2, 2, 1), 0.5)
  expected = {'mse': 0.25, 'l1': 0.5, 'charbonnier': np.sqrt(0.25 + 1e-6)}[kind]
  np.testing.assert_allclose(float(train.pixel_loss(a, b, kind)), expected, rtol=1e-6)


def test_ema_tracks_parameters_with_warm_up():
  model = flax_sr.create_model('reference', scale=3, features=8)
  state = train.create_train_state(jax.random.key(0), model, optax.adam(1e-2),
                                   lr_shape=(1, 8, 8, 3), ema=True)
  step = jax.jit(functools.partial(train.train_step, ema_decay=0.9))
  new, _ = step(state, {'hr': random_hr()})
  # Step 0: the warm-up decay (1 + 0) / (10 + 0) = 0.1 is below 0.9.
  for p0, p1, e1 in zip(*(jax.tree.leaves(t) for t in (state.params, new.params, new.ema_params))):
    np.testing.assert_allclose(e1, 0.1 * p0 + 0.9 * p1, rtol=1e-5, atol=1e-7)
  later = new.replace(step=jnp.asarray(1000, new.step.dtype))
  newer, _ = step(later, {'hr': random_hr(seed=1)})
  for e0, p2, e2 in zip(*(jax.tree.leaves(t) for t in (later.ema_params, newer.params,
                                                        newer.ema_params))):
    np.testing.assert_allclose(e2, 0.9 * e0 + 0.1 * p2, rtol=1e-5, atol=1e-7)


def test_cosine_schedule_warms_up_and_decays():
  tx = train.make_optimizer(1e-3, schedule='cosine', total_steps=100, warmup_steps=10)
  params = {'w': jnp.ones(())}
  opt_state = tx.init(params)
  sizes = []
  for _ in range(100):
    updates, opt_state = tx.update({'w': jnp.ones(())}, opt_state, params)
    sizes.append(abs(float(updates['w'])))
  assert sizes[0] < sizes[9] and np.argmax(sizes) in range(8, 12) and sizes[-1] < sizes[10] / 20


def test_grad_clip_norm_clips_the_global_gradient_before_adam():
  from flax_sr.config import Config, UserError
  config = Config(features=8, grad_clip_norm=0.5, learning_rate=1e-2)
  state = train.state_from_config(config, total_steps=10)
  grads = jax.tree.map(lambda p: jnp.full_like(p, 3.0), state.params)
  norm = float(optax.tree.norm(grads))
  clipped = state.apply_gradients(grads=grads)
  # Adam's first update is lr * sign(g) for any scale of g, so compare the second moments
  # Adam keeps: they hold the clipped gradient, (0.5 / norm * 3)^2 * (1 - b2).
  nu = clipped.opt_state[1][0].nu
  expected = (0.5 / norm * 3.0) ** 2 * (1 - 0.999)
  assert all(np.allclose(v, expected, rtol=1e-5) for v in jax.tree.leaves(nu))
  plain = train.state_from_config(Config(features=8, learning_rate=1e-2), total_steps=10)
  assert np.allclose(jax.tree.leaves(plain.apply_gradients(grads=grads).opt_state[0].nu)[0],
                     9.0 * (1 - 0.999))
  for bad in (0.0, -1.0, float('nan')):
    with pytest.raises(UserError, match='--grad_clip_norm must be a positive number'):
      Config(grad_clip_norm=bad).validate()


def test_self_ensemble_is_equivariant_to_flips_and_rotations():
  # A random reference model is not rotation-equivariant; its x8 self-ensemble is, by
  # construction: ensemble(T(x)) == T(ensemble(x)) for each of the 8 flips/rotations T.
  model = flax_sr.ReferenceSR(scale=2, features=8)
  x = jax.random.uniform(jax.random.key(0), (1, 6, 6, 3))
  variables = model.init(jax.random.key(1), x)
  plain = lambda x: train.upscale(variables, x, model=model)
  ensemble = lambda x: train.upscale(variables, x, model=model, self_ensemble=True)
  rotate = lambda x: jnp.rot90(x, 1, axes=(1, 2))
  flip = lambda x: jnp.flip(x, axis=2)
  assert float(jnp.abs(plain(rotate(x)) - rotate(plain(x))).max()) > 1e-3
  for transform in (rotate, flip, lambda x: rotate(flip(x))):
    np.testing.assert_allclose(ensemble(transform(x)), transform(ensemble(x)), atol=1e-6)
  # The ensemble is a mean of plain outputs: near them, and under jit.
  y = jax.jit(ensemble)(x)
  assert y.shape == (1, 12, 12, 3)
  assert float(jnp.abs(y - plain(x)).mean()) < float(jnp.abs(plain(x)).mean())


@pytest.mark.parametrize('conv_impl', ['xla', 'tuned'])
def test_bfloat16_activations_with_float32_parameters_statistics_and_loss(conv_impl):
  """--dtype bfloat16: the network computes in bf16; parameters, optimizer state, BatchNorm
  statistics and the loss stay float32, and the loss is the float32 model's within bf16
  rounding."""
  half = tiny_state(features=16, conv_impl=conv_impl, dtype=jnp.bfloat16)
  full = tiny_state(features=16, conv_impl=conv_impl)
  variables = {'params': half.params, 'batch_stats': half.batch_stats}
  lr = flax_sr.degrade(random_hr(), 3)
  y, inner = half.model.apply(variables, lr.astype(jnp.float32) / 255,
                              capture_intermediates=True, mutable=['intermediates'])
  assert inner['intermediates']['block0_bn']['__call__'][0].dtype == jnp.bfloat16
  assert y.dtype == jnp.float32  # the output is cast back for a float32 loss
  batch = {'hr': random_hr()}
  new_half, metrics_half = jax.jit(train.train_step)(half, batch)
  _, metrics_full = jax.jit(train.train_step)(full, batch)
  for tree in (new_half.params, new_half.batch_stats, new_half.opt_state):
    assert {leaf.dtype for leaf in jax.tree.leaves(tree) if leaf.ndim} == {jnp.dtype('float32')}
  assert metrics_half['loss'].dtype == jnp.float32
  loss_half, loss_full = float(metrics_half['loss']), float(metrics_full['loss'])
  assert abs(loss_half - loss_full) < 0.02 * loss_full, (loss_half, loss_full)
  # The update moved the float32 parameters.
  assert any(bool(jnp.any(a != b)) for a, b in zip(jax.tree.leaves(half.params),
                                                    jax.tree.leaves(new_half.params)))
