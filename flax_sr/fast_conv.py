"""Convolutions as matrix products, for backends (XLA:CPU) whose convolution backward pass is
slow. Selected with ``ReferenceSR(conv_impl='matmul')`` / ``--conv_impl matmul`` (every layer
im2col) or ``conv_impl='tuned'`` (a strategy per layer, by shape; the CPU default); the
parameters are the same as ``flax.linen.Conv``'s (``kernel`` (3, 3, C_in, C_out), ``bias``), so
checkpoints move freely between the implementations.

Four ideas:

* im2col: the k*k shifted copies of the input are concatenated on the channel axis, so the
  convolution is one (N*H*W, k*k*C_in) x (k*k*C_in, C_out) product. A custom VJP makes the
  backward pass two more such products: the weight gradient ``patches^T @ dy`` and the input
  gradient as the convolution of dy with the flipped kernel (plain autodiff would instead
  scatter-add a k*k times larger tensor back over the shifts).
* Winograd F(2x2, 3x3): the same products in a transformed domain, with 16 multiplications per
  2x2 output tile and channel pair instead of 36, on transformed inputs 4 times the input's
  size instead of 9 (forward, input gradient and weight gradient; custom VJP).
* upsample fusion: a 3x3 convolution of a nearest-upsampled (factor f) image equals a 3x3
  convolution of the small image with f*f*C_out outputs followed by a pixel shuffle: each of the
  f*f output phases sees the small image through a fixed 0/1 combination of the 9 taps. So the
  convolution runs at the low resolution and the upsampled tensor is never materialised.
* a strategy per layer shape (``choose_strategy``). On XLA:CPU Winograd is the fastest for
  every 3x3 layer of the project's models (1.5-2x im2col) except a thin output at a large image
  (the last convolution to RGB), which is fastest in XLA's own convolution. 'hybrid' (XLA's
  forward pass and input gradient, an im2col weight gradient) remains for larger kernels at
  large images.
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


# Winograd F(2x2, 3x3) (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks",
# 2016). Every 2x2 output tile is A^T [(G g G^T) * (B^T d B)] A, with d the 4x4 input tile
# around it and g the 3x3 kernel: per tile and channel pair 16 multiplications instead of 36.
# Over a batch that is 16 matrix products (tiles x C_in) @ (C_in x C_out), one per position in
# the 4x4 transformed tile, on transformed inputs 4 times the input's size (im2col's patches
# are 9 times). The transforms only add and subtract (and halve, for G), so float32 results
# stay within about 1e-6 of a direct convolution.
_WINOGRAD_BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float32)
_WINOGRAD_G = np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]], np.float32)
_WINOGRAD_AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float32)


def _combine(parts: list[jnp.ndarray], matrix: np.ndarray) -> list[jnp.ndarray]:
  """``[sum_j matrix[i, j] * parts[j] for each row i]``, skipping zero coefficients (the
  transforms are sparse; as separate arrays XLA fuses each sum into one pass)."""
  sums = []
  for row in matrix:
    total = None
    for coefficient, part in zip(row, parts):
      if coefficient:
        term = part if coefficient == 1 else -part if coefficient == -1 else coefficient * part
        total = term if total is None else total + term
    sums.append(total)
  return sums


def _even_padding(x: jnp.ndarray) -> tuple[int, int]:
  return x.shape[1] % 2, x.shape[2] % 2


def _winograd_inputs(x: jnp.ndarray) -> list[jnp.ndarray]:
  """B^T d B for the 4x4 input tile of every 2x2 output tile ('SAME' zero padding; odd sizes
  get one more zero row/column): 16 arrays (N, ceil(H/2), ceil(W/2), C), row-major in (a, b)."""
  extra_h, extra_w = _even_padding(x)
  padded = jnp.pad(x, ((0, 0), (1, 1 + extra_h), (1, 1 + extra_w), (0, 0)))
  h, w = x.shape[1] + extra_h, x.shape[2] + extra_w
  rows = _combine([padded[:, i:i + h:2] for i in range(4)], _WINOGRAD_BT)
  return [tile for row in rows for tile in _combine([row[:, :, j:j + w:2] for j in range(4)],
                                                    _WINOGRAD_BT)]


def _winograd_forward(x: jnp.ndarray, kernel: jnp.ndarray) -> jnp.ndarray:
  n, h, w, c_in = x.shape
  c_out = kernel.shape[-1]
  inputs = _winograd_inputs(x)
  # G g G^T: the kernel in the transformed domain, (4, 4, C_in, C_out).
  transformed = jnp.einsum('ai,ijco,bj->abco', _WINOGRAD_G, kernel.astype(jnp.float32),
                           _WINOGRAD_G).astype(x.dtype).reshape(16, c_in, c_out)
  # 16 separate products, not one batched product of stacked inputs: stacking would copy them.
  products = [jnp.dot(d.reshape(-1, c_in), transformed[i]).reshape(*d.shape[:3], c_out)
              for i, d in enumerate(inputs)]
  columns = [_combine(products[4 * a:4 * a + 4], _WINOGRAD_AT) for a in range(4)]
  # tiles[p][q]: output pixel (2 ty + p, 2 tx + q) of every tile, interleaved into the image.
  tiles = [[_combine([columns[a][q] for a in range(4)], _WINOGRAD_AT)[p] for q in range(2)]
           for p in range(2)]
  y = jnp.stack([jnp.stack(tiles[p], axis=3) for p in range(2)], axis=2)
  y = y.reshape(n, 2 * y.shape[1], 2 * y.shape[3], c_out)
  return y[:, :h, :w]


def _winograd_kernel_grad(x: jnp.ndarray, dy: jnp.ndarray) -> jnp.ndarray:
  """The weight gradient in the transformed domain: for each of the 16 tile positions,
  inputs^T @ (A dy_tile A^T) summed over all tiles, mapped back by G^T (.) G."""
  c_in, c_out = x.shape[-1], dy.shape[-1]
  extra_h, extra_w = _even_padding(dy)
  dy = jnp.pad(dy, ((0, 0), (0, extra_h), (0, extra_w), (0, 0)))
  a = _WINOGRAD_AT.T
  rows = _combine([dy[:, p::2] for p in range(2)], a)
  grads = [tile for row in rows for tile in _combine([row[:, :, q::2] for q in range(2)], a)]
  products = jnp.stack([jnp.dot(d.reshape(-1, c_in).T, g.reshape(-1, c_out))
                        for d, g in zip(_winograd_inputs(x), grads)])
  return jnp.einsum('ai,abco,bj->ijco', _WINOGRAD_G, products.reshape(4, 4, c_in, c_out),
                    _WINOGRAD_G)


@jax.custom_vjp
def conv_winograd(x: jnp.ndarray, kernel: jnp.ndarray) -> jnp.ndarray:
  """'SAME' 3x3 convolution by Winograd F(2x2, 3x3): forward pass, input gradient (the
  convolution of dy with the transposed kernel) and weight gradient all in the transformed
  domain."""
  if kernel.shape[:2] != (3, 3):
    raise ValueError(f'the winograd strategy needs a 3x3 kernel, got {kernel.shape[:2]}')
  return _winograd_forward(x, kernel)


def _conv_winograd_fwd(x, kernel):
  return conv_winograd(x, kernel), (x, kernel)


def _conv_winograd_bwd(residuals, dy):
  x, kernel = residuals
  dx = _winograd_forward(dy, _transposed_kernel(kernel).astype(dy.dtype))
  return dx.astype(x.dtype), _winograd_kernel_grad(x, dy).astype(kernel.dtype)


conv_winograd.defvjp(_conv_winograd_fwd, _conv_winograd_bwd)

STRATEGIES = {'im2col': conv_same, 'hybrid': conv_hybrid, 'xla': conv_xla,
              'winograd': conv_winograd}
# Thresholds measured on a 2-core AMD EPYC, batch 16-64 (experiments/RESULTS.md, section 4):
# Winograd is the fastest for every 3x3 layer of the project's models but thin outputs at large
# images, where XLA's own convolution is.
LARGE_IMAGE_PIXELS = 64 * 64
THIN_OUTPUT_CHANNELS = 16


def choose_strategy(x_shape: tuple[int, ...], out_channels: int, kernel_size: int = 3) -> str:
  """The fastest of ``STRATEGIES`` for a 'SAME' convolution of an (N, H, W, C) input on
  XLA:CPU, by shape: XLA for thin outputs at large images (e.g. the last layer to RGB at
  96x96, whose transformed or im2col weight gradient is a skinny, memory-bound product);
  else Winograd for 3x3 kernels; other sizes im2col at small images and 'hybrid' (XLA's
  forward pass and input gradient) at large ones."""
  large = x_shape[1] * x_shape[2] >= LARGE_IMAGE_PIXELS
  if large and out_channels <= THIN_OUTPUT_CHANNELS:
    return 'xla'
  if kernel_size == 3:
    return 'winograd'
  return 'hybrid' if large else 'im2col'


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
      strategy = choose_strategy(x.shape, kernel.shape[-1], size)
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
