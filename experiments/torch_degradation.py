"""Real-ESRGAN's degradation as Real-ESRGAN runs it, in NumPy and PyTorch: the peer
``bench.py --degradation`` times ``flax_sr.degradations.realesrgan`` against.

Real-ESRGAN splits the work in two (``realesrgan/data/realesrgan_dataset.py`` and
``RealESRGANModel.feed_data``), and so does this peer:

* ``draw_kernels``: each image's two blur kernels and its final sinc filter, drawn and built
  in NumPy (the dataset's workers do this per image; SciPy's ``j1`` for the sinc kernels);
* ``degrade``: the batch through two stages of blur (``filter2D``: reflect padding and a
  grouped convolution with each image's kernel) -> random resize (``F.interpolate``) ->
  Gaussian or Poisson noise -> JPEG, then resize to HR/scale + sinc + JPEG in either order.
  JPEG is the float DCT codec Real-ESRGAN trains with (BasicSR's ``DiffJPEG``: YCbCr, 2x2
  chroma averaging, 8x8 DCT, the libjpeg tables scaled by quality, rounding), written out here.

The settings are flax_sr's ``RealESRGANSettings`` (Real-ESRGAN's defaults). Where Real-ESRGAN
draws once per batch, so does this peer: the resize factors and modes, whether the second blur
applies, Gaussian or Poisson noise, the final order. flax_sr draws the factors, modes and the
second blur per image (every image its own size inside a fixed buffer), which is more work, not
less. Real-ESRGAN's unsharp masking of the HR target is not part of the LR and is left out on
both sides. ``tests/degradations_test.py`` checks the pieces against flax_sr's: kernels, blur,
resize, noise statistics, JPEG within the codecs' difference.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.special
import torch
import torch.nn.functional as F

from flax_sr.degradation_settings import MAX_KERNEL_SIZE, RealESRGANSettings

RESIZE_MODES = ('area', 'bilinear', 'bicubic')


# --------------------------------------------------------------------------------------------
# Kernels (NumPy, per image)

def _grid() -> tuple[np.ndarray, np.ndarray]:
  half = MAX_KERNEL_SIZE // 2
  axis = np.arange(-half, half + 1, dtype=np.float64)
  return np.meshgrid(axis, axis)


def _support(size: int) -> np.ndarray:
  x, y = _grid()
  half = (size - 1) / 2
  return ((np.abs(x) <= half) & (np.abs(y) <= half)).astype(np.float64)


def bivariate_kernel(shape: str, sigma_x: float, sigma_y: float, theta: float,
                     beta: float = 1.0, size: int = MAX_KERNEL_SIZE) -> np.ndarray:
  """Gaussian, generalized Gaussian or plateau kernel with covariance R diag(sx^2, sy^2) R'."""
  x, y = _grid()
  u = math.cos(theta) * x + math.sin(theta) * y
  v = -math.sin(theta) * x + math.cos(theta) * y
  q = (u / sigma_x) ** 2 + (v / sigma_y) ** 2
  kernel = {'gaussian': lambda: np.exp(-0.5 * q),
            'generalized': lambda: np.exp(-0.5 * q ** beta),
            'plateau': lambda: 1.0 / (1.0 + q ** beta)}[shape]()
  kernel = kernel * _support(size)
  return kernel / kernel.sum()


def circular_lowpass_kernel(cutoff: float, size: int = MAX_KERNEL_SIZE) -> np.ndarray:
  """The 2-D sinc kernel cutoff J1(cutoff r) / (2 pi r)."""
  x, y = _grid()
  r = np.hypot(x, y)
  with np.errstate(divide='ignore', invalid='ignore'):
    kernel = cutoff * scipy.special.j1(cutoff * r) / (2 * np.pi * r)
  kernel[r == 0] = cutoff ** 2 / (4 * np.pi)
  kernel = kernel * _support(size)
  return kernel / kernel.sum()


