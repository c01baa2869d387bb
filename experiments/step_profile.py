#!/usr/bin/env python3
"""Where a training step's time goes: XLA's own trace of flax_sr's train step, per stage.

    python experiments/step_profile.py --model reference --input_size 32 --factors 3,1,1,1
    python experiments/step_profile.py --model swinir --scale 4 --input_size 32 --batch 8 \\
        --model_kwargs '{"features": 60, "depths": [6, 6, 6, 6], "num_heads": [6, 6, 6, 6],
                         "upsampler": "pixelshuffledirect"}'
    python experiments/step_profile.py ... --output_json profile.json

The step is the one ``flax_sr.main`` runs (``parallel.compile_train_step``: bicubic LR made
inside, MSE/L1 loss, Adam), on random HR images. A ``jax.profiler`` trace of ``--steps``
steps gives the time of every operation XLA:CPU ran (each is an instruction of the compiled
program); the compiled program says what each one is: a product (a dot or convolution, or a
fusion around one), or which source line and function made it (the Winograd transforms of
``flax_sr/fast_conv.py``, BatchNorm, an activation, Adam). Operations can overlap on the
machine's cores, so the stages' sum can exceed the step's wall time; the table gives both.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import pathlib
import re
import sys
import tempfile
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

if __name__ == '__main__':
  from flax_sr import host_allocator
  host_allocator.reexec_with_fast_malloc()

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from flax_sr import models, parallel  # noqa: E402
from flax_sr import train as train_lib  # noqa: E402

# Instructions that only hold others (their time is their contents').
CONTAINERS = ('conditional', 'while', 'call')
PRODUCTS = ('dot', 'convolution')
# Operations that only move or restate data: left out when a fusion's stage is decided.
PLUMBING = ('parameter', 'constant', 'bitcast', 'broadcast', 'tuple', 'get-tuple-element')
# Stages by the source that made an operation: (stage, file part, function part or '').
SOURCE_STAGES = (
    ('optimizer (Adam, EMA)', 'optax', ''),
    ('optimizer (Adam, EMA)', 'flax_sr/train.py', 'apply_gradients'),
    ('conv transforms and layouts', 'flax_sr/fast_conv.py', ''),
    ('normalization (BatchNorm, LayerNorm)', 'normalization.py', ''),
    ('attention (softmax, bias, mask)', 'flax_sr/attention.py', ''),
    ('bicubic LR (the degradation)', 'flax_sr/resize.py', ''),
    ('loss', 'flax_sr/train.py', 'pixel_loss'),
)
# Activations are inlined jax primitives whose source is the model's own line.
ACTIVATION_PRIMITIVES = ('max', 'select_n', 'gt', 'logistic', 'erf', 'erf_inv', 'tanh',
                         'integer_pow', 'exp')


def parse_program(hlo_text: str) -> dict[str, dict]:
  """Instruction name -> {'opcode', 'shape', 'file', 'function', 'op_name', 'calls'} from the
  compiled program's text (all computations: fusion bodies, conditional branches)."""
  files = dict(re.findall(r'^(\d+) "(.*)"$', hlo_text.split('FunctionNames')[0], re.M))
  functions_part = hlo_text.split('FunctionNames')[-1].split('FileLocations')[0]
  functions = dict(re.findall(r'^(\d+) "(.*)"$', functions_part, re.M))
  locations = {m[0]: (m[1], m[2], m[3]) for m in re.findall(
      r'^(\d+) \{file_name_id=(\d+) function_name_id=(\d+) line=(\d+)', hlo_text, re.M)}
  frames = dict(re.findall(r'^(\d+) \{file_location_id=(\d+)', hlo_text, re.M))
  instructions = {}
  computation = None
  for line in hlo_text.splitlines():
    header = re.match(r'^(?:ENTRY )?%(\S+) .*\{$', line)
    if header:
      computation = header.group(1)
      continue
    match = re.match(r'^\s*(?:ROOT )?%(\S+) = (\S+(?: \S+)*?) (\S+?)\(', line)
    if not match:
      continue
    name, shape, opcode = match.groups()
    info = {'opcode': opcode, 'shape': shape.split('{')[0], 'computation': computation,
            'file': '', 'function': '', 'line': 0, 'op_name': '', 'calls': []}
    op_name = re.search(r'op_name="([^"]*)"', line)
    if op_name:
      info['op_name'] = op_name.group(1)
    frame = re.search(r'stack_frame_id=(\d+)', line)
    if frame and frames.get(frame.group(1)) in locations:
      file_id, function_id, source_line = locations[frames[frame.group(1)]]
      info.update(file=files.get(file_id, ''), function=functions.get(function_id, ''),
                  line=int(source_line))
    info['calls'] = re.findall(r'(?:calls|to_apply|branch_computations|body|condition)='
                               r'\{?%?([^,}\s]+)', line)
    instructions[name] = info
  return instructions


def op_stage(info: dict) -> str | None:
  """The stage of one (unfused or fused) operation; None for data plumbing."""
  opcode = info['opcode']
  if opcode in PRODUCTS:
    return 'products (dot, convolution)'
  if opcode in PLUMBING:
    return None
  for stage, file_part, function_part in SOURCE_STAGES:
    if file_part in info['file'] and function_part in info['function']:
      return stage
  if info['op_name'].rsplit('/', 1)[-1] in ACTIVATION_PRIMITIVES:
    return 'activations'
  if opcode in ('copy', 'transpose'):
    return 'copies and transposes'
  return 'other'


