"""The model zoo (RRDBNet, SRVGGNetCompact, RCAN, SwinIR, HAT, SPAN): equal to spandrel's PyTorch
architectures (the reference implementations) on converted random weights, parameter counts
equal, published-style checkpoints usable through predict, and the pure train step."""

import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flax_sr import models, torch_weights
from flax_sr import train as train_lib

torch = pytest.importorskip('torch', reason='the equality tests need PyTorch (CI installs it)')


def import_spandrel():
  """spandrel's package imports torchvision for two unrelated architectures (LaMa,
  RestoreFormer); PyPI's torchvision does not install beside this machine's CPU torch, so a
  stand-in with the names those imports need is provided when torchvision is missing."""
  try:
    import torchvision  # noqa: F401
  except ImportError:
    functional = types.ModuleType('torchvision.transforms.functional')
    functional.InterpolationMode = type('InterpolationMode', (), {})
    functional.rotate = functional.normalize = lambda *a, **k: None
    transforms = types.ModuleType('torchvision.transforms')
    transforms.functional = functional
    stub = types.ModuleType('torchvision')
    stub.transforms = transforms
    sys.modules.update({'torchvision': stub, 'torchvision.transforms': transforms,
                        'torchvision.transforms.functional': functional})
  return pytest.importorskip('spandrel')


def randomise(module, seed=0):
  """Random weights of a realistic scale (default inits leave PReLU slopes constant)."""
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for p in module.parameters():
      p.copy_(torch.randn(p.shape, generator=generator) * (0.5 / max(1, p[0].numel()) ** 0.5)
              if p.ndim > 1 else torch.rand(p.shape, generator=generator) * 0.3)
  return module.eval()


def torch_output(module, image):
  with torch.no_grad():
    # Some spandrel models modify their input in place: give them a copy.
    out = module(torch.from_numpy(image.transpose(0, 3, 1, 2).copy()))
  return out.numpy().transpose(0, 2, 3, 1)


def assert_equal_outputs(module, flax_model, params, sizes):
  apply = jax.jit(lambda p, x: flax_model.apply({'params': p}, x))
  for h, w in sizes:
    image = np.random.default_rng(h * w).random((1, h, w, 3), np.float32)
    expected = torch_output(module, image)
    got = np.asarray(apply(params, image))
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1e-4, np.abs(got - expected).max()


def count(params):
  return sum(np.size(x) for x in jax.tree.leaves(params))


@pytest.mark.parametrize('scale, conv_impl', [(2, 'xla'), (4, 'xla'), (4, 'tuned')])
def test_rrdbnet_equals_spandrel(scale, conv_impl):
  spandrel = import_spandrel()
  from spandrel.architectures.ESRGAN import ESRGANArch  # noqa: F401 (the arch is registered)
  rrdb_module = sys.modules['spandrel.architectures.ESRGAN.__arch.RRDB']
  reference = randomise(rrdb_module.RRDBNet(num_filters=16, num_blocks=2, scale=scale))
  state = {'params_ema': {k: v.numpy() for k, v in reference.state_dict().items()}}
  kwargs, params = torch_weights.rrdbnet_from_state_dict(state)
  assert kwargs == dict(scale=scale, features=16, num_rrdb=2, growth=32, pixel_unshuffle=1)
  model = models.RRDBNet(**kwargs, conv_impl=conv_impl)
  template = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))['params']
  torch_weights.check_params(template, params)
  assert count(params) == sum(p.numel() for p in reference.parameters())
  assert_equal_outputs(reference, model, params, [(12, 12), (13, 19)])
  assert spandrel is not None


def test_pixel_unshuffle_rrdbnet_x2_equals_spandrel():
  """BasicSR's x2 RRDBNet (Real-ESRGAN's x2plus): the input pixel-unshuffled by 2 (12
  channels into conv_first), upscaled x4; odd sizes are reflect-padded and cropped."""
  rrdb_class = spandrel_class('ESRGAN', 'RRDB', 'RRDBNet')
  reference = randomise(rrdb_class(in_nc=12, num_filters=16, num_blocks=1, scale=4,
                                   shuffle_factor=2))
  name, kwargs = check_against(reference, [(12, 12), (13, 19)], 'xla')
  assert name == 'rrdb' and kwargs['scale'] == 2 and kwargs['pixel_unshuffle'] == 2


