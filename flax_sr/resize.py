"""MATLAB-compatible bicubic ``imresize`` as a pure JAX function.

MATLAB's ``imresize(x, scale, 'bicubic')`` (the degradation and baseline of the SR literature)
differs from ``jax.image.resize``: it uses the Keys cubic kernel with a = -0.5, widens the kernel
by 1/scale when shrinking (antialiasing), replicates the edge pixels, resizes one axis at a
time (height first) and, for uint8 images, rounds to uint8 after each 1-D pass.

Each 1-D pass is a matrix product with a small weight matrix built once per shape in NumPy (so it
is a constant under ``jit``), which makes the resize differentiable, batchable with ``vmap`` and
fast on any backend.
"""

from __future__ import annotations

import functools
import math

import jax.numpy as jnp
import numpy as np


def _cubic(x: np.ndarray) -> np.ndarray:
  """Keys cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``)."""
  ax = np.abs(x)
  ax2, ax3 = ax * ax, ax * ax * ax
  return ((1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
          + (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2)))


@functools.lru_cache(maxsize=256)
def resize_matrix(in_length: int, out_length: int, scale: float,
                  antialiasing: bool = True) -> np.ndarray:
  """The (out_length, in_length) weight matrix of one MATLAB bicubic 1-D pass (float64)."""
  kernel_width = 4.0
  if scale < 1 and antialiasing:
    kernel = lambda x: scale * _cubic(scale * x)
    kernel_width = kernel_width / scale
  else:
    kernel = _cubic
  out_coords = np.arange(1, out_length + 1, dtype=np.float64)
  # Output pixel u (1-based) sits at u/scale + 0.5 (1 - 1/scale) in input coordinates.
  centres = out_coords / scale + 0.5 * (1 - 1 / scale)
  left = np.floor(centres - kernel_width / 2)
  taps = int(math.ceil(kernel_width)) + 2
  indices = left[:, None] + np.arange(taps)[None, :]
  weights = kernel(centres[:, None] - indices)
  weights = weights / weights.sum(axis=1, keepdims=True)
  # Out-of-range taps take the nearest edge pixel (replicated edges).
  indices = np.clip(indices.astype(np.int64) - 1, 0, in_length - 1)
  matrix = np.zeros((out_length, in_length), np.float64)
  np.add.at(matrix, (np.repeat(np.arange(out_length), taps), indices.ravel()), weights.ravel())
  return matrix


def output_size(in_length: int, scale: float) -> int:
  return int(math.ceil(in_length * scale - 1e-9))


def _quantize_uint8(x: jnp.ndarray) -> jnp.ndarray:
  # MATLAB rounds half away from zero; values are >= 0 after clipping.
  return jnp.floor(jnp.clip(x, 0.0, 255.0) + 0.5)


def imresize(images: jnp.ndarray, scale: float, *, antialiasing: bool = True,
             output_shape: tuple[int, int] | None = None) -> jnp.ndarray:
  """Resizes images like MATLAB ``imresize(x, scale, 'bicubic')``.

  Args:
    images: (..., H, W, C) array (NHWC, or a single HWC image). uint8 images are processed in
      float32 on the 0..255 scale and rounded to uint8 after each 1-D pass, as MATLAB does;
      float images (any range, e.g. [0, 1]) are resized without rounding or clipping, so the
      function is differentiable.
    scale: the factor, e.g. 1/3 to shrink by 3 or 3 to enlarge by 3 (the same for both axes).
    antialiasing: widen the kernel when shrinking (MATLAB's default).
    output_shape: optional (H_out, W_out); defaults to ceil(H * scale), ceil(W * scale).

  Returns:
    The resized images, with the input's dtype.
  """
  images = jnp.asarray(images)
  if images.ndim < 3:
    raise ValueError(f'imresize expects (..., H, W, C) images, got shape {images.shape}')
  if scale <= 0:
    raise ValueError(f'scale must be positive, got {scale}')
  in_h, in_w = images.shape[-3], images.shape[-2]
  out_h, out_w = output_shape or (output_size(in_h, scale), output_size(in_w, scale))
  is_uint8 = images.dtype == jnp.uint8
  compute_dtype = jnp.float32 if is_uint8 or images.dtype == jnp.float64 else images.dtype
  compute_dtype = jnp.promote_types(compute_dtype, jnp.float32)
  x = images.astype(compute_dtype)
  mat_h = jnp.asarray(resize_matrix(in_h, out_h, scale, antialiasing), compute_dtype)
  mat_w = jnp.asarray(resize_matrix(in_w, out_w, scale, antialiasing), compute_dtype)
  # Height first, then width (MATLAB's order for equal scales), rounding between passes.
  x = jnp.einsum('oh,...hwc->...owc', mat_h, x, precision='highest')
  if is_uint8:
    x = _quantize_uint8(x)
  x = jnp.einsum('ow,...hwc->...hoc', mat_w, x, precision='highest')
  if is_uint8:
    return _quantize_uint8(x).astype(jnp.uint8)
  return x.astype(images.dtype)


def bicubic_downscale(hr_images: jnp.ndarray, scale: int) -> jnp.ndarray:
  """The SR degradation: LR = MATLAB-bicubic downscale of HR by an integer factor.

  HR height and width must be multiples of ``scale`` (crop first; see ``crop_to_multiple``).
  """
  h, w = hr_images.shape[-3], hr_images.shape[-2]
  if h % scale or w % scale:
    raise ValueError(f'HR size {h}x{w} is not a multiple of the scale {scale}; crop it first')
  return imresize(hr_images, 1.0 / scale, output_shape=(h // scale, w // scale))


def crop_to_multiple(images, scale: int):
  """Crops the bottom/right so that height and width are multiples of ``scale`` (as MATLAB's
  ``modcrop`` in the SR evaluation scripts)."""
  h, w = images.shape[-3], images.shape[-2]
  return images[..., : h - h % scale, : w - w % scale, :]
