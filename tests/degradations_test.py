"""flax_sr.degradations: the libjpeg codec against Pillow, kernels and noise against their
formulas, resizing against PyTorch, the valid-region buffers against exactly-sized images, and
the Real-ESRGAN pipeline's determinism, options and train-step use."""

from __future__ import annotations

import io
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from conftest import REPO, SHARED_SR
from flax_sr import degradations as D
from flax_sr import input_pipeline
from flax_sr.config import Config, UserError
from flax_sr.degradation_settings import RealESRGANSettings, settings_from_options

QUALITIES = (10, 30, 50, 75, 95)


def _pillow_jpeg(image: np.ndarray, quality: int) -> tuple[np.ndarray, dict]:
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, 'JPEG', quality=quality)
  buffer.seek(0)
  decoded = Image.open(buffer)
  return np.asarray(decoded.convert('RGB')), decoded.quantization


def _jpeg_test_images() -> list[np.ndarray]:
  """Crops of the sample photos (rocket.jpg was a JPEG before: its coefficients sit on rounding
  ties, where only libjpeg's integer DCT gives libjpeg's answer), at sizes that are no multiple
  of 8 or 16, and Set5's woman (also once a JPEG) whole when ../shared is here."""
  directory = input_pipeline._sample_photo_dir()
  images = [np.ascontiguousarray(input_pipeline.read_image(directory / name)[:91, :133])
            for name in ('astronaut.png', 'coffee.png', 'rocket.jpg', 'chelsea.png')]
  woman = SHARED_SR / 'Set5' / 'woman.png'
  if woman.exists():
    images.append(input_pipeline.read_image(woman))
  return images


def test_jpeg_equals_pillow_bit_for_bit():
  """At every quality, the decode of flax_sr's JPEG equals Pillow's (libjpeg-turbo) save +
  decode exactly: fixed-point colour conversion, 4:2:0 with libjpeg's rounding and edge
  padding, integer DCTs, fancy upsampling. An exact float DCT misses this on the images that
  were JPEGs before (their coefficients sit on rounding ties)."""
  codec = jax.jit(D.jpeg)
  for image in _jpeg_test_images():
    for quality in QUALITIES:
      expected, _ = _pillow_jpeg(image, quality)
      got = np.asarray(codec(image, quality))
      assert got.dtype == np.uint8 and got.shape == image.shape
      differing = np.sum(got != expected)
      assert differing == 0, f'{image.shape} q{quality}: {differing} values differ from Pillow'


def test_jpeg_batch_with_a_quality_per_image_and_tiny_sizes():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (3, 5, 11, 3), dtype=np.uint8)
  qualities = np.array([5, 50, 100])
  got = np.asarray(D.jpeg(images, qualities))
  for image, quality, out in zip(images, qualities, got):
    np.testing.assert_array_equal(out, _pillow_jpeg(image, int(quality))[0])


def test_quantization_tables_equal_libjpegs():
  image = np.zeros((8, 8, 3), np.uint8)
  for quality in (1, 10, 25, 49, 50, 51, 75, 95, 100):
    _, tables = _pillow_jpeg(image, quality)
    luma, chroma = D.quantization_tables(quality)
    np.testing.assert_array_equal(np.asarray(luma).ravel(), tables[0])
    np.testing.assert_array_equal(np.asarray(chroma).ravel(), tables[1])


def test_jpeg_quality_outside_1_to_100_is_a_user_error():
  with pytest.raises(UserError, match='JPEG quality must be in 1..100'):
    D.jpeg(np.zeros((8, 8, 3), np.uint8), 0)
  with pytest.raises(UserError, match='1..100'):
    D.jpeg(np.zeros((2, 8, 8, 3), np.uint8), np.array([50, 101]))


def _grid(size):
  half = size // 2
  x, y = np.meshgrid(np.arange(-half, half + 1.0), np.arange(-half, half + 1.0))
  return x, y


def _padded(kernel: np.ndarray) -> np.ndarray:
  pad = (21 - kernel.shape[0]) // 2
  return np.pad(kernel, pad)


