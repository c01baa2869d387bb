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
* Winograd F(2x2, 3x3) and F(4x4, 3x3): the same products in a transformed domain, with 16
  multiplications per 2x2 output tile and channel pair instead of 36 (F(4x4): 36 per 4x4 tile
  instead of 144), on transformed inputs 4 (2.25) times the input's size instead of 9
  (forward, input gradient and weight gradient; custom VJP).
* upsample fusion: a 3x3 convolution of a nearest-upsampled (factor f) image equals a 3x3
  convolution of the small image with f*f*C_out outputs followed by a pixel shuffle: each of the
  f*f output phases sees the small image through a fixed 0/1 combination of the 9 taps. So the
  convolution runs at the low resolution and the upsampled tensor is never materialised.
* a strategy per layer shape (``choose_strategy``). On XLA:CPU Winograd F(4x4) is the fastest
  for every 3x3 layer of the project's models (1.05-1.3x F(2x2), which is 1.5-2x im2col)
  except a thin output at a large image (the last convolution to RGB), which is fastest with
  XLA's own forward pass and its weight gradient from shifted copies of the thin dy ('thin').
  'hybrid' (XLA's
  forward pass and input gradient, an im2col weight gradient) remains for larger kernels at
  large images.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from flax_sr import layers


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


def _shifted_output_grads(dy: jnp.ndarray, size: int) -> jnp.ndarray:
  """(size*size*C_out, N*H*W): dy shifted by each kernel tap (a, b), zero filled, channels
  first: row (a, b, o) at pixel (n, u, v) holds dy[n, u + r - a, v + r - b, o] (r = size // 2),
  the output gradient that input pixel (n, u, v) meets through tap (a, b)."""
  r = size // 2
  n, h, w, c_out = dy.shape
  padded = jnp.pad(jnp.moveaxis(dy, -1, 0), ((0, 0), (0, 0), (r, r), (r, r)))
  shifts = [padded[:, :, 2 * r - a:2 * r - a + h, 2 * r - b:2 * r - b + w]
            for a in range(size) for b in range(size)]
  return jnp.stack(shifts).reshape(size * size * c_out, n * h * w)


@jax.custom_vjp
def conv_thin(x: jnp.ndarray, kernel: jnp.ndarray) -> jnp.ndarray:
  """'SAME' convolution to few output channels (the last layer to RGB): XLA's forward pass and
  input gradient; the weight gradient as one (k*k*C_out, N*H*W) x (N*H*W, C_in) product of the
  k*k shifted copies of the thin dy with x as it is. XLA:CPU's own weight gradient transposes
  the wide x first, and im2col's patches are 9 copies of it."""
  return conv_xla(x, kernel)


def _conv_thin_fwd(x, kernel):
  return conv_xla(x, kernel), (x, kernel)


def _conv_thin_bwd(residuals, dy):
  x, kernel = residuals
  size, c_in, c_out = kernel.shape[0], kernel.shape[2], kernel.shape[3]
  dx = conv_xla(dy, _transposed_kernel(kernel).astype(dy.dtype))
  rows = x.shape[0] * x.shape[1] * x.shape[2]
  d_kernel = jnp.dot(_shifted_output_grads(dy, size), x.reshape(rows, c_in))
  d_kernel = d_kernel.reshape(size, size, c_out, c_in).transpose(0, 1, 3, 2)
  return dx.astype(x.dtype), d_kernel.astype(kernel.dtype)


conv_thin.defvjp(_conv_thin_fwd, _conv_thin_bwd)


# Winograd F(m x m, 3x3) (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks",
# 2016). Every m x m output tile is A^T [(G g G^T) * (B^T d B)] A, with d the (m+2) x (m+2)
# input tile around it and g the 3x3 kernel. Over a batch that is (m+2)^2 matrix products
# (tiles x C_in) @ (C_in x C_out), one per position in the transformed tile, on transformed
# inputs (m+2)^2 / m^2 times the input's size (im2col's patches are 9 times):
#   F(2x2): 16 products per 4 outputs (2.25x fewer multiplications than direct), inputs x4;
#   F(4x4): 36 products per 16 outputs (4x fewer), inputs x2.25: less arithmetic and less
#           memory traffic, the transforms being memory-bound on CPU. Its larger coefficients
#           (up to 8, and 1/24) cost some precision, still about 6e-7 relative error on a
#           random float32 tile (the tests hold both sizes to 1e-5 against XLA).
class WinogradTransform(NamedTuple):
  output_tile: int        # m
  input_transform: np.ndarray   # B^T, (m+2, m+2)
  kernel_transform: np.ndarray  # G, (m+2, 3)
  output_transform: np.ndarray  # A^T, (m, m+2)


