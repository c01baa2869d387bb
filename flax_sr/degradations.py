"""Real-world degradations as pure JAX: Real-ESRGAN's second-order pipeline and a libjpeg codec.

``realesrgan(key, hr_uint8, scale)`` turns a uint8 HR batch into uint8 LR the way Real-ESRGAN
(Wang et al. 2021) synthesises training pairs: blur -> random resize -> noise -> JPEG, twice,
then a 2-D sinc filter, the resize to HR/scale and JPEG in either order. Every random choice
comes from the key, per image (``fold_in`` by image index), so the function runs inside the
jitted train step, on any device count, and a resumed run sees exactly the degradations an
uninterrupted one does. Ranges and probabilities: ``degradation_settings.RealESRGANSettings``.

Shapes stay static under ``jit`` although images are resized by random factors: an
intermediate image lives in a fixed-size buffer (big enough for the largest factor; in the
first stage, the smallest of three that holds the batch's factor) of which only the top-left
``valid`` part is the image. Each operation knows the valid size: the blur
reflects at the valid edge (as PyTorch's reflect padding of the smaller image would), the
JPEG codec replicates it (as libjpeg pads a partial block), the resize reads only valid pixels,
and Poisson noise counts only valid pixels' levels. The result equals running the same steps
on the exactly-sized image.

Conventions follow the originals: resizing is PyTorch's ``F.interpolate`` (``align_corners``
False, no antialiasing; 'area' is adaptive average pooling), the blur is BasicSR's
``filter2D`` (reflect padding), noise as BasicSR's ``random_add_*_noise_pt``, and ``jpeg``
is libjpeg's baseline codec: its fixed-point colour conversion, 4:2:0 chroma with its
rounding, the Annex K tables scaled by quality as ``jpeg_set_quality`` does, and its "fancy"
(triangular) chroma upsampling on decode, and its "islow" integer DCTs: the decode equals
Pillow's bit for bit (``tests/degradations_test.py``).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from flax_sr.errors import UserError
from flax_sr.degradation_settings import (KERNEL_TYPES, MAX_KERNEL_SIZE, RESIZE_MODES,
                                          RealESRGANSettings, settings_from_options)

__all__ = ['RealESRGANSettings', 'TrainingDegradation', 'blur', 'degrade_each', 'circular_lowpass_kernel', 'bivariate_kernel', 'evaluation_lr',
           'gaussian_noise', 'jpeg', 'poisson_noise', 'quantization_tables', 'random_kernel',
           'realesrgan', 'resize', 'settings_from_options']

# --------------------------------------------------------------------------------------------
# JPEG (libjpeg baseline, 4:2:0)

# ITU-T T.81 Annex K tables, natural (row-major) order; row = vertical frequency.
_LUMA_TABLE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99],
    np.int32).reshape(8, 8)
_CHROMA_TABLE = np.full((8, 8), 99, np.int32)
_CHROMA_TABLE[:4, :4] = [[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99],
                         [47, 66, 99, 99]]


def quantization_tables(quality) -> tuple[jnp.ndarray, jnp.ndarray]:
  """libjpeg's (luminance, chrominance) 8x8 tables for ``quality`` (scalar, may be traced):
  ``jpeg_quality_scaling`` then ``jpeg_add_quant_table`` with force_baseline (1..255)."""
  q = jnp.clip(jnp.round(jnp.asarray(quality)).astype(jnp.int32), 1, 100)
  scale = jnp.where(q < 50, 5000 // q, 200 - 2 * q)

  def scaled(base):
    return jnp.clip((jnp.asarray(base) * scale + 50) // 100, 1, 255)
  return scaled(_LUMA_TABLE), scaled(_CHROMA_TABLE)


def _fix(x: float) -> int:
  return int(x * 65536 + 0.5)  # libjpeg's FIX() at SCALEBITS = 16


def _rgb_to_ycbcr(rgb: jnp.ndarray) -> tuple[jnp.ndarray, ...]:
  """jccolor.c's fixed-point conversion of int32 samples."""
  r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
  half, offset = 1 << 15, 128 << 16
  y = (_fix(0.299) * r + _fix(0.587) * g + _fix(0.114) * b + half) >> 16
  cb = (-_fix(0.16874) * r - _fix(0.33126) * g + _fix(0.5) * b + offset + half - 1) >> 16
  cr = (_fix(0.5) * r - _fix(0.41869) * g - _fix(0.08131) * b + offset + half - 1) >> 16
  return y, cb, cr


def _ycbcr_to_rgb(y, cb, cr) -> jnp.ndarray:
  """jdcolor.c's fixed-point conversion, range-limited to 0..255."""
  half = 1 << 15
  cb, cr = cb - 128, cr - 128
  r = y + ((_fix(1.402) * cr + half) >> 16)
  g = y + ((-_fix(0.34414) * cb - _fix(0.71414) * cr + half) >> 16)
  b = y + ((_fix(1.772) * cb + half) >> 16)
  return jnp.clip(jnp.stack([r, g, b], -1), 0, 255)


