"""The discriminators of perceptual SR training, as their PyTorch originals define them.

- ``VGGStyleDiscriminator`` (ESRGAN; BasicSR's ``VGGStyleDiscriminator``): ten convolutions in
  five stride-2 stages with BatchNorm and LeakyReLU(0.2), then two dense layers; one logit per
  image. Fixed input size (128, or 256 with a sixth stage), because of the dense layer.
  14.5 M parameters at 64 features and 128 x 128 (``tests/gan_test.py`` counts them).
- ``UNetDiscriminatorSN`` (Real-ESRGAN): a U-Net with spectral normalisation and skip
  connections; one logit per pixel, any input whose sides are multiples of 8. 4.4 M parameters
  at 64 features.

Both take float RGB in [0, 1] (NHWC) and return logits. ``train`` updates BatchNorm statistics
(VGG) or the spectral norms' power-iteration vectors (U-Net); both live in the 'batch_stats'
collection, as for the generators.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from flax_sr import blocks
from flax_sr.config import DISCRIMINATORS  # noqa: F401 (the names, for callers)


def _leaky(x):
  return nn.leaky_relu(x, 0.2)


def _upsample_axis_2x(x: jnp.ndarray, axis: int) -> jnp.ndarray:
  """Doubles ``axis`` with half-pixel bilinear weights: output 2i reads 3/4 of x[i] and 1/4 of
  x[i - 1], output 2i + 1 3/4 of x[i] and 1/4 of x[i + 1], the border repeated."""
  size = x.shape[axis]
  first = jax.lax.slice_in_dim(x, 0, 1, axis=axis)
  last = jax.lax.slice_in_dim(x, size - 1, size, axis=axis)
  before = jnp.concatenate([first, jax.lax.slice_in_dim(x, 0, size - 1, axis=axis)], axis)
  after = jnp.concatenate([jax.lax.slice_in_dim(x, 1, size, axis=axis), last], axis)
  pairs = jnp.stack([0.75 * x + 0.25 * before, 0.75 * x + 0.25 * after], axis=axis + 1)
  return pairs.reshape(*x.shape[:axis], 2 * size, *x.shape[axis + 1:])


def upsample_bilinear_2x(x: jnp.ndarray) -> jnp.ndarray:
  """PyTorch's ``F.interpolate(x, scale_factor=2, mode='bilinear', align_corners=False)`` on
  NHWC, which ``jax.image.resize(..., 'bilinear')`` also computes; written as a fixed stencil
  because XLA:CPU runs the resize's gradient (products with interpolation matrices) slower,
  and the U-Net discriminator upsamples three times in each of its passes.
  """
  return _upsample_axis_2x(_upsample_axis_2x(x, 1), 2)


class VGGStyleDiscriminator(nn.Module):
  """ESRGAN's discriminator for ``input_size`` x ``input_size`` images (128 or 256)."""
  features: int = 64
  input_size: int = 128
  dtype: jnp.dtype = jnp.float32
  axis_name: str | None = None  # BatchNorm over the global batch under pmap
  conv_impl: str = 'xla'  # the 3x3 stride-1 convolutions ('tuned': the CPU's Winograd)

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = True) -> jnp.ndarray:
    if x.shape[1:3] != (self.input_size, self.input_size):
      raise ValueError(f'the VGG-style discriminator takes {self.input_size}x{self.input_size} '
                       f'images, got {x.shape[1]}x{x.shape[2]}')
    x = x.astype(self.dtype)
    nf = self.features
    widths = [nf, nf * 2, nf * 4, nf * 8, nf * 8] + ([nf * 8] if self.input_size == 256 else [])

    def batch_norm(name):
      # PyTorch's BatchNorm2d defaults: momentum 0.1 (flax's 0.9), epsilon 1e-5.
      return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                          dtype=self.dtype, axis_name=self.axis_name, name=name)

    for stage, width in enumerate(widths):
      # The first convolution has a bias and no normalisation; the others are followed by BN.
      x = blocks.make_conv(self.conv_impl, width, use_bias=stage == 0, dtype=self.dtype,
                           name=f'conv{stage}_0')(x)
      if stage:
        x = batch_norm(f'bn{stage}_0')(x)
      x = _leaky(x)
      x = nn.Conv(width, (4, 4), strides=2, padding=1, use_bias=False, dtype=self.dtype,
                  name=f'conv{stage}_1')(x)
      x = _leaky(batch_norm(f'bn{stage}_1')(x))
    x = x.reshape(x.shape[0], -1)
    x = _leaky(nn.Dense(100, dtype=self.dtype, name='linear1')(x))
    return nn.Dense(1, dtype=self.dtype, name='linear2')(x).astype(jnp.float32)