def test_srvgg_equals_spandrel():
  import_spandrel()
  from spandrel.architectures.Compact import CompactArch  # noqa: F401
  srvgg_module = sys.modules['spandrel.architectures.Compact.__arch.SRVGG']
  reference = randomise(srvgg_module.SRVGGNetCompact(num_feat=16, num_conv=4, upscale=4))
  kwargs, params = torch_weights.srvgg_from_state_dict(
      {k: v.numpy() for k, v in reference.state_dict().items()})
  assert kwargs == dict(scale=4, features=16, num_conv=4, act_type='prelu')
  model = models.SRVGGNetCompact(**kwargs)
  torch_weights.check_params(model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))['params'],
                             params)
  assert count(params) == sum(p.numel() for p in reference.parameters())
  assert_equal_outputs(reference, model, params, [(10, 10), (11, 17)])


def test_full_size_parameter_counts_equal_the_originals():
  import_spandrel()
  from spandrel.architectures.ESRGAN import ESRGANArch  # noqa: F401
  from spandrel.architectures.Compact import CompactArch  # noqa: F401
  rrdb = sys.modules['spandrel.architectures.ESRGAN.__arch.RRDB'].RRDBNet(scale=4)
  srvgg = sys.modules['spandrel.architectures.Compact.__arch.SRVGG'].SRVGGNetCompact(
      num_feat=64, num_conv=32, upscale=4)  # realesr-general-x4v3's setting
  ours = {
      'rrdb': jax.eval_shape(lambda: models.RRDBNet(scale=4).init(
          jax.random.key(0), jnp.zeros((1, 8, 8, 3))))['params'],
      'srvgg': jax.eval_shape(lambda: models.SRVGGNetCompact(num_conv=32).init(
          jax.random.key(0), jnp.zeros((1, 8, 8, 3))))['params'],
  }
  assert count(ours['rrdb']) == sum(p.numel() for p in rrdb.parameters()) == 16_697_987
  assert count(ours['srvgg']) == sum(p.numel() for p in srvgg.parameters())


def test_mismatching_state_dict_names_the_key():
  model = models.RRDBNet(scale=4, features=16, num_rrdb=2)
  template = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))['params']
  wrong = jax.tree.map(np.asarray, template)
  wrong['conv_hr']['kernel'] = np.zeros((3, 3, 16, 8))
  with pytest.raises(torch_weights.WeightsError, match='conv_hr/kernel: shape'):
    torch_weights.check_params(template, wrong)
  del wrong['conv_hr']
  with pytest.raises(torch_weights.WeightsError, match='missing parameter conv_hr'):
    torch_weights.check_params(template, wrong)
  with pytest.raises(torch_weights.WeightsError, match='not an RRDBNet state dict'):
    torch_weights.rrdbnet_from_state_dict({'foo.weight': np.zeros((1, 1, 3, 3))})


