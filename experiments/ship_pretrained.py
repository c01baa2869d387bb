"""Makes a training run the shipped ``--pretrained NAME`` weights (flax_sr/pretrained/).

    python experiments/ship_pretrained.py runs/sr291_x3 x3 --step latest \
        --trained_with "python experiments/sr291_x3.py --workdir runs/sr291_x3 --train_minutes 60"

Writes NAME.msgpack (float16 weights, the EMA when the run kept one) and NAME.json (the exact
training config, with no path of this machine; the data folders by name; the last evaluations
of the run; how it was trained). ``--step latest`` ships the final weights, which keeps the
test set (Set5) out of the choice; ``best`` picks the checkpoint of highest validation PSNR.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('workdir')
  parser.add_argument('name', help='the pretrained name, e.g. x3')
  parser.add_argument('--step', default='latest', help="'latest', 'best' or a step number")
  parser.add_argument('--trained_with', required=True,
                      help='the command that trained the run, and on which machine')
  parser.add_argument('--output_dir', help='default: the package (flax_sr/pretrained)')
  args = parser.parse_args(argv)
  from flax_sr import inference
  metrics = pathlib.Path(args.workdir) / 'metrics.jsonl'
  if not metrics.is_file():
    parser.error(f'{metrics} does not exist (is {args.workdir} a training run directory?)')
  loaded = inference.load_run(args.workdir, args.step)
  evaluations = [row for row in map(json.loads, metrics.read_text().splitlines())
                 if 'eval/model/psnr_y' in row]
  directory = pathlib.Path(args.output_dir) if args.output_dir else inference.PRETRAINED_DIR
  path = inference.save_pretrained(
      loaded, args.name, directory=directory,
      extra={'set5_eval_history': evaluations[-5:], 'trained_with': args.trained_with,
             'source': f'{loaded.config.dataset} x{loaded.config.scale} run, step '
                       f'{loaded.step} ({args.step})'})
  print(f'wrote {path} and {path.with_suffix(".json")} from {loaded.source}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
