"""MATLAB-compatible bicubic and the PSNR/SSIM protocol: known answers on Set5, agreement with
scikit-image, and composition with jit / vmap / grad."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flax_sr import input_pipeline, metrics, resize

SET5 = ('baby', 'bird', 'butterfly', 'head', 'woman')


def set5_hr(shared_sr: pathlib.Path, name: str, scale: int) -> np.ndarray:
  return resize.crop_to_multiple(input_pipeline.read_image(shared_sr / 'Set5' / f'{name}.png'),
                                 scale)


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_downscale_reproduces_matlab_imresize(shared_sr, scale):
  for name in SET5:
    lr = np.asarray(resize.bicubic_downscale(set5_hr(shared_sr, name, scale), scale))
    reference = input_pipeline.read_image(shared_sr / f'ref_MATLAB_LR_Set5_x{scale}' / f'{name}.png')
    assert lr.shape == reference.shape and lr.dtype == np.uint8
    # The port is bit-exact: no pixel may differ, not even by one level.
    np.testing.assert_array_equal(lr, reference, err_msg=name)


RCAN = {2: (38.2742, 0.9614), 3: (34.7422, 0.9299), 4: (32.6336, 0.9002)}
BICUBIC = {2: 33.66, 3: 30.39, 4: 28.42}


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_protocol_reproduces_published_set5_numbers(shared_sr, scale):
  rcan_psnr, rcan_ssim, bicubic_psnr = [], [], []
  for name in SET5:
    hr = set5_hr(shared_sr, name, scale)
    sr = input_pipeline.read_image(shared_sr / f'ref_RCAN_SR_Set5_x{scale}' / f'{name}.png')
    rcan_psnr.append(float(metrics.psnr(sr, hr, shave=scale, y_channel=True)))
    rcan_ssim.append(float(metrics.ssim(sr, hr, shave=scale, y_channel=True)))
    bicubic = resize.imresize(resize.bicubic_downscale(hr, scale), scale)
    bicubic_psnr.append(float(metrics.psnr(bicubic, hr, shave=scale, y_channel=True)))
  assert abs(np.mean(rcan_psnr) - RCAN[scale][0]) < 0.002
  assert abs(np.mean(rcan_ssim) - RCAN[scale][1]) < 0.001
  assert abs(np.mean(bicubic_psnr) - BICUBIC[scale]) < 0.03


def test_resize_matrix_rows_sum_to_one_and_upscale_interpolates():
  for n_in, scale in [(12, 1 / 3), (7, 2.0), (9, 3.0)]:
    m = resize.resize_matrix(n_in, resize.output_size(n_in, scale), scale)
    np.testing.assert_allclose(m.sum(1), 1.0, atol=1e-12)
  # A constant image stays constant; a linear ramp's interior stays linear when enlarging.
  ramp = jnp.tile(jnp.arange(10, dtype=jnp.float32)[None, :, None], (10, 1, 1))
  up = resize.imresize(ramp, 2.0)
  assert up.shape == (20, 20, 1)
  np.testing.assert_allclose(np.diff(np.asarray(up[5, 4:16, 0])), 0.5, atol=1e-5)


def test_uint8_and_float_paths():
  image = np.random.default_rng(0).integers(0, 256, (2, 12, 15, 3), dtype=np.uint8)
  small = resize.imresize(image, 1 / 3)
  assert small.shape == (2, 4, 5, 3) and small.dtype == jnp.uint8
  small_float = resize.imresize(image.astype(np.float32) / 255, 1 / 3)
  assert small_float.dtype == jnp.float32
  # Rounding between passes moves values by at most one level.
  assert np.abs(np.asarray(small_float) * 255 - np.asarray(small, np.float32)).max() <= 1.0


def test_crop_required_for_degradation():
  with pytest.raises(ValueError, match='not a multiple of the scale 3'):
    resize.bicubic_downscale(np.zeros((10, 9, 3), np.uint8), 3)


def test_psnr_and_ssim_agree_with_scikit_image():
  skm = pytest.importorskip('skimage.metrics')
  rng = np.random.default_rng(0)
  a = rng.random((40, 48, 3))
  b = np.clip(a + rng.normal(0, 0.05, a.shape), 0, 1)
  a255, b255 = a * 255, b * 255
  # RGB, data range 255 after scaling; SSIM per channel then averaged.
  np.testing.assert_allclose(float(metrics.psnr(b, a)),
                             skm.peak_signal_noise_ratio(a255, b255, data_range=255), rtol=1e-5)
  expected_ssim = skm.structural_similarity(a255, b255, data_range=255, channel_axis=-1,
                                            gaussian_weights=True, sigma=1.5,
                                            use_sample_covariance=False)
  np.testing.assert_allclose(float(metrics.ssim(b, a)), expected_ssim, rtol=1e-4)
  # Single channel.
  expected_gray = skm.structural_similarity(a255[..., 0], b255[..., 0], data_range=255,
                                            gaussian_weights=True, sigma=1.5,
                                            use_sample_covariance=False)
  np.testing.assert_allclose(float(metrics.ssim(b[..., :1], a[..., :1])), expected_gray, rtol=1e-4)
  np.testing.assert_allclose(
      float(metrics.psnr(b[..., :1], a[..., :1])),
      skm.peak_signal_noise_ratio(a255[..., 0], b255[..., 0], data_range=255), rtol=1e-5)


def test_y_channel_uses_bt601():
  white = jnp.ones((1, 1, 3))
  black = jnp.zeros((1, 1, 3))
  np.testing.assert_allclose(metrics.rgb_to_y(white), 235.0, atol=1e-3)
  np.testing.assert_allclose(metrics.rgb_to_y(black), 16.0, atol=1e-6)
  # A grayscale image is its own Y (as the MATLAB scripts treat grayscale HR images).
  np.testing.assert_allclose(metrics.rgb_to_y(jnp.full((1, 1, 1), 0.5)), 127.5)


def test_metrics_and_resize_under_jit_vmap_grad():
  rng = np.random.default_rng(1)
  hr = rng.random((3, 24, 24, 3)).astype(np.float32)
  sr = np.clip(hr + rng.normal(0, 0.02, hr.shape), 0, 1).astype(np.float32)
  batched = jax.jit(lambda x, y: metrics.psnr(x, y, shave=3, y_channel=True))(sr, hr)
  per_image = jax.vmap(lambda x, y: metrics.psnr(x, y, shave=3, y_channel=True))(sr, hr)
  np.testing.assert_allclose(batched, per_image, rtol=1e-6)
  np.testing.assert_allclose(jax.jit(metrics.ssim)(sr, hr), jax.vmap(metrics.ssim)(sr, hr),
                             rtol=1e-5)
  down = jax.jit(lambda x: resize.imresize(x, 1 / 3))(hr)
  np.testing.assert_allclose(jax.vmap(lambda x: resize.imresize(x, 1 / 3))(hr), down, atol=1e-6)
  grad = jax.grad(lambda x: resize.imresize(x, 1 / 3).sum())(hr)
  # Each output pixel's weights sum to one, so the input gradient sums to the output count.
  np.testing.assert_allclose(float(grad.sum()), down.size, rtol=1e-4)
  grad_ssim = jax.grad(lambda x: metrics.ssim(x, hr).mean())(sr)
  assert np.isfinite(grad_ssim).all() and np.abs(grad_ssim).sum() > 0