@pytest.mark.parametrize('arch', ['rrdb', 'srvgg', 'rcan', 'swinir', 'hat', 'span'])
def test_predict_runs_a_published_style_checkpoint(arch, tmp_path, capsys):
  """A .pth as BasicSR publishes it (``params_ema`` wrapper), through ``predict --weights``:
  the PNG equals PyTorch's output for the same input to the 8-bit level."""
  from PIL import Image
  from flax_sr import cli, input_pipeline, predict
  import_spandrel()
  if arch == 'rrdb':
    from spandrel.architectures.ESRGAN import ESRGANArch  # noqa: F401
    reference = randomise(sys.modules['spandrel.architectures.ESRGAN.__arch.RRDB'].RRDBNet(
        num_filters=16, num_blocks=1, scale=4))
  elif arch == 'srvgg':
    from spandrel.architectures.Compact import CompactArch  # noqa: F401
    reference = randomise(sys.modules['spandrel.architectures.Compact.__arch.SRVGG']
                          .SRVGGNetCompact(num_feat=16, num_conv=2, upscale=4))
  else:
    reference = TINY[arch]()
  torch.save({'params_ema': reference.state_dict()}, tmp_path / 'net.pth')
  photo = input_pipeline.read_image(input_pipeline._sample_photo_dir() / 'chelsea.png')[:20, :28]
  Image.fromarray(photo).save(tmp_path / 'in.png')
  code = cli.run_cli(predict.main, ['--weights', str(tmp_path / 'net.pth'), '--input',
                                    str(tmp_path / 'in.png'), '--output', str(tmp_path / 'o.png')])
  assert code == 0, capsys.readouterr().err
  written = np.asarray(Image.open(tmp_path / 'o.png'), np.float32)
  expected = np.clip(torch_output(reference, photo[None].astype(np.float32) / 255)[0], 0, 1)
  assert written.shape == expected.shape == (80, 112, 3)
  assert np.abs(written - np.round(expected * 255)).max() <= 1


def test_weights_file_errors_are_one_line(tmp_path):
  from flax_sr import inference
  with pytest.raises(torch_weights.WeightsError, match='does not exist'):
    inference.load_weights(tmp_path / 'missing.pth')
  torch.save({'params': {'foo.weight': torch.zeros(1, 1, 3, 3)}}, tmp_path / 'other.pth')
  with pytest.raises(torch_weights.WeightsError, match='unknown architecture'):
    inference.load_weights(tmp_path / 'other.pth')


# ----------------------------------------------------------------------------------------------
# RCAN, SwinIR, SPAN.


def spandrel_class(package, module, name):
  import_spandrel()
  __import__(f'spandrel.architectures.{package}')
  return getattr(sys.modules[f'spandrel.architectures.{package}.__arch.{module}'], name)


def random_rcan(**kwargs):
  """An RCAN with random weights but its fixed mean shift (sub_mean/add_mean) left as built,
  as in every published checkpoint."""
  rcan_class = spandrel_class('RCAN', 'rcan_arch', 'RCAN')
  module = rcan_class(**kwargs)
  shifts = {k: v.clone() for k, v in module.state_dict().items() if 'mean' in k}
  randomise(module)
  module.load_state_dict(shifts, strict=False)
  return module


def random_swinir(**kwargs):
  swinir_class = spandrel_class('SwinIR', 'SwinIR', 'SwinIR')
  return randomise(swinir_class(img_size=32, mlp_ratio=2.0, **kwargs))


def random_span(**kwargs):
  span_class = spandrel_class('SPAN', 'span', 'SPAN')
  return randomise(span_class(num_in_ch=3, num_out_ch=3, **kwargs))


def random_hat(**kwargs):
  hat_class = spandrel_class('HAT', 'HAT', 'HAT')
  return randomise(hat_class(img_size=32, **kwargs))


TINY = {
    'rcan': lambda: random_rcan(scale=4, n_resgroups=1, n_resblocks=1, n_feats=16, reduction=4),
    'swinir': lambda: random_swinir(upscale=4, embed_dim=12, depths=[2], num_heads=[2],
                                    window_size=4, upsampler='pixelshuffledirect'),
    'span': lambda: random_span(feature_channels=8, upscale=4),
    'hat': lambda: random_hat(upscale=4, embed_dim=12, depths=[1], num_heads=[2], window_size=4,
                              compress_ratio=3, squeeze_factor=4, mlp_ratio=2.0),
}

# Tensors the originals register as parameters that are not trained: RCAN's mean shift
# (requires_grad is set on the module, which freezes nothing, but the optimiser config
# excludes it), SPAN's eval_conv (recomputed from the trained branches on every eval call).
NOT_TRAINED = r'(sub_mean|add_mean|eval_conv)\.'


