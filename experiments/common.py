"""Shared runner for the experiment files: each experiment is a Config (its recipe) trained with
``flax_sr.trainer`` and evaluated with the full protocol (model, bicubic, nearest).

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


def run(name: str, recipe: dict, argv=None, eval_data_dir: str | None = None) -> dict:
  from flax_sr import host_allocator
  host_allocator.reexec_with_fast_malloc()  # run() is only called from __main__ blocks
  parser = argparse.ArgumentParser(prog=f'python experiments/{name}.py',
                                   description=f'experiment {name}: {recipe}')
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--data_dir', help='default: ../shared data when present')
  parser.add_argument('--eval_data_dir', default=eval_data_dir)
  parser.add_argument('--train_minutes', type=float, help='wall-clock training budget')
  parser.add_argument('--quick', action='store_true', help='a tiny 2-step run (CI)')
  args = parser.parse_args(argv)

  from flax_sr import evaluation
  from flax_sr import inference, input_pipeline, parallel, trainer
  from flax_sr.cli import run_cli

  values = dict(recipe)
  values['data_dir'] = args.data_dir or values.get('data_dir') or default_data_dir(
      values.get('dataset', 'stl10'))
  if args.eval_data_dir:
    values['eval_data_dir'] = args.eval_data_dir
  if args.train_minutes:
    values['train_minutes'] = args.train_minutes
  if args.quick:
    values.update(QUICK)
    values.pop('train_minutes', None)
  config = Config(**values)

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

  sys.exit(run_cli(main))