def _pulse() -> np.ndarray:
  kernel = np.zeros((MAX_KERNEL_SIZE,) * 2)
  kernel[MAX_KERNEL_SIZE // 2, MAX_KERNEL_SIZE // 2] = 1.0
  return kernel


def _shape_parameter(rng, beta_range) -> float:
  low, high = beta_range
  return rng.uniform(low, min(1.0, high)) if rng.uniform() < 0.5 else rng.uniform(max(1.0, low),
                                                                                  high)


def random_kernel(rng: np.random.Generator, settings: RealESRGANSettings, stage: int
                  ) -> np.ndarray:
  """One stage's kernel as the dataset draws it: an odd size; a sinc kernel with the sinc
  probability, else a Gaussian / generalized / plateau kernel, isotropic or not."""
  second = stage == 2
  low, high = settings.kernel_size_range
  size = int(rng.choice(np.arange(low, high + 1, 2)))
  if rng.uniform() < (settings.sinc_prob2 if second else settings.sinc_prob):
    cutoff = rng.uniform(np.pi / 3 if size < 13 else np.pi / 5, np.pi)
    return circular_lowpass_kernel(cutoff, size)
  probs = np.asarray(settings.kernel_probs2 if second else settings.kernel_probs)
  kind = int(rng.choice(len(probs), p=probs / probs.sum()))
  sigma_range = settings.blur_sigma2 if second else settings.blur_sigma
  sigma_x = rng.uniform(*sigma_range)
  if kind % 2 == 0:
    sigma_y, theta = sigma_x, 0.0
  else:
    sigma_y, theta = rng.uniform(*sigma_range), rng.uniform(-np.pi, np.pi)
  shape = ('gaussian', 'generalized', 'plateau')[kind // 2]
  beta = 1.0
  if shape == 'generalized':
    beta = _shape_parameter(rng, settings.betag_range2 if second else settings.betag_range)
  elif shape == 'plateau':
    beta = _shape_parameter(rng, settings.betap_range2 if second else settings.betap_range)
  return bivariate_kernel(shape, sigma_x, sigma_y, theta, beta, size)


def draw_kernels(rng: np.random.Generator, batch: int, settings: RealESRGANSettings
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
  """(kernel1, kernel2, sinc), each (batch, 21, 21) float32: what the dataset hands over."""
  kernels1, kernels2, sincs = [], [], []
  low, high = settings.kernel_size_range
  for _ in range(batch):
    kernels1.append(random_kernel(rng, settings, 1))
    kernels2.append(random_kernel(rng, settings, 2))
    if rng.uniform() < settings.final_sinc_prob:
      size = int(rng.choice(np.arange(low, high + 1, 2)))
      sincs.append(circular_lowpass_kernel(rng.uniform(np.pi / 3, np.pi), size))
    else:
      sincs.append(_pulse())
  return tuple(torch.from_numpy(np.stack(k).astype(np.float32))
               for k in (kernels1, kernels2, sincs))


# --------------------------------------------------------------------------------------------
# The batch pipeline (PyTorch, NCHW float in [0, 1])

def filter2d(images: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
  """Each image correlated with its own odd k x k kernel over reflect padding: one grouped
  convolution over the batch's channels."""
  b, c, h, w = images.shape
  k = kernels.shape[-1]
  padded = F.pad(images, (k // 2,) * 4, mode='reflect')
  weight = kernels.view(b, 1, k, k).repeat(1, c, 1, 1).view(b * c, 1, k, k)
  out = F.conv2d(padded.reshape(1, b * c, *padded.shape[-2:]), weight, groups=b * c)
  return out.view(b, c, h, w)


def _gray(images: torch.Tensor) -> torch.Tensor:
  return (0.2989 * images[:, 0:1] + 0.587 * images[:, 1:2] + 0.114 * images[:, 2:3])


def gaussian_noise(images: torch.Tensor, sigma: torch.Tensor, gray: torch.Tensor,
                   generator: torch.Generator) -> torch.Tensor:
  """Per-image sigma (on [0, 1]) and grey flag: colour and grey noise both drawn, then mixed."""
  b, c, h, w = images.shape
  colour = torch.randn(images.shape, generator=generator) * sigma.view(b, 1, 1, 1)
  grey = torch.randn((b, 1, h, w), generator=generator) * sigma.view(b, 1, 1, 1)
  g = gray.view(b, 1, 1, 1).to(images.dtype)
  return torch.clamp(images + colour * (1 - g) + grey * g, 0, 1)


def _poisson(values: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
  """Poisson noise of 8-bit-rounded values, the rate scaled per image by the number of distinct
  levels rounded up to a power of 2."""
  values = torch.clamp((values * 255.0).round(), 0, 255) / 255.0
  levels = [2.0 ** math.ceil(math.log2(len(torch.unique(v)))) for v in values]
  vals = values.new_tensor(levels).view(-1, 1, 1, 1)
  return torch.poisson(values * vals, generator=generator) / vals - values


def poisson_noise(images: torch.Tensor, scale: torch.Tensor, gray: torch.Tensor,
                  generator: torch.Generator) -> torch.Tensor:
  b = images.shape[0]
  noise = _poisson(images, generator)
  if bool(gray.any()):
    g = gray.view(b, 1, 1, 1).to(images.dtype)
    noise = noise * (1 - g) + _poisson(_gray(images), generator) * g
  return torch.clamp(images + noise * scale.view(b, 1, 1, 1), 0, 1)


# The JPEG tables (ITU T.81 Annex K), as libjpeg scales them by quality.
_LUMA_TABLE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], np.float32)
_CHROMA_TABLE = np.full(64, 99, np.float32)
_CHROMA_TABLE[[0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 24, 25]] = [
    17, 18, 24, 47, 18, 21, 26, 66, 24, 26, 56, 47, 66]


def _dct_matrix() -> torch.Tensor:
  """The orthonormal 8-point DCT-II: JPEG's 2-D DCT is D X D'."""
  k, n = np.meshgrid(np.arange(8), np.arange(8), indexing='ij')
  d = np.cos((2 * n + 1) * k * np.pi / 16) * np.sqrt(2 / 8)
  d[0] /= np.sqrt(2)
  return torch.from_numpy(d.astype(np.float32))


_DCT = _dct_matrix()


def _round(x: torch.Tensor) -> torch.Tensor:
  """DiffJPEG's differentiable rounding (forward value: x rounded, plus a small cubic term)."""
  rounded = torch.round(x)
  return rounded + (x - rounded) ** 3


def _code_plane(plane: torch.Tensor, tables: torch.Tensor) -> torch.Tensor:
  """(B, H, W) level-shifted samples, H and W multiples of 8 -> quantised and reconstructed."""
  b, h, w = plane.shape
  blocks = plane.view(b, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4)
  coefficients = _DCT @ blocks @ _DCT.T
  step = tables.view(b, 1, 1, 8, 8)
  blocks = _DCT.T @ (_round(coefficients / step) * step) @ _DCT
  return blocks.permute(0, 1, 3, 2, 4).reshape(b, h, w)


def jpeg(images: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
  """A float JPEG round trip (4:2:0) of [0, 1] NCHW images at per-image ``quality`` (1..100)."""
  b, _, h, w = images.shape
  pad_h, pad_w = (-h) % 16, (-w) % 16
  x = F.pad(images, (0, pad_w, 0, pad_h), mode='replicate') * 255.0
  r, g, bl = x[:, 0], x[:, 1], x[:, 2]
  y = 0.299 * r + 0.587 * g + 0.114 * bl
  cb = -0.168736 * r - 0.331264 * g + 0.5 * bl
  cr = 0.5 * r - 0.418688 * g - 0.081312 * bl
  q = torch.clamp(quality.float(), 1, 100)
  factor = torch.where(q < 50, 5000.0 / q, 200.0 - 2 * q) / 100.0
  luma_tables = torch.from_numpy(_LUMA_TABLE)[None] * factor[:, None]
  chroma_tables = torch.from_numpy(_CHROMA_TABLE)[None] * factor[:, None]
  y = _code_plane(y - 128.0, luma_tables) + 128.0
  cb, cr = (F.avg_pool2d(plane[:, None], 2)[:, 0] for plane in (cb, cr))
  cb, cr = (_code_plane(plane, chroma_tables) for plane in (cb, cr))
  cb, cr = (plane.repeat_interleave(2, 1).repeat_interleave(2, 2) for plane in (cb, cr))
  rgb = torch.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], 1)
  return torch.clamp(rgb[:, :, :h, :w] / 255.0, 0, 1)


def _resize_factor(rng, probs, value_range) -> float:
  kind = rng.choice(3, p=np.asarray(probs) / np.sum(probs))
  return (rng.uniform(1, value_range[1]) if kind == 0
          else rng.uniform(value_range[0], 1) if kind == 1 else 1.0)


def _resize(images, size, mode):
  return F.interpolate(images, size=size, mode=mode,
                       **({} if mode == 'area' else {'align_corners': False}))


def _noise(images, rng, generator, settings: RealESRGANSettings, second: bool):
  b = images.shape[0]
  gray = torch.from_numpy(rng.uniform(size=b) <
                          (settings.gray_noise_prob2 if second else settings.gray_noise_prob))
  if rng.uniform() < (settings.gaussian_noise_prob2 if second else
                      settings.gaussian_noise_prob):
    sigma = rng.uniform(*(settings.noise_range2 if second else settings.noise_range), size=b)
    return gaussian_noise(images, torch.from_numpy(sigma / 255.0).float(), gray, generator)
  scale = rng.uniform(*(settings.poisson_scale_range2 if second else
                        settings.poisson_scale_range), size=b)
  return poisson_noise(images, torch.from_numpy(scale).float(), gray, generator)


def _quality(rng, quality_range, b) -> torch.Tensor:
  return torch.from_numpy(rng.uniform(*quality_range, size=b)).float()


@torch.inference_mode()
def degrade(hr: torch.Tensor, kernels, scale: int, rng: np.random.Generator,
            generator: torch.Generator, settings: RealESRGANSettings | None = None
            ) -> torch.Tensor:
  """Float NCHW HR in [0, 1] -> LR of HR/scale, rounded to 8 bits (Real-ESRGAN's feed_data)."""
  settings = settings or RealESRGANSettings()
  kernel1, kernel2, sinc = kernels
  b, _, h, w = hr.shape
  # First stage.
  out = filter2d(hr, kernel1)
  factor = _resize_factor(rng, settings.resize_prob, settings.resize_range)
  mode = RESIZE_MODES[rng.integers(3)]
  out = F.interpolate(out, scale_factor=factor, mode=mode,
                      **({} if mode == 'area' else {'align_corners': False}))
  out = _noise(out, rng, generator, settings, second=False)
  out = jpeg(out, _quality(rng, settings.jpeg_range, b))
  # Second stage.
  if rng.uniform() < settings.second_blur_prob:
    out = filter2d(out, kernel2)
  factor = _resize_factor(rng, settings.resize_prob2, settings.resize_range2)
  size = (max(int(h / scale * factor), 1), max(int(w / scale * factor), 1))
  out = _resize(out, size, RESIZE_MODES[rng.integers(3)])
  out = _noise(out, rng, generator, settings, second=True)
  # Final: resize + sinc, JPEG, in either order.
  lr_size = (h // scale, w // scale)
  quality = _quality(rng, settings.jpeg_range2, b)
  if rng.uniform() < 0.5:
    out = filter2d(_resize(out, lr_size, RESIZE_MODES[rng.integers(3)]), sinc)
    out = jpeg(torch.clamp(out, 0, 1), quality)
  else:
    out = jpeg(torch.clamp(out, 0, 1), quality)
    out = filter2d(_resize(out, lr_size, RESIZE_MODES[rng.integers(3)]), sinc)
  return torch.clamp((out * 255.0).round(), 0, 255) / 255.0


def degrade_uint8(hr_uint8: np.ndarray, scale: int, rng: np.random.Generator,
                  generator: torch.Generator, settings: RealESRGANSettings | None = None
                  ) -> np.ndarray:
  """uint8 NHWC HR -> uint8 NHWC LR, kernels drawn too: the whole of what flax_sr's
  ``realesrgan`` does, for the bench."""
  settings = settings or RealESRGANSettings()
  kernels = draw_kernels(rng, hr_uint8.shape[0], settings)
  hr = torch.from_numpy(hr_uint8).permute(0, 3, 1, 2).float() / 255.0
  lr = degrade(hr, kernels, scale, rng, generator, settings)
  return (lr * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
