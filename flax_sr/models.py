"""Super-resolution networks (Flax linen), NHWC, float RGB in [0, 1] in and out.

* ``ReferenceSR``: the original design, blocks of Conv3x3 (no bias) -> BatchNorm -> ReLU ->
  nearest-neighbour upsample, then a Conv3x3 to RGB.
* ``ESPCN``: Shi et al. 2016, sub-pixel convolution.
* ``EDSR``: EDSR-baseline (Lim et al. 2017), residual blocks without BatchNorm, pixel shuffle;
  the paper's full model is 32 blocks x 256 features with residual scaling 0.1.
* The zoo, each equal to its PyTorch original on converted weights (``torch_weights``):
  ``RRDBNet`` (ESRGAN), ``SRVGGNetCompact`` (Real-ESRGAN), ``RCAN``, ``SPAN``, and
  ``swinir.SwinIR`` and ``hat.HAT`` (in their own modules).

Every model is fully convolutional: an (N, H, W, 3) input gives (N, H*s, W*s, 3). With
``global_residual`` the network predicts the difference to the bicubic upscale of its input.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from flax_sr import hat, swinir
from flax_sr.blocks import (CONV_IMPLS, DIV2K_RGB_MEAN, ChannelAttention,  # noqa: F401
                            add_global_residual, conv_with_kernel, last_layer_init,
                            make_conv, upsample_steps)
from flax_sr.config import MODEL_NAMES, default_upsample_factors  # noqa: F401 (re-exported)
from flax_sr.layers import pixel_shuffle, pixel_unshuffle, upsample_nearest  # noqa: F401


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
      return add_global_residual(x_lr, y, self.scale)
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
             kernel_init=last_layer_init(self.global_residual))(y)
    y = pixel_shuffle(y, self.scale)
    if self.global_residual:
      return add_global_residual(x, y, self.scale)
    return y.astype(jnp.float32)


# Activations inside EDSR's residual blocks: the paper's ReLU, or SiLU (x * sigmoid(x)), which
# "Revisiting RCAN" (Lin et al. 2022) found trains residual SR networks to a higher PSNR.
ACTIVATIONS = {'relu': nn.relu, 'silu': nn.silu}


class ResBlock(nn.Module):
  features: int
  res_scale: float
  dtype: Any
  conv_impl: str = 'xla'
  activation: str = 'relu'
  channel_attention: int = 0  # RCAN's, with this reduction (then the block is an RCAB); 0: none

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(make_conv, self.conv_impl, self.features, dtype=self.dtype)
    y = conv(name='conv1')(x)
    y = conv(name='conv2')(ACTIVATIONS[self.activation](y))
    if self.channel_attention:
      y = ChannelAttention(self.features, self.channel_attention, self.dtype,
                           name='attention')(y)
    return x + self.res_scale * y


class EDSR(nn.Module):
  """EDSR-baseline: head conv, residual blocks (no BN), body conv + skip, pixel shuffle, tail.

  ``upsampler='pixelshuffledirect'`` replaces EDSR's upsampler (a conv to features*scale^2
  channels, the shuffle, and a conv at the output resolution) by one conv straight to
  3*scale^2 channels and the shuffle, as the lightweight SwinIR/IMDN/SPAN do: at x3 that drops
  about a third of a 64x8 model's multiply-adds (the upsampler conv costs 9 body convs, the
  output-resolution conv 0.4, the body 17), which can buy depth instead."""
  scale: int = 3
  features: int = 64
  num_res_blocks: int = 16
  res_scale: float = 1.0
  global_residual: bool = False
  dtype: Any = jnp.float32
  conv_impl: str = 'xla'
  upsampler: str = 'pixelshuffle'
  activation: str = 'relu'
  channel_attention: int = 0

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    del train
    if self.activation not in ACTIVATIONS:
      raise ValueError(f'activation must be one of {", ".join(ACTIVATIONS)}, got '
                       f'{self.activation!r}')
    conv = functools.partial(make_conv, self.conv_impl, dtype=self.dtype)
    # Centre the input like EDSR's mean shift, so a zero-initialised residual is a grey image.
    y = x.astype(self.dtype) - 0.5
    head = conv(self.features, name='head')(y)
    y = head
    for i in range(self.num_res_blocks):
      y = ResBlock(self.features, self.res_scale, self.dtype, self.conv_impl, self.activation,
                   self.channel_attention, name=f'res{i}')(y)
    y = conv(self.features, name='body_tail')(y) + head
    if self.upsampler == 'pixelshuffledirect':
      y = conv(3 * self.scale**2, name='upsampler',
               kernel_init=last_layer_init(self.global_residual))(y)
      y = pixel_shuffle(y, self.scale) + 0.5
    elif self.upsampler == 'pixelshuffle':
      # Upsample in steps of 2 for powers of two (as EDSR does), else in one shuffle.
      for i, factor in enumerate(s for s in upsample_steps(self.scale) if s > 1):
        y = conv(self.features * factor**2, name=f'up{i}')(y)
        y = pixel_shuffle(y, factor)
      y = conv(3, name='tail', kernel_init=last_layer_init(self.global_residual))(y) + 0.5
    else:
      raise ValueError(f"EDSR's upsampler must be pixelshuffle or pixelshuffledirect, got "
                       f'{self.upsampler!r}')
    if self.global_residual:
      return add_global_residual(x, y - 0.5, self.scale)
    return y.astype(jnp.float32)


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
  ``conv_last``); ``flax_sr.torch_weights`` converts PyTorch checkpoints.

  ``pixel_unshuffle=f`` is BasicSR's x2 variant (Real-ESRGAN's x2plus): the input is
  reflect-padded to a multiple of f, unshuffled to 1/f of its size (``f*f*3`` channels, order
  (row, column, channel)), upscaled by ``scale * f`` and cropped."""
  scale: int = 4
  features: int = 64
  num_rrdb: int = 23
  growth: int = 32
  pixel_unshuffle: int = 1
  global_residual: bool = False
  dtype: Any = jnp.float32
  conv_impl: str = 'xla'

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    del train
    conv = functools.partial(make_conv, self.conv_impl, dtype=self.dtype)
    height, width = x.shape[1:3]
    y = x.astype(self.dtype)
    factor = self.pixel_unshuffle
    if factor > 1:
      y = jnp.pad(y, ((0, 0), (0, -height % factor), (0, -width % factor), (0, 0)),
                  mode='reflect')
      y = pixel_unshuffle(y, factor)
    feat = conv(self.features, name='conv_first')(y)
    y = feat
    for i in range(self.num_rrdb):
      y = RRDB(self.features, self.growth, self.dtype, self.conv_impl, name=f'body_{i}')(y)
    y = feat + conv(self.features, name='conv_body')(y)
    for i, step in enumerate(upsample_steps(self.scale * factor)):
      y = nn.leaky_relu(conv(self.features, name=f'conv_up{i + 1}')(upsample_nearest(y, step)),
                        0.2)
    y = nn.leaky_relu(conv(self.features, name='conv_hr')(y), 0.2)
    y = conv(3, name='conv_last')(y).astype(jnp.float32)
    y = y[:, :height * self.scale, :width * self.scale]
    if self.global_residual:
      return add_global_residual(x, y, self.scale)
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
      return add_global_residual(x, y, self.scale)
    return y + upsample_nearest(x.astype(jnp.float32), self.scale)


