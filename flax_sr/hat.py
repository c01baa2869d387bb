"""HAT, the Hybrid Attention Transformer (Chen et al. 2023), NHWC, float RGB in [0, 1] in and
out, equal to the original (as packaged in spandrel) on converted weights
(``flax_sr.torch_weights.hat_from_state_dict``).

SwinIR's design (``flax_sr.swinir``) with two additions that let each output see more input
pixels:

* the hybrid attention block (HAB): beside the (shifted) window attention, a channel-attention
  convolution branch (CAB: 3x3 conv to 1/``compress_ratio`` of the channels, GELU, 3x3 conv
  back, RCAN's channel attention with reduction ``squeeze_factor``) scaled by ``conv_scale``;
* the overlapping cross-attention block (OCAB) closing every group: queries from the
  ``window_size`` windows, keys and values from windows ``1 + overlap_ratio`` times larger
  around them (zero-padded at the border), with its own relative-position bias.

The paper's HAT (x2/x3/x4): ``features=180, depths=(6,)*6, num_heads=(6,)*6, window_size=16,
compress_ratio=3, squeeze_factor=30, overlap_ratio=0.5, mlp_ratio=2`` (20.8 M parameters at
x4); HAT-S: ``compress_ratio=24, squeeze_factor=24``; HAT-L: 12 groups.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from flax_sr.attention import window_attention
from flax_sr.blocks import (DIV2K_RGB_MEAN, ChannelAttention, add_global_residual, make_conv,
                            upsample_steps)
from flax_sr.layers import pixel_shuffle
from flax_sr.swinir import (LayerNorm, WindowAttention, gelu, mlp, shifted_window_attention,
                            window_partition, window_reverse)

RESI_CONNECTIONS = ('1conv', 'identity')


def overlap_window_size(window_size: int, overlap_ratio: float) -> int:
  return window_size + int(overlap_ratio * window_size)


def overlap_position_index(window_size: int, overlap_ratio: float) -> np.ndarray:
  """(ws*ws, ows*ows) indices into OCAB's (ws + ows - 1)^2-row bias table, as HAT numbers
  them: the offset of each key of the large window from each query of the small one."""
  ows = overlap_window_size(window_size, overlap_ratio)

  def flat_coords(size):
    return np.stack(np.meshgrid(np.arange(size), np.arange(size), indexing='ij')).reshape(2, -1)

  offsets = (flat_coords(ows)[:, None, :] - flat_coords(window_size)[:, :, None]).transpose(1, 2, 0)
  offsets = offsets + window_size - ows + 1
  return offsets[..., 0] * (window_size + ows - 1) + offsets[..., 1]


def overlapping_windows(x, window_size: int, ows: int):
  """(B, H, W, C), H and W multiples of ``window_size`` -> (B * H/ws * W/ws, ows*ows, C): the
  ``ows``-sized window centred on each ``window_size`` window, zero outside the image (the
  original's ``nn.Unfold`` with stride ``window_size``)."""
  b, h, w, c = x.shape
  pad = (ows - window_size) // 2
  x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  rows = np.arange(h // window_size)[:, None] * window_size + np.arange(ows)[None, :]
  cols = np.arange(w // window_size)[:, None] * window_size + np.arange(ows)[None, :]
  windows = x[:, rows][:, :, :, cols]  # (B, nh, ows, nw, ows, C)
  return windows.transpose(0, 1, 3, 2, 4, 5).reshape(-1, ows * ows, c)


class ChannelAttentionBlock(nn.Module):
  """HAT's CAB: conv3x3 (C / compress_ratio) -> GELU -> conv3x3 (C) -> channel attention."""
  features: int
  compress_ratio: int
  squeeze_factor: int
  dtype: Any
  conv_impl: str = 'xla'

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(make_conv, self.conv_impl, dtype=self.dtype)
    y = gelu(conv(self.features // self.compress_ratio, name='conv1')(x))
    y = conv(self.features, name='conv2')(y)
    return ChannelAttention(self.features, self.squeeze_factor, self.dtype, name='attention')(y)


class HybridAttentionBlock(nn.Module):
  """LayerNorm -> (shifted) window attention + ``conv_scale`` x CAB -> skip; LayerNorm -> MLP
  -> skip."""
  num_heads: int
  window_size: int
  shift: int
  mlp_ratio: float
  compress_ratio: int
  squeeze_factor: int
  conv_scale: float
  dtype: Any
  conv_impl: str = 'xla'

  @nn.compact
  def __call__(self, x):
    dim = x.shape[-1]
    y = LayerNorm(dtype=self.dtype, name='norm1')(x)
    conv_y = ChannelAttentionBlock(dim, self.compress_ratio, self.squeeze_factor, self.dtype,
                                   self.conv_impl, name='conv_block')(y)
    attention = WindowAttention(dim, self.window_size, self.num_heads, self.dtype, name='attn')
    x = x + shifted_window_attention(attention, y, self.window_size, self.shift) + (
        self.conv_scale * conv_y)
    return x + mlp(x, self.mlp_ratio, self.dtype)


class OverlappingCrossAttention(nn.Module):
  """OCAB: queries from each window, keys and values from the larger window around it."""
  num_heads: int
  window_size: int
  overlap_ratio: float
  mlp_ratio: float
  dtype: Any

  @nn.compact
  def __call__(self, x):
    b, h, w, dim = x.shape
    ws = self.window_size
    ows = overlap_window_size(ws, self.overlap_ratio)
    head_dim = dim // self.num_heads
    y = LayerNorm(dtype=self.dtype, name='norm1')(x)
    qkv = nn.Dense(3 * dim, dtype=self.dtype, name='qkv')(y).reshape(b, h, w, 3, dim)
    q = window_partition(qkv[..., 0, :], ws).reshape(-1, ws * ws, dim)
    k = overlapping_windows(qkv[..., 1, :], ws, ows)
    v = overlapping_windows(qkv[..., 2, :], ws, ows)

    def heads(t):
      return t.reshape(t.shape[0], t.shape[1], self.num_heads, head_dim).transpose(0, 2, 1, 3)

    q, k, v = heads(q) * head_dim**-0.5, heads(k), heads(v)
    table = self.param('relative_position_bias_table', nn.initializers.truncated_normal(0.02),
                       ((ws + ows - 1)**2, self.num_heads), jnp.float32)
    bias = table[overlap_position_index(ws, self.overlap_ratio).reshape(-1)]
    bias = bias.reshape(ws * ws, ows * ows, self.num_heads).transpose(2, 0, 1)
    out = window_attention(q, k, v, bias, np.zeros((1, ws * ws, ows * ows), np.float32))
    out = out.transpose(0, 2, 1, 3).reshape(-1, ws, ws, dim)
    x = x + nn.Dense(dim, dtype=self.dtype, name='proj')(window_reverse(out, ws, h, w))
    return x + mlp(x, self.mlp_ratio, self.dtype)


class HAT(nn.Module):
  """HAT for x2/x3/x4/x8 SR (pixel-shuffle upsampler, as every published HAT)."""
  scale: int = 4
  features: int = 180
  depths: Sequence[int] = (6, 6, 6, 6, 6, 6)
  num_heads: Sequence[int] = (6, 6, 6, 6, 6, 6)
  window_size: int = 16
  mlp_ratio: float = 2.0
  compress_ratio: int = 3
  squeeze_factor: int = 30
  conv_scale: float = 0.01
  overlap_ratio: float = 0.5
  resi_connection: str = '1conv'
  img_range: float = 1.0
  upsample_features: int = 64
  global_residual: bool = False
  dtype: Any = jnp.float32
  conv_impl: str = 'xla'

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    del train
    if self.resi_connection not in RESI_CONNECTIONS:
      raise ValueError(f'resi_connection must be one of {RESI_CONNECTIONS}, got '
                       f'{self.resi_connection!r}')
    if len(self.depths) != len(self.num_heads):
      raise ValueError(f'depths {tuple(self.depths)} and num_heads {tuple(self.num_heads)} '
                       f'need one entry per group each')
    conv = functools.partial(make_conv, self.conv_impl, dtype=self.dtype)
    height, width = x.shape[1:3]
    ws = self.window_size
    mean = jnp.asarray(DIV2K_RGB_MEAN, jnp.float32)
    y = (x.astype(jnp.float32) - mean) * self.img_range
    y = jnp.pad(y, ((0, 0), (0, -height % ws), (0, -width % ws), (0, 0)), mode='reflect')
    shallow = conv(self.features, name='conv_first')(y.astype(self.dtype))
    deep = LayerNorm(dtype=self.dtype, name='patch_norm')(shallow)
    for i, (depth, heads) in enumerate(zip(self.depths, self.num_heads)):
      group_input = deep
      for j in range(depth):
        deep = HybridAttentionBlock(heads, ws, 0 if j % 2 == 0 else ws // 2, self.mlp_ratio,
                                    self.compress_ratio, self.squeeze_factor, self.conv_scale,
                                    self.dtype, self.conv_impl,
                                    name=f'layers_{i}_block_{j}')(deep)
      deep = OverlappingCrossAttention(heads, ws, self.overlap_ratio, self.mlp_ratio,
                                       self.dtype, name=f'layers_{i}_overlap_attn')(deep)
      if self.resi_connection == '1conv':
        deep = conv(self.features, name=f'layers_{i}_conv')(deep)
      deep = group_input + deep
    deep = LayerNorm(dtype=self.dtype, name='norm')(deep)
    if self.resi_connection == '1conv':
      deep = conv(self.features, name='conv_after_body')(deep)
    y = shallow + deep
    # PyTorch's default LeakyReLU slope, 0.01, as in the original.
    y = nn.leaky_relu(conv(self.upsample_features, name='conv_before_upsample')(y), 0.01)
    for i, factor in enumerate(upsample_steps(self.scale)):
      y = pixel_shuffle(conv(self.upsample_features * factor**2, name=f'upsample_{i}')(y), factor)
    y = conv(3, name='conv_last')(y).astype(jnp.float32) / self.img_range + mean
    y = y[:, :height * self.scale, :width * self.scale]
    if self.global_residual:
      return add_global_residual(x, y, self.scale)
    return y