def _downsample_h2v2(plane: jnp.ndarray) -> jnp.ndarray:
  """jcsample.c's 2x2 average with the alternating 1, 2 rounding bias."""
  h, w = plane.shape
  sums = plane.reshape(h // 2, 2, w // 2, 2).sum(axis=(1, 3))
  bias = 1 + (jnp.arange(w // 2) % 2)
  return (sums + bias[None, :]) >> 2


def _upsample_h2v2_fancy(plane: jnp.ndarray, valid_h, valid_w) -> jnp.ndarray:
  """jdsample.c's triangular ("fancy") 2x upsampling, with the component's last real row and
  column repeated beyond its ``valid`` size, as libjpeg's context rows do."""
  h, w = plane.shape
  rows = jnp.minimum(jnp.arange(-1, h + 1).clip(0), valid_h - 1)
  cols = jnp.minimum(jnp.arange(-1, w + 1).clip(0), valid_w - 1)
  p = plane[rows][:, cols]                               # (h + 2, w + 2), edges replicated
  upper = 3 * p[1:-1] + p[:-2]                            # output row 2i: the row above weighs 1
  lower = 3 * p[1:-1] + p[2:]                             # output row 2i + 1: the row below
  def horizontal(colsum):
    this, left, right = colsum[:, 1:-1], colsum[:, :-2], colsum[:, 2:]
    even = (3 * this + left + 8) >> 4
    odd = (3 * this + right + 7) >> 4
    return jnp.stack([even, odd], axis=-1).reshape(h, 2 * w)
  return jnp.stack([horizontal(upper), horizontal(lower)], axis=1).reshape(2 * h, 2 * w)


# libjpeg's default "islow" integer DCTs (jfdctint.c, jidctint.c: Loeffler-Ligtenberg-
# Moschytz with 13-bit constants). Exact float DCTs agree to about 50 dB, but images that were
# JPEG-compressed before (common in SR sets) have coefficients on rounding ties, where only the
# integer arithmetic reproduces libjpeg's choices.
_CONST_BITS, _PASS1_BITS = 13, 2
_C = {name: int(round(value * (1 << _CONST_BITS))) for name, value in {
    '0.298631336': 0.298631336, '0.390180644': 0.390180644, '0.541196100': 0.541196100,
    '0.765366865': 0.765366865, '0.899976223': 0.899976223, '1.175875602': 1.175875602,
    '1.501321110': 1.501321110, '1.847759065': 1.847759065, '1.961570560': 1.961570560,
    '2.053119869': 2.053119869, '2.562915447': 2.562915447, '3.072711026': 3.072711026}.items()}


def _descale(x, n: int):
  return (x + (1 << (n - 1))) >> n


def _rotations(t0, t1, t2, t3):
  """The odd part shared by both transforms: four outputs from four int32 inputs."""
  z1, z2, z3, z4 = t0 + t3, t1 + t2, t0 + t2, t1 + t3
  z5 = (z3 + z4) * _C['1.175875602']
  z1, z2 = -z1 * _C['0.899976223'], -z2 * _C['2.562915447']
  z3, z4 = -z3 * _C['1.961570560'] + z5, -z4 * _C['0.390180644'] + z5
  return (t0 * _C['0.298631336'] + z1 + z3, t1 * _C['2.053119869'] + z2 + z4,
          t2 * _C['3.072711026'] + z2 + z3, t3 * _C['1.501321110'] + z1 + z4)


def _fdct_pass(x: jnp.ndarray, first: bool) -> jnp.ndarray:
  """One 1-D pass along axis 0 (the 8 samples; the blocks along the trailing axes, so each
  sample row is a contiguous slab that XLA vectorises)."""
  d = [x[i] for i in range(8)]
  tmp10, tmp13 = (d[0] + d[7]) + (d[3] + d[4]), (d[0] + d[7]) - (d[3] + d[4])
  tmp11, tmp12 = (d[1] + d[6]) + (d[2] + d[5]), (d[1] + d[6]) - (d[2] + d[5])
  shift = _CONST_BITS - _PASS1_BITS if first else _CONST_BITS + _PASS1_BITS
  out = [None] * 8
  if first:
    out[0], out[4] = (tmp10 + tmp11) << _PASS1_BITS, (tmp10 - tmp11) << _PASS1_BITS
  else:
    out[0], out[4] = _descale(tmp10 + tmp11, _PASS1_BITS), _descale(tmp10 - tmp11, _PASS1_BITS)
  z1 = (tmp12 + tmp13) * _C['0.541196100']
  out[2] = _descale(z1 + tmp13 * _C['0.765366865'], shift)
  out[6] = _descale(z1 - tmp12 * _C['1.847759065'], shift)
  out[7], out[5], out[3], out[1] = (_descale(v, shift) for v in _rotations(
      d[3] - d[4], d[2] - d[5], d[1] - d[6], d[0] - d[7]))
  return jnp.stack(out, 0)


def _idct_pass(c: jnp.ndarray, first: bool) -> jnp.ndarray:
  """The inverse 1-D pass along axis 0, as ``_fdct_pass``."""
  c = [c[i] for i in range(8)]
  z1 = (c[2] + c[6]) * _C['0.541196100']
  tmp2, tmp3 = z1 - c[6] * _C['1.847759065'], z1 + c[2] * _C['0.765366865']
  tmp0, tmp1 = (c[0] + c[4]) << _CONST_BITS, (c[0] - c[4]) << _CONST_BITS
  tmp10, tmp13, tmp11, tmp12 = tmp0 + tmp3, tmp0 - tmp3, tmp1 + tmp2, tmp1 - tmp2
  t0, t1, t2, t3 = _rotations(c[7], c[5], c[3], c[1])
  shift = _CONST_BITS - _PASS1_BITS if first else _CONST_BITS + _PASS1_BITS + 3
  out = (tmp10 + t3, tmp11 + t2, tmp12 + t1, tmp13 + t0, tmp13 - t0, tmp12 - t1, tmp11 - t2,
         tmp10 - t3)
  return jnp.stack([_descale(v, shift) for v in out], 0)


def _code_plane(plane: jnp.ndarray, table: jnp.ndarray) -> jnp.ndarray:
  """One int32 plane (sides multiples of 8) through libjpeg: level shift, forward DCT (8x
  scaled), quantisation by 8 x table rounded half away from zero (jcdctmgr.c), then the
  decoder's dequantisation, inverse DCT and range limit. The blocks are laid out as (column
  in block, row in block, block row, block column): each pass runs along axis 0."""
  h, w = plane.shape
  blocks = (plane - 128).reshape(h // 8, 8, w // 8, 8).transpose(3, 1, 0, 2)
  swap = lambda x: jnp.swapaxes(x, 0, 1)  # noqa: E731
  coef = _fdct_pass(swap(_fdct_pass(blocks, True)), False)   # rows first, then columns
  table = table[:, :, None, None]                            # (vertical, horizontal) frequency
  divisor = table * 8
  levels = jnp.sign(coef) * ((jnp.abs(coef) + divisor // 2) // divisor)
  pixels = _idct_pass(swap(_idct_pass(levels * table, True)), False)  # columns, then rows
  return jnp.clip(pixels + 128, 0, 255).transpose(2, 1, 3, 0).reshape(h, w)


def _jpeg_one(image: jnp.ndarray, quality, valid_h, valid_w) -> jnp.ndarray:
  """One (H, W, 3) image of integer values 0..255 (any dtype) whose top-left
  ``valid_h x valid_w`` is the picture -> its JPEG decode, int32, same shape."""
  h, w = image.shape[:2]
  padded_h, padded_w = -(-h // 16) * 16, -(-w // 16) * 16
  # libjpeg pads a partial MCU by repeating the last row and column.
  rows = jnp.minimum(jnp.arange(padded_h), valid_h - 1)
  cols = jnp.minimum(jnp.arange(padded_w), valid_w - 1)
  rgb = image.astype(jnp.int32)[rows][:, cols]
  y, cb, cr = _rgb_to_ycbcr(rgb)
  luma_table, chroma_table = quantization_tables(quality)
  y = _code_plane(y, luma_table)
  chroma_h, chroma_w = (valid_h + 1) // 2, (valid_w + 1) // 2
  # Below the image, libjpeg repeats the last downsampled chroma row (jcprepct.c pads the
  # full-size rows only to an even count); to the right it repeats full-size columns.
  chroma_rows = jnp.minimum(jnp.arange(padded_h // 2), chroma_h - 1)
  chroma = jnp.stack([_downsample_h2v2(cb)[chroma_rows], _downsample_h2v2(cr)[chroma_rows]])
  chroma = jax.vmap(_code_plane, in_axes=(0, None))(chroma, chroma_table)
  cb, cr = (_upsample_h2v2_fancy(c, chroma_h, chroma_w) for c in chroma)
  return _ycbcr_to_rgb(y, cb, cr)[:h, :w]


def _check_quality(quality) -> None:
  try:
    values = np.asarray(quality)
  except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
    return  # traced: checked by the caller's settings instead
  if values.size and not (np.all(values >= 1) and np.all(values <= 100)):
    raise UserError(f'JPEG quality must be in 1..100, got {values.min():g}..{values.max():g}')


def jpeg(images: jnp.ndarray, quality) -> jnp.ndarray:
  """JPEG-compresses and decodes uint8 NHWC images (or one HWC image) as libjpeg does at
  ``quality`` (1..100; a scalar or one per image; rounded to an integer as libjpeg takes it).

  Baseline, 4:2:0 chroma subsampling (Pillow's and libjpeg's default). Returns uint8 of the
  input's shape.
  """
  _check_quality(quality)
  images = jnp.asarray(images)
  single = images.ndim == 3
  batch = images[None] if single else images
  n, h, w = batch.shape[:3]
  quality = jnp.broadcast_to(jnp.asarray(quality, jnp.float32), (n,))
  out = jax.vmap(_jpeg_one, in_axes=(0, 0, None, None))(batch, quality, h, w)
  out = out.astype(jnp.uint8)
  return out[0] if single else out


# --------------------------------------------------------------------------------------------
# Blur kernels (BasicSR's degradations.py, on a fixed 21x21 grid)

def _grid() -> tuple[jnp.ndarray, jnp.ndarray]:
  half = MAX_KERNEL_SIZE // 2
  axis = jnp.arange(-half, half + 1, dtype=jnp.float32)
  x, y = jnp.meshgrid(axis, axis)  # x runs along columns, y along rows (BasicSR's mesh_grid)
  return x, y


def _support(size) -> jnp.ndarray:
  """1 inside a centred size x size window of the 21x21 grid: a size-k kernel zero-padded."""
  x, y = _grid()
  half = (jnp.asarray(size, jnp.float32) - 1) / 2
  return ((jnp.abs(x) <= half) & (jnp.abs(y) <= half)).astype(jnp.float32)


def bivariate_kernel(shape: str, sigma_x, sigma_y, theta, beta=1.0, size=MAX_KERNEL_SIZE
                     ) -> jnp.ndarray:
  """A normalised 21x21 blur kernel with a ``size`` x ``size`` support: 'gaussian'
  exp(-q/2), 'generalized' exp(-q^beta/2) or 'plateau' 1/(1 + q^beta), where q = d' S^-1 d and
  S = R(theta) diag(sigma_x^2, sigma_y^2) R(theta)' (sigma_x along the columns at theta 0)."""
  x, y = _grid()
  cos, sin = jnp.cos(theta), jnp.sin(theta)
  u, v = cos * x + sin * y, -sin * x + cos * y
  q = jnp.square(u / sigma_x) + jnp.square(v / sigma_y)
  if shape == 'gaussian':
    kernel = jnp.exp(-0.5 * q)
  elif shape == 'generalized':
    kernel = jnp.exp(-0.5 * jnp.power(q, beta))
  elif shape == 'plateau':
    kernel = 1.0 / (1.0 + jnp.power(q, beta))
  else:
    raise ValueError(f"shape must be 'gaussian', 'generalized' or 'plateau', got {shape!r}")
  kernel = kernel * _support(size)
  return kernel / jnp.sum(kernel)


def _bessel_j1(z: jnp.ndarray, points: int = 128) -> jnp.ndarray:
  """J1(z) = (1/2pi) int_{-pi}^{pi} cos(t - z sin t) dt by the trapezoid rule, which is exact to
  float32 rounding for |z| well below ``points`` (periodic integrand); the kernels need z < 45."""
  t = jnp.linspace(-jnp.pi, jnp.pi, points, endpoint=False)
  return jnp.mean(jnp.cos(t - z[..., None] * jnp.sin(t)), axis=-1)


def _grid_radii() -> tuple[np.ndarray, np.ndarray]:
  """The distinct distances from the centre on the 21x21 grid (66 of 441) and, per grid point,
  the index of its own: J1 is evaluated once per distance."""
  half = MAX_KERNEL_SIZE // 2
  axis = np.arange(-half, half + 1)
  squared = (axis[None, :] ** 2 + axis[:, None] ** 2).ravel()
  distinct, index = np.unique(squared, return_inverse=True)
  return np.sqrt(distinct).astype(np.float32), index.reshape(MAX_KERNEL_SIZE, MAX_KERNEL_SIZE)


def circular_lowpass_kernel(cutoff, size=MAX_KERNEL_SIZE) -> jnp.ndarray:
  """BasicSR's 2-D sinc kernel cutoff J1(cutoff r) / (2 pi r) (cutoff^2 / (4 pi) at the centre)
  with a ``size`` x ``size`` support, normalised, on the 21x21 grid: ringing and overshoot."""
  radii, index = _grid_radii()
  safe_r = np.where(radii == 0, 1.0, radii).astype(np.float32)
  values = jnp.where(radii == 0, cutoff ** 2 / (4 * jnp.pi),
                     cutoff * _bessel_j1(cutoff * safe_r) / (2 * jnp.pi * safe_r))
  kernel = values[index] * _support(size)
  return kernel / jnp.sum(kernel)


def _pulse() -> jnp.ndarray:
  return jnp.zeros((MAX_KERNEL_SIZE,) * 2).at[MAX_KERNEL_SIZE // 2, MAX_KERNEL_SIZE // 2].set(1)


# Random draws. Each image draws one vector of uniforms and maps each entry to its range: one
# threefry call instead of dozens (each jax.random call is a sizeable graph to compile).

def _between(u, low, high):
  return low + (high - low) * u


def _pick(u, n: int):
  """Index 0..n-1, equally likely."""
  return jnp.minimum(jnp.floor(u * n).astype(jnp.int32), n - 1)


def _categorical(u, probs):
  """Index drawn with probabilities ``probs``."""
  edges = jnp.cumsum(jnp.asarray(probs, jnp.float32))
  return jnp.minimum(jnp.sum(u[..., None] >= edges, axis=-1), len(probs) - 1)


def _kernel_size(u, settings: RealESRGANSettings):
  low, high = settings.kernel_size_range
  return low + 2 * _pick(u, (high - low) // 2 + 1)


def _shape_parameter(u_which, u_value, beta_range):
  """BasicSR's draw of a shape exponent: half the time below 1, half above."""
  low, high = beta_range
  return jnp.where(u_which < 0.5, _between(u_value, low, min(1.0, high)),
                   _between(u_value, max(1.0, low), high))


KERNEL_DRAWS = 11  # uniforms one kernel takes


def _kernel_from_uniforms(u, settings: RealESRGANSettings, stage: int) -> jnp.ndarray:
  second = stage == 2
  probs = settings.kernel_probs2 if second else settings.kernel_probs
  sinc_prob = settings.sinc_prob2 if second else settings.sinc_prob
  sigma_range = settings.blur_sigma2 if second else settings.blur_sigma
  betag = settings.betag_range2 if second else settings.betag_range
  betap = settings.betap_range2 if second else settings.betap_range
  size = _kernel_size(u[0], settings)
  kind = _categorical(u[1], probs)
  isotropic = kind % 2 == 0  # KERNEL_TYPES alternates iso, aniso
  sigma_x = _between(u[2], *sigma_range)
  sigma_y = jnp.where(isotropic, sigma_x, _between(u[3], *sigma_range))
  theta = jnp.where(isotropic, 0.0, _between(u[4], -jnp.pi, jnp.pi))
  candidates = jnp.stack([
      bivariate_kernel('gaussian', sigma_x, sigma_y, theta, size=size),
      bivariate_kernel('generalized', sigma_x, sigma_y, theta,
                       _shape_parameter(u[5], u[6], betag), size),
      bivariate_kernel('plateau', sigma_x, sigma_y, theta, _shape_parameter(u[7], u[8], betap),
                       size)])
  cutoff = _between(u[9], jnp.where(size < 13, jnp.pi / 3, jnp.pi / 5), jnp.pi)
  return jnp.where(u[10] < sinc_prob, circular_lowpass_kernel(cutoff, size),
                   candidates[kind // 2])


def random_kernel(key: jax.Array, settings: RealESRGANSettings | None = None,
                  stage: int = 1) -> jnp.ndarray:
  """One 21x21 kernel as Real-ESRGAN draws it for ``stage`` 1 or 2: an odd size from the
  range; with the sinc probability a sinc kernel (cutoff in [pi/3, pi], [pi/5, pi] from size
  13), else one of ``KERNEL_TYPES`` by its probability (iso: one sigma and no rotation)."""
  settings = settings or RealESRGANSettings()
  return _kernel_from_uniforms(jax.random.uniform(key, (KERNEL_DRAWS,)), settings, stage)


def _final_sinc_kernel(u, settings: RealESRGANSettings) -> jnp.ndarray:
  size = _kernel_size(u[0], settings)
  cutoff = _between(u[1], jnp.pi / 3, jnp.pi)
  return jnp.where(u[2] < settings.final_sinc_prob, circular_lowpass_kernel(cutoff, size),
                   _pulse())


# --------------------------------------------------------------------------------------------
# Blur, resize and noise of one image in a buffer with a valid top-left part

def _reflect(indices: jnp.ndarray, valid) -> jnp.ndarray:
  """PyTorch's 'reflect' padding (the edge not repeated) of indices into a length ``valid``."""
  period = jnp.maximum(2 * (valid - 1), 1)
  m = jnp.mod(indices, period)
  return jnp.where(valid > 1, jnp.where(m < valid, m, period - m), 0)


def _fft_length(n: int) -> int:
  """n rounded up to a multiple of 16: FFT sizes with small prime factors run fastest."""
  return -(-n // 16) * 16


def _kernel_spectrum(kernel: jnp.ndarray, shape: tuple[int, int]) -> jnp.ndarray:
  """conj(rfft2(kernel zero-padded to ``shape``)) as two small DFT products: the 21x21 kernel
  needs 21 columns of each DFT matrix, cheaper than an FFT of the padded array."""
  rows, cols = shape
  size = kernel.shape[0]
  left = np.exp(-2j * np.pi * np.outer(np.arange(rows), np.arange(size)) / rows)
  right = np.exp(-2j * np.pi * np.outer(np.arange(size), np.arange(cols // 2 + 1)) / cols)
  return jnp.conj(left.astype(np.complex64) @ kernel.astype(jnp.complex64)
                  @ right.astype(np.complex64))


def _blur_one(image: jnp.ndarray, kernel: jnp.ndarray, valid_h, valid_w) -> jnp.ndarray:
  """BasicSR's ``filter2D``: correlation with a 21x21 kernel over reflect padding (at the
  valid edge). Computed by FFT: a per-image 21x21 kernel is a grouped convolution, which
  XLA:CPU runs ~20x slower than the transforms; the padding keeps the circular product from
  wrapping, so this is the linear correlation up to float32 rounding."""
  h, w, _ = image.shape
  pad = MAX_KERNEL_SIZE // 2
  if isinstance(valid_h, int) and isinstance(valid_w, int) and (valid_h, valid_w) == (h, w) \
      and min(h, w) > pad:
    # The whole image is valid (known when tracing): static slices, not a gather.
    padded = jnp.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode='reflect')
  else:
    rows = _reflect(jnp.arange(-pad, h + pad), valid_h)
    cols = _reflect(jnp.arange(-pad, w + pad), valid_w)
    padded = image[rows][:, cols]
  shape = (_fft_length(h + 2 * pad), _fft_length(w + 2 * pad))
  spectrum = jnp.fft.rfft2(padded, s=shape, axes=(0, 1))
  kernel_spectrum = _kernel_spectrum(kernel.astype(image.dtype), shape)
  out = jnp.fft.irfft2(spectrum * kernel_spectrum[..., None], s=shape, axes=(0, 1))
  return out[:h, :w].astype(image.dtype)


def blur(images: jnp.ndarray, kernels: jnp.ndarray) -> jnp.ndarray:
  """Float NHWC images, each filtered with its own (N, 21, 21) kernel (or one shared (21, 21)
  kernel) over reflect padding, as BasicSR's ``filter2D``."""
  kernels = jnp.broadcast_to(kernels, (images.shape[0],) + kernels.shape[-2:])
  h, w = images.shape[1:3]
  return jax.vmap(_blur_one, in_axes=(0, 0, None, None))(images, kernels, h, w)


def _cubic_weights(t: jnp.ndarray) -> jnp.ndarray:
  """PyTorch's bicubic taps (A = -0.75) for offsets t in [0, 1): weights of i-1 .. i+2."""
  a = -0.75
  def near(x):   # |x| <= 1
    return ((a + 2) * x - (a + 3)) * x * x + 1
  def far(x):    # 1 < |x| < 2
    return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
  return jnp.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=-1)


def _interpolation_matrix(mode, in_size, out_size, inverse_scale, rows: int, cols: int
                          ) -> jnp.ndarray:
  """The (rows, cols) matrix of one 1-D ``F.interpolate`` pass from ``in_size`` valid inputs to
  ``out_size`` valid outputs (rows past it are zero); ``mode`` indexes ``RESIZE_MODES``.
  ``inverse_scale`` maps output to input coordinates (1/scale_factor, or in/out for a size)."""
  out = jnp.arange(rows)
  inputs = jnp.arange(cols)
  last = in_size - 1

  def one_hot(indices):
    return (indices[..., None] == inputs).astype(jnp.float32)

  # area: adaptive average pooling over [floor(o in/out), ceil((o+1) in/out)).
  start = (out * in_size) // out_size
  end = ((out + 1) * in_size + out_size - 1) // out_size
  inside = (inputs[None, :] >= start[:, None]) & (inputs[None, :] < end[:, None])
  area = inside / jnp.maximum(end - start, 1)[:, None]
  # bilinear: source clamped at 0, the upper neighbour clamped at the edge.
  source = jnp.maximum(inverse_scale * (out + 0.5) - 0.5, 0.0)
  low = jnp.minimum(jnp.floor(source).astype(jnp.int32), last)
  frac = source - low
  high = jnp.minimum(low + 1, last)
  bilinear = (1 - frac)[:, None] * one_hot(low) + frac[:, None] * one_hot(high)
  # bicubic: four taps around floor(source), indices clamped into the image.
  source = inverse_scale * (out + 0.5) - 0.5
  base = jnp.floor(source)
  taps = jnp.clip(base.astype(jnp.int32)[:, None] + jnp.arange(-1, 3), 0, last)
  bicubic = jnp.einsum('ot,otc->oc', _cubic_weights(source - base), one_hot(taps))
  matrix = jnp.stack([area, bilinear, bicubic])[mode]
  return jnp.where((out < out_size)[:, None], matrix, 0.0)


def _resize_one(image, mode, in_size, out_size, inverse_scale, out_shape) -> jnp.ndarray:
  rows = _interpolation_matrix(mode, in_size[0], out_size[0], inverse_scale[0], out_shape[0],
                               image.shape[0])
  cols = _interpolation_matrix(mode, in_size[1], out_size[1], inverse_scale[1], out_shape[1],
                               image.shape[1])
  return jnp.einsum('oh,hwc,pw->opc', rows, image, cols, precision='highest')


def resize(images: jnp.ndarray, size: tuple[int, int], mode: str = 'bicubic',
           scale_factor: float | None = None) -> jnp.ndarray:
  """Float NHWC images resized as PyTorch's ``F.interpolate(x, size, mode=mode)`` (or with
  ``scale_factor``, which also sets the coordinate mapping, as PyTorch does)."""
  if mode not in RESIZE_MODES:
    raise ValueError(f'mode must be one of {RESIZE_MODES}, got {mode!r}')
  h, w = images.shape[1:3]
  if scale_factor is not None:
    size = (int(math.floor(h * scale_factor)), int(math.floor(w * scale_factor)))
    inverse = (1.0 / scale_factor,) * 2
  else:
    inverse = (h / size[0], w / size[1])
  mode_index = RESIZE_MODES.index(mode)
  return jax.vmap(lambda x: _resize_one(x, mode_index, (h, w), size, inverse, size))(images)


# Per-pixel random numbers. jax.random's Threefry runs on XLA:CPU as a rolled loop of five
# rounds, each reading and writing the whole (image-sized) state, which made the noise cost
# more than the rest of its stage; unrolled, the 20 rounds fuse into one pass. The same hash
# as ``jax.extend.random.threefry_2x32`` (tests/degradations_test.py checks it), with each
# pixel's counter made from its row and column, so that a pixel's noise does not depend on the
# size of the buffer the image sits in.

def _rotate_left(x, d: int):
  return (x << np.uint32(d)) | (x >> np.uint32(32 - d))


def _threefry(keypair: jnp.ndarray, x0: jnp.ndarray, x1: jnp.ndarray):
  """Threefry-2x32, 20 rounds, unrolled: two uint32 words from two under the uint32[2] key."""
  k0, k1 = keypair[0], keypair[1]
  ks = (k0, k1, k0 ^ k1 ^ np.uint32(0x1BD11BDA))
  rotations = ((13, 15, 26, 6), (17, 29, 16, 24))
  x0, x1 = x0 + ks[0], x1 + ks[1]
  for i in range(5):
    for d in rotations[i % 2]:
      x0 = x0 + x1
      x1 = _rotate_left(x1, d) ^ x0
    x0 = x0 + ks[(i + 1) % 3]
    x1 = x1 + ks[(i + 2) % 3] + np.uint32(i + 1)
  return x0, x1


def threefry_2x32(keypair: jnp.ndarray, count: jnp.ndarray) -> jnp.ndarray:
  """``jax.extend.random.threefry_2x32``'s function (a uint32 ``count`` array of even size,
  its flattened first half paired with the second), unrolled so that XLA fuses it."""
  flat = count.ravel()
  half = flat.shape[0] // 2
  return jnp.concatenate(_threefry(keypair, flat[:half], flat[half:])).reshape(count.shape)


def _pixel_bits(key: jax.Array, shape: tuple[int, int, int]) -> jnp.ndarray:
  """(H, W, C) random uint32 words; pixel (i, j)'s depend only on the key, i and j, so a
  pixel's noise does not depend on the buffer size. Threefry's two counter words are the row
  and (column, channel pair): distinct for every pixel of any image under 2^31 columns."""
  h, w, c = shape
  pairs = -(-c // 2)
  rows = jnp.broadcast_to(jnp.arange(h, dtype=jnp.uint32)[:, None], (h, w))
  columns = jnp.broadcast_to(jnp.arange(w, dtype=jnp.uint32)[None, :] * np.uint32(pairs), (h, w))
  keypair = jax.random.key_data(key).ravel()[:2]
  words = []
  for pair in range(pairs):
    words.extend(_threefry(keypair, rows, columns + np.uint32(pair)))
  return jnp.stack(words[:c], axis=-1)


def _uniform(key: jax.Array, shape: tuple[int, int, int], low: float = 0.0) -> jnp.ndarray:
  """Uniform float32 in [low, 1) per pixel from 23 random mantissa bits (jax.random's way)."""
  bits = (_pixel_bits(key, shape) >> np.uint32(9)) | np.uint32(0x3F800000)
  floats = jax.lax.bitcast_convert_type(bits, jnp.float32) - 1.0
  return jnp.maximum(low, low + floats * (1.0 - low))


def _normal(key: jax.Array, shape: tuple[int, int, int]) -> jnp.ndarray:
  """Standard normal float32 per pixel by the inverse error function, as jax.random.normal."""
  low = float(np.nextafter(np.float32(-1.0), np.float32(0.0)))
  return np.float32(np.sqrt(2)) * jax.lax.erf_inv(_uniform(key, shape, low))


def _gray(image: jnp.ndarray) -> jnp.ndarray:
  # torchvision's rgb_to_grayscale weights (BasicSR's gray noise).
  return (0.2989 * image[..., 0] + 0.587 * image[..., 1] + 0.114 * image[..., 2])[..., None]


def gaussian_noise(key, image: jnp.ndarray, sigma, gray) -> jnp.ndarray:
  """One float [0, 1] HWC image plus N(0, sigma^2) noise (sigma on the [0, 1] scale), the same
  on every channel when ``gray``; clipped to [0, 1]."""
  h, w, c = image.shape
  noise = _normal(key, (h, w, c))
  noise = jnp.where(gray, jnp.broadcast_to(noise[..., :1], noise.shape), noise)
  return jnp.clip(image + sigma * noise, 0.0, 1.0)


# Poisson counts are drawn by inverting the CDF: v x is one of 256 rates per image (x is 8-bit),
# so one CDF table per rate serves every pixel, and a table search replaces the rejection loop
# of ``jax.random.poisson`` (which runs ~50x slower here, vectorised over a batch).
_POISSON_MAX_COUNT = 512  # the largest rate is 256; P(count >= 512) < 1e-40


def _poisson_counts(u: jnp.ndarray, levels: jnp.ndarray, vals) -> jnp.ndarray:
  """Poisson(levels / 255 * vals) samples for int32 ``levels`` in 0..255 (float32), by
  inverting the CDF at the uniforms ``u``."""
  rates = jnp.arange(256, dtype=jnp.float32) / 255.0 * vals
  counts = jnp.arange(_POISSON_MAX_COUNT, dtype=jnp.float32)
  safe_rates = jnp.maximum(rates, 1e-30)[:, None]
  log_pmf = (counts * jnp.log(safe_rates) - safe_rates
             - jax.scipy.special.gammaln(counts + 1.0))
  pmf = jnp.where(rates[:, None] > 0, jnp.exp(log_pmf), (counts == 0).astype(jnp.float32))
  cdf = jnp.cumsum(pmf, axis=1)
  # Normalised so that the float32 sum reaches 1: else a u above its rounded total (about 1 in
  # 10^7) ran to the last count, 511, a white speck.
  cdf = (cdf / cdf[:, -1:]).at[:, -1].set(jnp.inf)
  # The count is the number of CDF entries below u. Counted in two steps over contiguous
  # rows (every 16th entry, then the 16 entries of the row found): two vector gathers per
  # pixel instead of a 9-step bisection's nine scalar ones, the same result.
  group = 16
  coarse = cdf[:, group - 1::group]
  row = jnp.sum(coarse[levels] < u[..., None], axis=-1)
  fine = cdf.reshape(256, _POISSON_MAX_COUNT // group, group)[levels, row]
  return (row * group + jnp.sum(fine < u[..., None], axis=-1)).astype(jnp.float32)


def poisson_noise(key, image: jnp.ndarray, scale, gray, valid_h=None, valid_w=None
                  ) -> jnp.ndarray:
  """BasicSR's Poisson noise on one float [0, 1] HWC image: with v the number of distinct
  8-bit levels in the (valid part of the) image rounded up to a power of two, the noise is
  Poisson(v x) / v - x of the 8-bit-rounded x, times ``scale``; clipped to [0, 1]. Its
  variance is scale^2 x / v. When ``gray``, x is the image's luma and the noise is the same
  on every channel."""
  h, w, c = image.shape
  valid_h = h if valid_h is None else valid_h
  valid_w = w if valid_w is None else valid_w
  inside = ((jnp.arange(h)[:, None] < valid_h) & (jnp.arange(w)[None, :] < valid_w))
  # One pass serves both cases: grey noise is the colour computation on the luma copied to
  # every channel, with one uniform per pixel shared by the channels.
  source = jnp.where(gray, jnp.broadcast_to(_gray(image), image.shape), image)
  u = _uniform(key, (h, w, c))
  u = jnp.where(gray, jnp.broadcast_to(u[..., :1], u.shape), u)
  levels = jnp.clip(jnp.round(source * 255.0), 0, 255).astype(jnp.int32)
  weights = jnp.broadcast_to(inside[..., None], levels.shape).astype(jnp.float32)
  present = jnp.zeros(256).at[levels.ravel()].add(weights.ravel()) > 0
  count = jnp.maximum(jnp.sum(present), 1).astype(jnp.float32)
  vals = jnp.exp2(jnp.ceil(jnp.log2(count)))
  noise = _poisson_counts(u, levels, vals) / vals - levels / 255.0
  return jnp.clip(image + scale * noise, 0.0, 1.0)


# --------------------------------------------------------------------------------------------
# The pipeline

def _random_factor(u_kind, u_value, probs, value_range):
  """Real-ESRGAN's resize draw: up in [1, high], down in [low, 1] or keep, by ``probs``."""
  kind = _categorical(u_kind, probs)
  return jnp.where(kind == 0, _between(u_value, 1.0, value_range[1]),
                   jnp.where(kind == 1, _between(u_value, value_range[0], 1.0), 1.0))


def _quality(u, quality_range):
  """An integer JPEG quality, uniform over the range (libjpeg takes integers)."""
  low, high = int(round(quality_range[0])), int(round(quality_range[1]))
  return (low + _pick(u, high - low + 1)).astype(jnp.float32)


def _jpeg_float(image, quality, valid_h, valid_w):
  """[0, 1] float -> 8-bit samples -> libjpeg round trip -> [0, 1] float."""
  samples = jnp.clip(jnp.round(image * 255.0), 0, 255)
  return _jpeg_one(samples, quality, valid_h, valid_w).astype(jnp.float32) / 255.0


def _buffer_size(length: int, value_range) -> int:
  return max(length, int(math.floor(length * max(1.0, value_range[1]))))


# Sizes (fractions of HR) of the first stage's buffers below the largest: a batch resized by
# f works in the smallest that holds it. With Real-ESRGAN's factors (0.15..1.5) three buffers
# hold 1.03 x HR's pixels on average against 2.25 for the largest alone.
_FIRST_STAGE_FRACTIONS = (0.5, 1.0)


def _first_stage_buffers(h: int, w: int, value_range) -> list[tuple[int, int]]:
  largest = (_buffer_size(h, value_range), _buffer_size(w, value_range))
  smaller = [(max(int(math.floor(h * f)), 1), max(int(math.floor(w * f)), 1))
             for f in _FIRST_STAGE_FRACTIONS if value_range[0] <= f < max(1.0, value_range[1])]
  return [b for b in smaller if b != largest] + [largest]


def _per_image(fn, *args):
  return jax.vmap(fn)(*args)


def _noise_stage(keys, u, images, gaussian, settings, second: bool, valid_sizes):
  """Gaussian (when ``gaussian``, a per-batch choice: one branch runs) or Poisson noise, each
  image with its own strength (``u[:, 0]``), grey/colour (``u[:, 1]``) and pixel ``keys``."""
  sigma_range = settings.noise_range2 if second else settings.noise_range
  poisson_range = settings.poisson_scale_range2 if second else settings.poisson_scale_range
  gray_prob = settings.gray_noise_prob2 if second else settings.gray_noise_prob
  gray = u[:, 1] < gray_prob

  def add_gaussian(images):
    sigma = _between(u[:, 0], *sigma_range) / 255.0
    return jax.vmap(gaussian_noise)(keys, images, sigma, gray)

  def add_poisson(images):
    scale = _between(u[:, 0], *poisson_range)
    return jax.vmap(poisson_noise)(keys, images, scale, gray, *valid_sizes)
  return jax.lax.cond(gaussian, add_gaussian, add_poisson, images)


# Where each image's draws sit in its vector of uniforms.
_DRAWS = {'kernel1': slice(0, KERNEL_DRAWS), 'kernel2': slice(KERNEL_DRAWS, 2 * KERNEL_DRAWS)}
_DRAWS.update({name: 2 * KERNEL_DRAWS + i for i, name in enumerate((
    'mode1', 'noise1', 'gray1', 'quality1', 'second_blur',
    'factor2_kind', 'factor2', 'mode2', 'noise2', 'gray2', 'sinc_size', 'sinc_cutoff',
    'sinc_use', 'quality2', 'mode3'))})
_NUM_DRAWS = 2 * KERNEL_DRAWS + 15


def realesrgan(key: jax.Array, hr_images: jnp.ndarray, scale: int,
               config: RealESRGANSettings | None = None, *, first_index=0) -> jnp.ndarray:
  """Real-ESRGAN's degradation of a uint8 NHWC HR batch -> uint8 LR of HR/scale.

  Drawn per image (from ``fold_in`` of the key by ``first_index + i``): both blur kernels and
  whether the second applies, the resize modes and the second stage's factor, noise strengths
  and grey/colour, JPEG qualities and the final sinc filter. Drawn per batch (from the key
  alone), as Real-ESRGAN does: the first stage's resize factor, Gaussian or Poisson noise in
  each stage and the order of the final resize and JPEG, so that only the chosen branch runs
  and the first stage works at (about) the batch's drawn size. The same key and image index give the same
  LR whatever the batch split (``first_index``: the offset of this batch's first image in a
  larger one, e.g. a device's share under ``pmap``), up to float rounding that can move a rare
  value by one level.
  """
  settings = (config or RealESRGANSettings()).validate()
  hr_images = jnp.asarray(hr_images)
  if hr_images.ndim != 4 or hr_images.shape[-1] != 3:
    raise ValueError(f'realesrgan expects uint8 (N, H, W, 3) images, got {hr_images.shape}')
  n, h, w = hr_images.shape[:3]
  if h % scale or w % scale:
    raise ValueError(f'HR size {h}x{w} is not a multiple of the scale {scale}; crop it first')
  lr_h, lr_w = h // scale, w // scale
  batch_key, image_key = jax.random.split(key)
  batch_u = jax.random.uniform(batch_key, (5,))

  def image_draws(i):
    k_uniform, k_noise1, k_noise2 = jax.random.split(jax.random.fold_in(image_key, i), 3)
    return jax.random.uniform(k_uniform, (_NUM_DRAWS,)), k_noise1, k_noise2
  u, noise_keys1, noise_keys2 = jax.vmap(image_draws)(first_index + jnp.arange(n))
  draw = lambda name: u[:, _DRAWS[name]]  # noqa: E731
  x = hr_images.astype(jnp.float32) / 255.0

  # First stage at HR size: blur, resize by a random factor (one per batch, as Real-ESRGAN
  # draws it), noise, JPEG; then the second stage's blur and resize to a factor of HR/scale.
  kernels = _per_image(lambda v: _kernel_from_uniforms(v, settings, 1), draw('kernel1'))
  x = _per_image(lambda img, kern: _blur_one(img, kern, h, w), x, kernels)
  factor = _random_factor(batch_u[3], batch_u[4], settings.resize_prob, settings.resize_range)
  size1 = (jnp.maximum(jnp.floor(h * factor), 1).astype(jnp.int32),
           jnp.maximum(jnp.floor(w * factor), 1).astype(jnp.int32))
  sizes1 = tuple(jnp.broadcast_to(size, (n,)) for size in size1)
  kernels2 = _per_image(lambda v: _kernel_from_uniforms(v, settings, 2), draw('kernel2'))
  kernels2 = jnp.where((draw('second_blur') < settings.second_blur_prob)[:, None, None],
                       kernels2, _pulse())
  factor2 = _random_factor(draw('factor2_kind'), draw('factor2'), settings.resize_prob2,
                           settings.resize_range2)
  size2 = (jnp.maximum(jnp.floor(h / scale * factor2), 1).astype(jnp.int32),
           jnp.maximum(jnp.floor(w / scale * factor2), 1).astype(jnp.int32))
  buffer2 = (_buffer_size(lr_h, settings.resize_range2),
             _buffer_size(lr_w, settings.resize_range2))

  def first_stage(buffer1, x):
    x = _per_image(lambda img, m: _resize_one(img, m, (h, w), size1, (1.0 / factor,) * 2,
                                              buffer1),
                   x, _pick(draw('mode1'), len(RESIZE_MODES)))
    x = _noise_stage(noise_keys1, jnp.stack([draw('noise1'), draw('gray1')], 1), x,
                     batch_u[0] < settings.gaussian_noise_prob, settings, False, sizes1)
    x = _per_image(_jpeg_float, x, _quality(draw('quality1'), settings.jpeg_range), *sizes1)
    x = _per_image(_blur_one, x, kernels2, *sizes1)
    return _per_image(lambda img, m, oh, ow: _resize_one(
        img, m, size1, (oh, ow), (size1[0] / oh, size1[1] / ow), buffer2),
        x, _pick(draw('mode2'), len(RESIZE_MODES)), size2[0], size2[1])
  # The first stage's images live in the smallest of a few buffers that holds this batch's
  # size: one compiled branch per buffer, and the one that fits runs.
  buffers = _first_stage_buffers(h, w, settings.resize_range)
  which = sum((size1[0] > bh) | (size1[1] > bw) for bh, bw in buffers[:-1])
  x = jax.lax.switch(which, [functools.partial(first_stage, b) for b in buffers], x)
  x = _noise_stage(noise_keys2, jnp.stack([draw('noise2'), draw('gray2')], 1), x,
                   batch_u[1] < settings.gaussian_noise_prob2, settings, True, size2)

  # Final: resize to HR/scale + sinc filter + JPEG, or JPEG first (per batch).
  sinc = _per_image(lambda a, b, c: _final_sinc_kernel(jnp.stack([a, b, c]), settings),
                    draw('sinc_size'), draw('sinc_cutoff'), draw('sinc_use'))
  quality = _quality(draw('quality2'), settings.jpeg_range2)
  mode = _pick(draw('mode3'), len(RESIZE_MODES))
  resize_first = batch_u[2] < 0.5

  def to_lr(images, out_shape):
    def one(img, m, ih, iw, kern):
      img = _resize_one(img, m, (ih, iw), (lr_h, lr_w), (ih / lr_h, iw / lr_w), out_shape)
      return _blur_one(img, kern, lr_h, lr_w)
    return _per_image(one, images, mode, size2[0], size2[1], sinc)
  # One JPEG for both orders (it is the costliest graph to compile): at the buffer size, on
  # the LR image (resize first) or the second stage's output (JPEG first).
  x = jax.lax.cond(resize_first, lambda y: to_lr(y, buffer2), lambda y: y, x)
  valid = (jnp.where(resize_first, lr_h, size2[0]), jnp.where(resize_first, lr_w, size2[1]))
  x = _per_image(_jpeg_float, x, quality, *valid)
  x = jax.lax.cond(resize_first, lambda y: y[:, :lr_h, :lr_w],
                   lambda y: to_lr(y, (lr_h, lr_w)), x)
  return jnp.clip(jnp.round(x * 255.0), 0, 255).astype(jnp.uint8)


def degrade_each(key: jax.Array, hr_images: jnp.ndarray, scale: int,
                 config: RealESRGANSettings | None = None) -> jnp.ndarray:
  """``realesrgan`` of each image alone with ``fold_in(key, i)`` (the per-batch choices made
  per image): image i's LR does not depend on how many images are degraded with it, which
  makes evaluation inputs reproducible under any batch size.

  The images go one after another (``lax.map``), not through ``vmap``: under ``vmap`` each
  image's own branch choices become selects, so every first-stage buffer and both noise kinds
  and JPEG orders would run for every image."""
  hr_images = jnp.asarray(hr_images)
  keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(hr_images.shape[0]))
  return jax.lax.map(lambda args: realesrgan(args[0], args[1][None], scale, config)[0],
                     (keys, hr_images))


def evaluation_lr(hr_image: jnp.ndarray, scale: int, settings: RealESRGANSettings, seed: int,
                  index) -> jnp.ndarray:
  """The realistic LR of image ``index`` of an evaluation set: ``realesrgan`` of the one
  (H, W, 3) uint8 image with ``fold_in(key(seed), index)``, the same in every tool and run."""
  key = jax.random.fold_in(jax.random.key(seed), index)
  return realesrgan(key, jnp.asarray(hr_image)[None], scale, settings)[0]


# Folded into the seed's key so that the degradation's random stream is not the one that
# initialises the model.
_TRAINING_STREAM = 0x5EED


@dataclasses.dataclass(frozen=True)
class TrainingDegradation:
  """Real-ESRGAN LR for a train step: the key is the run's seed folded with the step, so a
  resumed run degrades step N exactly as an uninterrupted one. Frozen and hashable: a static
  argument of the jitted step."""
  settings: RealESRGANSettings = RealESRGANSettings()
  seed: int = 0

  def key(self, step) -> jax.Array:
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(self.seed), _TRAINING_STREAM),
                              step)

  def __call__(self, hr_images, scale: int, step, axis_name: str | None = None):
    """uint8 HR -> uint8 LR for ``step``; under ``axis_name`` (``pmap``) each device degrades
    its images with their global indices, so N devices make the LR one device would."""
    first = 0 if axis_name is None else jax.lax.axis_index(axis_name) * hr_images.shape[0]
    return realesrgan(self.key(step), hr_images, scale, self.settings, first_index=first)
