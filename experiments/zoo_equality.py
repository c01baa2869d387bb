#!/usr/bin/env python3
"""The zoo's equality with its PyTorch originals, as a table: for each architecture and
setting of ``tests/zoo_test.py``, spandrel's model with random weights, converted by
flax_sr.torch_weights, max abs output difference under ``jax.jit`` (float32, [0, 1] inputs)
at each input size, and the parameter counts of both.

    python experiments/zoo_equality.py                   # prints the table
    python experiments/zoo_equality.py --output_json eq.json
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'tests'))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import zoo_test  # noqa: E402  (the spandrel builders and the torch forward pass)
from flax_sr import models, torch_weights  # noqa: E402


def cases():
  """(label, PyTorch module builder, input sizes, conv_impl)."""
  rrdb = zoo_test.spandrel_class('ESRGAN', 'RRDB', 'RRDBNet')
  srvgg = zoo_test.spandrel_class('Compact', 'SRVGG', 'SRVGGNetCompact')
  sizes = [(12, 12), (13, 19)]
  yield ('rrdb x4 16 feat, 2 RRDBs', lambda: zoo_test.randomise(rrdb(num_filters=16,
                                                                      num_blocks=2, scale=4)),
         sizes, 'xla')
  yield ('rrdb x4 (tuned convs)', lambda: zoo_test.randomise(rrdb(num_filters=16, num_blocks=2,
                                                                 scale=4)), sizes, 'tuned')
  yield ('rrdb x2 pixel-unshuffle (BasicSR x2)', lambda: zoo_test.randomise(rrdb(
      in_nc=12, num_filters=16, num_blocks=1, scale=4, shuffle_factor=2)), sizes, 'xla')
  yield ('srvgg x4 16 feat, 4 convs', lambda: zoo_test.randomise(srvgg(num_feat=16, num_conv=4,
                                                                      upscale=4)), sizes, 'xla')
  yield ('rcan x2 32 feat, 2x2', lambda: zoo_test.random_rcan(
      scale=2, n_resgroups=2, n_resblocks=2, n_feats=32, reduction=8), sizes, 'xla')
  yield ('rcan x3 (tuned convs)', lambda: zoo_test.random_rcan(
      scale=3, n_resgroups=2, n_resblocks=2, n_feats=32, reduction=8), sizes, 'tuned')
  for upsampler, scale, window, connection in [('pixelshuffle', 2, 8, '1conv'),
                                               ('pixelshuffledirect', 3, 4, '1conv'),
                                               ('nearest+conv', 4, 4, '3conv')]:
    yield (f'swinir x{scale} {upsampler} {connection} w{window}',
           lambda u=upsampler, s=scale, w=window, c=connection: zoo_test.random_swinir(
               upscale=s, embed_dim=24, depths=[2, 2], num_heads=[2, 3], window_size=w,
               upsampler=u, resi_connection=c), [(2 * window, 2 * window), (13, 19)], 'xla')
  for scale, window, connection, compress in [(2, 8, '1conv', 3), (3, 4, 'identity', 6)]:
    yield (f'hat x{scale} {connection} w{window} compress {compress}',
           lambda s=scale, w=window, c=connection, r=compress: zoo_test.random_hat(
               upscale=s, embed_dim=24, depths=[2, 2], num_heads=[2, 3], window_size=w,
               compress_ratio=r, squeeze_factor=6, mlp_ratio=2.0, resi_connection=c),
           [(2 * window, 2 * window), (13, 19)], 'xla')
  yield ('span x4 16 feat', lambda: zoo_test.random_span(feature_channels=16, upscale=4),
         sizes, 'xla')
  yield ('span x2 (tuned convs)', lambda: zoo_test.random_span(feature_channels=16, upscale=2),
         sizes, 'tuned')


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--output_json')
  args = parser.parse_args(argv)
  rows = []
  for label, build, sizes, conv_impl in cases():
    reference = build()
    name, kwargs, params = torch_weights.from_state_dict(
        {k: v.numpy() for k, v in reference.state_dict().items()})
    model = models.create_model(name, **kwargs, conv_impl=conv_impl)
    apply = jax.jit(lambda p, x, model=model: model.apply({'params': p}, x))
    diffs = {}
    for h, w in sizes:
      image = np.random.default_rng(h * w).random((1, h, w, 3), np.float32)
      got = np.asarray(apply(params, image))
      diffs[f'{h}x{w}'] = float(np.abs(got - zoo_test.torch_output(reference, image)).max())
    rows.append({'case': label, 'max_abs_diff': diffs,
                 'parameters': int(sum(np.size(p) for p in jax.tree.leaves(params))),
                 'torch_trained_parameters': int(zoo_test.trained_count(reference))})
    print(f'{label:<40} ' + '  '.join(f'{k}: {v:.1e}' for k, v in diffs.items())
          + f'  params {rows[-1]["parameters"]:,} (torch {rows[-1]["torch_trained_parameters"]:,})',
          flush=True)
  worst = max(max(r['max_abs_diff'].values()) for r in rows)
  print(f'largest difference: {worst:.2e} (tolerance 1e-4)')
  if args.output_json:
    pathlib.Path(args.output_json).write_text(json.dumps(rows, indent=2) + '\n')
  return 0 if worst <= 1e-4 else 1


if __name__ == '__main__':
  sys.exit(main())