def trained_count(module):
  import re
  return sum(p.numel() for k, p in module.named_parameters() if not re.search(NOT_TRAINED, k))


def check_against(reference, sizes, conv_impl='xla', expected_kwargs=None):
  name, kwargs, params = torch_weights.from_state_dict(
      {'params_ema': {k: v.numpy() for k, v in reference.state_dict().items()}})
  if expected_kwargs is not None:
    assert {k: kwargs[k] for k in expected_kwargs} == expected_kwargs
  model = models.create_model(name, **kwargs, conv_impl=conv_impl)
  template = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))['params']
  torch_weights.check_params(template, params)
  assert count(params) == trained_count(reference)
  assert_equal_outputs(reference, model, params, sizes)
  return name, kwargs


# The tuned (Winograd) convolutions meet spandrel in the RRDBNet case; fast_conv_test proves
# them equal to XLA's for every layer shape, so the other models are compared through XLA's.
@pytest.mark.parametrize('scale, conv_impl', [(2, 'xla'), (3, 'xla')])
def test_rcan_equals_spandrel(scale, conv_impl):
  reference = random_rcan(scale=scale, n_resgroups=2, n_resblocks=2, n_feats=32, reduction=8)
  name, kwargs = check_against(reference, [(12, 12), (13, 19)], conv_impl,
                               dict(scale=scale, features=32, num_groups=2, num_rcab=2,
                                    reduction=8))
  assert name == 'rcan' and kwargs['rgb_mean'] == models.DIV2K_RGB_MEAN


@pytest.mark.parametrize('upsampler, scale, window, connection', [
    ('pixelshuffle', 2, 8, '1conv'),          # the classical-SR model's setting
    ('pixelshuffledirect', 3, 4, '1conv'),    # lightweight
    ('nearest+conv', 4, 4, '3conv'),          # real-world (large)
])
def test_swinir_equals_spandrel(upsampler, scale, window, connection):
  reference = random_swinir(upscale=scale, embed_dim=24, depths=[2, 2], num_heads=[2, 3],
                            window_size=window, upsampler=upsampler, resi_connection=connection)
  # 13x19 is no multiple of the window: both pad (reflect) and crop back.
  check_against(reference, [(2 * window, 2 * window), (13, 19)], 'xla',
                dict(scale=scale, features=24, depths=(2, 2), num_heads=(2, 3),
                     window_size=window, upsampler=upsampler, resi_connection=connection))


@pytest.mark.parametrize('scale, window, connection, compress', [
    (2, 8, '1conv', 3),      # HAT's setting (window 16 in the paper), narrow
    (3, 4, 'identity', 6),   # no closing convolutions; HAT-S-like compression
])
def test_hat_equals_spandrel(scale, window, connection, compress):
  reference = random_hat(upscale=scale, embed_dim=24, depths=[2, 2], num_heads=[2, 3],
                         window_size=window, compress_ratio=compress, squeeze_factor=6,
                         mlp_ratio=2.0, resi_connection=connection)
  check_against(reference, [(2 * window, 2 * window), (13, 19)], 'xla',
                dict(scale=scale, features=24, depths=(2, 2), num_heads=(2, 3),
                     window_size=window, compress_ratio=compress, squeeze_factor=6,
                     overlap_ratio=0.5, resi_connection=connection))


@pytest.mark.parametrize('scale, conv_impl', [(4, 'xla'), (2, 'xla')])
def test_span_equals_spandrel(scale, conv_impl):
  reference = random_span(feature_channels=16, upscale=scale)
  check_against(reference, [(12, 12), (13, 19)], conv_impl,
                dict(scale=scale, features=16, normalize=True))


