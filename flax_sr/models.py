"""Super-resolution networks (Flax linen), NHWC, float RGB in [0, 1] in and out.

* ``ReferenceSR``: the original design, blocks of Conv3x3 (no bias) -> BatchNorm -> ReLU ->
  nearest-neighbour upsample, then a Conv3x3 to RGB.
* ``ESPCN``: Shi et al. 2016, sub-pixel convolution.
* ``EDSR``: EDSR-baseline (Lim et al. 2017), residual blocks without BatchNorm, pixel shuffle.

Every model is fully convolutional: an (N, H, W, 3) input gives (N, H*s, W*s, 3). With
``global_residual`` the network predicts the difference to the bicubic upscale of its input.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from flax_sr import fast_conv
from flax_sr import resize as resize_lib
from flax_sr.config import MODEL_NAMES, default_upsample_factors  # noqa: F401 (re-exported)
from flax_sr.layers import pixel_shuffle, upsample_nearest  # noqa: F401 (re-exported)

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


def _last_layer_init(global_residual: bool):
  # With global residual learning a zero last layer starts the model at exactly bicubic.
  return nn.initializers.zeros if global_residual else nn.initializers.lecun_normal()


def _add_global_residual(x_lr: jnp.ndarray, y: jnp.ndarray, scale: int) -> jnp.ndarray:
  base = resize_lib.imresize(x_lr.astype(jnp.float32), scale)
  return y.astype(jnp.float32) + base


class ReferenceSR(nn.Module):
  """The original design: ``num_blocks`` x (Conv3x3 -> BN -> ReLU -> nearest upsample) -> Conv3x3.

  Attributes:
    scale: total upscaling factor (96 / input_size in the original design).
    upsample_factors: per-block factors (product == scale); None places them on the last blocks.
    num_blocks, features: depth and width.
    bn_momentum, bn_epsilon: BatchNorm running-average momentum and epsilon.
    axis_name: a pmap/shard_map axis name; BatchNorm then normalises over the global batch.
    global_residual: add the bicubic upscale of the input to the output.
    dtype: computation dtype (e.g. bfloat16); parameters and BN statistics stay float32.
    conv_impl: 'xla' (flax.linen.Conv), 'matmul' (im2col convolutions) or 'tuned' (per-layer
      choice by shape, mostly Winograd; see ``fast_conv``).
  """
  scale: int = 3
  upsample_factors: Sequence[int] | None = None
  num_blocks: int = 4
  features: int = 64
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  axis_name: str | None = None
  global_residual: bool = False
  dtype: Any = jnp.float32
  conv_impl: str = 'xla'

  def factors(self) -> tuple[int, ...]:
    if self.upsample_factors is None:
      return default_upsample_factors(self.scale, self.num_blocks)
    factors = tuple(int(f) for f in self.upsample_factors)
    if len(factors) != self.num_blocks or math.prod(factors) != self.scale:
      raise ValueError(f'upsample_factors {factors} must have {self.num_blocks} entries '
                       f'whose product is the scale {self.scale}')
    return factors

  def _conv(self, features: int, use_bias: bool, name: str, upsample_input: int = 1,
            zero_init: bool = False):
    kernel_init = nn.initializers.zeros if zero_init else nn.initializers.lecun_normal()
    return make_conv(self.conv_impl, features, 3, use_bias=use_bias, dtype=self.dtype,
                     upsample_input=upsample_input, kernel_init=kernel_init, name=name)

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    x_lr = x
    y = x.astype(self.dtype)
    # A block's upsample is applied by the next convolution (``upsample_input``): the matmul
    # path folds it into that convolution, which then runs at the lower resolution (see
    # fast_conv); the result is the same.
    pending = 1
    for i, factor in enumerate(self.factors()):
      # No bias: BatchNorm's shift makes a conv bias redundant.
      y = self._conv(self.features, use_bias=False, name=f'block{i}_conv',
                     upsample_input=pending)(y)
      y = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                       epsilon=self.bn_epsilon, axis_name=self.axis_name,
                       dtype=self.dtype, name=f'block{i}_bn')(y)
      y = nn.relu(y)
      pending = factor
    y = self._conv(3, use_bias=True, name='head_conv', upsample_input=pending,
                   zero_init=self.global_residual)(y)
    if self.global_residual:
      return _add_global_residual(x_lr, y, self.scale)
    return y.astype(jnp.float32)


class ESPCN(nn.Module):
  """Efficient sub-pixel CNN: conv5x5(64) tanh -> conv3x3(32) tanh -> conv3x3(3 s^2) -> shuffle."""
  scale: int = 3
  features: int = 64
  global_residual: bool = False
  dtype: Any = jnp.float32
  conv_impl: str = 'xla'

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    del train  # no BatchNorm or dropout
    conv = functools.partial(make_conv, self.conv_impl, dtype=self.dtype)
    y = x.astype(self.dtype)
    y = jnp.tanh(conv(self.features, 5, name='conv1')(y))
    y = jnp.tanh(conv(self.features // 2, 3, name='conv2')(y))
    y = conv(3 * self.scale**2, 3, name='conv3',
             kernel_init=_last_layer_init(self.global_residual))(y)
    y = pixel_shuffle(y, self.scale)
    if self.global_residual:
      return _add_global_residual(x, y, self.scale)
    return y.astype(jnp.float32)


class ResBlock(nn.Module):
  features: int
  res_scale: float
  dtype: Any
  conv_impl: str = 'xla'

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(make_conv, self.conv_impl, self.features, dtype=self.dtype)
    y = conv(name='conv1')(x)
    y = conv(name='conv2')(nn.relu(y))
    return x + self.res_scale * y


class EDSR(nn.Module):
  """EDSR-baseline: head conv, residual blocks (no BN), body conv + skip, pixel shuffle, tail."""
  scale: int = 3
  features: int = 64
  num_res_blocks: int = 16
  res_scale: float = 1.0
  global_residual: bool = False
  dtype: Any = jnp.float32
  conv_impl: str = 'xla'

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    del train
    conv = functools.partial(make_conv, self.conv_impl, dtype=self.dtype)
    # Centre the input like EDSR's mean shift, so a zero-initialised residual is a grey image.
    y = x.astype(self.dtype) - 0.5
    head = conv(self.features, name='head')(y)
    y = head
    for i in range(self.num_res_blocks):
      y = ResBlock(self.features, self.res_scale, self.dtype, self.conv_impl, name=f'res{i}')(y)
    y = conv(self.features, name='body_tail')(y) + head
    # Upsample in steps of 2 for powers of two (as EDSR does), else in one shuffle.
    for i, factor in enumerate(s for s in upsample_steps(self.scale) if s > 1):
      y = conv(self.features * factor**2, name=f'up{i}')(y)
      y = pixel_shuffle(y, factor)
    y = conv(3, name='tail', kernel_init=_last_layer_init(self.global_residual))(y) + 0.5
    if self.global_residual:
      return _add_global_residual(x, y - 0.5, self.scale)
    return y.astype(jnp.float32)


def upsample_steps(scale: int) -> list[int]:
  """x2/x4/x8 in steps of 2 (as EDSR and ESRGAN upsample), any other scale in one step."""
  return [2] * int(math.log2(scale)) if scale & (scale - 1) == 0 else [scale]


class ResidualDenseBlock(nn.Module):
  """ESRGAN's dense block: 5 convolutions, each seeing all earlier features (growth
  ``growth`` channels), LeakyReLU 0.2, the output scaled by 0.2 and added to the input."""
  features: int
  growth: int
  dtype: Any
  conv_impl: str = 'xla'

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(make_conv, self.conv_impl, dtype=self.dtype)
    features = [x]
    for i in range(1, 5):
      y = conv(self.growth, name=f'conv{i}')(jnp.concatenate(features, axis=-1))
      features.append(nn.leaky_relu(y, 0.2))
    y = conv(self.features, name='conv5')(jnp.concatenate(features, axis=-1))
    return x + 0.2 * y


class RRDB(nn.Module):
  """Residual-in-residual dense block: three dense blocks, scaled by 0.2, plus the input."""
  features: int
  growth: int
  dtype: Any
  conv_impl: str = 'xla'

  @nn.compact
  def __call__(self, x):
    y = x
    for i in range(1, 4):
      y = ResidualDenseBlock(self.features, self.growth, self.dtype, self.conv_impl,
                             name=f'rdb{i}')(y)
    return x + 0.2 * y


class RRDBNet(nn.Module):
  """ESRGAN's generator (Wang et al. 2018): ``num_rrdb`` residual-in-residual dense blocks
  (64 features, growth 32, 23 blocks: 16.7 M parameters at x4), nearest upsampling + conv +
  LeakyReLU per factor 2 (x3 in one step), two HR convolutions. Parameter names are BasicSR's
  (``conv_first``, ``body_N.rdbK.convJ``, ``conv_body``, ``conv_upN``, ``conv_hr``,
  ``conv_last``); ``flax_sr.torch_weights`` converts PyTorch checkpoints."""
  scale: int = 4
  features: int = 64
  num_rrdb: int = 23
  growth: int = 32
  global_residual: bool = False
  dtype: Any = jnp.float32
  conv_impl: str = 'xla'

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    del train
    conv = functools.partial(make_conv, self.conv_impl, dtype=self.dtype)
    feat = conv(self.features, name='conv_first')(x.astype(self.dtype))
    y = feat
    for i in range(self.num_rrdb):
      y = RRDB(self.features, self.growth, self.dtype, self.conv_impl, name=f'body_{i}')(y)
    y = feat + conv(self.features, name='conv_body')(y)
    for i, factor in enumerate(upsample_steps(self.scale)):
      y = nn.leaky_relu(conv(self.features, name=f'conv_up{i + 1}')(upsample_nearest(y, factor)),
                        0.2)
    y = nn.leaky_relu(conv(self.features, name='conv_hr')(y), 0.2)
    y = conv(3, name='conv_last')(y).astype(jnp.float32)
    if self.global_residual:
      return _add_global_residual(x, y, self.scale)
    return y


class PReLU(nn.Module):
  """PyTorch's ``nn.PReLU(num_parameters=C)``: a learned negative slope per channel."""
  init: float = 0.25

  @nn.compact
  def __call__(self, x):
    weight = self.param('weight', nn.initializers.constant(self.init), (x.shape[-1],),
                        jnp.float32)
    return jnp.where(x >= 0, x, weight.astype(x.dtype) * x)


