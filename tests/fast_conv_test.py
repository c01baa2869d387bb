"""The fast_conv paths (im2col, hybrid, Winograd, per-shape 'tuned') against flax.linen.Conv:
forward and gradients within 1e-5."""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import flax.linen as nn

from flax_sr import fast_conv, models


def rel_err(a, b):
  return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


@pytest.mark.parametrize('strategy', sorted(fast_conv.STRATEGIES))
@pytest.mark.parametrize('size, factor', [(3, 1), (3, 2), (3, 3), (5, 1)])
@pytest.mark.parametrize('c_in, c_out', [(3, 8), (8, 3)])
def test_matmul_conv_matches_nn_conv(size, factor, c_in, c_out, strategy):
  # 7 x 9: odd sizes, which Winograd's 2x2 output tiles pad.
  x = jax.random.normal(jax.random.key(0), (2, 7, 9, c_in))
  reference = nn.Conv(c_out, (size, size), padding='SAME')
  params = reference.init(jax.random.key(1), models.upsample_nearest(x, factor))
  fast = fast_conv.MatmulConv(c_out, (size, size), upsample_input=factor, strategy=strategy)
  if strategy.startswith('winograd') and size != 3:
    with pytest.raises(ValueError, match='3x3'):
      fast.apply(params, x)
    return

  @jax.jit
  def ref_fn(p, x):
    return reference.apply(p, models.upsample_nearest(x, factor))

  @jax.jit
  def fast_fn(p, x):
    return fast.apply(p, x)  # the same parameters: kernel (3, 3, c_in, c_out) and bias

  y_ref, y_fast = ref_fn(params, x), fast_fn(params, x)
  assert y_fast.shape == y_ref.shape == (2, 7 * factor, 9 * factor, c_out)
  assert rel_err(y_fast, y_ref) < 1e-5
  cotangent = jax.random.normal(jax.random.key(2), y_ref.shape)
  loss = lambda f: lambda p, x: jnp.sum(f(p, x) * cotangent)
  g_ref = jax.grad(loss(ref_fn), argnums=(0, 1))(params, x)
  g_fast = jax.grad(loss(fast_fn), argnums=(0, 1))(params, x)
  for a, b in zip(jax.tree.leaves(g_fast), jax.tree.leaves(g_ref)):
    assert rel_err(a, b) < 1e-5


def assert_reference_models_match(xla, other, variables, x):
  """``other`` (another conv_impl of the same ReferenceSR) gives the XLA model's training-mode
  outputs and parameter gradients within 1e-5."""
  def loss(model, params):
    y, _ = model.apply({**variables, 'params': params}, x, train=True, mutable=['batch_stats'])
    return jnp.mean(y**2), y

  results = [jax.jit(jax.value_and_grad(lambda p, m=m: loss(m, p), has_aux=True))(
      variables['params']) for m in (xla, other)]
  (_, y_xla), g_xla = results[0]
  (_, y_other), g_other = results[1]
  assert rel_err(y_other, y_xla) < 1e-5
  for a, b in zip(jax.tree.leaves(g_other), jax.tree.leaves(g_xla)):
    assert rel_err(a, b) < 1e-5


@pytest.mark.parametrize('factors', [(1, 1, 1, 3), (3, 1, 1, 1), (1, 2, 1, 3)])
def test_reference_model_same_with_either_implementation(factors):
  x = jax.random.uniform(jax.random.key(0), (2, 8, 10, 3))
  scale = int(np.prod(factors))
  xla = models.ReferenceSR(scale=scale, features=8, upsample_factors=factors)
  fast = xla.clone(conv_impl='matmul')
  variables = xla.init(jax.random.key(1), x)
  assert jax.tree.structure(fast.init(jax.random.key(1), x)) == jax.tree.structure(variables)
  assert_reference_models_match(xla, fast, variables, x)


