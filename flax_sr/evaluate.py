"""Evaluation with the SR literature's protocol: ``python -m flax_sr.evaluate``.

    python -m flax_sr.evaluate --workdir runs/stl10_reference_x3            # its STL-10 test set
    python -m flax_sr.evaluate --workdir W --dataset folder --data_dir Set5/ --output_json r.json

Prints one table (model, bicubic and nearest-neighbour rows; PSNR and SSIM on Y and on RGB,
shave = scale; means over images) and the model's gain over bicubic. A folder evaluation crops
each HR image to a multiple of the scale and makes its LR input with the MATLAB-compatible
bicubic downscale.
"""

from __future__ import annotations

import json
import pathlib
import sys

from flax_sr import cli
from flax_sr.config import DIV2K_CONFIGS, UserError

def save_outputs(upscaler, eval_set, scale: int, directory: str):
  """Writes the model's SR output of every evaluation image as PNG, named after the HR file."""
  import numpy as np
  from flax_sr import pictures
  from flax_sr import train as train_lib
  out_dir = pathlib.Path(directory)
  for i, (image, name) in enumerate(zip(eval_set.images, eval_set.names)):
    lr = (eval_set.lr_images[i] if eval_set.lr_images is not None
          else np.asarray(train_lib.degrade(image, scale)))
    pictures.save_png(upscaler(lr), out_dir / (pathlib.Path(name).with_suffix('.png')))