class SRVGGNetCompact(nn.Module):
  """Real-ESRGAN's compact network: ``num_conv`` + 2 convolutions at the LR size with PReLU
  (or ReLU / LeakyReLU 0.1), pixel shuffle, plus the nearest upscale of the input. Module
  names follow PyTorch's ``body`` list (``body_0`` conv, ``body_1`` activation, ...)."""
  scale: int = 4
  features: int = 64
  num_conv: int = 16
  act_type: str = 'prelu'
  global_residual: bool = False
  dtype: Any = jnp.float32
  conv_impl: str = 'xla'

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    del train
    conv = functools.partial(make_conv, self.conv_impl, dtype=self.dtype)
    y = x.astype(self.dtype)
    index = 0
    for _ in range(self.num_conv + 1):
      y = conv(self.features, name=f'body_{index}')(y)
      if self.act_type == 'prelu':
        y = PReLU(name=f'body_{index + 1}')(y)
      elif self.act_type == 'relu':
        y = nn.relu(y)
      elif self.act_type == 'leakyrelu':
        y = nn.leaky_relu(y, 0.1)
      else:
        raise ValueError(f'act_type must be prelu, relu or leakyrelu, got {self.act_type!r}')
      index += 2
    y = conv(3 * self.scale**2, name=f'body_{index}')(y)
    y = pixel_shuffle(y, self.scale).astype(jnp.float32)
    if self.global_residual:
      return _add_global_residual(x, y, self.scale)
    return y + upsample_nearest(x.astype(jnp.float32), self.scale)


def create_model(name: str = 'reference', *, scale: int, dtype: Any = jnp.float32,
                 global_residual: bool = False, **kwargs) -> nn.Module:
  """Builds a model by name; ``kwargs`` are the model's own attributes (features, ...)."""
  classes = {'reference': ReferenceSR, 'espcn': ESPCN, 'edsr': EDSR, 'rrdb': RRDBNet,
             'srvgg': SRVGGNetCompact}
  if name not in classes:
    raise ValueError(f'unknown model {name!r}; choose one of {", ".join(MODEL_NAMES)}')
  return classes[name](scale=scale, dtype=dtype, global_residual=global_residual, **kwargs)