def test_choose_strategy_by_image_size_output_width_kernel_size_and_dtype():
  assert fast_conv.choose_strategy((64, 32, 32, 64), 64) == 'winograd4'
  assert fast_conv.choose_strategy((64, 32, 32, 64), 3) == 'winograd4'
  assert fast_conv.choose_strategy((16, 96, 96, 64), 64) == 'winograd4'
  assert fast_conv.choose_strategy((16, 96, 96, 64), 64, 3, jnp.bfloat16) == 'winograd'
  # Small inputs: F(2x2), whose compile time is a fifth of F(4x4)'s.
  assert fast_conv.choose_strategy((4, 32, 32, 64), 64) == 'winograd'
  assert fast_conv.choose_strategy((8, 32, 32, 64), 64) == 'winograd4'
  assert fast_conv.choose_strategy((16, 96, 96, 48), 3) == 'thin'
  assert fast_conv.choose_strategy((64, 32, 32, 64), 64, kernel_size=5) == 'im2col'
  assert fast_conv.choose_strategy((16, 96, 96, 64), 64, kernel_size=5) == 'hybrid'
  assert fast_conv.choose_strategy((16, 96, 96, 48), 3, kernel_size=5) == 'thin'


@functools.partial(jax.jit, static_argnums=0)
def value_and_vjp(conv, x, kernel, cotangent):
  # Under one jit: an eager backward pass would compile every primitive on its own (minutes).
  y, vjp = jax.vjp(conv, x, kernel)
  return y, vjp(cotangent)


@pytest.mark.parametrize('conv', [fast_conv.conv_winograd, fast_conv.conv_winograd4])
def test_winograd_matches_xla_at_even_and_odd_sizes_and_under_vmap(conv):
  keys = jax.random.split(jax.random.key(3), 3)
  # Sizes that are and are not multiples of the 2x2 and 4x4 output tiles.
  for shape in [(3, 12, 16, 16), (2, 11, 5, 6), (1, 1, 2, 4), (2, 14, 10, 8)]:
    x = jax.random.normal(keys[0], shape)
    kernel = jax.random.normal(keys[1], (3, 3, shape[-1], 10))
    cotangent = jax.random.normal(keys[2], shape[:3] + (10,))
    y, grads = value_and_vjp(conv, x, kernel, cotangent)
    y_ref, grads_ref = value_and_vjp(fast_conv.conv_xla, x, kernel, cotangent)
    assert rel_err(y, y_ref) < 1e-5
    for a, b in zip(grads, grads_ref):
      assert rel_err(a, b) < 1e-5
  # A batch of kernels under vmap: each result is its own convolution.
  x = jax.random.normal(keys[0], (2, 6, 7, 6))
  kernels = jax.random.normal(keys[1], (4, 3, 3, 6, 5))
  batched = jax.jit(jax.vmap(conv, in_axes=(None, 0)))(x, kernels)
  for i in range(4):
    assert rel_err(batched[i], fast_conv.conv_xla(x, kernels[i])) < 1e-5


def test_tuned_reference_model_matches_xla(monkeypatch):
  # Early placement at 22x22 -> 66x66, one image (under WINOGRAD4_MIN_PIXELS): block0 and the
  # fused upsample run Winograd F(2x2) at 22x22, so do the 24-channel convolutions at 66x66;
  # the RGB head at 66x66 runs 'thin' (XLA's forward pass).
  used = []
  choose = fast_conv.choose_strategy
  monkeypatch.setattr(fast_conv, 'choose_strategy', lambda *a: used.append(choose(*a)) or used[-1])
  x = jax.random.uniform(jax.random.key(0), (1, 22, 22, 3))
  xla = models.ReferenceSR(scale=3, features=24, upsample_factors=(3, 1, 1, 1))
  tuned = xla.clone(conv_impl='tuned')
  variables = xla.init(jax.random.key(1), x)
  assert_reference_models_match(xla, tuned, variables, x)
  assert set(used) == {'winograd', 'thin'}


def test_unknown_strategy_is_rejected():
  conv = fast_conv.MatmulConv(4, strategy='fft')
  with pytest.raises(ValueError, match='strategy'):
    conv.init(jax.random.key(0), jnp.zeros((1, 5, 5, 3)))


