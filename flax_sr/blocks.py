"""Building blocks shared by the networks (``models``, ``swinir``): the convolution factory
that selects an implementation, kernels applied by that implementation, the upsampling
schedule, the global residual, and DIV2K's mean.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from flax_sr import fast_conv
from flax_sr import resize as resize_lib
from flax_sr.layers import upsample_nearest

CONV_IMPLS = ('xla', 'matmul', 'tuned')


def make_conv(conv_impl: str, features: int, kernel_size: int = 3, *, name: str,
              use_bias: bool = True, dtype: Any = jnp.float32, upsample_input: int = 1,
              kernel_init=nn.initializers.lecun_normal()) -> nn.Module:
  """A 'SAME' convolution: ``flax.linen.Conv`` ('xla'), or ``fast_conv.MatmulConv`` with im2col
  everywhere ('matmul') or a strategy chosen per layer shape ('tuned': Winograd, or XLA for thin
  outputs at large images; the fastest on XLA:CPU).
  All have the same parameters and compute the same function. ``upsample_input=f`` convolves
  the nearest upsample of the input; the fast_conv paths do that at the input's resolution."""
  if conv_impl in ('matmul', 'tuned'):
    return fast_conv.MatmulConv(features, (kernel_size, kernel_size), use_bias=use_bias,
                                dtype=dtype, upsample_input=upsample_input,
                                kernel_init=kernel_init, name=name,
                                strategy='im2col' if conv_impl == 'matmul' else 'auto')
  if conv_impl != 'xla':
    raise ValueError(f'conv_impl must be one of {CONV_IMPLS}, got {conv_impl!r}')
  conv = nn.Conv(features, (kernel_size, kernel_size), padding='SAME', use_bias=use_bias,
                 dtype=dtype, kernel_init=kernel_init, name=name)
  if upsample_input == 1:
    return conv
  return lambda x: conv(upsample_nearest(x, upsample_input))


def last_layer_init(global_residual: bool):
  # With global residual learning a zero last layer starts the model at exactly bicubic.
  return nn.initializers.zeros if global_residual else nn.initializers.lecun_normal()


def add_global_residual(x_lr: jnp.ndarray, y: jnp.ndarray, scale: int) -> jnp.ndarray:
  base = resize_lib.imresize(x_lr.astype(jnp.float32), scale)
  return y.astype(jnp.float32) + base


def upsample_steps(scale: int) -> list[int]:
  """x2/x4/x8 in steps of 2 (as EDSR and ESRGAN upsample), any other scale in one step."""
  return [2] * int(math.log2(scale)) if scale & (scale - 1) == 0 else [scale]


# DIV2K's mean RGB, subtracted before and added after the network by EDSR, RCAN, SwinIR and
# SPAN (their ``MeanShift`` / ``rgb_mean``), with their pixel range (255 or 1).
DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)


def conv_with_kernel(conv_impl: str, x: jnp.ndarray, kernel: jnp.ndarray) -> jnp.ndarray:
  """A 'SAME' convolution with a given (kh, kw, C_in, C_out) kernel, by ``conv_impl``'s
  method (for kernels computed from parameters, e.g. SPAN's re-parameterised ones)."""
  if conv_impl in ('matmul', 'tuned'):
    strategy = ('im2col' if conv_impl == 'matmul' else
                fast_conv.choose_strategy(x.shape, kernel.shape[-1], kernel.shape[0], x.dtype))
    return fast_conv.STRATEGIES[strategy](x, kernel)
  return lax.conv_general_dilated(x, kernel, (1, 1), 'SAME',
                                  dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


class ChannelAttention(nn.Module):
  """RCAN's channel attention: global average pool -> 1x1 conv (C/r) -> ReLU -> 1x1 conv (C)
  -> sigmoid, which rescales each channel. The 1x1 convolutions of a pooled pixel are dense
  layers (``down``, ``up``)."""
  features: int
  reduction: int
  dtype: Any

  @nn.compact
  def __call__(self, x):
    y = jnp.mean(x, axis=(1, 2), keepdims=True)
    y = nn.relu(nn.Dense(self.features // self.reduction, dtype=self.dtype, name='down')(y))
    y = nn.sigmoid(nn.Dense(self.features, dtype=self.dtype, name='up')(y))
    return x * y
