"""PSNR and SSIM as the SR literature computes them, as pure JAX functions.

Images are float RGB in [0, 1] (or uint8), shape (..., H, W, C); every function returns one value
per image (shape ``...``), so a mean over images is a ``.mean()`` away. The protocol of the
MATLAB evaluation scripts (EDSR, RCAN, BasicSR):

* Y channel of ITU-R BT.601: ``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` (RGB in [0, 1]),
  on the 0..255 scale, not rounded;
* ``shave`` pixels removed from each border (the literature uses shave = scale);
* SSIM with an 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, 'valid' filtering,
  data range 255; for RGB the mean of the per-channel SSIMs.

``valid_hw`` (N, 2), where given, marks images padded into a larger array (``shape_buckets``):
each is scored on its top-left ``valid_hw`` region only, exactly as if it were alone.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

_BT601_Y = (65.481, 128.553, 24.966)


def to_float(images: jnp.ndarray) -> jnp.ndarray:
  """uint8 -> float32 in [0, 1]; float images pass through."""
  images = jnp.asarray(images)
  if images.dtype == jnp.uint8:
    return images.astype(jnp.float32) / 255.0
  return images


def rgb_to_y(images: jnp.ndarray, gray: jnp.ndarray | None = None) -> jnp.ndarray:
  """BT.601 luma on the 0..255 scale, (..., H, W, 3) -> (..., H, W, 1).

  A grayscale image is its own Y, as in the MATLAB evaluation scripts: a single-channel input,
  or the images that ``gray`` (bool, shape ``...``) marks, whose Y is their grey level (the mean
  of their channels, which are equal for a grayscale HR image).
  """
  images = to_float(images)
  if images.shape[-1] == 1:
    return images * 255.0
  weights = jnp.asarray(_BT601_Y, images.dtype)
  y = (16.0 + jnp.tensordot(images, weights, axes=([-1], [0])))[..., None]
  if gray is None:
    return y
  grey_level = jnp.mean(images, axis=-1, keepdims=True) * 255.0
  return jnp.where(jnp.asarray(gray)[..., None, None, None], grey_level, y)


def region_mask(height: int, width: int, valid_hw: jnp.ndarray) -> jnp.ndarray:
  """(N, height, width, 1) bool: True on the top-left ``valid_hw`` (N, 2) of each image."""
  valid_hw = jnp.asarray(valid_hw)
  rows = jnp.arange(height)[None, :, None] < valid_hw[:, 0, None, None]
  cols = jnp.arange(width)[None, None, :] < valid_hw[:, 1, None, None]
  return (rows & cols)[..., None]


def mean_over_images(values: jnp.ndarray, valid_hw: jnp.ndarray | None) -> jnp.ndarray:
  """Mean over (H, W, C) of (N, H, W, C), over each image's top-left ``valid_hw`` only."""
  if valid_hw is None:
    return jnp.mean(values, axis=(-3, -2, -1))
  mask = region_mask(values.shape[-3], values.shape[-2], valid_hw).astype(values.dtype)
  count = jnp.sum(mask, axis=(-3, -2, -1)) * values.shape[-1]
  return jnp.sum(values * mask, axis=(-3, -2, -1)) / jnp.maximum(count, 1.0)


def shave_border(images: jnp.ndarray, shave: int) -> jnp.ndarray:
  if shave <= 0:
    return images
  return images[..., shave:-shave, shave:-shave, :]


def _prepare(a, b, shave: int, y_channel: bool, gray=None):
  a, b = to_float(a), to_float(b)
  if a.shape != b.shape:
    raise ValueError(f'images must have the same shape, got {a.shape} and {b.shape}')
  if y_channel:
    a, b = rgb_to_y(a, gray), rgb_to_y(b, gray)
  else:
    a, b = a * 255.0, b * 255.0
  return shave_border(a, shave), shave_border(b, shave)


# The PSNR of identical images is capped here instead of being infinite, so that one flat or
# perfectly reconstructed image does not make a set's mean infinite (and JSON invalid). No SR
# result comes near it: an error of one level in one pixel of a 512x512 image is 102 dB, and
# the best published Set5 x2 numbers are around 38-39 dB.
PSNR_CAP_DB = 100.0


def _shaved_valid(valid_hw, shave: int, window: int = 1):
  """The real size left of ``valid_hw`` after shaving and a 'valid' filter of ``window``."""
  return None if valid_hw is None else jnp.asarray(valid_hw) - 2 * max(shave, 0) - (window - 1)


