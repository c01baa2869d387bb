"""Parameter-free layers that the models and the fast convolutions share (below both, so
neither imports the other for them): nearest-neighbour upsampling, pixel shuffle and its
inverse."""

from __future__ import annotations

import jax.numpy as jnp


def upsample_nearest(x: jnp.ndarray, factor: int) -> jnp.ndarray:
  """Nearest-neighbour upsampling of NHWC by an integer factor (a broadcast, no gather)."""
  if factor == 1:
    return x
  n, h, w, c = x.shape
  x = jnp.broadcast_to(x[:, :, None, :, None, :], (n, h, factor, w, factor, c))
  return x.reshape(n, h * factor, w * factor, c)


def pixel_shuffle(x: jnp.ndarray, factor: int) -> jnp.ndarray:
  """Depth-to-space: (N, H, W, r*r*C) -> (N, H*r, W*r, C)."""
  n, h, w, c = x.shape
  out_c = c // (factor * factor)
  x = x.reshape(n, h, w, factor, factor, out_c)
  x = x.transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(n, h * factor, w * factor, out_c)


def pixel_unshuffle(x: jnp.ndarray, factor: int) -> jnp.ndarray:
  """Space-to-depth, the inverse of ``pixel_shuffle``: (N, H*r, W*r, C) -> (N, H, W, r*r*C),
  channels ordered (row, column, channel)."""
  n, h, w, c = x.shape
  x = x.reshape(n, h // factor, factor, w // factor, factor, c)
  x = x.transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(n, h // factor, w // factor, factor * factor * c)
