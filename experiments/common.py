"""Shared runner for the experiment files: each experiment is a preset (``flax_sr/configs``, the
same recipe ``python -m flax_sr.main --config NAME`` trains) trained with ``flax_sr.trainer``
and evaluated with the full protocol (model, bicubic, nearest).

Every experiment runs as

    python experiments/NAME.py --workdir W [--data_dir D] [--train_minutes M] [--quick]

``--train_minutes`` is a wall-clock training budget (then the run checkpoints and evaluates);
``--quick`` trains a tiny model for two steps so CI can check that the file still runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from flax_sr.config import Config  # noqa: E402

SHARED_DATA = REPO.parent / 'shared' / 'data'
QUICK = dict(num_train_steps=2, eval_every=2, features=8, batch_size=8, eval_examples=8,
             log_every=1, num_grid_images=2)


def default_data_dir(dataset: str) -> str | None:
  """The shared copies beside a developer checkout, when present."""
  candidates = {'stl10': SHARED_DATA / 'tfds', 'folder': SHARED_DATA / 'sr' / 'T91'}
  path = candidates.get(dataset)
  return str(path) if path is not None and path.exists() else None


def experiment_config(name: str, data_dir: str | None = None, eval_data_dir: str | None = None,
                      train_minutes: float | None = None, quick: bool = False) -> Config:
  """The preset ``name`` with the experiment's data folders and budget."""
  from flax_sr import configs
  preset_name, values = configs.load(name)
  values['data_dir'] = data_dir or values.get('data_dir') or default_data_dir(
      values.get('dataset', 'stl10'))
  if eval_data_dir:
    values['eval_data_dir'] = eval_data_dir
  if train_minutes:
    values['train_minutes'] = train_minutes
  if quick:
    values.update(QUICK)
    values.pop('train_minutes', None)
    # A warm-up must end before the run does: at most one of the two quick steps.
    values['warmup_steps'] = min(values.get('warmup_steps', 0), 1)
    # Channel attention's reduction must divide the quick model's few features.
    if values.get('channel_attention'):
      values['channel_attention'] = min(values['channel_attention'], QUICK['features'] // 2)
  return Config(**values, preset=preset_name)


def add_folder_run_flags(parser: argparse.ArgumentParser) -> None:
  """--workdir, --data_dir (T91 by default) and --eval_data_dir (Set5 by default) of the
  experiments that train on a folder and evaluate whole images themselves."""
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--data_dir', help='training images (default: ../shared T91)')
  set5 = SHARED_DATA / 'sr' / 'Set5'
  parser.add_argument('--eval_data_dir', default=str(set5) if set5.exists() else None,
                      help='evaluation HR images (default: %(default)s)')


def check_eval_data_dir(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
  if not args.eval_data_dir:
    parser.error('--eval_data_dir is needed (no ../shared Set5 beside this checkout)')


def run(name: str, argv=None, eval_data_dir: str | None = None,
        data_dir: str | None = None) -> dict:
  from flax_sr import host_allocator
  host_allocator.reexec_with_fast_malloc()  # run() is only called from __main__ blocks
  from flax_sr import cli, configs
  parser = argparse.ArgumentParser(
      prog=f'python experiments/{name}.py',
      description=f'Experiment {name}: {configs.summary(name)} Trains the preset of that name '
                  f'(python -m flax_sr.main --config {name} runs the same recipe) and prints '
                  f'the final table with nearest, bicubic and the model.')
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--data_dir', default=data_dir,
                      help='training data (default: the copy in ../shared beside a developer '
                           'checkout, when present)')
  parser.add_argument('--eval_data_dir', default=eval_data_dir,
                      help='folder of HR evaluation images (default: %(default)s)')
  parser.add_argument('--train_minutes', type=float, help='wall-clock training budget')
  parser.add_argument('--quick', action='store_true', help='a tiny 2-step run (CI)')
  args = parser.parse_args(argv)

  from flax_sr import evaluation
  from flax_sr import inference, input_pipeline, parallel, trainer
  config = experiment_config(name, args.data_dir, args.eval_data_dir, args.train_minutes,
                             args.quick)

  def main(_argv):
    summary = trainer.train_and_evaluate(config, args.workdir)
    # The final table, with the nearest-neighbour row too, of the best checkpoint.
    loaded = inference.load_run(args.workdir, 'best')
    eval_set = input_pipeline.make_eval_set(loaded.config)
    mesh = parallel.make_mesh()
    eval_fn = parallel.compile_eval_sums(mesh, loaded.model, baselines=('bicubic', 'nearest'))
    table = evaluation.evaluate_images(eval_fn, parallel.put_replicated(loaded.variables, mesh),
                                         eval_set, mesh, 64)
    print(evaluation.format_table(table, loaded.model.scale, eval_set.name, len(eval_set),
                                    title=f'{name} ({loaded.source})\n'))
    result = evaluation.results_json(table, loaded.model.scale, eval_set, loaded.source)
    result.update(experiment=name, config=dataclasses.asdict(config),
                  train_seconds=summary['train_seconds'], steps=summary['step'])
    path = pathlib.Path(args.workdir) / 'results.json'
    path.write_text(json.dumps(result, indent=2, default=str))
    print(f'wrote {path}')
    return 0

  sys.exit(cli.run_cli(main))