def psnr(images: jnp.ndarray, references: jnp.ndarray, *, shave: int = 0,
         y_channel: bool = False, gray: jnp.ndarray | None = None,
         valid_hw: jnp.ndarray | None = None) -> jnp.ndarray:
  """Peak signal-to-noise ratio in dB per image, data range 255 (images in [0, 1] or uint8),
  at most ``PSNR_CAP_DB``. ``gray`` marks grayscale images for the Y channel (see
  ``rgb_to_y``); ``valid_hw`` the real size of padded images (see the module's note)."""
  a, b = _prepare(images, references, shave, y_channel, gray)
  mse = mean_over_images(jnp.square(a - b), _shaved_valid(valid_hw, shave))
  floor = 255.0**2 / 10.0 ** (PSNR_CAP_DB / 10.0)
  return 10.0 * jnp.log10(255.0**2 / jnp.maximum(mse, floor))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
  coords = np.arange(size, dtype=np.float64) - (size - 1) / 2
  g = np.exp(-(coords**2) / (2 * sigma**2))
  return g / g.sum()


def _valid_band(length: int, window_1d: np.ndarray) -> np.ndarray:
  """(length - size + 1, length) matrix whose rows are the window at each valid offset."""
  size = window_1d.shape[0]
  rows = np.arange(length - size + 1)
  band = np.zeros((length - size + 1, length), np.float64)
  band[rows[:, None], rows[:, None] + np.arange(size)[None, :]] = window_1d
  return band


def _filter_valid(x: jnp.ndarray, window_1d: np.ndarray) -> jnp.ndarray:
  """Separable 'valid' Gaussian filter over H and W of (..., H, W, C).

  Written as two banded matrix products (built in NumPy, constants under jit): exact,
  differentiable and fast on every backend.
  """
  band_h = jnp.asarray(_valid_band(x.shape[-3], window_1d), x.dtype)
  band_w = jnp.asarray(_valid_band(x.shape[-2], window_1d), x.dtype)
  x = jnp.einsum('oh,...hwc->...owc', band_h, x, precision='highest')
  return jnp.einsum('ow,...hwc->...hoc', band_w, x, precision='highest')


def ssim(images: jnp.ndarray, references: jnp.ndarray, *, shave: int = 0,
         y_channel: bool = False, gray: jnp.ndarray | None = None,
         valid_hw: jnp.ndarray | None = None) -> jnp.ndarray:
  """Structural similarity per image (mean over the SSIM map and over channels); over the
  windows that lie inside the real region of padded images (``valid_hw``)."""
  a, b = _prepare(images, references, shave, y_channel, gray)
  if a.shape[-3] < 11 or a.shape[-2] < 11:
    raise ValueError(f'SSIM needs images of at least 11x11 after shaving, got {a.shape}')
  window = _gaussian_window()
  c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
  mu_a, mu_b = _filter_valid(a, window), _filter_valid(b, window)
  var_a = _filter_valid(a * a, window) - mu_a**2
  var_b = _filter_valid(b * b, window) - mu_b**2
  cov = _filter_valid(a * b, window) - mu_a * mu_b
  ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
      (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
  return mean_over_images(ssim_map, _shaved_valid(valid_hw, shave, window.shape[0]))


def quantize(images: jnp.ndarray) -> jnp.ndarray:
  """Clips to [0, 1] and rounds to the 256 levels a saved PNG holds (float in, float out)."""
  return jnp.round(jnp.clip(images, 0.0, 1.0) * 255.0) / 255.0


def sr_metrics(outputs: jnp.ndarray, hr: jnp.ndarray, scale: int,
               gray: jnp.ndarray | None = None, valid_hw: jnp.ndarray | None = None
               ) -> dict[str, jax.Array]:
  """The four protocol numbers per image: PSNR/SSIM on Y and on RGB, shave = scale."""
  return {
      'psnr_y': psnr(outputs, hr, shave=scale, y_channel=True, gray=gray, valid_hw=valid_hw),
      'ssim_y': ssim(outputs, hr, shave=scale, y_channel=True, gray=gray, valid_hw=valid_hw),
      'psnr_rgb': psnr(outputs, hr, shave=scale, valid_hw=valid_hw),
      'ssim_rgb': ssim(outputs, hr, shave=scale, valid_hw=valid_hw),
  }
