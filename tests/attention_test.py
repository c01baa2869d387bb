"""flax_sr.attention: window attention and the qkv split with their XLA:CPU-shaped backward
passes, against plain autodiff of the same functions (values and gradients), under jit, vmap
and grad; and checks on the compiled program that notice when a new XLA undoes the layout the
backward pass asks for."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flax_sr import attention


def plain_window_attention(q, k, v, bias, mask):
  """The same function, left to autodiff (what the models computed before the custom VJP)."""
  scores = q @ k.swapaxes(-1, -2) + bias.astype(q.dtype)
  windows, heads, queries, keys = scores.shape
  scores = scores.reshape(windows // mask.shape[0], mask.shape[0], heads, queries, keys)
  scores = (scores + jnp.asarray(mask, scores.dtype)[None, :, None]).reshape(
      windows, heads, queries, keys)
  weights = jax.nn.softmax(scores.astype(jnp.float32), axis=-1)
  return weights.astype(v.dtype) @ v


def plain_split_heads(qkv, num_heads):
  windows, tokens, width = qkv.shape
  return tuple(qkv.reshape(windows, tokens, 3, num_heads, width // (3 * num_heads))
               .transpose(2, 0, 3, 1, 4))


def rel_err(a, b):
  return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


def attention_inputs(windows=6, heads=2, queries=16, keys=16, head_dim=5, mask_windows=3):
  k1, k2, k3, k4, k5 = jax.random.split(jax.random.key(0), 5)
  q = jax.random.normal(k1, (windows, heads, queries, head_dim)) * 0.5
  k = jax.random.normal(k2, (windows, heads, keys, head_dim))
  v = jax.random.normal(k3, (windows, heads, keys, head_dim))
  bias = jax.random.normal(k4, (heads, queries, keys)) * 0.1
  # A shifted-window style mask: -100 on some pairs, different for each repeating window.
  mask = np.where(np.asarray(jax.random.uniform(k5, (mask_windows, queries, keys))) < 0.3,
                  -100.0, 0.0).astype(np.float32)
  return q, k, v, bias, mask


@pytest.mark.parametrize('keys, mask_windows', [(16, 3), (16, 1), (36, 1)])
def test_window_attention_values_and_gradients_equal_autodiff(keys, mask_windows):
  # (36, 1): OCAB's form, more keys than queries, no mask (zeros).
  q, k, v, bias, mask = attention_inputs(keys=keys, mask_windows=mask_windows)
  if mask_windows == 1:
    mask = np.zeros_like(mask)
  cotangent = jax.random.normal(jax.random.key(7), q.shape)

  def loss(fn):
    return jax.jit(jax.value_and_grad(
        lambda q, k, v, bias: jnp.vdot(fn(q, k, v, bias, mask), cotangent), argnums=(0, 1, 2, 3)))

  value, grads = loss(attention.window_attention)(q, k, v, bias)
  expected_value, expected_grads = loss(plain_window_attention)(q, k, v, bias)
  np.testing.assert_allclose(value, expected_value, rtol=1e-5)
  for name, got, want in zip('q k v bias'.split(), grads, expected_grads):
    assert rel_err(got, want) < 1e-5, name
  # The mask reaches the output: without it the values differ.
  if mask.any():
    unmasked = attention.window_attention(q, k, v, bias, np.zeros_like(mask))
    masked = attention.window_attention(q, k, v, bias, mask)
    assert float(jnp.max(jnp.abs(unmasked - masked))) > 1e-2


def test_window_attention_under_vmap_and_in_bfloat16():
  q, k, v, bias, mask = attention_inputs()
  batched = [jnp.stack([a, a * 0.5]) for a in (q, k, v)]
  grad = jax.grad(lambda q, k, v: jnp.sum(attention.window_attention(q, k, v, bias, mask) ** 2),
                  argnums=(0, 1, 2))
  plain_grad = jax.grad(lambda q, k, v: jnp.sum(plain_window_attention(q, k, v, bias, mask) ** 2),
                        argnums=(0, 1, 2))
  for got, want in zip(jax.jit(jax.vmap(grad))(*batched), jax.vmap(plain_grad)(*batched)):
    assert rel_err(got, want) < 1e-5
  # bfloat16 inputs: the softmax in float32, the products and gradients in bfloat16.
  low = [a.astype(jnp.bfloat16) for a in (q, k, v)]
  out = attention.window_attention(*low, bias, mask)
  assert out.dtype == jnp.bfloat16
  d_q, d_k, d_v = jax.grad(
      lambda q, k, v: jnp.sum(attention.window_attention(q, k, v, bias, mask).astype(jnp.float32)),
      argnums=(0, 1, 2))(*low)
  assert d_q.dtype == d_k.dtype == d_v.dtype == jnp.bfloat16
  want = plain_grad(q, k, v)
  got = jax.grad(lambda q, k, v: jnp.sum(
      attention.window_attention(q, k, v, bias, mask).astype(jnp.float32) ** 2),
      argnums=(0, 1, 2))(*low)
  for g, w in zip(got, want):
    assert rel_err(g.astype(jnp.float32), w) < 3e-2


def test_split_heads_equals_the_reshape_and_its_gradient():
  qkv = jax.random.normal(jax.random.key(1), (4, 16, 3 * 12))
  cotangents = [jax.random.normal(jax.random.key(i), (4, 3, 16, 4)) for i in range(3)]
  for got, want in zip(attention.split_heads(qkv, 3), plain_split_heads(qkv, 3)):
    np.testing.assert_array_equal(got, want)

  def loss(fn):
    return jax.jit(jax.grad(lambda x: sum(jnp.vdot(t, c) for t, c in zip(fn(x, 3), cotangents))))

  np.testing.assert_allclose(loss(attention.split_heads)(qkv), loss(plain_split_heads)(qkv),
                             rtol=1e-6, atol=1e-6)


def compiled_backward_text(q, k, v, bias, mask) -> str:
  grad = jax.jit(jax.grad(lambda q, k, v, bias: jnp.sum(
      attention.window_attention(q, k, v, bias, mask) ** 2), argnums=(0, 1, 2, 3)))
  return grad.lower(q, k, v, bias).compile().as_text()


@pytest.mark.skipif(jax.default_backend() != 'cpu', reason='the layouts are for XLA:CPU')
def test_xla_keeps_the_backward_products_contracting_their_last_axis():
  """The custom VJP exists for its layout: every batched product of the backward contracts
  the left operand's last axis, and the bias gradient is no reduce over the windows. A new XLA
  that folds the transposes back (through the lax.cond buffers, ``fast_conv.materialized``) or
  that stops honouring them fails here, and the speed the zoo bench measured is gone."""
  q, k, v, bias, mask = attention_inputs(windows=8, heads=2, queries=16, keys=16, head_dim=4,
                                        mask_windows=4)
  text = compiled_backward_text(q, k, v, bias, mask)
  products = [line for line in text.splitlines() if re.search(r'= \S+ dot\(', line)]
  assert len(products) >= 5  # scores, output, and the backward's dP, dQ, dK, dV
  for line in products:
    match = re.search(r'lhs_batch_dims=\{0,1\}, lhs_contracting_dims=\{(\d+)\}', line)
    if match:
      assert match.group(1) == '3', line
  reduces = [line for line in text.splitlines()
             if re.search(r'= f32\[2,16,16\]\S* reduce\(', line)]
  assert not reduces, reduces
  # And plain autodiff of the same function does produce the slow forms: the check above can
  # fail.
  plain = jax.jit(jax.grad(lambda q, k, v, bias: jnp.sum(
      plain_window_attention(q, k, v, bias, mask) ** 2), argnums=(0, 1, 2, 3)))
  plain_text = plain.lower(q, k, v, bias).compile().as_text()
  assert re.search(r'lhs_batch_dims=\{0,1\}, lhs_contracting_dims=\{2\}', plain_text) or \
      re.search(r'= f32\[2,16,16\]\S* reduce\(', plain_text)
