"""Command line: ``python -m flax_sr.main --input_size 32`` trains the reference model.

Every option of ``Config`` is a flag; ``--help`` explains each. Bad options are reported in one
line with exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from flax_sr import cli
from flax_sr.cli import parse_bool, parse_float_list, parse_int_list, run_cli
from flax_sr.config import Config

HELP = {
    'dataset': 'training data: stl10 (tfds, default), folder (images under --data_dir), or '
               'sample (photos shipped with scikit-image; no download)',
    'data_dir': 'tfds data dir for stl10 (tfds default when unset), or the image folder for '
                '--dataset folder',
    'eval_data_dir': 'folder of HR images to evaluate on (e.g. Set5); default: the stl10 test '
                     'split / the sample\'s held-out photos / the training folder',
    'hr_size': 'HR training image (crop) size',
    'input_size': 'LR input size; the scale is hr_size / input_size (16 -> x6, 32 -> x3)',
    'augment': 'random flips and 90-degree rotations of training images',
    'patches_per_image': 'folder dataset: random HR crops per image per epoch',
    'crops_by_area': 'folder dataset: draw crops from each image in proportion to its area '
                     '(default: the same number from every image)',
    'image_scales': 'folder dataset: train on each image at these scales, e.g. 1,0.9,0.8,0.7,0.6 '
                    '(downscaled copies, the SRCNN/VDSR augmentation of T91)',
    'eval_examples': 'evaluate on the first N images only (quick runs)',
    'model': 'network: reference (the original design), espcn, edsr',
    'features': 'channels per convolution (default: the model\'s own, 64)',
    'num_blocks': 'reference model: number of conv-BN-ReLU-upsample blocks',
    'num_res_blocks': 'edsr: number of residual blocks',
    'upsample_factors': 'reference model: per-block upsample factors, e.g. 3,1,1,1 (product = '
                        'scale); default: on the last blocks, e.g. 1,1,1,3',
    'global_residual': 'predict the difference to the bicubic upscale of the input',
    'dtype': 'computation dtype: float32 or bfloat16 (parameters stay float32)',
    'conv_impl': 'convolutions: xla (flax.linen.Conv), matmul (im2col products with a custom '
                 'VJP, the reference model\'s upsample folded in; 1.7-4.6x faster on CPU), tuned '
                 '(per layer shape: Winograd F(2x2,3x3), or XLA where faster), or auto (tuned on '
                 'CPU, xla on GPU/TPU)',
    'batch_size': 'global batch size (split over devices)',
    'num_epochs': 'training epochs',
    'num_train_steps': 'training steps (overrides --num_epochs when set)',
    'train_minutes': 'wall-clock training budget in minutes; then checkpoint and evaluate',
    'learning_rate': 'Adam (peak) learning rate',
    'lr_schedule': 'constant, or cosine (warm-up then cosine decay to 1%%)',
    'warmup_steps': 'warm-up steps of the cosine schedule',
    'loss': 'pixel loss: mse, l1 or charbonnier',
    'ema_decay': 'keep an exponential moving average of the weights with this decay (e.g. '
                 '0.999) and evaluate it; 0 turns it off',
    'seed': 'seed for initialisation and the data order',
    'eval_every': 'evaluate every N steps (default: at the end of every epoch)',
    'eval_batch_size': 'evaluation batch size (default: --batch_size)',
    'log_every': 'log training scalars every N steps',
    'checkpoint_every': 'save a checkpoint every N steps (also at each epoch end and evaluation)',
    'keep_checkpoints': 'keep the last N checkpoints (the best by PSNR is always kept)',
    'resume': 'continue from the latest checkpoint in --workdir (false: refuse to train over an '
              'existing run)',
    'num_devices': 'use the first N local devices (default: all)',
    'distributed': 'multi-host: call jax.distributed.initialize() first',
    'num_grid_images': 'images in each comparison picture',
}


def add_config_flags(parser: argparse.ArgumentParser, defaults: Config | None = None):
  """One flag per ``Config`` field, typed from its default."""
  defaults = defaults or Config()
  for field in dataclasses.fields(Config):
    default = getattr(defaults, field.name)
    kwargs = {'default': default, 'help': HELP.get(field.name, '') + f' (default: {default})'}
    if field.name == 'upsample_factors':
      kwargs['type'] = parse_int_list
    elif field.name == 'image_scales':
      kwargs['type'] = parse_float_list
    elif isinstance(default, bool):
      kwargs.update(type=parse_bool, nargs='?', const=True, metavar='BOOL')
    elif field.name in ('num_train_steps', 'eval_every', 'eval_batch_size', 'eval_examples',
                        'num_devices', 'features'):
      kwargs['type'] = int
    elif field.name == 'train_minutes':
      kwargs['type'] = float
    elif field.name in ('data_dir', 'eval_data_dir'):
      kwargs['type'] = str
    else:
      kwargs['type'] = type(default)
    parser.add_argument(f'--{field.name}', **kwargs)


def config_from_args(args: argparse.Namespace) -> Config:
  return Config(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Config)})


def main(argv=None) -> int:
  parser = cli.ArgumentParser(
      prog='python -m flax_sr.main',
      description='Train a super-resolution model (default: the reference CNN on STL-10, '
                  '32x32 -> 96x96), evaluating against bicubic as it goes.')
  parser.add_argument('--workdir', default=None,
                      help='where checkpoints, logs and pictures go (default: '
                           'runs/<dataset>_<model>_x<scale>); an existing run there is resumed')
  add_config_flags(parser)
  args = parser.parse_args(argv)
  config = config_from_args(args).validate()
  workdir = args.workdir or os.path.join('runs', f'{config.dataset}_{config.model}_x{config.scale}')
  from flax_sr import trainer  # imported after validation: bad flags fail fast
  trainer.train_and_evaluate(config, workdir)
  return 0


if __name__ == '__main__':
  from flax_sr import host_allocator
  host_allocator.reexec_with_fast_malloc()
  sys.exit(run_cli(main))
