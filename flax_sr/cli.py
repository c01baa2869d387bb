"""The command-line toolkit every flax_sr tool shares: running a tool (one-line errors, exit
codes) and parsing list and boolean flags. Imports no JAX, so ``--help`` and bad flags answer
at once."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import typing

from flax_sr.config import Config, UserError


class ArgumentParser(argparse.ArgumentParser):
  """argparse with the tools' one-line errors: ``error: ...`` and exit code 2, no usage dump."""

  def error(self, message: str):
    self.exit(2, f'error: {message} (see {self.prog} --help)\n')


def parse_bool(text: str) -> bool:
  lowered = str(text).lower()
  if lowered in ('1', 'true', 'yes', 'on'):
    return True
  if lowered in ('0', 'false', 'no', 'off'):
    return False
  raise argparse.ArgumentTypeError(f'expected true or false, got {text!r}')


def _parse_list(text: str, kind: type, example: str) -> tuple:
  try:
    return tuple(kind(v) for v in text.strip('()[] ').replace(' ', '').split(',') if v)
  except ValueError:
    raise argparse.ArgumentTypeError(f'expected comma-separated {kind.__name__}s like {example}, '
                                     f'got {text!r}')


def parse_int_list(text: str) -> tuple[int, ...]:
  return _parse_list(text, int, '1,1,1,3')


def parse_float_list(text: str) -> tuple[float, ...]:
  return _parse_list(text, float, '1,0.8,0.6')


def _flag_type(annotation) -> tuple[callable, dict]:
  """The parser and extra argparse arguments for a ``Config`` field's declared type."""
  args = [a for a in typing.get_args(annotation) if a is not type(None)]
  if typing.get_origin(annotation) in (typing.Union, getattr(__import__('types'), 'UnionType')):
    annotation = args[0]  # X | None: parse X; None is the default's business
  if typing.get_origin(annotation) is tuple:
    element = typing.get_args(annotation)[0]
    return (parse_int_list if element is int else parse_float_list), {}
  if annotation is bool:
    return parse_bool, {'nargs': '?', 'const': True, 'metavar': 'BOOL'}
  return annotation, {}


def add_config_flags(parser: argparse.ArgumentParser, defaults: Config | None = None,
                     skip: tuple[str, ...] = ('preset',)):
  """One flag per ``Config`` field: help from the field's declaration, type from its
  annotation, default from ``defaults`` (a preset's values over ``Config``'s)."""
  defaults = defaults or Config()
  hints = typing.get_type_hints(Config)
  for field in dataclasses.fields(Config):
    if field.name in skip:
      continue
    default = getattr(defaults, field.name)
    text = field.metadata.get('help', '')
    if 'default' not in text:
      shown = ','.join(map(str, default)) if isinstance(default, tuple) else default
      text += f' (default: {shown})'
    kind, extra = _flag_type(hints[field.name])
    parser.add_argument(f'--{field.name}', type=kind, default=default,
                        help=text.replace('%', '%%'), **extra)


def config_from_args(args: argparse.Namespace, **fixed) -> Config:
  values = {f.name: getattr(args, f.name) for f in dataclasses.fields(Config)
            if hasattr(args, f.name)}
  return Config(**{**values, **fixed})


