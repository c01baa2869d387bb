"""PSNR against training minutes of one or more runs, as the markdown table RESULTS shows.

    python experiments/training_curve.py runs/sr291_x3 [runs/other ...] [--metric eval/model/psnr_y]

Reads each run's ``metrics.jsonl`` (the evaluations the trainer logged, with
``eval/train_minutes``: training wall-clock time, evaluation excluded) and prints one table per
run; ``--output_json`` also writes the points.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys


def read_curve(workdir: str | pathlib.Path, metric: str) -> list[dict]:
  """[{'step', 'minutes', 'value'}] of every evaluation in ``workdir``/metrics.jsonl."""
  path = pathlib.Path(workdir) / 'metrics.jsonl'
  if not path.is_file():
    raise SystemExit(f'error: {path} does not exist (is {workdir} a training run directory?)')
  points = []
  for line in path.read_text().splitlines():
    try:
      row = json.loads(line)
    except json.JSONDecodeError:  # a line cut by a crash mid-write
      continue
    if metric in row and 'eval/train_minutes' in row:
      points.append({'step': row['step'], 'minutes': row['eval/train_minutes'],
                     'value': row[metric]})
  # A resumed run re-logs the evaluation of the step it resumed from: keep the last of each.
  return sorted({p['step']: p for p in points}.values(), key=lambda p: p['step'])


def markdown(points: list[dict], metric: str) -> str:
  best = max(p['value'] for p in points)
  minutes = ' | '.join(f'{p["minutes"]:.1f}' for p in points)
  steps = ' | '.join(f'{p["step"]:,}' for p in points)
  values = ' | '.join((f'**{p["value"]:.3f}**' if p['value'] == best else f'{p["value"]:.3f}')
                      for p in points)
  return '\n'.join([f'| training minutes | {minutes} |',
                    '| --- | ' + ' | '.join('---' for _ in points) + ' |',
                    f'| step | {steps} |', f'| {metric} | {values} |'])


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('workdirs', nargs='+')
  parser.add_argument('--metric', default='eval/model/psnr_y')
  parser.add_argument('--output_json')
  args = parser.parse_args(argv)
  curves = {}
  for workdir in args.workdirs:
    points = read_curve(workdir, args.metric)
    if not points:
      print(f'{workdir}: no evaluation with {args.metric} logged yet', file=sys.stderr)
      continue
    curves[workdir] = points
    print(f'{workdir}\n{markdown(points, args.metric)}\n')
  if args.output_json:
    pathlib.Path(args.output_json).write_text(json.dumps(curves, indent=2) + '\n')
  return 0 if curves else 1


if __name__ == '__main__':
  sys.exit(main())