def stage_of(name: str, instructions: dict[str, dict]) -> str:
  """A product if it holds one; else the stage most of its operations belong to, and a
  second one where it holds at least a quarter of them (XLA fuses, say, BatchNorm's
  recomputation and ReLU's mask into a transform's read: that time is both)."""
  info = instructions[name]
  if info['opcode'] != 'fusion':
    return op_stage(info) or 'other'
  inside = [op_stage(i) for i in instructions.values() if i['computation'] in info['calls']]
  if 'products (dot, convolution)' in inside:
    return 'products (dot, convolution)'
  counts = collections.Counter(stage for stage in inside if stage)
  if not counts:
    return op_stage(info) or 'other'
  ranked = counts.most_common(2)
  if len(ranked) == 2 and ranked[1][1] >= 0.25 * sum(counts.values()):
    return ' + '.join(sorted(stage for stage, _ in ranked))
  return ranked[0][0]


def profile_step(step, state, batch, steps: int) -> tuple[dict[str, float], float]:
  """Per-instruction microseconds summed over ``steps`` traced steps, and their wall seconds."""
  holder = {'state': state}

  def run():
    holder['state'], metrics = step(holder['state'], batch)
    metrics['loss'].block_until_ready()

  run()
  run()
  with tempfile.TemporaryDirectory() as directory:
    jax.profiler.start_trace(directory, create_perfetto_trace=True)
    start = time.perf_counter()
    for _ in range(steps):
      run()
    wall = time.perf_counter() - start
    jax.profiler.stop_trace()
    path = glob.glob(f'{directory}/**/*.trace.json.gz', recursive=True)[0]
    with gzip.open(path) as f:
      trace = json.load(f)
  events = trace['traceEvents'] if isinstance(trace, dict) else trace
  durations = collections.Counter()
  for event in events:
    if event.get('ph') == 'X' and 'hlo_op' in event.get('args', {}):
      durations[event['args']['hlo_op']] += event.get('dur', 0.0)
  return dict(durations), wall


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--model', default='reference')
  parser.add_argument('--scale', type=int, default=None,
                      help='default: 96 / --input_size (the reference rows)')
  parser.add_argument('--input_size', type=int, default=32)
  parser.add_argument('--factors', default=None,
                      help='reference: upsample factors per block, e.g. 3,1,1,1')
  parser.add_argument('--features', type=int, default=None)
  parser.add_argument('--model_kwargs', default='{}', help='JSON of other model attributes')
  parser.add_argument('--batch', type=int, default=64)
  parser.add_argument('--loss', default='mse')
  parser.add_argument('--conv_impl', default='tuned', choices=['xla', 'matmul', 'tuned'])
  parser.add_argument('--steps', type=int, default=3)
  parser.add_argument('--top', type=int, default=12, help='also list the N slowest operations')
  parser.add_argument('--output_json')
  args = parser.parse_args(argv)

  scale = args.scale or 96 // args.input_size
  kwargs = dict(json.loads(args.model_kwargs), conv_impl=args.conv_impl)
  if args.factors:
    kwargs['upsample_factors'] = tuple(int(f) for f in args.factors.split(','))
  if args.features:
    kwargs['features'] = args.features
  model = models.create_model(args.model, scale=scale, **kwargs)
  state = train_lib.create_train_state(jax.random.key(0), model, optax.adam(1e-4),
                                       lr_shape=(1, args.input_size, args.input_size, 3))
  mesh = parallel.make_mesh()
  state = parallel.put_replicated(state, mesh)
  hr_size = args.input_size * scale
  hr = np.random.default_rng(0).integers(0, 256, (args.batch, hr_size, hr_size, 3), np.uint8)
  batch = parallel.put_batch({'hr': hr}, mesh)
  step = parallel.compile_train_step(mesh, loss=args.loss)
  instructions = parse_program(step.lower(state, batch).compile().as_text())
  durations, wall = profile_step(step, state, batch, args.steps)

  per_stage = collections.Counter()
  rows = []
  for name, micros in durations.items():
    info = instructions.get(name)
    if info is None or info['opcode'] in CONTAINERS:
      continue
    stage = stage_of(name, instructions)
    per_stage[stage] += micros / args.steps / 1e3
    rows.append((micros / args.steps / 1e3, name, stage, info))
  total = sum(per_stage.values())
  step_ms = wall / args.steps * 1e3
  title = (f'{args.model} x{scale}, batch {args.batch} of {args.input_size}x{args.input_size} '
           f'LR, {args.conv_impl} convolutions, {jax.devices()[0].device_kind}')
  print(title)
  print(f'step wall time {step_ms:.1f} ms; operations sum {total:.1f} ms')
  width = max(map(len, per_stage)) + 1
  print(f'{"stage":<{width}} {"ms/step":>9} {"share":>6}')
  for stage, ms in per_stage.most_common():
    print(f'{stage:<{width}} {ms:9.1f} {ms / total:6.1%}')
  rows.sort(key=lambda row: -row[0])
  print(f'\nslowest {args.top} operations (ms/step, instruction, stage, shape, source)')
  for ms, name, stage, info in rows[:args.top]:
    source = f'{pathlib.Path(info["file"]).name}:{info["line"]} {info["function"]}'
    print(f'{ms:8.2f}  {name:<30} {info["shape"]:<26} {source}\n          {stage}')
  if args.output_json:
    pathlib.Path(args.output_json).write_text(json.dumps({
        'title': title, 'step_ms': step_ms, 'operations_ms': total,
        'stages_ms': dict(per_stage),
        'slowest': [{'ms': ms, 'instruction': name, 'stage': stage, 'shape': info['shape'],
                     'file': info['file'], 'function': info['function'], 'line': info['line']}
                    for ms, name, stage, info in rows[:args.top]]}, indent=2))
  return 0


if __name__ == '__main__':
  sys.exit(main())
