"""Command line: ``python -m flax_sr.main --input_size 32`` trains the reference model.

    python -m flax_sr.main --config improved_x3              # a named recipe (flax_sr/configs)
    python -m flax_sr.main --config t91_x3 --data_dir T91/ --eval_data_dir Set5/
    python -m flax_sr.main --list_configs

Every option of ``Config`` is a flag; ``--help`` explains each. A preset sets a whole recipe and
explicit flags override it. Bad options are reported in one line with exit code 2, before JAX
is imported.
"""

from __future__ import annotations

import argparse
import dataclasses
import os

from flax_sr import cli
from flax_sr import configs
from flax_sr.config import Config

def version() -> str:
  from importlib import metadata
  try:
    return metadata.version('flax_sr')
  except metadata.PackageNotFoundError:
    return 'unknown (not installed)'


def parse_config(argv=None) -> tuple[Config, str] | None:
  """The validated run configuration and workdir the command line asks for (None after
  --list_configs); imports no JAX."""
  # The preset first: its values become the defaults that explicit flags override.
  early = argparse.ArgumentParser(add_help=False)
  early.add_argument('--config')
  early.add_argument('--list_configs', action='store_true')
  known, _ = early.parse_known_args(argv)
  if known.list_configs:
    for name in configs.names():
      print(f'{name:<16} {configs.summary(name)}')
    return None
  preset_name, preset = configs.load(known.config) if known.config else (None, {})
  parser = cli.ArgumentParser(
      prog='python -m flax_sr.main',
      description='Train a super-resolution model (default: the reference CNN on STL-10, '
                  '32x32 -> 96x96), evaluating against bicubic as it goes.')
  parser.add_argument('--config', help='a named recipe (see --list_configs) or a .py preset file; '
                                       'explicit flags override it')
  parser.add_argument('--list_configs', action='store_true', help='list the presets and exit')
  parser.add_argument('--version', action='version', version=f'flax_sr {version()}')
  parser.add_argument('--workdir', default=None,
                      help='where checkpoints, logs and pictures go (default: '
                           'runs/<dataset>_<model>_x<scale>); an existing run there is resumed')
  cli.add_config_flags(parser, dataclasses.replace(Config(), **preset))
  args = parser.parse_args(argv)
  config = cli.config_from_args(args, preset=preset_name).validate()
  workdir = args.workdir or os.path.join('runs', f'{config.dataset}_{config.model}_x{config.scale}')
  return config, workdir


def main(argv=None) -> int:
  parsed = parse_config(argv)
  if parsed is None:
    return 0
  from flax_sr import trainer  # imported after validation: bad flags fail fast
  summary = trainer.train_and_evaluate(*parsed)
  # Stopped by SIGTERM/SIGINT (checkpoint saved): 143/130, so a scheduler requeues the run.
  return trainer.SIGNAL_EXIT_CODES.get(summary['stopped_by'], 0)


def console() -> None:
  cli.console_main(main)


if __name__ == '__main__':
  console()