class RCAB(nn.Module):
  """Residual channel attention block: conv -> ReLU -> conv -> channel attention, + input."""
  features: int
  reduction: int
  dtype: Any
  conv_impl: str = 'xla'

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(make_conv, self.conv_impl, self.features, dtype=self.dtype)
    y = conv(name='conv1')(x)
    y = conv(name='conv2')(nn.relu(y))
    return x + ChannelAttention(self.features, self.reduction, self.dtype, name='attention')(y)


class RCAN(nn.Module):
  """RCAN (Zhang et al. 2018): ``num_groups`` residual groups of ``num_rcab`` RCABs (channel
  attention, reduction 16) each closed by a conv and a skip, a long skip over the body,
  pixel-shuffle upsampling (steps of 2, or 3) and a conv to RGB. As the original it works on
  [0, 255] pixels minus DIV2K's mean (``rgb_range``, ``rgb_mean``): channel attention is not
  scale-invariant, so published weights need that range."""
  scale: int = 4
  features: int = 64
  num_groups: int = 10
  num_rcab: int = 20
  reduction: int = 16
  rgb_range: float = 255.0
  rgb_mean: Sequence[float] = DIV2K_RGB_MEAN
  global_residual: bool = False
  dtype: Any = jnp.float32
  conv_impl: str = 'xla'

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    del train
    conv = functools.partial(make_conv, self.conv_impl, dtype=self.dtype)
    mean = jnp.asarray(self.rgb_mean, jnp.float32) * self.rgb_range
    y = (x.astype(jnp.float32) * self.rgb_range - mean).astype(self.dtype)
    head = conv(self.features, name='head')(y)
    y = head
    for g in range(self.num_groups):
      group_input = y
      for b in range(self.num_rcab):
        y = RCAB(self.features, self.reduction, self.dtype, self.conv_impl,
                 name=f'group{g}_rcab{b}')(y)
      y = group_input + conv(self.features, name=f'group{g}_conv')(y)
    y = head + conv(self.features, name='body_conv')(y)
    for i, factor in enumerate(upsample_steps(self.scale)):
      y = pixel_shuffle(conv(self.features * factor**2, name=f'up{i}')(y), factor)
    y = conv(3, name='tail')(y).astype(jnp.float32)
    y = (y + mean) / self.rgb_range
    if self.global_residual:
      return add_global_residual(x, y, self.scale)
    return y


class ConvParams(nn.Module):
  """The kernel and bias of a convolution, declared but not applied."""
  features: int
  kernel_size: int

  @nn.compact
  def __call__(self, in_features: int):
    size = self.kernel_size
    kernel = self.param('kernel', nn.initializers.lecun_normal(),
                        (size, size, in_features, self.features), jnp.float32)
    return kernel, self.param('bias', nn.initializers.zeros, (self.features,), jnp.float32)


