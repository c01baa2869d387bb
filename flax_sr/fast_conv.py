"""Convolutions as matrix products, for backends (XLA:CPU) whose convolution backward pass is
slow. Selected with ``ReferenceSR(conv_impl='matmul')`` / ``--conv_impl matmul`` (every layer
im2col) or ``conv_impl='tuned'`` (a strategy per layer, by shape; the CPU default); the
parameters are the same as ``flax.linen.Conv``'s (``kernel`` (3, 3, C_in, C_out), ``bias``), so
checkpoints move freely between the implementations.

Three ideas:

* im2col: the k*k shifted copies of the input are concatenated on the channel axis, so the
  convolution is one (N*H*W, k*k*C_in) x (k*k*C_in, C_out) product. A custom VJP makes the
  backward pass two more such products: the weight gradient ``patches^T @ dy`` and the input
  gradient as the convolution of dy with the flipped kernel (plain autodiff would instead
  scatter-add a k*k times larger tensor back over the shifts).
* upsample fusion: a 3x3 convolution of a nearest-upsampled (factor f) image equals a 3x3
  convolution of the small image with f*f*C_out outputs followed by a pixel shuffle: each of the
  f*f output phases sees the small image through a fixed 0/1 combination of the 9 taps. So the
  convolution runs at the low resolution and the upsampled tensor is never materialised.
* a strategy per layer shape (``choose_strategy``). XLA:CPU's own forward convolution and
  input gradient are fast; only its weight gradient is slow, except for thin outputs. At large
  images the im2col patches (k*k times the input) make the forward pass memory-bound, so there
  the 'hybrid' convolution keeps XLA's forward and input gradient and computes only the weight
  gradient from patches; a thin output at a large image (the last convolution to RGB) is
  fastest entirely in XLA.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def im2col(x: jnp.ndarray, size: int = 3) -> jnp.ndarray:
  """(N, H, W, C) -> (N, H, W, size*size*C): the size x size neighbourhoods, zero padded
  ('SAME'), ordered (ky, kx, c) like a flattened HWIO kernel."""
  h, w, r = x.shape[1], x.shape[2], size // 2
  padded = jnp.pad(x, ((0, 0), (r, r), (r, r), (0, 0)))
  return jnp.concatenate([padded[:, dy:dy + h, dx:dx + w, :]
                          for dy in range(size) for dx in range(size)], axis=-1)


@jax.custom_vjp
def conv_same(x: jnp.ndarray, kernel: jnp.ndarray) -> jnp.ndarray:
  """'SAME' k x k convolution (cross-correlation, like ``lax.conv``; k odd) as one matrix
  product of the im2col patches with the (k*k*C_in, C_out) kernel."""
  size, c_in, c_out = kernel.shape[0], kernel.shape[2], kernel.shape[3]
  return jnp.dot(im2col(x, size), kernel.reshape(size * size * c_in, c_out))


def _conv_same_fwd(x, kernel):
  # Keep x, not its k*k times larger patches: rebuilding them in the backward pass is a copy.
  return conv_same(x, kernel), (x, kernel)


def _kernel_grad(x, dy, kernel_shape):
  """patches^T @ dy: the weight gradient as one (k*k*C_in, N*H*W) x (N*H*W, C_out) product."""
  size, c_in, c_out = kernel_shape[0], kernel_shape[2], kernel_shape[3]
  rows = x.shape[0] * x.shape[1] * x.shape[2]
  return jnp.dot(im2col(x, size).reshape(rows, size * size * c_in).T,
                 dy.reshape(rows, c_out)).reshape(kernel_shape)


def _conv_same_bwd(residuals, dy):
  x, kernel = residuals
  size, c_in, c_out = kernel.shape[0], kernel.shape[2], kernel.shape[3]
  d_kernel = _kernel_grad(x, dy, kernel.shape)
  # Input gradient as one more im2col product (see _transposed_kernel): it avoids autodiff's
  # scatter-add of a k*k times larger tensor back over the shifts.
  flipped = _transposed_kernel(kernel).reshape(size * size * c_out, c_in)
  dx = jnp.dot(im2col(dy, size), flipped)
  return dx.astype(x.dtype), d_kernel.astype(kernel.dtype)


conv_same.defvjp(_conv_same_fwd, _conv_same_bwd)


def conv_xla(x: jnp.ndarray, kernel: jnp.ndarray) -> jnp.ndarray:
  """'SAME' convolution by XLA (what ``nn.Conv`` computes), differentiated by autodiff."""
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), 'SAME',
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def _transposed_kernel(kernel: jnp.ndarray) -> jnp.ndarray:
  # The input gradient of a 'SAME' convolution is the 'SAME' convolution of dy with the kernel
  # flipped in space and with input/output channels swapped.
  return jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)


@jax.custom_vjp
def conv_hybrid(x: jnp.ndarray, kernel: jnp.ndarray) -> jnp.ndarray:
  """'SAME' convolution: XLA's forward pass and input gradient, the weight gradient from
  im2col patches (XLA:CPU's own weight gradient is the slow part of its convolution)."""
  return conv_xla(x, kernel)


def _conv_hybrid_fwd(x, kernel):
  return conv_xla(x, kernel), (x, kernel)


def _conv_hybrid_bwd(residuals, dy):
  x, kernel = residuals
  dx = conv_xla(dy, _transposed_kernel(kernel).astype(dy.dtype))
  return dx.astype(x.dtype), _kernel_grad(x, dy, kernel.shape).astype(kernel.dtype)


conv_hybrid.defvjp(_conv_hybrid_fwd, _conv_hybrid_bwd)

STRATEGIES = {'im2col': conv_same, 'hybrid': conv_hybrid, 'xla': conv_xla}
# Thresholds measured on a 2-core AMD EPYC, batch 16-64 (experiments/RESULTS.md, section 4):
# whole training steps are fastest with im2col at 32x32 images, with hybrid/XLA at 96x96.
LARGE_IMAGE_PIXELS = 64 * 64
THIN_OUTPUT_CHANNELS = 16


def choose_strategy(x_shape: tuple[int, ...], out_channels: int) -> str:
  """The fastest of ``STRATEGIES`` for a 'SAME' convolution of an (N, H, W, C) input on
  XLA:CPU, by shape: im2col at small images; at large ones XLA's forward pass and input
  gradient ('hybrid'), or XLA throughout for thin outputs (e.g. the last layer to RGB), whose
  im2col weight gradient is a skinny, memory-bound product."""
  if x_shape[1] * x_shape[2] < LARGE_IMAGE_PIXELS:
    return 'im2col'
  return 'xla' if out_channels <= THIN_OUTPUT_CHANNELS else 'hybrid'


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
  """A drop-in for ``nn.Conv(features, (k, k), padding='SAME')`` (k odd) computed with matrix
  products; with ``upsample_input=f`` (3x3 only) it computes ``conv(upsample_nearest(x, f))``
  at x's resolution. ``strategy``: one of ``STRATEGIES``, or 'auto' to choose by shape
  (``choose_strategy``, decided when the model is traced)."""
  features: int
  kernel_size: tuple[int, int] = (3, 3)
  use_bias: bool = True
  dtype: Any = jnp.float32
  upsample_input: int = 1
  kernel_init: Any = nn.initializers.lecun_normal()
  strategy: str = 'im2col'

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    size = self.kernel_size[0]
    if tuple(self.kernel_size) != (size, size) or size % 2 == 0:
      raise ValueError(f'MatmulConv supports square odd kernels, got {self.kernel_size}')
    if self.upsample_input > 1 and size != 3:
      raise ValueError(f'upsample_input needs a 3x3 kernel, got {self.kernel_size}')
    kernel = self.param('kernel', self.kernel_init, (size, size, x.shape[-1], self.features),
                        jnp.float32)
    x = x.astype(self.dtype)
    kernel = kernel.astype(self.dtype)
    factor = self.upsample_input
    if factor > 1:
      kernel = fuse_upsample_kernel(kernel, factor)
    strategy = self.strategy
    if strategy == 'auto':
      strategy = choose_strategy(x.shape, kernel.shape[-1])
    if strategy not in STRATEGIES:
      raise ValueError(f'strategy must be one of {sorted(STRATEGIES)} or auto, got {strategy!r}')
    y = STRATEGIES[strategy](x, kernel)
    if factor > 1:
      from flax_sr.models import pixel_shuffle  # models imports this module lazily
      y = pixel_shuffle(y, factor)
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros, (self.features,), jnp.float32
                         ).astype(self.dtype)
    return y
