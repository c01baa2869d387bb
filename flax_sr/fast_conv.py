"""3x3 convolutions as matrix products, for backends (XLA:CPU) whose convolution backward pass is
slow. Selected with ``ReferenceSR(conv_impl='matmul')`` / ``--conv_impl matmul``; the parameters
are the same as ``flax.linen.Conv``'s (``kernel`` (3, 3, C_in, C_out), ``bias``), so checkpoints
move freely between the two implementations.

Two ideas:

* im2col: the 9 shifted copies of the input are concatenated on the channel axis, so the
  convolution is one (N*H*W, 9*C_in) x (9*C_in, C_out) product. Autodiff of that is again two
  large products (the weight gradient ``patches^T @ dy``, the input gradient ``dy @ W^T`` summed
  back over the 9 shifts), which XLA:CPU runs near its matmul rate.
* upsample fusion: a 3x3 convolution of a nearest-upsampled (factor f) image equals a 3x3
  convolution of the small image with f*f*C_out outputs followed by a pixel shuffle: each of the
  f*f output phases sees the small image through a fixed 0/1 combination of the 9 taps. So the
  convolution runs at the low resolution and the upsampled tensor is never materialised.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np


def im2col_3x3(x: jnp.ndarray) -> jnp.ndarray:
  """(N, H, W, C) -> (N, H, W, 9 C): the 3x3 neighbourhoods, zero padded ('SAME')."""
  h, w = x.shape[1], x.shape[2]
  padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  return jnp.concatenate([padded[:, dy:dy + h, dx:dx + w, :]
                          for dy in range(3) for dx in range(3)], axis=-1)


def conv3x3(x: jnp.ndarray, kernel: jnp.ndarray) -> jnp.ndarray:
  """'SAME' 3x3 convolution (cross-correlation, like ``lax.conv``) as one matrix product."""
  c_in, c_out = kernel.shape[2], kernel.shape[3]
  patches = im2col_3x3(x)
  return jnp.dot(patches, kernel.reshape(9 * c_in, c_out))


def _phase_map(factor: int) -> np.ndarray:
  """M[ly, lx, ty, tx, a, b] = 1 when HR tap (ty, tx) of output phase (a, b) reads LR offset
  (ly, lx): HR offset d in {-1, 0, 1} from phase a lands on LR offset floor((a + d) / factor)."""
  m = np.zeros((3, 3, 3, 3, factor, factor), np.float32)
  for a in range(factor):
    for b in range(factor):
      for ty in range(3):
        for tx in range(3):
          ly = (a + ty - 1) // factor + 1
          lx = (b + tx - 1) // factor + 1
          m[ly, lx, ty, tx, a, b] = 1.0
  return m


def fuse_upsample_kernel(kernel: jnp.ndarray, factor: int) -> jnp.ndarray:
  """(3, 3, C_in, C_out) on the upsampled grid -> (3, 3, C_in, f*f*C_out) on the small grid,
  output channels ordered (a, b, c) as ``models.pixel_shuffle`` expects."""
  fused = jnp.einsum('yxtsab,tsio->yxiabo', jnp.asarray(_phase_map(factor), kernel.dtype), kernel)
  c_in, c_out = kernel.shape[2], kernel.shape[3]
  return fused.reshape(3, 3, c_in, factor * factor * c_out)


class MatmulConv(nn.Module):
  """A drop-in for ``nn.Conv(features, (3, 3), padding='SAME')`` computed with matrix products;
  with ``upsample_input=f`` it computes ``conv(upsample_nearest(x, f))`` at x's resolution."""
  features: int
  kernel_size: tuple[int, int] = (3, 3)
  use_bias: bool = True
  dtype: Any = jnp.float32
  upsample_input: int = 1
  kernel_init: Any = nn.initializers.lecun_normal()

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    if tuple(self.kernel_size) != (3, 3):
      raise ValueError(f'MatmulConv supports 3x3 kernels, got {self.kernel_size}')
    kernel = self.param('kernel', self.kernel_init, (3, 3, x.shape[-1], self.features),
                        jnp.float32)
    x = x.astype(self.dtype)
    kernel = kernel.astype(self.dtype)
    factor = self.upsample_input
    if factor > 1:
      from flax_sr.models import pixel_shuffle  # models imports this module lazily
      y = pixel_shuffle(conv3x3(x, fuse_upsample_kernel(kernel, factor)), factor)
    else:
      y = conv3x3(x, kernel)
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros, (self.features,), jnp.float32
                         ).astype(self.dtype)
    return y