@pytest.mark.parametrize('name, kwargs', [('espcn', {}), ('edsr', {'num_res_blocks': 2})])
def test_other_models_same_with_either_implementation(name, kwargs):
  x = jax.random.uniform(jax.random.key(0), (2, 6, 7, 3))
  xla = models.create_model(name, scale=3, features=8, global_residual=False, **kwargs)
  fast = xla.clone(conv_impl='matmul')
  variables = xla.init(jax.random.key(1), x)
  loss = lambda model: lambda p: jnp.mean(model.apply({'params': p}, x) ** 2)
  y_xla, y_fast = jax.jit(xla.apply)(variables, x), jax.jit(fast.apply)(variables, x)
  assert y_xla.shape == (2, 18, 21, 3)
  assert rel_err(y_fast, y_xla) < 1e-5
  g_xla = jax.jit(jax.grad(loss(xla)))(variables['params'])
  g_fast = jax.jit(jax.grad(loss(fast)))(variables['params'])
  for a, b in zip(jax.tree.leaves(g_fast), jax.tree.leaves(g_xla)):
    assert rel_err(a, b) < 1e-5


def test_matmul_conv_rejects_even_kernels():
  with pytest.raises(ValueError, match='odd'):
    fast_conv.MatmulConv(4, (4, 4)).init(jax.random.key(0), jnp.zeros((1, 5, 5, 3)))


@pytest.mark.skipif(jax.default_backend() != 'cpu', reason='the layouts are for XLA:CPU')
@pytest.mark.parametrize('conv', [fast_conv.conv_winograd, fast_conv.conv_winograd4])
def test_xla_keeps_winograd_products_contracting_their_left_operands_last_axis(conv):
  """The weight gradient's products take dy's tiles channels-first (a transpose in a lax.cond
  buffer, ``fast_conv.materialized``) so that each contracts its left operand's last axis, the
  form XLA:CPU hands to its library products. A new XLA that folds the transpose into the
  products (contracting the tiles axis, the first, in its slower generic loop) fails here."""
  x = jax.random.normal(jax.random.key(0), (2, 16, 16, 8))
  kernel = jax.random.normal(jax.random.key(1), (3, 3, 8, 6))
  cotangent = jax.random.normal(jax.random.key(2), (2, 16, 16, 6))
  text = value_and_vjp.lower(conv, x, kernel, cotangent).compile().as_text()
  products = re.findall(r'= \S+ dot\(.*?lhs_contracting_dims=\{(\d+)\}', text)
  assert len(products) >= 3 * (4 if conv is fast_conv.conv_winograd else 16)
  assert set(products) == {'1'}, products
  # The check can fail: the plain d^T @ g product contracts the first axis.
  plain = jax.jit(lambda d, g: jnp.dot(d.T, g)).lower(
      jnp.ones((32, 8)), jnp.ones((32, 6))).compile().as_text()
  assert re.findall(r'= \S+ dot\(.*?lhs_contracting_dims=\{(\d+)\}', plain) == ['0']


def test_thin_weight_gradient_is_one_product_contracting_its_left_operands_last_axis():
  """conv_thin's weight gradient is one (k*k*C_out, N*H*W) x (N*H*W, C_in) product in the
  A @ B form XLA:CPU hands to its library (not its generic loop, not a transposed x)."""
  x = jax.random.normal(jax.random.key(0), (2, 16, 16, 8))
  kernel = jax.random.normal(jax.random.key(1), (3, 3, 8, 3))
  cotangent = jax.random.normal(jax.random.key(2), (2, 16, 16, 3))
  text = value_and_vjp.lower(fast_conv.conv_thin, x, kernel, cotangent).compile().as_text()
  products = re.findall(r'= (\S+) dot\(.*?lhs_contracting_dims=\{(\d+)\}', text)
  assert products == [('f32[27,8]{1,0}', '1')], products