F2X2 = WinogradTransform(
    2,
    np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float32),
    np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]], np.float32),
    np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float32))
# Interpolation points 0, 1, -1, 2, -2 and infinity.
F4X4 = WinogradTransform(
    4,
    np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
              [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], np.float32),
    np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
              [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], np.float32),
    np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
              [0, 1, -1, 8, -8, 1]], np.float32))


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


def materialized(v: jnp.ndarray) -> jnp.ndarray:
  """v, computed once into a buffer of its own.

  XLA:CPU fuses a cheap elementwise producer into each of its consumers, recomputing it there.
  The Winograd transforms have (m+2)^2 consumers of each stage (36 for F(4x4)), so each would
  recompute the row stage, the padding and whatever made v (BatchNorm, ReLU or their gradients)
  from several strided reads: a profile of the 32 -> 96 early step put 2.7 of 7.4 s of thread
  time there. (The padding of an input transform needs no buffer: XLA computes it once inside
  the row stage's.) ``optimization_barrier`` does not stop this (XLA:CPU removes it before fusion);
  the operand of a conditional is always materialised. The predicate depends on the data so
  that XLA cannot fold it, and the branches differ so that JAX keeps the conditional; both
  return v unchanged (NaN included).
  """
  flat = v.reshape(-1)
  return jax.lax.cond(flat[0] == flat[0], lambda u: u, lambda u: u * 1, v)


def _tile_padding(x: jnp.ndarray, tile: int) -> tuple[int, int]:
  """Rows and columns of zeros that make x's height and width multiples of the tile."""
  return -x.shape[1] % tile, -x.shape[2] % tile


def _winograd_inputs(x: jnp.ndarray, t: WinogradTransform) -> list[jnp.ndarray]:
  """B^T d B for the input tile of every m x m output tile ('SAME' zero padding; sizes that
  are not multiples of m get more zero rows/columns): (m+2)^2 arrays (N, H/m, W/m, C),
  row-major in the transformed tile."""
  m = t.output_tile
  extra_h, extra_w = _tile_padding(x, m)
  padded = jnp.pad(x, ((0, 0), (1, 1 + extra_h), (1, 1 + extra_w), (0, 0)))
  h, w = x.shape[1] + extra_h, x.shape[2] + extra_w
  rows = materialized(jnp.stack(
      _combine([padded[:, i:i + h:m] for i in range(m + 2)], t.input_transform)))
  return [tile for row in rows
          for tile in _combine([row[:, :, j:j + w:m] for j in range(m + 2)], t.input_transform)]


def _to_transformed_domain(kernel: jnp.ndarray, t: WinogradTransform) -> jnp.ndarray:
  """G g G^T for every (C_in, C_out) pair of a (3, 3, C_in, C_out) kernel: (m+2, m+2, C_in, C_out).

  One (a^2 x 9) @ (9 x C_in C_out) product with kron(G, G), whose entry ((a, b), (i, j)) is
  G[a, i] G[b, j]. The einsum 'ai,ijco,bj->abco' computes the same sums, but XLA:CPU lowers it
  to a chain of transposing products several times slower at 512 x 512; a frozen VGG16 passes
  its kernels into every GAN step, which transforms them each time.
  """
  a = t.output_tile + 2
  matrix = jnp.asarray(np.kron(t.kernel_transform, t.kernel_transform))
  flat = jnp.dot(matrix, kernel.astype(jnp.float32).reshape(9, -1), precision='highest')
  return flat.reshape(a, a, *kernel.shape[2:])