def test_gaussian_kernels_equal_the_closed_form_density():
  from scipy.stats import multivariate_normal
  for size, sx, sy, theta in ((21, 3.0, 3.0, 0.0), (7, 0.4, 1.9, 0.7), (13, 2.5, 0.6, -2.0)):
    x, y = _grid(size)
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    covariance = rotation @ np.diag([sx ** 2, sy ** 2]) @ rotation.T
    density = multivariate_normal([0, 0], covariance).pdf(np.stack([x, y], -1))
    expected = _padded(density / density.sum())
    got = np.asarray(D.bivariate_kernel('gaussian', sx, sy, theta, size=size))
    np.testing.assert_allclose(got, expected, atol=1e-7)
    assert abs(got.sum() - 1) < 1e-6


def test_generalized_and_plateau_kernels_follow_their_formulas():
  size, sx, sy, theta, beta = 15, 1.2, 2.4, 0.3, 0.6
  x, y = _grid(size)
  c, s = np.cos(theta), np.sin(theta)
  q = ((c * x + s * y) / sx) ** 2 + ((-s * x + c * y) / sy) ** 2
  for shape, values in (('generalized', np.exp(-0.5 * q ** beta)),
                        ('plateau', 1 / (1 + q ** beta))):
    got = np.asarray(D.bivariate_kernel(shape, sx, sy, theta, beta, size))
    np.testing.assert_allclose(got, _padded(values / values.sum()), atol=1e-7)


