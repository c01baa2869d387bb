"""SwinIR (Liang et al. 2021): residual Swin Transformer blocks for super-resolution, NHWC,
float RGB in [0, 1] in and out, equal to the original (as packaged in spandrel) on converted
weights (``flax_sr.torch_weights.swinir_from_state_dict``).

A shallow 3x3 convolution, then residual Swin transformer blocks (RSTB): ``depths[i]`` Swin
layers of window self-attention with a learned relative-position bias, every second one on
windows shifted by half a window (with the mask that keeps attention inside the regions the
cyclic shift brought together), each RSTB closed by a convolution and a skip. Any input size
works: the image is reflect-padded to a window multiple and the output cropped back, as the
original does. The settings of the paper's models:

* classical SR: ``features=180, depths=(6,)*6, num_heads=(6,)*6, window_size=8,
  mlp_ratio=2, upsampler='pixelshuffle'`` (11.8 M parameters at x4);
* lightweight SR: ``features=60, depths=(6,)*4, num_heads=(6,)*4,
  upsampler='pixelshuffledirect'``;
* real-world SR: ``upsampler='nearest+conv'``, ``resi_connection='3conv'`` for the large one.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from flax_sr.attention import split_heads, window_attention
from flax_sr.layers import pixel_shuffle, upsample_nearest
from flax_sr.blocks import DIV2K_RGB_MEAN, add_global_residual, make_conv, upsample_steps

UPSAMPLERS = ('pixelshuffle', 'pixelshuffledirect', 'nearest+conv')
RESI_CONNECTIONS = ('1conv', '3conv')

# PyTorch's defaults, which the originals use: LayerNorm epsilon 1e-5 (Flax: 1e-6) with the
# two-pass variance, exact (erf) GELU (Flax: the tanh approximation).
LayerNorm = functools.partial(nn.LayerNorm, epsilon=1e-5, use_fast_variance=False)
gelu = functools.partial(nn.gelu, approximate=False)


def relative_position_index(window_size: int) -> np.ndarray:
  """(w*w, w*w) indices into the (2w-1)^2-row bias table: the table row of each (query, key)
  pair's offset (dy, dx), as the Swin Transformer numbers them."""
  coords = np.stack(np.meshgrid(np.arange(window_size), np.arange(window_size),
                                indexing='ij')).reshape(2, -1)
  offsets = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0) + window_size - 1
  return offsets[..., 0] * (2 * window_size - 1) + offsets[..., 1]


def shifted_window_mask(height: int, width: int, window_size: int, shift: int) -> np.ndarray:
  """(num_windows, w*w, w*w): 0 where query and key came from the same region before the
  cyclic shift, -100 elsewhere (the original's constant, not -inf)."""
  regions = np.zeros((height, width), np.int32)
  bounds = (slice(0, -window_size), slice(-window_size, -shift), slice(-shift, None))
  label = 0
  for rows in bounds:
    for cols in bounds:
      regions[rows, cols] = label
      label += 1
  windows = window_partition(regions[None, :, :, None], window_size).reshape(
      -1, window_size * window_size)
  return np.where(windows[:, None, :] != windows[:, :, None], -100.0, 0.0).astype(np.float32)


def window_partition(x, window_size: int):
  """(B, H, W, C) -> (B * H/w * W/w, w, w, C), windows in row-major order."""
  b, h, w, c = x.shape
  x = x.reshape(b, h // window_size, window_size, w // window_size, window_size, c)
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(-1, window_size, window_size, c)


def window_reverse(windows, window_size: int, height: int, width: int):
  """The inverse of ``window_partition``."""
  c = windows.shape[-1]
  x = windows.reshape(-1, height // window_size, width // window_size, window_size,
                      window_size, c)
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(-1, height, width, c)


class WindowAttention(nn.Module):
  """Multi-head self-attention inside each window, with a learned bias per head and relative
  offset (``relative_position_bias_table``)."""
  dim: int
  window_size: int
  num_heads: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, mask=None):
    windows, tokens, dim = x.shape
    head_dim = dim // self.num_heads
    qkv = nn.Dense(3 * dim, dtype=self.dtype, name='qkv')(x)
    q, k, v = split_heads(qkv, self.num_heads)
    q = q * head_dim**-0.5
    table = self.param('relative_position_bias_table', nn.initializers.truncated_normal(0.02),
                       ((2 * self.window_size - 1)**2, self.num_heads), jnp.float32)
    bias = table[relative_position_index(self.window_size).reshape(-1)]
    bias = bias.reshape(tokens, tokens, self.num_heads).transpose(2, 0, 1)
    if mask is None:
      mask = np.zeros((1, tokens, tokens), np.float32)
    y = window_attention(q, k, v, bias, mask)
    y = y.transpose(0, 2, 1, 3).reshape(windows, tokens, dim)
    return nn.Dense(dim, dtype=self.dtype, name='proj')(y)


class SwinLayer(nn.Module):
  """LayerNorm -> (shifted) window attention -> skip; LayerNorm -> MLP (GELU) -> skip."""
  dim: int
  num_heads: int
  window_size: int
  shift: int
  mlp_ratio: float
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    y = LayerNorm(dtype=self.dtype, name='norm1')(x)
    attention = WindowAttention(x.shape[-1], self.window_size, self.num_heads, self.dtype,
                                name='attn')
    x = x + shifted_window_attention(attention, y, self.window_size, self.shift)
    return x + mlp(x, self.mlp_ratio, self.dtype)