def _from_transformed_domain(products: jnp.ndarray, t: WinogradTransform) -> jnp.ndarray:
  """G^T P G: the (3, 3, C_in, C_out) kernel gradient from its transformed-domain products
  (a^2, C_in, C_out), as one product with kron(G, G)^T (see ``_to_transformed_domain``)."""
  matrix = jnp.asarray(np.kron(t.kernel_transform, t.kernel_transform).T)
  flat = jnp.dot(matrix, products.reshape(products.shape[0], -1), precision='highest')
  return flat.reshape(3, 3, *products.shape[1:])


def _winograd_forward(x: jnp.ndarray, kernel: jnp.ndarray, t: WinogradTransform,
                      inputs: list[jnp.ndarray] | None = None) -> jnp.ndarray:
  """The convolution from x's transformed tiles (``inputs``: ``_winograd_inputs(x, t)``,
  computed here when not given)."""
  n, h, w, c_in = x.shape
  c_out, m, a = kernel.shape[-1], t.output_tile, t.output_tile + 2
  if inputs is None:
    inputs = _winograd_inputs(x, t)
  # G g G^T: the kernel in the transformed domain, (a * a, C_in, C_out).
  transformed = _to_transformed_domain(kernel, t).astype(x.dtype).reshape(a * a, c_in, c_out)
  # Separate products, not one batched product of stacked inputs: stacking would copy them.
  products = [jnp.dot(d.reshape(-1, c_in), transformed[i]).reshape(*d.shape[:3], c_out)
              for i, d in enumerate(inputs)]
  # columns[i][q]: A^T applied along the tile's second axis; then along the first, per q.
  columns = materialized(jnp.stack([jnp.stack(_combine(products[a * i:a * i + a],
                                                        t.output_transform))
                                      for i in range(a)]))
  outputs = [_combine([columns[i][q] for i in range(a)], t.output_transform) for q in range(m)]
  # outputs[q][p]: output pixel (m ty + p, m tx + q) of every tile, interleaved into the image.
  y = jnp.stack([jnp.stack([outputs[q][p] for q in range(m)], axis=3) for p in range(m)], axis=2)
  y = y.reshape(n, m * y.shape[1], m * y.shape[3], c_out)
  return y[:, :h, :w]


def _winograd_kernel_grad(x: jnp.ndarray, dy: jnp.ndarray, t: WinogradTransform,
                          inputs: list[jnp.ndarray]) -> jnp.ndarray:
  """The weight gradient in the transformed domain: for each position of the transformed
  tile, inputs^T @ (A dy_tile A^T) summed over all tiles, mapped back by G^T (.) G
  (``inputs``: x's transformed tiles, ``_winograd_inputs(x, t)``)."""
  c_in, c_out, m = x.shape[-1], dy.shape[-1], t.output_tile
  extra_h, extra_w = _tile_padding(dy, m)
  # dy channels-first, (C_out, N, H, W), so that each transformed tile reshapes to a
  # (C_out, tiles) matrix and every product below contracts its left operand's last axis:
  # XLA:CPU runs inputs^T @ dy (contracting the first axis of both) in its generic loop
  # instead of its library products. One transpose of dy instead of one per tile position.
  dy = materialized(jnp.pad(dy, ((0, 0), (0, extra_h), (0, extra_w), (0, 0))).transpose(3, 0, 1, 2))
  to_tile = t.output_transform.T
  rows = materialized(jnp.stack(_combine([dy[:, :, p::m] for p in range(m)], to_tile)))
  grads = [tile for row in rows
           for tile in _combine([row[:, :, :, q::m] for q in range(m)], to_tile)]
  products = jnp.stack([jnp.dot(g.reshape(c_out, -1), d.reshape(-1, c_in))
                        for d, g in zip(inputs, grads)])
  return _from_transformed_domain(products.transpose(0, 2, 1), t)