def test_paper_settings_parameter_counts_equal_the_originals():
  """RCAN (10 groups x 20 RCABs, 64 features), SwinIR classical (180 wide, 6x6 layers) and
  lightweight (60 wide, 4x6), SPAN (48 features), HAT (180 wide, 6x6, window 16), all x4."""
  rcan = random_rcan(scale=4)
  swinir_class = spandrel_class('SwinIR', 'SwinIR', 'SwinIR')
  classical = swinir_class(upscale=4, img_size=48, window_size=8, embed_dim=180,
                           depths=[6] * 6, num_heads=[6] * 6, mlp_ratio=2,
                           upsampler='pixelshuffle')
  light = swinir_class(upscale=4, img_size=64, window_size=8, embed_dim=60, depths=[6] * 4,
                       num_heads=[6] * 4, mlp_ratio=2, upsampler='pixelshuffledirect')
  span = random_span(feature_channels=48, upscale=4)

  def ours(name, **kwargs):
    model = models.create_model(name, scale=4, **kwargs)
    return count(jax.eval_shape(lambda: model.init(jax.random.key(0),
                                                   jnp.zeros((1, 8, 8, 3))))['params'])

  # 15,592,379 with the mean shift's 24 fixed values, the figure usually quoted.
  assert ours('rcan') == trained_count(rcan) == 15_592_355
  assert ours('swinir') == trained_count(classical) == 11_900_199
  assert ours('swinir', features=60, depths=(6,) * 4, num_heads=(6,) * 4,
              upsampler='pixelshuffledirect') == trained_count(light)
  assert ours('span') == trained_count(span)
  hat = spandrel_class('HAT', 'HAT', 'HAT')(upscale=4, img_size=64, window_size=16,
                                            embed_dim=180, depths=[6] * 6, num_heads=[6] * 6,
                                            mlp_ratio=2)
  assert ours('hat') == trained_count(hat) == 20_772_507


def test_converter_names_the_first_key_that_does_not_fit():
  state = {k: v.numpy() for k, v in TINY['span']().state_dict().items()}
  extra = dict(state, **{'block_1.c1_r.extra.weight': np.zeros((2, 2, 1, 1), np.float32)})
  with pytest.raises(torch_weights.WeightsError, match='unexpected key block_1.c1_r.extra'):
    torch_weights.from_state_dict(extra)
  missing = {k: v for k, v in state.items() if k != 'block_3.c2_r.conv.1.bias'}
  with pytest.raises(torch_weights.WeightsError, match='missing key block_3.c2_r.conv.1.bias'):
    torch_weights.from_state_dict(missing)
  # DataParallel's prefix on every key is dropped.
  name, _, _ = torch_weights.from_state_dict({f'module.{k}': v for k, v in state.items()})
  assert name == 'span'


@pytest.mark.parametrize('name', ['rrdb', 'srvgg', 'rcan', 'swinir', 'hat', 'span'])
def test_train_step_runs_for_the_zoo(name):
  from conftest import tiny_config
  # XLA's convolutions: this is about the step, and they compile in a fraction of the time.
  config = tiny_config(model=name, features=8, num_rrdb=1, num_res_blocks=2, num_groups=1,
                       num_rcab=1, reduction=4, depths=(1,), num_heads=(2,), window_size=4,
                       input_size=24, compress_ratio=2, squeeze_factor=4, conv_impl='xla')
  state = train_lib.state_from_config(config, total_steps=2)
  hr = np.random.default_rng(0).integers(0, 256, (2, 96, 96, 3), np.uint8)
  state, metrics = jax.jit(train_lib.train_step)(state, {'hr': hr})
  assert np.isfinite(float(metrics['loss'])) and int(state.step) == 1


# ----------------------------------------------------------------------------------------------
# python -m flax_sr.convert, and --init_from.


def small_srvgg(**kwargs):
  srvgg_class = spandrel_class('Compact', 'SRVGG', 'SRVGGNetCompact')
  return randomise(srvgg_class(num_feat=8, num_conv=2, upscale=4, **kwargs))


