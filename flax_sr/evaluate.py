"""Evaluation with the SR literature's protocol: ``python -m flax_sr.evaluate``.

    python -m flax_sr.evaluate --workdir runs/stl10_reference_x3            # its STL-10 test set
    python -m flax_sr.evaluate --workdir W --dataset folder --data_dir Set5/ --output_json r.json

Prints one table (model, bicubic and nearest-neighbour rows; PSNR and SSIM on Y and on RGB,
shave = scale; means over images) and the model's gain over bicubic. A folder evaluation crops
each HR image to a multiple of the scale and makes its LR input with the MATLAB-compatible
bicubic downscale.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Any, Callable

if __name__ == '__main__':
  # As a command: re-execute with the fast malloc before the heavy imports (cheap here).
  from flax_sr import host_allocator
  host_allocator.reexec_with_fast_malloc()

import jax
import numpy as np

from flax_sr import input_pipeline
from flax_sr import parallel
from flax_sr import pictures
from flax_sr import train as train_lib
from flax_sr.config import UserError

ROWS = ('model', 'bicubic', 'nearest')


def evaluate_images(eval_fn: Callable, variables, eval_set: input_pipeline.EvalSet, mesh,
                    batch_size: int) -> dict[str, dict[str, float]]:
  """Mean metrics over every image of ``eval_set``: {row: {metric: value}}.

  ``eval_fn(variables, batch) -> sums`` is a compiled ``train.eval_sums`` (or ``eval_step`` with
  a state as ``variables``). Same-size images go in padded, masked batches split over the
  devices; whole images of different sizes go one per batch, padded to the device count. In a
  multi-host run each process feeds its own part of every batch.
  """
  sums = None
  if eval_set.same_size:
    batch_size = -(-batch_size // mesh.size) * mesh.size
    batches = input_pipeline.eval_batches(eval_set.images, batch_size, mesh.size)
    global_batch = batch_size
  else:
    batches = (dict(next(input_pipeline.eval_batches(image[None], 1, mesh.size)),
                    gray=np.full(mesh.size, gray))
               for image, gray in zip(eval_set.images, eval_set.gray))
    global_batch = mesh.size
  local = input_pipeline.local_batch_slice(global_batch, jax.process_index(), jax.process_count())
  for batch in batches:
    batch = {k: v[local] for k, v in batch.items()}
    sums = train_lib.sum_eval(sums, eval_fn(variables, parallel.put_batch(batch, mesh)))
  return train_lib.summarize_eval(sums)


def format_table(table: dict[str, dict[str, float]], scale: int, dataset: str,
                 num_images: int, title: str = '', model_label: str = 'model') -> str:
  """The evaluation table: one row per method, PSNR/SSIM on Y and RGB, gain over bicubic.
  ``model_label`` names the model row (e.g. 'model+' for the self-ensemble)."""
  lines = [f'{title}Evaluation on {dataset} ({num_images} images, x{scale}, shave {scale}):',
           f'{"method":<10} {"PSNR-Y":>8} {"SSIM-Y":>8} {"PSNR-RGB":>9} {"SSIM-RGB":>9}']
  for row in ROWS:
    if row in table:
      v = table[row]
      label = model_label if row == 'model' else row
      lines.append(f'{label:<10} {v["psnr_y"]:8.3f} {v["ssim_y"]:8.4f} {v["psnr_rgb"]:9.3f} '
                   f'{v["ssim_rgb"]:9.4f}')
  if 'bicubic' in table:
    gain_psnr = table['model']['psnr_y'] - table['bicubic']['psnr_y']
    gain_ssim = table['model']['ssim_y'] - table['bicubic']['ssim_y']
    lines.append(f'{model_label} gain over bicubic: {gain_psnr:+.3f} dB PSNR-Y, '
                 f'{gain_ssim:+.4f} SSIM-Y')
  return '\n'.join(lines)


def results_json(table, scale: int, eval_set: input_pipeline.EvalSet, source: str) -> dict:
  keys = ('psnr_y', 'ssim_y', 'psnr_rgb', 'ssim_rgb')
  result: dict[str, Any] = {row: {k: table[row][k] for k in keys} for row in ROWS if row in table}
  result.update(scale=scale, num_images=len(eval_set), dataset=eval_set.name, checkpoint=source)
  return result


def save_outputs(upscaler, eval_set: input_pipeline.EvalSet, scale: int, directory: str):
  """Writes the model's SR output of every evaluation image as PNG, named after the HR file."""
  out_dir = pathlib.Path(directory)
  for image, name in zip(eval_set.images, eval_set.names):
    lr = np.asarray(train_lib.degrade(image, scale))
    pictures.save_png(upscaler(lr), out_dir / (pathlib.Path(name).with_suffix('.png')))


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
      prog='python -m flax_sr.evaluate',
      description='Evaluate a trained model against bicubic and nearest-neighbour baselines '
                  '(PSNR/SSIM on Y and RGB, shave = scale).')
  where = parser.add_mutually_exclusive_group(required=True)
  where.add_argument('--workdir', help='a training run (its best checkpoint by default)')
  where.add_argument('--checkpoint', help='a checkpoint folder WORKDIR/checkpoints/STEP')
  where.add_argument('--pretrained', help='weights shipped with the package, e.g. x3')
  parser.add_argument('--step', default='best', help="'best' (default), 'latest' or a step")
  parser.add_argument('--dataset', choices=('stl10', 'folder', 'sample'),
                      help="evaluation data (default: the run's own)")
  parser.add_argument('--data_dir', help='tfds data dir (stl10) or folder of HR images (folder)')
  parser.add_argument('--eval_examples', type=int, help='evaluate on the first N images only')
  parser.add_argument('--batch_size', type=int, default=32)
  parser.add_argument('--num_devices', type=int, help='use the first N devices (default: all)')
  parser.add_argument('--output_json', help='write the table as JSON to this file')
  parser.add_argument('--save_images', help='write the SR outputs as PNG into this folder')
  parser.add_argument('--self_ensemble', action='store_true',
                      help='x8 geometric self-ensemble (EDSR+): mean over flips/rotations; 8x '
                           'slower, reported as "model+"')
  args = parser.parse_args(argv)

  from flax_sr import inference
  if args.pretrained:
    loaded = inference.load_pretrained(args.pretrained)
  elif args.checkpoint:
    workdir, step = inference.checkpoint_path_to_run(args.checkpoint)
    loaded = inference.load_run(workdir, step)
  else:
    loaded = inference.load_run(args.workdir, args.step)
  config = loaded.config
  if args.dataset:
    config.dataset, config.data_dir, config.eval_data_dir = args.dataset, args.data_dir, None
    if args.dataset == 'folder':
      if not args.data_dir:
        raise UserError('--dataset folder needs --data_dir DIR of HR images')
      config.eval_data_dir = args.data_dir
  elif args.data_dir:
    config.data_dir = args.data_dir
  if args.eval_examples is not None:
    config.eval_examples = args.eval_examples
  scale = loaded.model.scale
  eval_set = input_pipeline.make_eval_set(config)
  mesh = parallel.make_mesh(args.num_devices)
  eval_fn = parallel.compile_eval_sums(mesh, loaded.model, baselines=('bicubic', 'nearest'),
                                       self_ensemble=args.self_ensemble)
  variables = parallel.put_replicated(loaded.variables, mesh)
  table = evaluate_images(eval_fn, variables, eval_set, mesh, args.batch_size)
  print(format_table(table, scale, eval_set.name, len(eval_set),
                     title=f'{config.model} x{scale} ({loaded.source})'
                           f'{", x8 self-ensemble" if args.self_ensemble else ""}\n',
                     model_label='model+' if args.self_ensemble else 'model'))
  if args.output_json:
    path = pathlib.Path(args.output_json)
    path.parent.mkdir(parents=True, exist_ok=True)
    result = results_json(table, scale, eval_set, loaded.source)
    result['self_ensemble'] = args.self_ensemble
    path.write_text(json.dumps(result, indent=2))
    print(f'wrote {path}')
  if args.save_images:
    save_outputs(inference.Upscaler(loaded, mesh=mesh, self_ensemble=args.self_ensemble),
                 eval_set, scale, args.save_images)
    print(f'wrote {len(eval_set)} images to {args.save_images}')
  return 0


if __name__ == '__main__':
  from flax_sr.main import run_cli
  sys.exit(run_cli(main))
