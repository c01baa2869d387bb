"""Multi-head attention inside windows (SwinIR's and HAT's), with a backward pass laid out for
XLA:CPU.

``window_attention(q, k, v, bias, mask)`` is ``softmax(q k^T + bias + mask) v`` per window and
head, the function the PyTorch originals compute. Autodiff gives the right gradient but two of
its products contract the first of an operand's two matrix axes (``dS^T q`` and ``P^T dO``);
XLA folds any transpose of those operands back into the product, and XLA:CPU then runs it in
its generic batched loop at about a third of the speed of its library products (a profile of
the lightweight SwinIR step put 48 of them at 5 ms each). Its bias gradient is a reduce over
the windows axis, which XLA:CPU ran 4x slower than the same sum as a product with a vector of
ones. The custom VJP below computes the same gradients with the small (queries x head_dim)
operands and results transposed into buffers of their own (``fast_conv.materialized``), so every
product contracts the last axis of its left operand, and the bias gradient as that product.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from flax_sr.fast_conv import materialized


def _batched(a, b, a_contracting: int, b_contracting: int):
  """Products over the last two axes of a and b, batched over the leading (windows, heads)."""
  return lax.dot_general(a, b, (((a_contracting,), (b_contracting,)), ((0, 1), (0, 1))))


def _transposed_operand(x):
  """x with its last two axes swapped, in a buffer of its own, so that XLA cannot fold the
  transpose into the product that reads it."""
  return materialized(jnp.swapaxes(x, -1, -2))


def _transposed_product(product):
  """The product's last two axes swapped after it is written to a buffer of its own, so that
  XLA cannot fold the transpose into the product (by swapping its operands)."""
  return jnp.swapaxes(materialized(product), -1, -2)


def _scores(q, k, bias, mask):
  """q k^T + bias + mask: (windows, heads, queries, keys); the mask (mask_windows, queries,
  keys) repeats over the windows, window i getting mask[i % mask_windows]."""
  scores = _batched(q, k, 3, 3) + bias.astype(q.dtype)
  windows, heads, queries, keys = scores.shape
  mask_windows = mask.shape[0]
  scores = scores.reshape(windows // mask_windows, mask_windows, heads, queries, keys)
  scores = scores + jnp.asarray(mask, scores.dtype)[None, :, None]
  return scores.reshape(windows, heads, queries, keys)


def _attend(q, k, v, bias, mask):
  """(the attention output, the float32 softmax weights)."""
  weights = jax.nn.softmax(_scores(q, k, bias, mask).astype(jnp.float32), axis=-1)
  return _batched(weights.astype(v.dtype), v, 3, 2), weights


@jax.custom_vjp
def window_attention(q, k, v, bias, mask):
  """softmax(q k^T + bias + mask) v for every window and head.

  q: (windows, heads, queries, head_dim), already scaled; k, v: (windows, heads, keys,
  head_dim); bias: (heads, queries, keys), the same for every window (a learned relative-
  position bias); mask: (mask_windows, queries, keys), a constant that repeats over the windows
  (window i gets mask[i % mask_windows]; zeros where nothing is masked), no gradient. The
  softmax is taken in float32 and its result cast to v's dtype, as the models do.
  """
  return _attend(q, k, v, bias, mask)[0]


def _window_attention_fwd(q, k, v, bias, mask):
  out, weights = _attend(q, k, v, bias, mask)
  return out, (q, k, v, bias, mask, weights)


def _window_attention_bwd(residuals, grad):
  q, k, v, bias, mask, weights = residuals
  windows = grad.shape[0]
  # d v = P^T dO, as (dO^T P)^T: the transposes are of (queries x head_dim) tiles.
  d_v = _transposed_product(_batched(_transposed_operand(grad), weights.astype(v.dtype), 3, 2))
  d_weights = _batched(grad, v, 3, 3).astype(jnp.float32)
  # The softmax's gradient: P * (dP - sum(dP * P)) along the keys.
  d_scores = weights * (d_weights - jnp.sum(d_weights * weights, axis=-1, keepdims=True))
  d_scores = d_scores.astype(q.dtype)
  d_q = _batched(d_scores, k, 3, 2)
  d_k = _transposed_product(_batched(_transposed_operand(q), d_scores, 3, 2))
  d_bias = jnp.dot(jnp.ones((windows,), d_scores.dtype), d_scores.reshape(windows, -1),
                   preferred_element_type=jnp.float32).reshape(bias.shape)
  return (d_q.astype(q.dtype), d_k.astype(k.dtype), d_v.astype(v.dtype),
          d_bias.astype(bias.dtype), jnp.zeros_like(mask))


window_attention.defvjp(_window_attention_fwd, _window_attention_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def split_heads(qkv, num_heads: int):
  """(windows, tokens, 3 * dim) -> q, k, v, each (windows, heads, tokens, dim / heads): the
  layout of the originals' ``qkv.reshape(B, N, 3, heads, C // heads).permute(2, 0, 3, 1, 4)``.

  The gradient is that reshape's and transpose's, assembled once into a buffer of its own:
  under autodiff XLA:CPU fused the zero padding and sum of the three slices' gradients with
  the transpose into each of the three products that read it, copying it three times."""
  windows, tokens, width = qkv.shape
  qkv = qkv.reshape(windows, tokens, 3, num_heads, width // (3 * num_heads))
  q, k, v = qkv.transpose(2, 0, 3, 1, 4)
  return q, k, v


def _split_heads_fwd(qkv, num_heads):
  return split_heads(qkv, num_heads), None


def _split_heads_bwd(num_heads, _, grads):
  stacked = jnp.stack(grads)  # (3, windows, heads, tokens, head_dim)
  windows, tokens = stacked.shape[1], stacked.shape[3]
  return (materialized(stacked.transpose(1, 3, 0, 2, 4).reshape(windows, tokens, -1)),)


split_heads.defvjp(_split_heads_fwd, _split_heads_bwd)
