"""The original design's train step in PyTorch: the peer ``bench.py --vs-torch`` runs.

The same network as ``flax_sr.models.ReferenceSR`` (``tests/torch_reference_test.py`` checks
that its forward pass, gradients and one Adam update equal flax_sr's with the same weights):
4 blocks of Conv3x3 (64 features, no bias: BatchNorm's shift makes it redundant) + BatchNorm
(momentum 0.1 in PyTorch's convention, flax's 0.9; eps 1e-5) + ReLU + nearest upsampling by
the block's factor, then Conv3x3 to RGB; Adam 1e-4, MSE, a fixed batch of 96x96 HR targets.

One timed step is zero_grad + forward + loss + backward + Adam step; the median of ``--steps``
steps after ``--warmup`` gives images/s. All cores are used (``torch.set_num_threads``). The
process's CPU utilisation is printed beside it: well below the thread count means another
process competed for the cores and the number is not one to compare.

    python experiments/torch_reference_step.py --factors 16:2,3,1,1 32:3,1,1,1 --batch 64

Needs torch (the ``[torch]`` extra, a CPU wheel is enough).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

HR_SIZE = 96


def parse_factors(spec: str) -> tuple[int, tuple[int, ...]]:
  """'16:2,3,1,1' -> (16, (2, 3, 1, 1)), checking that the factors take the input to 96."""
  size, _, factors = spec.partition(':')
  try:
    size, factors = int(size), tuple(int(f) for f in factors.split(','))
  except ValueError:
    raise SystemExit(f'error: --factors {spec!r} is not SIZE:F1,F2,...') from None
  if size * math.prod(factors) != HR_SIZE:
    raise SystemExit(f'error: --factors {spec}: {size} x {math.prod(factors)} is not '
                     f'{HR_SIZE}')
  return size, factors


def build_model(factors, features: int = 64):
  """The reference network with these per-block upsampling factors (torch.nn.Sequential)."""
  import torch.nn as nn
  layers, channels = [], 3
  for factor in factors:
    layers += [nn.Conv2d(channels, features, 3, padding=1, bias=False),
               nn.BatchNorm2d(features, eps=1e-5, momentum=0.1), nn.ReLU()]
    if factor > 1:
      layers.append(nn.Upsample(scale_factor=factor, mode='nearest'))
    channels = features
  layers.append(nn.Conv2d(channels, 3, 3, padding=1))
  return nn.Sequential(*layers)


def make_train_step(model, learning_rate: float = 1e-4):
  """step(lr, hr) -> loss: one Adam update of ``model`` on MSE (NCHW float tensors)."""
  import torch
  optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)

  def step(lr, hr):
    optimizer.zero_grad(set_to_none=True)
    loss = torch.mean((model(lr) - hr) ** 2)
    loss.backward()
    optimizer.step()
    return loss
  return step


def images_per_second(size: int, factors, batch: int, steps: int, warmup: int
                      ) -> tuple[float, float]:
  """(images/s from the median step, CPU seconds per wall second during the timed steps)."""
  import torch
  torch.manual_seed(0)
  model = build_model(factors).train()
  generator = torch.Generator().manual_seed(1)
  lr = torch.randint(0, 256, (batch, 3, size, size), generator=generator).float() / 255
  hr = torch.randint(0, 256, (batch, 3, HR_SIZE, HR_SIZE), generator=generator).float() / 255
  step = make_train_step(model)
  for _ in range(warmup):
    step(lr, hr)
  times = []
  cpu_start, wall_start = time.process_time(), time.perf_counter()
  for _ in range(steps):
    start = time.perf_counter()
    step(lr, hr)
    times.append(time.perf_counter() - start)
  utilisation = (time.process_time() - cpu_start) / (time.perf_counter() - wall_start)
  return batch / statistics.median(times), utilisation


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--factors', nargs='+', default=['16:2,3,1,1', '32:3,1,1,1'],
                      metavar='SIZE:F1,F2,F3,F4',
                      help='input size and per-block upsampling factors (product: 96 / size)')
  parser.add_argument('--sizes', type=int, nargs='+',
                      help='only the --factors entries of these input sizes')
  parser.add_argument('--batch', type=int, default=64)
  parser.add_argument('--steps', type=int, default=10)
  parser.add_argument('--warmup', type=int, default=3)
  args = parser.parse_args(argv)
  try:
    import torch
  except ImportError:
    print('error: this peer needs torch: pip install -e ".[torch]"', file=sys.stderr)
    return 2
  torch.set_num_threads(os.cpu_count())
  print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, '
        f'{args.warmup} warm-up + {args.steps} timed steps')
  for spec in args.factors:
    size, factors = parse_factors(spec)
    if args.sizes and size not in args.sizes:
      continue
    rate, utilisation = images_per_second(size, factors, args.batch, args.steps, args.warmup)
    print(f'input {size}x{size} -> {HR_SIZE}x{HR_SIZE} factors {list(factors)}: '
          f'{rate:.1f} images/s (cpu-util {utilisation:.2f} of {torch.get_num_threads()})',
          flush=True)
  return 0


if __name__ == '__main__':
  raise SystemExit(main())
