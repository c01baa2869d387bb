#!/usr/bin/env python3
"""Benchmark: one convolution layer's forward + backward time under each fast_conv strategy.

    python experiments/bench_conv_layers.py                  # the layers of our models
    python experiments/bench_conv_layers.py --layers 64,96,64,64 16,32,48,48
    python experiments/bench_conv_layers.py --quick --output_json layers.json   # CI

A layer is ``batch,image,c_in,c_out`` (a 3x3 'SAME' convolution of a (batch, image, image,
c_in) input). Each row times the gradient of the layer with respect to its input and kernel
(what a training step computes) with XLA's convolution, im2col products, the hybrid and
Winograd F(2x2) and F(4x4), and names the strategy ``fast_conv.choose_strategy`` picks for that shape, so the thresholds in
``flax_sr/fast_conv.py`` can be checked on another machine. Each layer's strategies are
compiled and warmed up, then each is timed ``--repeats`` times; the median is reported.
Single-layer times guide the policy; the training-step benchmark (bench.py) is the arbiter.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

if __name__ == '__main__':
  from flax_sr import host_allocator
  host_allocator.reexec_with_fast_malloc()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from flax_sr import fast_conv  # noqa: E402

# The layers of the benchmarked models (bench.py) and of t91_x3.py: EDSR-lite 48 and 64 wide
# at batch 16 (body, x3 upsampler, tail at 96x96) and the reference model at batch 64 (32x32
# and 96x96 bodies, the fused x3 upsample to the RGB head at 32x32 (late placement) and to the
# 96x96 body (early), the RGB head at 96x96 of the early placement).
MODEL_LAYERS = ('16,32,48,48', '16,32,48,432', '16,96,48,3', '16,32,64,64', '16,32,64,576',
                '64,32,64,64', '64,32,64,27', '64,32,64,576', '64,48,64,64', '64,96,64,64',
                '64,96,64,3')
QUICK_LAYERS = ('2,16,8,8', '2,64,8,3')


def bench_layer(spec: str, repeats: int) -> dict:
  batch, image, c_in, c_out = (int(v) for v in spec.split(','))
  keys = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(keys[0], (batch, image, image, c_in))
  kernel = jax.random.normal(keys[1], (3, 3, c_in, c_out)) * 0.05
  cotangent = jax.random.normal(keys[2], (batch, image, image, c_out))
  row = {'layer': spec, 'batch': batch, 'image': image, 'c_in': c_in, 'c_out': c_out,
         'chosen': fast_conv.choose_strategy(x.shape, c_out)}
  grads = {}
  for name, conv in fast_conv.STRATEGIES.items():
    # The cotangent is an argument, not a closed-over constant that XLA would fold.
    grads[name] = jax.jit(jax.grad(lambda x, k, dy, conv=conv: jnp.vdot(conv(x, k), dy),
                                   argnums=(0, 1)))
    jax.block_until_ready(grads[name](x, kernel, cotangent))  # compile and warm up
  # Each strategy's repeats back to back: interleaving them makes each run on buffers the others
  # just freed and penalises im2col's large ones, which a training step (the same strategy
  # layer after layer) does not see; the full-step A/B in experiments/RESULTS.md decides.
  times = {name: [] for name in grads}
  for name, grad in grads.items():
    for _ in range(repeats):
      start = time.perf_counter()
      jax.block_until_ready(grad(x, kernel, cotangent))
      times[name].append(time.perf_counter() - start)
  for name in grads:
    row[f'{name}_ms'] = statistics.median(times[name]) * 1e3
  row['fastest'] = min(fast_conv.STRATEGIES, key=lambda name: row[f'{name}_ms'])
  return row


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--layers', nargs='+', default=list(MODEL_LAYERS),
                      help='layers as batch,image,c_in,c_out')
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--quick', action='store_true', help='two tiny layers, 2 repeats (CI)')
  parser.add_argument('--output_json', help='write the rows as JSON')
  args = parser.parse_args(argv)
  if args.quick:
    args.layers, args.repeats = list(QUICK_LAYERS), 2
  for spec in args.layers:
    values = spec.split(',')
    if len(values) != 4 or not all(v.isdigit() and int(v) > 0 for v in values):
      parser.error(f'--layers {spec!r}: expected batch,image,c_in,c_out (positive integers)')

  strategies = list(fast_conv.STRATEGIES)
  print(f'device: {jax.devices()[0].device_kind}; jax {jax.__version__}; '
        f'GLIBC_TUNABLES={os.environ.get("GLIBC_TUNABLES", "(unset)")}')
  print('forward + backward (input and kernel gradients) of one 3x3 convolution, median ms')
  print(f'{"layer (N,HW,Cin,Cout)":<22}' + ''.join(f'{s:>10}' for s in strategies)
        + f'{"fastest":>9}{"chosen":>9}')
  rows = []
  for spec in args.layers:
    row = bench_layer(spec, args.repeats)
    rows.append(row)
    print(f'{spec:<22}' + ''.join(f'{row[s + "_ms"]:>10.1f}' for s in strategies)
          + f'{row["fastest"]:>9}{row["chosen"]:>9}', flush=True)
  if args.output_json:
    pathlib.Path(args.output_json).write_text(json.dumps(rows, indent=2))
    print(f'wrote {args.output_json}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