class UNetDiscriminatorSN(nn.Module):
  """Real-ESRGAN's U-Net discriminator with spectral normalisation: (N, H, W, 1) logits."""
  features: int = 64
  skip_connection: bool = True
  dtype: jnp.dtype = jnp.float32
  conv_impl: str = 'xla'  # the 3x3 convolutions ('tuned': the CPU's Winograd); 4x4 are XLA's

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = True) -> jnp.ndarray:
    if x.shape[1] % 8 or x.shape[2] % 8:
      raise ValueError(f'the U-Net discriminator takes images whose sides are multiples of 8, '
                       f'got {x.shape[1]}x{x.shape[2]}')
    x = x.astype(self.dtype)
    nf = self.features

    def sn_conv(index, width, kernel, stride):
      # torch.nn.utils.spectral_norm: one power iteration per training call.
      if stride == 1:
        conv = blocks.make_conv(self.conv_impl, width, kernel, use_bias=False,
                                dtype=self.dtype, name=f'conv{index}')
      else:
        conv = nn.Conv(width, (kernel, kernel), strides=stride, padding=1, use_bias=False,
                       dtype=self.dtype, name=f'conv{index}')
      # Parameters under conv{index} (PyTorch's names); its u and sigma under sn{index}.
      return lambda y: nn.SpectralNorm(conv, name=f'sn{index}')(y, update_stats=train)

    x0 = _leaky(blocks.make_conv(self.conv_impl, nf, dtype=self.dtype, name='conv0')(x))
    x1 = _leaky(sn_conv(1, nf * 2, 4, 2)(x0))
    x2 = _leaky(sn_conv(2, nf * 4, 4, 2)(x1))
    x3 = _leaky(sn_conv(3, nf * 8, 4, 2)(x2))
    x4 = _leaky(sn_conv(4, nf * 4, 3, 1)(upsample_bilinear_2x(x3)))
    if self.skip_connection:
      x4 = x4 + x2
    x5 = _leaky(sn_conv(5, nf * 2, 3, 1)(upsample_bilinear_2x(x4)))
    if self.skip_connection:
      x5 = x5 + x1
    x6 = _leaky(sn_conv(6, nf, 3, 1)(upsample_bilinear_2x(x5)))
    if self.skip_connection:
      x6 = x6 + x0
    x7 = _leaky(sn_conv(7, nf, 3, 1)(x6))
    x8 = _leaky(sn_conv(8, nf, 3, 1)(x7))
    return blocks.make_conv(self.conv_impl, 1, dtype=self.dtype, name='conv9')(x8).astype(
        jnp.float32)


def create_discriminator(name: str, *, features: int = 64, input_size: int = 128,
                         dtype=jnp.float32, conv_impl: str = 'xla') -> nn.Module:
  """'vgg' (ESRGAN, ``input_size`` 128 or 256) or 'unet' (Real-ESRGAN)."""
  if name == 'vgg':
    return VGGStyleDiscriminator(features=features, input_size=input_size, dtype=dtype,
                                 conv_impl=conv_impl)
  if name == 'unet':
    return UNetDiscriminatorSN(features=features, dtype=dtype, conv_impl=conv_impl)
  raise ValueError(f'discriminator must be one of {DISCRIMINATORS}, got {name!r}')