def test_convert_writes_a_run_that_computes_what_pytorch_does(tmp_path, capsys):
  from flax_sr import cli, convert, inference
  reference = small_srvgg()
  torch.save({'params_ema': reference.state_dict()}, tmp_path / 'net.pth')
  assert cli.run_cli(convert.main, [str(tmp_path / 'net.pth'), str(tmp_path / 'run')]) == 0
  loaded = inference.load_run(tmp_path / 'run')
  assert loaded.config.model == 'srvgg' and loaded.config.scale == 4 and loaded.step == 0
  image = np.random.default_rng(1).random((1, 10, 14, 3), np.float32)
  got = np.asarray(loaded.model.apply(loaded.variables, image))
  assert np.abs(got - torch_output(reference, image)).max() <= 1e-4
  # An existing run directory is not replaced; a setting config.json cannot hold (ReLU
  # SRVGG, detected as act_type relu) is refused; either way nothing is written.
  assert cli.run_cli(convert.main, [str(tmp_path / 'net.pth'), str(tmp_path / 'run')]) == 2
  assert 'not an empty folder' in capsys.readouterr().err
  torch.save(small_srvgg(act_type='relu').state_dict(), tmp_path / 'relu.pth')
  assert cli.run_cli(convert.main, [str(tmp_path / 'relu.pth'), str(tmp_path / 'run2')]) == 2
  assert "act_type 'relu' vs 'prelu'" in capsys.readouterr().err
  assert not (tmp_path / 'run2').exists()


def test_init_from_a_pth_fine_tunes_and_resumes(tmp_path):
  from conftest import tiny_config
  from flax_sr import checkpointing, inference, trainer
  from flax_sr.config import UserError
  reference = small_srvgg()
  torch.save({'params_ema': reference.state_dict()}, tmp_path / 'net.pth')
  _, _, converted = torch_weights.from_state_dict(
      {k: v.numpy() for k, v in reference.state_dict().items()})
  config = tiny_config(dataset='sample', model='srvgg', features=8, num_res_blocks=2,
                       input_size=24, batch_size=4, eval_examples=2, num_train_steps=1,
                       learning_rate=1e-12, init_from=str(tmp_path / 'net.pth'),
                       ema_decay=0.9)  # EMA on: its copy of the weights must be its own buffers
  with pytest.raises(UserError, match='features 8 vs 16'):
    trainer.train_and_evaluate(dataclasses_replace(config, features=16), str(tmp_path / 'bad'))
  assert not (tmp_path / 'bad').exists()
  trainer.train_and_evaluate(config, str(tmp_path / 'run'))
  # One Adam step of 1e-12 moves no weight visibly: the run started from the file's weights.
  trained = inference.load_run(tmp_path / 'run', 'latest').variables['params']
  for got, expected in zip(jax.tree.leaves(trained), jax.tree.leaves(converted)):
    np.testing.assert_allclose(got, expected, atol=1e-6)
  trainer.train_and_evaluate(dataclasses_replace(config, num_train_steps=2), str(tmp_path / 'run'))
  assert checkpointing.latest_complete_step(tmp_path / 'run') == 2


def dataclasses_replace(config, **changes):
  import dataclasses
  return dataclasses.replace(config, **changes)


@pytest.mark.parametrize('name, kwargs', [
    # One transformer (its attention, LayerNorm and GELU; HAT is built of the same parts).
    ('swinir', dict(features=12, depths=(2,), num_heads=(2,), window_size=4)),
])
def test_bfloat16_stays_near_float32(name, kwargs):
  """Parameters stay float32; the computation in bfloat16 (attention softmax in float32)."""
  image = np.random.default_rng(0).random((1, 13, 10, 3), np.float32)
  full = models.create_model(name, scale=2, **kwargs)
  params = jax.jit(full.init)(jax.random.key(0), image)['params']
  half = models.create_model(name, scale=2, dtype=jnp.bfloat16, **kwargs)
  expected = jax.jit(full.apply)({'params': params}, image)
  got = jax.jit(half.apply)({'params': params}, image)
  assert got.dtype == jnp.float32 and np.isfinite(got).all()
  assert np.abs(got - expected).max() <= 0.05 * np.abs(expected).max()
