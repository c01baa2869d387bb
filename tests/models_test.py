"""Model shapes, parameter counts and the reference design's block structure."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flax_sr import models


def count_params(tree) -> int:
  return sum(x.size for x in jax.tree.leaves(tree))


@pytest.mark.parametrize('input_size, scale, factors', [(16, 6, (1, 1, 2, 3)), (32, 3, (1, 1, 1, 3))])
def test_reference_maps_to_96(input_size, scale, factors):
  model = models.ReferenceSR(scale=scale, features=8)
  assert model.factors() == factors
  x = jnp.zeros((2, input_size, input_size, 3))
  variables = model.init(jax.random.key(0), x)
  y = model.apply(variables, x)
  assert y.shape == (2, 96, 96, 3) and y.dtype == jnp.float32


def test_reference_is_fully_convolutional_on_non_square_input():
  model = models.ReferenceSR(scale=3, features=8)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))
  assert model.apply(variables, jnp.zeros((1, 10, 17, 3))).shape == (1, 30, 51, 3)


@pytest.mark.parametrize('factors', [(1, 1, 1, 3), (3, 1, 1, 1), (1, 1, 2, 3)])
def test_parameter_count_matches_layer_arithmetic(factors):
  c = 64
  model = models.ReferenceSR(scale=int(np.prod(factors)), upsample_factors=factors)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))
  # Block 1: 3x3 conv 3->c without bias, BN scale+bias; blocks 2-4: c->c; head: c->3 with bias.
  expected = (9 * 3 * c + 2 * c) + 3 * (9 * c * c + 2 * c) + (9 * c * 3 + 3)
  assert count_params(variables['params']) == expected
  assert count_params(variables['batch_stats']) == 4 * 2 * c
  assert 'bias' not in variables['params']['block0_conv']


def test_upsampling_placement_changes_where_blocks_run():
  x = jnp.zeros((1, 32, 32, 3))
  early = models.ReferenceSR(scale=3, features=4, upsample_factors=(3, 1, 1, 1))
  _, state = early.apply(early.init(jax.random.key(0), x), x, capture_intermediates=True,
                         mutable=['intermediates'])
  assert state['intermediates']['block1_conv']['__call__'][0].shape == (1, 96, 96, 4)


@pytest.mark.parametrize('scale, expected', [(2, (1, 1, 1, 2)), (4, (1, 1, 2, 2)), (6, (1, 1, 2, 3)),
                                             (96, (2, 4, 4, 3)), (1, (1, 1, 1, 1))])
def test_default_upsample_factors(scale, expected):
  factors = models.default_upsample_factors(scale, 4)
  assert int(np.prod(factors)) == scale and sorted(factors) == sorted(expected)


def test_bad_factor_list_is_rejected():
  model = models.ReferenceSR(scale=3, upsample_factors=(2, 1, 1, 1))
  with pytest.raises(ValueError, match='product is the scale 3'):
    model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))


@pytest.mark.parametrize('name', ['espcn', 'edsr'])
@pytest.mark.parametrize('scale', [2, 3, 4, 6])
def test_other_models_any_scale(name, scale):
  kwargs = {'num_res_blocks': 2} if name == 'edsr' else {}
  model = models.create_model(name, scale=scale, features=8, **kwargs)
  x = jnp.zeros((2, 7, 9, 3))
  variables = model.init(jax.random.key(0), x)
  assert model.apply(variables, x).shape == (2, 7 * scale, 9 * scale, 3)


def test_pixel_shuffle_places_channels_as_sub_pixels():
  x = jnp.arange(8, dtype=jnp.float32).reshape(1, 1, 2, 4)
  y = models.pixel_shuffle(x, 2)
  assert y.shape == (1, 2, 4, 1)
  # Pixel (0, 0) of the input spreads its 4 channels over the 2x2 block at (0, 0).
  np.testing.assert_array_equal(np.asarray(y[0, :, :2, 0]).ravel(), [0, 1, 2, 3])


@pytest.mark.parametrize('name', ['reference', 'espcn', 'edsr'])
def test_global_residual_starts_from_bicubic(name):
  """A freshly initialised residual model (zero last layer) outputs the bicubic upscale."""
  from flax_sr import resize
  model = models.create_model(name, scale=3, features=4, global_residual=True)
  x = jax.random.uniform(jax.random.key(1), (1, 8, 8, 3))
  variables = model.init(jax.random.key(0), x)
  np.testing.assert_allclose(model.apply(variables, x), resize.imresize(x, 3), atol=1e-5)
  plain = models.create_model(name, scale=3, features=4)
  assert np.abs(plain.apply(plain.init(jax.random.key(0), x), x) - resize.imresize(x, 3)).max() > 0.01


def test_unknown_model_name():
  with pytest.raises(ValueError, match='unknown model'):
    models.create_model('vdsr', scale=3)


def test_zoo_presets_build_the_parameter_counts_their_summaries_state():
  """Each architecture preset states its parameter count at x4 ("(43 M parameters at x4)"):
  the model it configures has that many (to the stated precision), and validates."""
  import re
  from flax_sr import configs, main
  from flax_sr import train as train_lib
  stated = {}
  for name in configs.names():
    m = re.search(r'\(([\d.]+) M parameters at x4\)', configs.summary(name))
    if m:
      stated[name] = m.group(1)
  assert {'edsr_x4', 'rcan_x4', 'rrdb_x4', 'swinir_x4', 'swinir_light_x4',
          'hat_x4'} <= set(stated)
  for name, millions in stated.items():
    config, _ = main.parse_config(['--config', name, '--data_dir', 'unused', '--conv_impl', 'xla'])
    assert config.scale == 4
    model = train_lib.model_from_config(config)
    params = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3))))
    decimals = len(millions.split('.')[1]) if '.' in millions else 0
    assert round(count_params(params['params']) / 1e6, decimals) == float(millions), name


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_edsr_pixelshuffledirect_is_one_conv_to_rgb_subpixels(scale):
  """EDSR with the lightweight upsampler: the body's features go through a single 3x3 conv to
  3*scale^2 channels and a pixel shuffle (no features*scale^2 conv, no conv at the output
  resolution); its output is exactly that, and it has that many parameters fewer."""
  from flax_sr import fast_conv
  c, blocks = 8, 2
  direct = models.create_model('edsr', scale=scale, features=c, num_res_blocks=blocks,
                               upsampler='pixelshuffledirect')
  x = jax.random.uniform(jax.random.key(1), (2, 7, 9, 3))
  variables = direct.init(jax.random.key(0), x)
  params = variables['params']
  assert 'tail' not in params and not any(k.startswith('up') and k != 'upsampler' for k in params)
  body = (9 * 3 * c + c) + (2 * blocks + 1) * (9 * c * c + c)
  assert count_params(params) == body + 9 * c * 3 * scale**2 + 3 * scale**2
  # Zero-initialised like the usual tail when residual, so that model starts at bicubic.
  from flax_sr import resize
  residual = direct.clone(global_residual=True)
  np.testing.assert_allclose(residual.apply(residual.init(jax.random.key(0), x), x),
                             resize.imresize(x, scale), atol=1e-5)
  # Its output is pixel_shuffle(conv(features)) + 0.5: recompute it from the captured features.
  upsampler = params['upsampler']
  variables = {'params': {**params, 'upsampler': {
      'kernel': jax.random.normal(jax.random.key(2), upsampler['kernel'].shape) * 0.1,
      'bias': jax.random.normal(jax.random.key(3), upsampler['bias'].shape) * 0.1}}}
  y, state = direct.apply(variables, x, capture_intermediates=True, mutable=['intermediates'])
  assert y.shape == (2, 7 * scale, 9 * scale, 3)
  features = state['intermediates']['body_tail']['__call__'][0] + \
      state['intermediates']['head']['__call__'][0]
  kernel, bias = variables['params']['upsampler']['kernel'], variables['params']['upsampler']['bias']
  expected = models.pixel_shuffle(fast_conv.conv_xla(features, kernel) + bias, scale) + 0.5
  np.testing.assert_allclose(y, expected, atol=1e-5)


def test_edsr_upsampler_choices_are_checked():
  from flax_sr.config import Config
  from flax_sr.errors import UserError
  Config(model='edsr', upsampler='pixelshuffledirect').validate()
  with pytest.raises(UserError, match="not one of edsr's: pixelshuffle, pixelshuffledirect"):
    Config(model='edsr', upsampler='nearest+conv').validate()
  with pytest.raises(ValueError, match='pixelshuffle or pixelshuffledirect'):
    models.create_model('edsr', scale=3, features=4, upsampler='nearest').init(
        jax.random.key(0), jnp.zeros((1, 4, 4, 3)))


@pytest.mark.parametrize('activation, function', [('relu', jax.nn.relu), ('silu', jax.nn.silu)])
def test_edsr_residual_block_activation(activation, function):
  """``--activation``: each residual block computes x + scale * conv2(act(conv1(x))) with the
  chosen activation (SiLU is x * sigmoid(x), not ReLU's zeroing of negatives)."""
  from flax_sr import fast_conv
  block = models.ResBlock(8, 0.5, jnp.float32, 'xla', activation)
  x = jax.random.normal(jax.random.key(1), (2, 6, 7, 8))
  params = block.init(jax.random.key(0), x)['params']
  conv = lambda name, y: fast_conv.conv_xla(y, params[name]['kernel']) + params[name]['bias']
  expected = x + 0.5 * conv('conv2', function(conv('conv1', x)))
  np.testing.assert_allclose(block.apply({'params': params}, x), expected, atol=1e-5)
  model = models.create_model('edsr', scale=2, features=8, num_res_blocks=1, activation=activation)
  relu_model = model.clone(activation='relu')
  variables = model.init(jax.random.key(0), x[..., :3])
  same = np.allclose(model.apply(variables, x[..., :3]), relu_model.apply(variables, x[..., :3]))
  assert same == (activation == 'relu')


def test_edsr_activation_choices_are_checked():
  from flax_sr.config import Config
  from flax_sr.errors import UserError
  assert Config(model='edsr', activation='silu').model_kwargs()['activation'] == 'silu'
  with pytest.raises(UserError, match="--activation 'gelu' is unknown; valid values: relu, silu"):
    Config(model='edsr', activation='gelu').validate()
  with pytest.raises(ValueError, match='activation must be one of relu, silu'):
    models.create_model('edsr', scale=2, features=4, activation='gelu').init(
        jax.random.key(0), jnp.zeros((1, 4, 4, 3)))


def test_edsr_channel_attention_blocks_are_rcan_blocks():
  """``--channel_attention R``: each residual block is RCAN's RCAB (whose equality with the
  PyTorch RCAN is tested in zoo_test), with the same parameters; 0 keeps EDSR's block."""
  from flax_sr.config import Config
  from flax_sr.errors import UserError
  block = models.ResBlock(16, 1.0, jnp.float32, 'xla', channel_attention=4)
  x = jax.random.normal(jax.random.key(1), (2, 6, 7, 16))
  params = block.init(jax.random.key(0), x)['params']
  rcab = models.RCAB(16, 4, jnp.float32, 'xla')
  assert jax.tree.map(jnp.shape, rcab.init(jax.random.key(0), x)['params']) == jax.tree.map(
      jnp.shape, params)
  np.testing.assert_allclose(block.apply({'params': params}, x),
                             rcab.apply({'params': params}, x), atol=1e-6)
  plain = {k: v for k, v in params.items() if k != 'attention'}
  assert not np.allclose(block.apply({'params': params}, x),
                         models.ResBlock(16, 1.0, jnp.float32, 'xla').apply({'params': plain}, x))
  model = models.create_model(
      'edsr', scale=3, **Config(model='edsr', features=16, num_res_blocks=2,
                                channel_attention=4).validate().model_kwargs())
  variables = model.init(jax.random.key(0), x[..., :3])
  # Two blocks of 16 -> 4 -> 16 dense layers: 2 x (16*4 + 4 + 4*16 + 16) more parameters.
  extra = sum(p.size for p in jax.tree.leaves(variables)) - sum(
      p.size for p in jax.tree.leaves(model.clone(channel_attention=0).init(
          jax.random.key(0), x[..., :3])))
  assert extra == 2 * (16 * 4 + 4 + 4 * 16 + 16)
  with pytest.raises(UserError, match='--channel_attention must be 0'):
    Config(model='edsr', features=16, channel_attention=5).validate()
  with pytest.raises(UserError, match='an edsr option; --model rcan has none .*--reduction'):
    Config(model='rcan', channel_attention=16).validate()