def shifted_window_attention(attention: WindowAttention, x, window_size: int, shift: int):
  """``attention`` within each window of ``x`` (B, H, W, C), the windows shifted by
  ``shift`` (cyclically, masked) when it is not 0."""
  _, height, width, dim = x.shape
  if shift:
    x = jnp.roll(x, (-shift, -shift), axis=(1, 2))
  windows = window_partition(x, window_size).reshape(-1, window_size * window_size, dim)
  mask = shifted_window_mask(height, width, window_size, shift) if shift else None
  windows = attention(windows, mask)
  y = window_reverse(windows.reshape(-1, window_size, window_size, dim), window_size, height,
                     width)
  return jnp.roll(y, (shift, shift), axis=(1, 2)) if shift else y


def mlp(x, mlp_ratio: float, dtype):
  """The transformer MLP branch, LayerNorm -> dense (``mlp_ratio`` wider) -> GELU -> dense,
  as submodules ``norm2``, ``mlp_fc1``, ``mlp_fc2`` of the compact module calling it."""
  dim = x.shape[-1]
  y = LayerNorm(dtype=dtype, name='norm2')(x)
  y = nn.Dense(int(dim * mlp_ratio), dtype=dtype, name='mlp_fc1')(y)
  return nn.Dense(dim, dtype=dtype, name='mlp_fc2')(gelu(y))


def residual_connection(kind: str, conv, features: int, name: str):
  """The convolution that closes an RSTB (and the body): one 3x3 ('1conv'), or 3x3 to a
  quarter of the channels, 1x1, 3x3 back with LeakyReLU 0.2 between ('3conv', fewer
  parameters for the large real-world model)."""
  if kind == '1conv':
    return conv(features, name=name)

  def three_convs(x):
    y = nn.leaky_relu(conv(features // 4, name=f'{name}_0')(x), 0.2)
    y = nn.leaky_relu(conv(features // 4, 1, name=f'{name}_2')(y), 0.2)
    return conv(features, name=f'{name}_4')(y)
  return three_convs


class SwinIR(nn.Module):
  """SwinIR for x2/x3/x4/x8 SR. ``features`` is the embedding width (180 classical, 60
  lightweight); ``depths``/``num_heads`` one entry per RSTB. The input is shifted by DIV2K's
  mean and multiplied by ``img_range`` (1; the original's JPEG models use 255)."""
  scale: int = 4
  features: int = 180
  depths: Sequence[int] = (6, 6, 6, 6, 6, 6)
  num_heads: Sequence[int] = (6, 6, 6, 6, 6, 6)
  window_size: int = 8
  mlp_ratio: float = 2.0
  upsampler: str = 'pixelshuffle'
  resi_connection: str = '1conv'
  img_range: float = 1.0
  upsample_features: int = 64
  global_residual: bool = False
  dtype: Any = jnp.float32
  conv_impl: str = 'xla'

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    del train
    if self.upsampler not in UPSAMPLERS:
      raise ValueError(f'upsampler must be one of {UPSAMPLERS}, got {self.upsampler!r}')
    if self.resi_connection not in RESI_CONNECTIONS:
      raise ValueError(f'resi_connection must be one of {RESI_CONNECTIONS}, got '
                       f'{self.resi_connection!r}')
    if len(self.depths) != len(self.num_heads):
      raise ValueError(f'depths {tuple(self.depths)} and num_heads {tuple(self.num_heads)} '
                       f'need one entry per RSTB each')
    conv = functools.partial(make_conv, self.conv_impl, dtype=self.dtype)

    height, width = x.shape[1:3]
    w = self.window_size
    y = x.astype(jnp.float32)
    y = jnp.pad(y, ((0, 0), (0, -height % w), (0, -width % w), (0, 0)), mode='reflect')
    mean = jnp.asarray(DIV2K_RGB_MEAN, jnp.float32)
    y = ((y - mean) * self.img_range).astype(self.dtype)
    shallow = conv(self.features, name='conv_first')(y)
    deep = LayerNorm(dtype=self.dtype, name='patch_norm')(shallow)
    for i, (depth, heads) in enumerate(zip(self.depths, self.num_heads)):
      block_input = deep
      for j in range(depth):
        deep = SwinLayer(self.features, heads, w, 0 if j % 2 == 0 else w // 2, self.mlp_ratio,
                         self.dtype, name=f'layers_{i}_block_{j}')(deep)
      deep = block_input + residual_connection(self.resi_connection, conv, self.features,
                                               f'layers_{i}_conv')(deep)
    deep = LayerNorm(dtype=self.dtype, name='norm')(deep)
    y = shallow + residual_connection(self.resi_connection, conv, self.features,
                                      'conv_after_body')(deep)
    if self.upsampler == 'pixelshuffledirect':
      y = pixel_shuffle(conv(3 * self.scale**2, name='upsample')(y), self.scale)
    else:
      # The original's LeakyReLU here has PyTorch's default slope, 0.01.
      y = nn.leaky_relu(conv(self.upsample_features, name='conv_before_upsample')(y), 0.01)
      steps = upsample_steps(self.scale)
      if self.upsampler == 'pixelshuffle':
        for i, factor in enumerate(steps):
          y = pixel_shuffle(conv(self.upsample_features * factor**2, name=f'upsample_{i}')(y),
                            factor)
      else:
        if self.scale not in (2, 4, 8):
          raise ValueError(f"upsampler 'nearest+conv' supports x2/x4/x8, not x{self.scale}")
        for i in range(len(steps)):
          y = nn.leaky_relu(conv(self.upsample_features, name=f'conv_up{i + 1}')(
              upsample_nearest(y, 2)), 0.2)
        y = nn.leaky_relu(conv(self.upsample_features, name='conv_hr')(y), 0.2)
      y = conv(3, name='conv_last')(y)
    y = y.astype(jnp.float32) / self.img_range + mean
    y = y[:, :height * self.scale, :width * self.scale]
    if self.global_residual:
      return add_global_residual(x, y, self.scale)
    return y
