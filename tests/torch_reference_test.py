"""experiments/torch_reference_step.py, the PyTorch peer of bench.py --vs-torch, trains the
network flax_sr trains: with the same weights, the same forward pass (BatchNorm on batch
statistics), loss, gradients and Adam update as flax_sr.models.ReferenceSR."""

import copy
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import REPO
from flax_sr import models

torch = pytest.importorskip('torch')
sys.path.insert(0, str(REPO / 'experiments'))
import torch_reference_step  # noqa: E402  pylint: disable=wrong-import-position


def flax_variables(network, factors):
  """The PyTorch network's weights in ReferenceSR's layout (OIHW -> HWIO)."""
  layers = list(network)
  convs = [m for m in layers if isinstance(m, torch.nn.Conv2d)]
  norms = [m for m in layers if isinstance(m, torch.nn.BatchNorm2d)]
  as_kernel = lambda conv: jnp.asarray(conv.weight.detach().numpy().transpose(2, 3, 1, 0))
  params, stats = {}, {}
  for i, (conv, norm) in enumerate(zip(convs, norms)):
    params[f'block{i}_conv'] = {'kernel': as_kernel(conv)}
    params[f'block{i}_bn'] = {'scale': jnp.asarray(norm.weight.detach().numpy()),
                              'bias': jnp.asarray(norm.bias.detach().numpy())}
    stats[f'block{i}_bn'] = {'mean': jnp.asarray(norm.running_mean.numpy()),
                             'var': jnp.asarray(norm.running_var.numpy())}
  params['head_conv'] = {'kernel': as_kernel(convs[-1]),
                         'bias': jnp.asarray(convs[-1].bias.detach().numpy())}
  assert len(convs) == len(factors) + 1
  return {'params': params, 'batch_stats': stats}


@pytest.mark.parametrize('size,factors', [(16, (2, 3, 1, 1)), (32, (1, 1, 1, 3))])
def test_the_peer_trains_the_same_network(size, factors):
  torch.manual_seed(0)
  features = 16
  network = torch_reference_step.build_model(factors, features).train()
  # Non-trivial BatchNorm affine parameters, so a swapped scale/bias would show.
  with torch.no_grad():
    for m in network:
      if isinstance(m, torch.nn.BatchNorm2d):
        m.weight.uniform_(0.5, 1.5)
        m.bias.uniform_(-0.2, 0.2)
  variables = flax_variables(network, factors)
  # Not one parameter more (a conv bias before BatchNorm would not change the outputs, only
  # the work): the two compute the same step.
  assert (sum(p.numel() for p in network.parameters())
          == sum(x.size for x in jax.tree.leaves(variables['params'])))
  model = models.create_model('reference', scale=96 // size, features=features,
                              upsample_factors=factors)
  rng = np.random.default_rng(0)
  lr = rng.random((4, size, size, 3), np.float32)
  hr = rng.random((4, 96, 96, 3), np.float32)
  to_torch = lambda x: torch.from_numpy(x.transpose(0, 3, 1, 2).copy())

  def loss_fn(params):
    out, updates = model.apply({'params': params, 'batch_stats': variables['batch_stats']}, lr,
                               train=True, mutable=['batch_stats'])
    return jnp.mean((out - hr) ** 2), (out, updates)
  (loss, (out, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(variables['params'])
  optimizer = optax.adam(1e-4)
  new_params = optax.apply_updates(
      variables['params'], optimizer.update(grads, optimizer.init(variables['params']))[0])

  start = copy.deepcopy(network.state_dict())  # a train-mode forward moves running stats
  with torch.no_grad():
    torch_out = network(to_torch(lr)).numpy().transpose(0, 2, 3, 1)
  fresh = torch_reference_step.build_model(factors, features).train()
  fresh.load_state_dict(start)
  step = torch_reference_step.make_train_step(fresh)
  torch_loss = float(step(to_torch(lr), to_torch(hr)).detach())

  np.testing.assert_allclose(out, torch_out, atol=1e-4)
  assert abs(float(loss) - torch_loss) <= 1e-5 * abs(torch_loss)
  stepped = flax_variables(fresh, factors)
  for name in new_params:
    for leaf in new_params[name]:
      np.testing.assert_allclose(new_params[name][leaf], stepped['params'][name][leaf],
                                 atol=1e-6, err_msg=f'{name}/{leaf}')
      moved = np.abs(np.asarray(new_params[name][leaf] - variables['params'][name][leaf]))
      assert moved.max() > 5e-5, f'{name}/{leaf} did not move'  # Adam's first step: ~lr
  # Running means follow the same average (PyTorch keeps the unbiased batch variance, flax
  # the biased one, so the running variances differ by n/(n-1): not a training difference).
  for name, stats in updates['batch_stats'].items():
    np.testing.assert_allclose(stats['mean'], stepped['batch_stats'][name]['mean'], atol=1e-6)


def test_the_peer_runs_and_reports_images_per_second(capsys):
  assert torch_reference_step.main(['--factors', '32:3,1,1,1', '--batch', '2', '--steps', '1',
                                    '--warmup', '0']) == 0
  assert 'images/s' in capsys.readouterr().out
  with pytest.raises(SystemExit, match='is not 96'):
    torch_reference_step.parse_factors('32:2,1,1,1')
