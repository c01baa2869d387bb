"""Evaluation of images of many sizes with a handful of compilations, metrics unchanged.

XLA compiles a function once per input shape, so a benchmark set whose images all differ in
size (Set14, B100, Urban100, DIV2K's validation set) used to compile the model, the
degradation and the metrics once per image. Here images are grouped into a few *buckets*
(``plan_buckets``); each image goes into the top-left corner of its bucket's shape and the
batch carries its real size (``hr_size``). Everything computed on the padded batch equals,
on the real region, what the image alone gives (up to float32 summation order):

* Resizing (the bicubic degradation, the bicubic baseline, a model's global residual) sees
  the padding filled by edge replication (``edge_fill``): MATLAB's ``imresize`` replicates
  edge pixels, so its taps beyond the real border read the same values either way.
* A convolutional model sees each convolution's input zeroed outside the real region
  (``masked_convolutions``): that is exactly the 'SAME' zero padding the image alone gets.
  Plain padding would not do: edge-replicated or zero input changes a trained EDSR's output
  near the border by tens of grey levels (Set5 x3 PSNR-Y by up to 0.09 dB per image).
* PSNR and SSIM average only over the real (shaved) region: ``metrics`` takes ``valid_hw``.
* LPIPS masks its backbone's convolution inputs the same way (``lpips.lpips_distance``).

This holds for models built of convolutions and pixel-wise operations only
(``supports_model``). Models with a global operation (RCAN's and HAT's channel attention)
or window attention (SwinIR, HAT) are evaluated at each image's own shape, as before.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from flax_sr import fast_conv
from flax_sr import metrics
from flax_sr import models

# Architectures made only of 'SAME' convolutions and pixel-wise or pixel-local operations
# (activations, BatchNorm at inference, pixel shuffle, nearest upsampling, bicubic residual).
_CONVOLUTIONAL = (models.ReferenceSR, models.ESPCN, models.EDSR, models.RRDBNet,
                  models.SRVGGNetCompact, models.SPAN)
# The modules whose input ``masked_convolutions`` zeroes outside the real region.
_CONVOLUTIONS = (nn.Conv, fast_conv.MatmulConv, models.Conv3XC)


def supports_model(model: nn.Module, self_ensemble: bool = False) -> bool:
  """Whether ``model`` gives the same output on a bucketed batch as on each image alone.
  The self-ensemble flips and rotates its input, which moves the padding off the bottom and
  right, so it is evaluated per shape."""
  return isinstance(model, _CONVOLUTIONAL) and not self_ensemble


def plan_buckets(shapes: Sequence[tuple[int, int]], max_buckets: int) -> list[tuple[int, int]]:
  """The bucket (height, width) of each of ``shapes``: at most ``max_buckets`` distinct ones,
  each at least as large as its members, chosen greedily to add the fewest padded pixels
  (merging two buckets gives their element-wise maximum)."""
  if max_buckets < 1:
    raise ValueError(f'max_buckets must be at least 1, got {max_buckets}')
  counts: dict[tuple[int, int], int] = {}
  for shape in shapes:
    counts[tuple(shape)] = counts.get(tuple(shape), 0) + 1
  # bucket -> the distinct shapes it holds; the cost of a merge is the pixels it adds.
  buckets = {shape: [shape] for shape in counts}

  def members(bucket):
    return sum(counts[s] for s in buckets[bucket])

  while len(buckets) > max_buckets:
    best = None
    keys = sorted(buckets)
    for i, a in enumerate(keys):
      for b in keys[i + 1:]:
        merged = (max(a[0], b[0]), max(a[1], b[1]))
        area = merged[0] * merged[1]
        added = members(a) * (area - a[0] * a[1]) + members(b) * (area - b[0] * b[1])
        if best is None or added < best[0]:
          best = (added, a, b, merged)
    _, a, b, merged = best
    held = buckets.pop(a) + buckets.pop(b)
    buckets[merged] = buckets.get(merged, []) + held
  owner = {shape: bucket for bucket, held in buckets.items() for shape in held}
  return [owner[tuple(shape)] for shape in shapes]


def pad_into(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
  """``image`` (H, W, C) in the top-left corner of a zero array of ``shape`` (h >= H, w >= W).
  What the padding holds does not matter: the evaluation fills or masks it."""
  h, w = image.shape[:2]
  if h > shape[0] or w > shape[1]:
    raise ValueError(f'image {h}x{w} does not fit into bucket {shape[0]}x{shape[1]}')
  out = np.zeros((shape[0], shape[1]) + image.shape[2:], image.dtype)
  out[:h, :w] = image
  return out


def edge_fill(images: jnp.ndarray, valid_hw: jnp.ndarray) -> jnp.ndarray:
  """(N, H, W, C) images whose real content is the top-left ``valid_hw`` (N, 2) -> the same
  with every pixel beyond it replaced by the nearest real one (edge replication)."""
  h_index = jnp.minimum(jnp.arange(images.shape[1])[None, :], valid_hw[:, :1] - 1)
  w_index = jnp.minimum(jnp.arange(images.shape[2])[None, :], valid_hw[:, 1:] - 1)
  images = jnp.take_along_axis(images, h_index[:, :, None, None], axis=1)
  return jnp.take_along_axis(images, w_index[:, None, :, None], axis=2)


def scaled_valid(valid_hw: jnp.ndarray, base_hw: tuple[int, int], hw: tuple[int, int]
                 ) -> jnp.ndarray:
  """The real size at a layer of spatial size ``hw`` of a network whose input bucket is
  ``base_hw`` with real size ``valid_hw``: the layers of an SR network are integer multiples
  of its input (upsampled) or the input itself."""
  factors = []
  for size, base in zip(hw, base_hw):
    if size % base:
      raise ValueError(f'a layer of size {hw} is not an integer multiple of the input '
                       f'{base_hw}; this model cannot be evaluated in shape buckets')
    factors.append(size // base)
  return valid_hw * jnp.asarray(factors, valid_hw.dtype)


@contextlib.contextmanager
def masked_convolutions(valid_hw: jnp.ndarray, input_hw: tuple[int, int]) -> Iterator[None]:
  """Within this context, every convolution of a flax_sr model zeroes its input outside the
  real region of each image, so the model computes on a bucketed batch (N, H, W, C) exactly
  what it computes on each image alone with 'SAME' zero padding. ``valid_hw`` (N, 2) is the
  real size of each input image, whose bucket is ``input_hw``."""

  def intercept(next_fun, args, kwargs, context):
    if context.method_name != '__call__' or not isinstance(context.module, _CONVOLUTIONS):
      return next_fun(*args, **kwargs)
    x, *rest = args
    valid = scaled_valid(valid_hw, tuple(input_hw), x.shape[1:3])
    x = x * metrics.region_mask(x.shape[1], x.shape[2], valid).astype(x.dtype)
    return next_fun(x, *rest, **kwargs)

  with nn.intercept_methods(intercept):
    yield