def run_cli(main_fn, argv=None) -> int:
  """Runs a command-line tool: one-line errors with exit code 2 (``UserError``, and file-system
  errors naming their path), Ctrl-C without a traceback."""
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')
  for noisy in ('absl', 'orbax', 'jax._src.xla_bridge', 'tensorflow'):
    logging.getLogger(noisy).setLevel(logging.ERROR)
  try:
    return main_fn(argv) or 0
  except UserError as error:
    print(f'error: {error}', file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print('interrupted', file=sys.stderr)
    return 130
  except OSError as error:
    if error.filename is None:
      raise  # not about a path the user gave: a bug to report, with its traceback
    print(f'error: {error.strerror or error}: {error.filename}', file=sys.stderr)
    return 2


def positive_int(text: str) -> int:
  try:
    value = int(text)
  except ValueError:
    value = 0
  if value < 1:
    raise argparse.ArgumentTypeError(f'expected a positive integer, got {text!r}')
  return value


def non_negative_int(text: str) -> int:
  if not text.isdigit():
    raise argparse.ArgumentTypeError(f'expected a whole number >= 0, got {text!r}')
  return int(text)


def parse_step(text: str) -> str | int:
  """'best', 'latest' or a step number."""
  if text in ('best', 'latest'):
    return text
  if text.isdigit():
    return int(text)
  raise argparse.ArgumentTypeError(f"expected 'best', 'latest' or a step number, got {text!r}")


def add_shape_buckets_flag(parser: argparse.ArgumentParser) -> None:
  """``--shape_buckets N`` of the evaluation tools (``flax_sr.shape_buckets``)."""
  parser.add_argument('--shape_buckets', type=non_negative_int,
                      default=Config.eval_shape_buckets,
                      help='images of different sizes are padded into at most N shapes, one '
                           'compilation each, with the scores unchanged (the padding is masked; '
                           'the model too when it is convolutional, without --self_ensemble); '
                           '0: compile for every image shape (default: %(default)s)')


def add_model_source_flags(parser: argparse.ArgumentParser, required: bool = True):
  """--workdir / --checkpoint / --pretrained (one of them) and --step: where a tool's model
  comes from. ``load_model_from_flags`` loads it."""
  where = parser.add_mutually_exclusive_group(required=required)
  where.add_argument('--workdir', help='a training run (its best checkpoint by default)')
  where.add_argument('--checkpoint', help='a checkpoint folder WORKDIR/checkpoints/STEP')
  where.add_argument('--pretrained', help='weights shipped with the package: x2, x3 or x4')
  where.add_argument('--weights', metavar='FILE',
                     help='a published PyTorch checkpoint (.pth/.pt/.ckpt/.safetensors) of '
                          'ESRGAN\'s RRDBNet or Real-ESRGAN\'s SRVGGNetCompact; settings are '
                          'detected from its keys and shapes (x3 RRDBNets need --weights_scale 3)')
  parser.add_argument('--weights_scale', type=positive_int,
                      help='with --weights: the scale, where the state dict cannot tell it')
  parser.add_argument('--step', default='best', type=parse_step,
                      help="with --workdir: 'best' by validation PSNR (default), 'latest' or a "
                           "step number")


def add_degradation_flags(parser: argparse.ArgumentParser) -> None:
  """--degradation / --degradation_seed / --degradation_options of the evaluation tools:
  evaluate on realistically degraded LR inputs (each image once, from a fixed key)."""
  parser.add_argument('--degradation', choices=('bicubic', 'realesrgan'), default='bicubic',
                      help='LR inputs: bicubic (MATLAB, the benchmark protocol; default) or '
                           "realesrgan (Real-ESRGAN's random blur/resize/noise/JPEG, image i "
                           'of a set degraded with fold_in(key(seed), i): reproducible)')
  parser.add_argument('--degradation_seed', type=non_negative_int, default=0,
                      help='with --degradation realesrgan: the seed of the degradations')
  parser.add_argument('--degradation_options', metavar='NAME=VALUE,...',
                      help='with --degradation realesrgan: its ranges and probabilities '
                           '(see flax_sr/degradation_settings.py)')


def degradation_from_flags(args: argparse.Namespace):
  """The Real-ESRGAN settings ``add_degradation_flags``' flags ask for (None: bicubic)."""
  if args.degradation != 'realesrgan' and args.degradation_seed:
    raise UserError('--degradation_seed applies to --degradation realesrgan only')
  return Config(dataset='sample', degradation=args.degradation,
                degradation_options=args.degradation_options).degradation_settings()


def load_model_from_flags(args: argparse.Namespace):
  """The ``inference.LoadedModel`` that ``add_model_source_flags``' flags name (None if none)."""
  from flax_sr import inference  # imports JAX: only once the flags are known to be valid
  if args.pretrained:
    return inference.load_pretrained(args.pretrained)
  if args.checkpoint:
    workdir, step = inference.checkpoint_path_to_run(args.checkpoint)
    return inference.load_run(workdir, step)
  if args.workdir:
    return inference.load_run(args.workdir, args.step)
  if getattr(args, 'weights', None):
    return inference.load_weights(args.weights, args.weights_scale)
  return None


INFORMATIONAL_FLAGS = frozenset({'-h', '--help', '--version', '--list_configs'})


def console_main(main_fn) -> None:
  """A command's entry point (``python -m flax_sr.X`` and the ``flax-sr-*`` console scripts):
  the fast-malloc re-exec on CPU (see ``host_allocator``), then ``run_cli``."""
  from flax_sr import host_allocator
  if not INFORMATIONAL_FLAGS & set(sys.argv[1:]):  # nothing heavy runs for those
    host_allocator.reexec_with_fast_malloc()
  sys.exit(run_cli(main_fn))