def test_sinc_kernel_matches_the_bessel_formula():
  from scipy.special import j1
  for cutoff, size in ((np.pi / 3, 21), (2.5, 9), (np.pi, 13)):
    x, y = _grid(size)
    r = np.hypot(x, y)
    with np.errstate(invalid='ignore', divide='ignore'):
      values = cutoff * j1(cutoff * r) / (2 * np.pi * r)
    values[size // 2, size // 2] = cutoff ** 2 / (4 * np.pi)
    got = np.asarray(D.circular_lowpass_kernel(cutoff, size))
    np.testing.assert_allclose(got, _padded(values / values.sum()), rtol=2e-6, atol=2e-7)


def test_random_kernels_sum_to_one_and_fit_their_size():
  settings = RealESRGANSettings(sinc_prob=0.3)
  kernels = np.asarray(jax.vmap(lambda k: D.random_kernel(k, settings))(
      jax.random.split(jax.random.key(0), 64)))
  np.testing.assert_allclose(kernels.sum(axis=(1, 2)), 1.0, atol=1e-5)
  # Point symmetric (correlation = convolution) and zero outside an odd centred support.
  np.testing.assert_allclose(kernels, kernels[:, ::-1, ::-1], atol=1e-6)
  # (Narrow Gaussians underflow to zero inside their support, so some look smaller than 7.)
  supports = {int(np.sum(np.any(k != 0, axis=0))) for k in kernels}
  assert all(s % 2 == 1 and s <= 21 for s in supports) and len(supports) > 3
  assert 21 in supports


def test_gaussian_noise_has_the_requested_sigma_and_grey_is_shared():
  image = jnp.full((256, 256, 3), 0.5)
  sigma = 10 / 255
  noisy = np.asarray(D.gaussian_noise(jax.random.key(0), image, sigma, False)) - 0.5
  # The standard deviation of a sample std over n values is about sigma / sqrt(2n).
  assert abs(noisy.std() - sigma) < 5 * sigma / np.sqrt(2 * noisy.size)
  assert abs(noisy.mean()) < 5 * sigma / np.sqrt(noisy.size)
  assert np.abs(noisy[..., 0] - noisy[..., 1]).max() > 0.01
  gray = np.asarray(D.gaussian_noise(jax.random.key(0), image, sigma, True))
  np.testing.assert_array_equal(gray[..., 0], gray[..., 2])


def test_poisson_noise_variance_follows_the_intensity():
  """Two levels (so v = 2): the variance of each half is scale^2 x / v."""
  x = np.zeros((256, 256, 3), np.float32)
  x[:128], x[128:] = 64 / 255, 191 / 255
  scale = 0.05
  noisy = np.asarray(D.poisson_noise(jax.random.key(1), jnp.asarray(x), scale, False)) - x
  for half, level in ((noisy[:128], 64 / 255), (noisy[128:], 191 / 255)):
    expected = scale ** 2 * level / 2
    n = half.size
    # Var of a sample variance ~ (mu4 - sigma^4) / n; Poisson's kurtosis term is small here.
    tolerance = 5 * expected * np.sqrt(2 / n + 1 / (2 * level * n))
    assert abs(half.var() - expected) < tolerance, (half.var(), expected)
    assert abs(half.mean()) < 5 * np.sqrt(expected / n)
  # A valid region counts only its own levels: one level there makes v = 1.
  only_valid = np.asarray(D.poisson_noise(jax.random.key(1), jnp.asarray(x), scale, False,
                                          100, 256))[:100] - x[:100]
  assert abs(only_valid.var() - scale ** 2 * 64 / 255) < 0.1 * scale ** 2 * 64 / 255


def test_resize_equals_pytorch_interpolate():
  torch = pytest.importorskip('torch')
  import torch.nn.functional as F
  images = np.random.default_rng(0).random((2, 37, 45, 3)).astype(np.float32)
  tensor = torch.from_numpy(images).permute(0, 3, 1, 2)
  for mode in ('area', 'bilinear', 'bicubic'):
    for size, factor in (((20, 33), None), ((50, 91), None), (None, 0.37), (None, 1.3)):
      if factor is None:
        expected = F.interpolate(tensor, size=size, mode=mode)
      else:
        expected = F.interpolate(tensor, scale_factor=factor, mode=mode)
      got = np.asarray(jax.jit(D.resize, static_argnums=(1, 2, 3))(
          jnp.asarray(images), size, mode, factor))
      np.testing.assert_allclose(got, expected.permute(0, 2, 3, 1).numpy(), atol=1e-5)


def test_buffer_operations_equal_those_on_the_exactly_sized_image():
  """The pipeline keeps each image in a larger buffer with a valid top-left part: blur, JPEG,
  resize and Poisson noise on it must equal the same operations on the valid part alone."""
  rng = np.random.default_rng(0)
  valid_h, valid_w = 23, 30
  image = rng.random((valid_h, valid_w, 3)).astype(np.float32)
  buffer = np.zeros((40, 48, 3), np.float32)
  buffer[:valid_h, :valid_w] = image
  buffer[valid_h:] = 0.77  # anything outside the valid part must not matter
  kernel = D.random_kernel(jax.random.key(3), RealESRGANSettings(kernel_size_range=(21, 21)))
  blur, jpeg = jax.jit(D._blur_one), jax.jit(D._jpeg_one)
  resize = jax.jit(D._resize_one, static_argnums=(2, 3, 5))
  exact = blur(jnp.asarray(image), kernel, valid_h, valid_w)
  in_buffer = blur(jnp.asarray(buffer), kernel, valid_h, valid_w)[:valid_h, :valid_w]
  np.testing.assert_allclose(in_buffer, exact, atol=1e-5)
  samples = np.round(image * 255)
  exact = jpeg(jnp.asarray(samples), 40.0, valid_h, valid_w)
  in_buffer = jpeg(jnp.asarray(np.round(buffer * 255)), 40.0, valid_h, valid_w)
  np.testing.assert_array_equal(np.asarray(in_buffer)[:valid_h, :valid_w], exact)
  for mode in range(3):
    exact = resize(jnp.asarray(image), mode, (valid_h, valid_w), (11, 17),
                   (valid_h / 11, valid_w / 17), (11, 17))
    in_buffer = resize(jnp.asarray(buffer), mode, (valid_h, valid_w), (11, 17),
                       (valid_h / 11, valid_w / 17), (16, 20))
    np.testing.assert_allclose(np.asarray(in_buffer)[:11, :17], exact, atol=1e-6)
    assert np.all(np.asarray(in_buffer)[11:] == 0)


def _hr_batch(n=4, size=32):
  photo = input_pipeline.read_image(input_pipeline._sample_photo_dir() / 'astronaut.png')
  return np.stack([photo[40 * i:40 * i + size, 30 * i:30 * i + size] for i in range(n)])


@pytest.fixture(scope='module')
def degrade_x4():
  return jax.jit(lambda key, hr, first: D.realesrgan(key, hr, 4, first_index=first))


def test_realesrgan_is_a_deterministic_function_of_key_and_image_index(degrade_x4):
  hr = _hr_batch()
  lr = np.asarray(degrade_x4(jax.random.key(0), hr, 0))
  assert lr.dtype == np.uint8 and lr.shape == (4, 8, 8, 3)
  np.testing.assert_array_equal(lr, degrade_x4(jax.random.key(0), hr, 0))
  assert np.mean(lr != np.asarray(degrade_x4(jax.random.key(1), hr, 0))) > 0.5
  # Image i's draws come from its index: an offset batch sees other images' degradations.
  # (That a device's share with its offset equals the whole batch's: multidevice_test.)
  assert np.mean(lr != np.asarray(degrade_x4(jax.random.key(0), hr, 4))) > 0.5
  # Degraded, not merely downscaled: far from the bicubic LR on average.
  bicubic = np.asarray(D.resize(jnp.asarray(hr, jnp.float32), (8, 8), 'bicubic'))
  assert np.abs(lr - bicubic).mean() > 3


def test_degrade_each_does_not_depend_on_the_other_images():
  """Evaluation inputs: image 0's LR is the same whatever else is in its batch (the per-batch
  choices are made per image)."""
  hr = _hr_batch(3, 16)
  each = jax.jit(lambda key, x: D.degrade_each(key, x, 2))
  lr = np.asarray(each(jax.random.key(5), hr))
  others_changed = hr.copy()
  others_changed[1:] = 255 - others_changed[1:]
  np.testing.assert_array_equal(np.asarray(each(jax.random.key(5), others_changed))[0], lr[0])
  assert lr.shape == (3, 8, 8, 3) and np.mean(lr[0] != lr[1]) > 0.5
  # Each image is realesrgan of it alone, and only its chosen branches run: the compiled
  # program keeps its conditionals (vmap would turn them all into selects).
  alone = jax.jit(lambda key, x: D.realesrgan(key, x, 2))
  np.testing.assert_array_equal(
      np.asarray(alone(jax.random.fold_in(jax.random.key(5), 2), hr[2:3]))[0], lr[2])
  compiled = each.lower(jax.random.key(5), hr).compile().as_text()
  assert 'conditional' in compiled


def test_first_stage_buffers_hold_every_factor_and_change_nothing(monkeypatch):
  """The first stage runs in the smallest of three buffers that holds the batch's factor: the
  LR equals the one made in the largest buffer alone (up to float rounding of the FFT sizes),
  for factors in each of the three."""
  hr = _hr_batch(2, 32)
  settings = RealESRGANSettings()
  buffers = D._first_stage_buffers(32, 32, settings.resize_range)
  assert buffers == [(16, 16), (32, 32), (48, 48)]

  def first_buffer(key):  # the bucket realesrgan picks for this key
    batch_u = jax.random.uniform(jax.random.split(key)[0], (5,))
    size = int(np.floor(32 * float(D._random_factor(batch_u[3], batch_u[4],
                                                     settings.resize_prob,
                                                     settings.resize_range))))
    return min(i for i, (bh, _) in enumerate(buffers) if max(size, 1) <= bh)
  keys = [jax.random.key(i) for i in range(8, 16)]
  assert {first_buffer(k) for k in keys} == {0, 1, 2}
  bucketed = jax.jit(lambda key, x: D.realesrgan(key, x, 4))
  bucketed_lr = [np.asarray(bucketed(k, hr)) for k in keys]
  monkeypatch.setattr(D, '_FIRST_STAGE_FRACTIONS', ())
  assert D._first_stage_buffers(32, 32, settings.resize_range) == [(48, 48)]
  largest = jax.jit(lambda key, x: D.realesrgan(key, x, 4))
  for key, lr in zip(keys, bucketed_lr):
    difference = np.abs(lr.astype(int) - np.asarray(largest(key, hr)).astype(int))
    assert difference.max() <= 1 and np.mean(difference > 0) < 0.01, first_buffer(key)


def test_threefry_unrolled_equals_jaxs():
  keypair = jnp.array([123456789, 987654321], jnp.uint32)
  counts = jnp.asarray(np.random.default_rng(0).integers(0, 2**32, 1000, dtype=np.uint64)
                       .astype(np.uint32))
  import jax.extend.random
  np.testing.assert_array_equal(D.threefry_2x32(keypair, counts),
                                jax.extend.random.threefry_2x32(keypair, counts))
  normals = np.asarray(D._normal(jax.random.key(0), (400, 500, 1)))
  assert abs(normals.mean()) < 0.01 and abs(normals.std() - 1) < 0.01


def test_pixel_noise_is_distinct_per_pixel_and_independent_of_the_buffer():
  """Each pixel's random words are its own (also past 65,536 columns, where a row << 16 | column
  counter would repeat row 1's words in row 0) and the same in a smaller buffer."""
  key = jax.random.key(3)
  wide = np.asarray(D._pixel_bits(key, (2, 65_537, 3)))
  assert len(np.unique(wide.reshape(-1, 3), axis=0)) == 2 * 65_537
  np.testing.assert_array_equal(np.asarray(D._pixel_bits(key, (2, 40, 3))), wide[:, :40])


def test_poisson_counts_are_the_inverse_cdf_at_u():
  """The table search returns the smallest k with CDF(k) >= u, per pixel's rate."""
  from scipy import stats
  rng = np.random.default_rng(0)
  levels = rng.integers(0, 256, 5000).astype(np.int32)
  u = rng.random(5000).astype(np.float32)
  vals = 64.0
  got = np.asarray(D._poisson_counts(jnp.asarray(u), jnp.asarray(levels), vals))
  expected = stats.poisson.ppf(u.astype(np.float64), levels / 255.0 * vals)
  # float32 CDF sums against scipy's float64: a u within rounding of a CDF step may land on
  # the neighbouring count.
  assert np.mean(got == expected) > 0.999 and np.abs(got - expected).max() <= 1


def test_settings_options_parse_and_bad_values_are_one_line_errors():
  settings = settings_from_options('jpeg_range=40:90,resize_prob=0.3/0.4/0.3,sinc_prob=0.2')
  assert settings.jpeg_range == (40.0, 90.0) and settings.resize_prob == (0.3, 0.4, 0.3)
  assert settings.sinc_prob == 0.2 and settings.noise_range == (1.0, 30.0)
  for spec, message in (('sinc_prob=1.5', 'sinc_prob=1.5 is invalid: a probability in'),
                        ('noise_range=5:1', 'noise_range=5:1 is invalid'),
                        ('kernel_size_range=4:9', 'odd kernel sizes'),
                        ('jpeg_range=0:50', 'within 1..100'),
                        ('resize_prob=0.5/0.6/0.1', 'summing to 1'),
                        ('jpeg_range=40', 'takes a range'),
                        ('blur=1', 'known NAME')):
    with pytest.raises(UserError, match=message) as error:
      settings_from_options(spec)
    assert '\n' not in str(error.value)
  with pytest.raises(UserError, match='applies to --degradation realesrgan only'):
    Config(dataset='sample', degradation_options='sinc_prob=0.2').validate()
  with pytest.raises(UserError, match="--degradation 'jpeg' is unknown"):
    Config(dataset='sample', degradation='jpeg').validate()


def test_train_step_degrades_with_the_seed_and_step(degrade_x4):
  """The step's LR is ``realesrgan`` with the key of (seed, step): what makes a resumed run
  see the degradations of an uninterrupted one. Checked through the loss the step reports."""
  import optax
  from flax_sr import metrics, models, train
  model = models.create_model('espcn', scale=4, features=4)
  state = train.create_train_state(jax.random.key(0), model, optax.adam(1e-3),
                                   lr_shape=(1, 8, 8, 3))
  state = state.replace(step=jnp.asarray(7, jnp.int32))
  degradation = D.TrainingDegradation(RealESRGANSettings(), seed=3)
  hr = _hr_batch()
  _, step_metrics = jax.jit(lambda s, b: train.train_step(s, b, degradation=degradation))(
      state, {'hr': hr})
  lr = degrade_x4(degradation.key(7), hr, 0)
  outputs = model.apply({'params': state.params}, metrics.to_float(lr), train=True)
  expected = train.pixel_loss(outputs, metrics.to_float(hr))
  np.testing.assert_allclose(step_metrics['loss'], expected, rtol=1e-5)
  other_step = degrade_x4(degradation.key(8), hr, 0)
  assert np.mean(np.asarray(other_step) != np.asarray(lr)) > 0.5


# --------------------------------------------------------------------------------------------
# The NumPy + PyTorch peer that `bench.py --degradation` times flax_sr's pipeline against
# (experiments/torch_degradation.py): the same operations, so that the bench compares like
# with like.

@pytest.fixture(scope='module')
def torch_peer():
  pytest.importorskip('torch')
  sys.path.insert(0, str(REPO / 'experiments'))
  import torch_degradation
  return torch_degradation


def test_the_pytorch_peers_kernels_and_blur_equal_flax_srs(torch_peer):
  import torch
  for shape, beta in (('gaussian', 1.0), ('generalized', 0.7), ('plateau', 1.5)):
    np.testing.assert_allclose(torch_peer.bivariate_kernel(shape, 1.3, 2.2, 0.6, beta, 15),
                               D.bivariate_kernel(shape, 1.3, 2.2, 0.6, beta, 15), atol=1e-6)
  np.testing.assert_allclose(torch_peer.circular_lowpass_kernel(1.7, 13),
                             D.circular_lowpass_kernel(1.7, 13), atol=1e-6)
  rng = np.random.default_rng(0)
  settings = RealESRGANSettings()
  kernels = np.stack([torch_peer.random_kernel(rng, settings, 1) for _ in range(2)])
  assert np.allclose(kernels.sum((1, 2)), 1) and kernels.shape == (2, 21, 21)
  images = rng.random((2, 30, 37, 3)).astype(np.float32)
  peer = torch_peer.filter2d(torch.from_numpy(images).permute(0, 3, 1, 2),
                             torch.from_numpy(kernels.astype(np.float32)))
  np.testing.assert_allclose(peer.permute(0, 2, 3, 1).numpy(), D.blur(images, kernels),
                             atol=1e-5)


def test_the_pytorch_peers_noise_has_flax_srs_statistics(torch_peer):
  import torch
  generator = torch.Generator().manual_seed(0)
  image = torch.full((2, 3, 256, 256), 0.5)
  sigma = torch.tensor([10 / 255, 20 / 255])
  noisy = torch_peer.gaussian_noise(image, sigma, torch.tensor([False, True]), generator) - 0.5
  for i, s in enumerate(sigma.tolist()):
    assert abs(noisy[i].std().item() - s) < 5 * s / np.sqrt(2 * noisy[i].numel())
  assert torch.equal(noisy[1, 0], noisy[1, 2]) and not torch.equal(noisy[0, 0], noisy[0, 2])
  # Poisson: two levels (v = 2), variance scale^2 x / v, as flax_sr's (tested above).
  x = torch.zeros((1, 3, 256, 256))
  x[..., :128, :], x[..., 128:, :] = 64 / 255, 191 / 255
  scale = 0.05
  noisy = torch_peer.poisson_noise(x, torch.tensor([scale]), torch.tensor([False]),
                                   generator) - x
  for half, level in ((noisy[..., :128, :], 64 / 255), (noisy[..., 128:, :], 191 / 255)):
    expected = scale ** 2 * level / 2
    assert abs(half.var().item() - expected) < 0.05 * expected


def test_the_pytorch_peers_float_jpeg_is_libjpegs_codec_up_to_its_rounding(torch_peer):
  """The peer's JPEG (a float DCT codec, as Real-ESRGAN trains with) loses what libjpeg loses
  at each quality, and its output is within about 2 levels of libjpeg's on average."""
  import torch
  image = _jpeg_test_images()[0]
  x = torch.from_numpy(image.astype(np.float32) / 255).permute(2, 0, 1)[None]
  for quality in (30, 60, 90):
    peer = torch_peer.jpeg(x, torch.tensor([float(quality)]))[0].permute(1, 2, 0).numpy() * 255
    exact = np.asarray(D.jpeg(image, quality)).astype(np.float32)
    peer_loss, exact_loss = (np.abs(y - image).mean() for y in (peer, exact))
    assert abs(peer_loss - exact_loss) < 0.25 * exact_loss, (quality, peer_loss, exact_loss)
    assert np.abs(peer - exact).mean() < 2.5


def test_the_pytorch_peer_degrades_hr_to_8_bit_lr(torch_peer):
  import torch
  rng = np.random.default_rng(0)
  hr = np.stack([_jpeg_test_images()[i][:88, :88] for i in range(2)])
  lr = torch_peer.degrade_uint8(hr, 4, rng, torch.Generator().manual_seed(0))
  assert lr.dtype == np.uint8 and lr.shape == (2, 22, 22, 3)
  # A degraded picture of the HR, not noise: closer to its bicubic LR than to another image's.
  bicubic = np.asarray(D.resize(hr.astype(np.float32), (22, 22), 'bicubic')) * 1.0
  own = np.abs(lr.astype(np.float32) - bicubic).mean()
  other = np.abs(lr.astype(np.float32) - bicubic[::-1]).mean()
  assert own < 0.5 * other, (own, other)