def main(argv=None) -> int:
  parser = cli.ArgumentParser(
      prog='python -m flax_sr.evaluate',
      description='Evaluate a trained model against bicubic and nearest-neighbour baselines '
                  '(PSNR/SSIM on Y and RGB, shave = scale).')
  cli.add_model_source_flags(parser)
  parser.add_argument('--dataset', choices=('stl10', 'folder', 'sample', 'div2k'),
                      help="evaluation data (default: the run's own); div2k: its 100 "
                           'validation images (tfds)')
  parser.add_argument('--data_dir', help='tfds data dir (stl10, div2k) or folder of HR images '
                                         '(folder)')
  parser.add_argument('--div2k_config', choices=DIV2K_CONFIGS,
                      help='with --dataset div2k: the tfds configuration (default bicubic_x4)')
  parser.add_argument('--eval_dataset_lr', action='store_true',
                      help="with --dataset div2k: upscale the configuration's own LR images "
                           '(e.g. unknown_x4) instead of a bicubic LR made from the HR')
  parser.add_argument('--lr_data_dir',
                      help='with --dataset folder: real LR partners of the --data_dir images '
                           '(paired evaluation, matched by name as in training; the LR is used '
                           'as it is, not made by bicubic downscaling)')
  parser.add_argument('--eval_examples', type=cli.positive_int,
                      help='evaluate on the first N images only')
  parser.add_argument('--batch_size', type=cli.positive_int, default=32)
  cli.add_shape_buckets_flag(parser)
  parser.add_argument('--num_devices', type=cli.positive_int,
                      help='use the first N devices (default: all)')
  parser.add_argument('--output_json', help='write the table as JSON to this file')
  parser.add_argument('--lpips', choices=('alex', 'vgg', 'none'), default='alex',
                      help='LPIPS network of the LPIPS column (default: alex, as papers report '
                           'it; none leaves the column out); needs the [perceptual] extra')
  cli.add_degradation_flags(parser)
  parser.add_argument('--save_images', help='write the SR outputs as PNG into this folder')
  parser.add_argument('--self_ensemble', action='store_true',
                      help='x8 geometric self-ensemble (EDSR+): mean over flips/rotations; 8x '
                           'slower, reported as "model+"')
  args = parser.parse_args(argv)
  degradation = cli.degradation_from_flags(args)  # bad options: one line, before any loading
  if (args.div2k_config or args.eval_dataset_lr) and args.dataset != 'div2k':
    raise UserError('--div2k_config and --eval_dataset_lr go with --dataset div2k')
  if args.lr_data_dir and args.dataset != 'folder':
    raise UserError('--lr_data_dir needs --dataset folder --data_dir HR_DIR (the HR partners)')

  loaded = cli.load_model_from_flags(args)
  # JAX and the data code only now, once the flags are known to be valid.
  from flax_sr import evaluation, inference, input_pipeline, lpips, parallel, shape_buckets
  config = loaded.config
  lpips_weights = None if args.lpips == 'none' else lpips.installed_weights(args.lpips)
  if args.lpips != 'none' and lpips_weights is None:
    print(lpips.MISSING_NOTE, file=sys.stderr)
  if args.dataset:
    config.dataset, config.data_dir, config.eval_data_dir = args.dataset, args.data_dir, None
    config.lr_data_dir = config.eval_lr_data_dir = None
    config.eval_dataset_lr = args.eval_dataset_lr
    if args.div2k_config:
      config.div2k_config = args.div2k_config
    if args.dataset == 'folder':
      if not args.data_dir:
        raise UserError('--dataset folder needs --data_dir DIR of HR images')
      config.eval_data_dir, config.eval_lr_data_dir = args.data_dir, args.lr_data_dir
  elif args.data_dir:
    config.data_dir = args.data_dir
  if degradation is not None and (config.eval_lr_data_dir or config.eval_dataset_lr):
    raise UserError('--degradation makes the LR inputs; it does not combine with paired LR '
                    'images (--lr_data_dir, or the run\'s own --eval_lr_data_dir)')
  if args.eval_examples is not None:
    config.eval_examples = args.eval_examples
  if config.dataset == 'folder' and not (config.eval_data_dir or config.data_dir):
    raise UserError(f'{loaded.source} names no evaluation images of its own; pass --dataset '
                    f'folder --data_dir DIR (a folder of HR images, e.g. Set5)')
  scale = loaded.model.scale
  eval_set = input_pipeline.make_eval_set(config)
  if degradation is not None:
    eval_set = evaluation.degraded_eval_set(eval_set, scale, degradation, args.degradation_seed)
  mesh = parallel.make_mesh(args.num_devices)
  eval_fn = parallel.compile_eval_sums(mesh, loaded.model, lpips_weights,
                                       baselines=('bicubic', 'nearest'),
                                       self_ensemble=args.self_ensemble)
  variables = parallel.put_replicated(loaded.variables, mesh)
  buckets = args.shape_buckets
  if buckets and not shape_buckets.supports_model(loaded.model, args.self_ensemble):
    buckets = 0
    if not eval_set.same_size and len({i.shape for i in eval_set.images}) > 1:
      print(f'note: {config.model}{" with --self_ensemble" * args.self_ensemble} is evaluated '
            'at each image shape (a compilation each): shape buckets need a convolutional '
            'model without the self-ensemble', file=sys.stderr)
  table = evaluation.evaluate_images(eval_fn, variables, eval_set, mesh, args.batch_size,
                                     buckets)
  print(evaluation.format_table(table, scale, eval_set.name, len(eval_set),
                     title=f'{config.model} x{scale} ({loaded.source})'
                           f'{", x8 self-ensemble" if args.self_ensemble else ""}\n',
                     model_label='model+' if args.self_ensemble else 'model'))
  if args.output_json:
    path = pathlib.Path(args.output_json)
    path.parent.mkdir(parents=True, exist_ok=True)
    result = evaluation.results_json(table, scale, eval_set, loaded.source)
    result['self_ensemble'] = args.self_ensemble
    result['degradation'] = {'kind': args.degradation, 'seed': args.degradation_seed,
                             'options': args.degradation_options} if degradation else 'bicubic'
    result['lpips_net'] = args.lpips if lpips_weights is not None else None
    temporary = path.with_name(f'.{path.name}.partial')  # never a half-written file
    temporary.write_text(json.dumps(result, indent=2, allow_nan=False))
    temporary.replace(path)
    print(f'wrote {path}')
  if args.save_images:
    save_outputs(inference.Upscaler(loaded, mesh=mesh, self_ensemble=args.self_ensemble),
                 eval_set, scale, args.save_images)
    print(f'wrote {len(eval_set)} images to {args.save_images}')
  return 0


def console() -> None:
  cli.console_main(main)


if __name__ == '__main__':
  console()