def _make_winograd_conv(t: WinogradTransform):
  """A 'SAME' 3x3 convolution by Winograd F(m x m, 3x3) with a custom VJP: forward pass, input
  gradient (the convolution of dy with the transposed kernel) and weight gradient all in the
  transformed domain."""

  @jax.custom_vjp
  def conv(x: jnp.ndarray, kernel: jnp.ndarray) -> jnp.ndarray:
    if kernel.shape[:2] != (3, 3):
      raise ValueError(f'the winograd strategies need a 3x3 kernel, got {kernel.shape[:2]}')
    return _winograd_forward(x, kernel, t)

  def conv_fwd(x, kernel):
    # The transformed input tiles are kept for the weight gradient ((m+2)^2/m^2 times x's
    # size) rather than transformed again in the backward pass.
    inputs = _winograd_inputs(x, t)
    return _winograd_forward(x, kernel, t, inputs), (x, kernel, inputs)

  def conv_bwd(residuals, dy):
    x, kernel, inputs = residuals
    dx = _winograd_forward(dy, _transposed_kernel(kernel).astype(dy.dtype), t)
    return dx.astype(x.dtype), _winograd_kernel_grad(x, dy, t, inputs).astype(kernel.dtype)

  conv.defvjp(conv_fwd, conv_bwd)
  m = t.output_tile
  conv.__name__ = f'conv_winograd{"" if m == 2 else m}'
  conv.__doc__ = f"'SAME' 3x3 convolution by Winograd F({m}x{m}, 3x3), custom VJP."
  return conv


conv_winograd = _make_winograd_conv(F2X2)
conv_winograd4 = _make_winograd_conv(F4X4)

STRATEGIES = {'im2col': conv_same, 'hybrid': conv_hybrid, 'xla': conv_xla, 'thin': conv_thin,
              'winograd': conv_winograd, 'winograd4': conv_winograd4}
# Thresholds measured on a 2-core AMD EPYC, batch 16-64 (experiments/RESULTS.md, section 4):
# Winograd F(4x4) is the fastest for every 3x3 layer of the project's models (1.05-1.3x F(2x2))
# but thin outputs at large images, where 'thin' (XLA's forward pass, the weight gradient from
# shifted copies of the thin dy; session 20) is. Reduced-precision inputs
# keep F(2x2), whose smaller transform coefficients lose less of bfloat16's 8-bit mantissa.
LARGE_IMAGE_PIXELS = 64 * 64
THIN_OUTPUT_CHANNELS = 16
# F(4x4)'s 36 products and larger transforms take 2-5x F(2x2)'s XLA compile time (12 s -> 65 s
# for a small EDSR train step on the EPYC of session 5), so it is used only where a step's
# savings repay that within a few hundred steps: inputs of at least a batch of 8 32x32 images
# (N*H*W pixels), where RRDBNet's step is faster with it (experiments/RESULTS.md section 7:
# the zoo bench's compile times, e.g. RRDBNet 31 -> 95 s, are the price).
WINOGRAD4_MIN_PIXELS = 8 * 32 * 32


def choose_strategy(x_shape: tuple[int, ...], out_channels: int, kernel_size: int = 3,
                    dtype: Any = jnp.float32) -> str:
  """The fastest of ``STRATEGIES`` for a 'SAME' convolution of an (N, H, W, C) input on
  XLA:CPU, by shape: 'thin' for thin outputs at large images (e.g. the last layer to RGB at
  96x96, whose transformed or im2col weight gradient is a skinny, memory-bound product);
  else Winograd for 3x3 kernels (F(4x4) for float32 inputs of at least WINOGRAD4_MIN_PIXELS,
  else F(2x2), which compiles faster and loses less of bfloat16's precision); other sizes
  im2col at small images and 'hybrid' (XLA's forward pass and input gradient) at large ones."""
  large = x_shape[1] * x_shape[2] >= LARGE_IMAGE_PIXELS
  if large and out_channels <= THIN_OUTPUT_CHANNELS:
    return 'thin'
  if kernel_size == 3:
    big = x_shape[0] * x_shape[1] * x_shape[2] >= WINOGRAD4_MIN_PIXELS
    return 'winograd4' if big and jnp.dtype(dtype) == jnp.float32 else 'winograd'
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
  output channels ordered (a, b, c) as ``layers.pixel_shuffle`` expects."""
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
      strategy = choose_strategy(x.shape, kernel.shape[-1], size, x.dtype)
    if strategy not in STRATEGIES:
      raise ValueError(f'strategy must be one of {sorted(STRATEGIES)} or auto, got {strategy!r}')
    y = STRATEGIES[strategy](x, kernel)
    if factor > 1:
      y = layers.pixel_shuffle(y, factor)
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros, (self.features,), jnp.float32
                         ).astype(self.dtype)
    return y