class Conv3XC(nn.Module):
  """SPAN's re-parameterisable convolution: a 1x1 -> 3x3 -> 1x1 chain (``conv_0..2``, the
  middle ``gain`` times wider) plus a 1x1 skip (``sk``), all linear, so it is one 3x3
  convolution whose kernel and bias are computed from the four every call: training
  differentiates through that merge and costs one convolution, not four."""
  features: int
  gain: int = 2
  dtype: Any = jnp.float32
  conv_impl: str = 'xla'

  @nn.compact
  def __call__(self, x):
    c_in, c_out = x.shape[-1], self.features
    k_skip, b_skip = ConvParams(c_out, 1, name='sk')(c_in)
    k0, b0 = ConvParams(c_in * self.gain, 1, name='conv_0')(c_in)
    k1, b1 = ConvParams(c_out * self.gain, 3, name='conv_1')(c_in * self.gain)
    k2, b2 = ConvParams(c_out, 1, name='conv_2')(c_out * self.gain)
    kernel = jnp.einsum('im,yxmn,no->yxio', k0[0, 0], k1, k2[0, 0])
    kernel = kernel.at[1, 1].add(k_skip[0, 0])
    # The zero padding of the original's 3x3 step comes after its first 1x1 conv, so b0
    # reaches every tap of the window, border included.
    bias = (jnp.einsum('m,yxmn->n', b0, k1) + b1) @ k2[0, 0] + b2 + b_skip
    y = conv_with_kernel(self.conv_impl, x, kernel.astype(self.dtype))
    return y + bias.astype(self.dtype)


class SPAB(nn.Module):
  """SPAN's block: three Conv3XC (SiLU between), then the parameter-free attention
  ``(out + x) * (sigmoid(out) - 0.5)``. Returns the output and the first conv's activated
  output (the original's in-place SiLU turns the tensor it returns into that)."""
  features: int
  dtype: Any
  conv_impl: str = 'xla'

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(Conv3XC, self.features, dtype=self.dtype, conv_impl=self.conv_impl)
    out1 = nn.silu(conv(name='c1_r')(x))
    out2 = conv(name='c2_r')(out1)
    out3 = conv(name='c3_r')(nn.silu(out2))
    return (out3 + x) * (nn.sigmoid(out3) - 0.5), out1


class SPAN(nn.Module):
  """SPAN (Wan et al. 2024, NTIRE 2024 efficient-SR winner): six parameter-free attention
  blocks of re-parameterised convolutions (48 features), a 1x1 fusion of four of their
  outputs, one pixel-shuffle convolution. Its input is ``(x - DIV2K mean) * 255`` and its
  output is used as is, as in the original (``normalize=False`` skips the input shift)."""
  scale: int = 4
  features: int = 48
  normalize: bool = True
  global_residual: bool = False
  dtype: Any = jnp.float32
  conv_impl: str = 'xla'

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    del train
    y = x.astype(jnp.float32)
    if self.normalize:
      y = (y - jnp.asarray(DIV2K_RGB_MEAN, jnp.float32)) * 255.0
    y = y.astype(self.dtype)
    conv3xc = functools.partial(Conv3XC, self.features, dtype=self.dtype,
                                conv_impl=self.conv_impl)
    first = conv3xc(name='conv_1')(y)
    out = first
    outputs = []
    for i in range(1, 7):
      out, out1 = SPAB(self.features, self.dtype, self.conv_impl, name=f'block_{i}')(out)
      outputs.append(out)
    last = conv3xc(name='conv_2')(out)
    fused = make_conv(self.conv_impl, self.features, 1, dtype=self.dtype, name='conv_cat')(
        jnp.concatenate([first, last, outputs[0], out1], axis=-1))
    y = make_conv(self.conv_impl, 3 * self.scale**2, 3, dtype=self.dtype, name='upsampler',
                  kernel_init=last_layer_init(self.global_residual))(fused)
    y = pixel_shuffle(y, self.scale).astype(jnp.float32)
    if self.global_residual:
      return add_global_residual(x, y, self.scale)
    return y


def create_model(name: str = 'reference', *, scale: int, dtype: Any = jnp.float32,
                 global_residual: bool = False, **kwargs) -> nn.Module:
  """Builds a model by name; ``kwargs`` are the model's own attributes (features, ...)."""
  classes = {'reference': ReferenceSR, 'espcn': ESPCN, 'edsr': EDSR, 'rrdb': RRDBNet,
             'srvgg': SRVGGNetCompact, 'rcan': RCAN, 'span': SPAN, 'swinir': swinir.SwinIR,
             'hat': hat.HAT}
  if name not in classes:
    raise ValueError(f'unknown model {name!r}; choose one of {", ".join(MODEL_NAMES)}')
  return classes[name](scale=scale, dtype=dtype, global_residual=global_residual, **kwargs)
