"""Experiment realesrgan_x4: the same compact model trained on bicubic LR and on Real-ESRGAN's
realistic LR for the same time, both evaluated on realistically degraded Set5 (fixed seed) and
on bicubic Set5, with a comparison grid.

    python experiments/realesrgan_x4.py --workdir runs/realesrgan_x4 --train_minutes 10 \
        [--data_dir T91/ --eval_data_dir Set5/ --degradation_seed 0]

Both runs use the preset ``realesrgan_cpu_x4`` (SRVGGNet 32x8, L1, x4); the bicubic one with
``degradation='bicubic'``. Each is a normal flax_sr run in WORKDIR/bicubic and
WORKDIR/realesrgan (resumable). The evaluation: whole Set5 images, LR by
``degradations.evaluation_lr`` (image i with fold_in(key(seed), i), what ``evaluate
--degradation realesrgan`` uses) and by MATLAB bicubic; PSNR/SSIM on Y with a 4-pixel shave.
WORKDIR/results.json holds the tables; WORKDIR/grid.png shows, per image, the degraded LR
(nearest), the bicubic-trained and the realistic-trained outputs, and HR. ``--quick`` runs two
steps of each (CI).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys

from common import add_folder_run_flags, check_eval_data_dir, experiment_config

PRESET = 'realesrgan_cpu_x4'
TRAINING = ('bicubic', 'realesrgan')


def evaluate(runs: dict[str, pathlib.Path], eval_data_dir: str, seed: int
             ) -> tuple[dict[str, dict], list]:
  """({lr_kind: {method: {psnr_y, ssim_y}}}, grid rows) on every image of ``eval_data_dir``."""
  import jax
  import numpy as np
  from flax_sr import degradation_settings, degradations, inference, input_pipeline, metrics
  from flax_sr import resize, train
  models = {name: inference.load_run(workdir, 'best') for name, workdir in runs.items()}
  scale = next(iter(models.values())).model.scale
  upscale = jax.jit(train.upscale, static_argnames='model')
  realistic = jax.jit(degradations.evaluation_lr, static_argnums=(1, 2))
  settings = degradation_settings.RealESRGANSettings()
  scores: dict[str, dict[str, list]] = {'realesrgan': {}, 'bicubic': {}}
  grid = []
  for index, path in enumerate(input_pipeline.list_images(eval_data_dir)):
    hr = resize.crop_to_multiple(input_pipeline.read_image(path), scale)
    target = metrics.to_float(hr[None])
    for lr_kind in scores:
      lr = (realistic(hr, scale, settings, seed, index) if lr_kind == 'realesrgan'
            else train.degrade(hr, scale))[None]
      outputs = {'bicubic_upscale': metrics.to_float(resize.imresize(lr, scale))}
      for name, loaded in models.items():
        outputs[f'trained_on_{name}'] = metrics.quantize(
            upscale(loaded.variables, lr, model=loaded.model))
      for name, out in outputs.items():
        values = metrics.sr_metrics(out, target, scale)
        scores[lr_kind].setdefault(name, []).append(
            {'psnr_y': float(values['psnr_y'][0]), 'ssim_y': float(values['ssim_y'][0])})
      if lr_kind == 'realesrgan':
        crop = min(128, hr.shape[0], hr.shape[1])
        top, left = (hr.shape[0] - crop) // 2, (hr.shape[1] - crop) // 2
        def cut(image):
          return np.asarray(image)[0, top:top + crop, left:left + crop]
        grid.append(([cut(metrics.to_float(train.nearest_upscale(lr, scale)))]
                     + [cut(outputs[f'trained_on_{n}']) for n in models] + [cut(target)],
                     [f'realistic LR {path.stem}']
                     + [f'{n}-trained {scores[lr_kind][f"trained_on_{n}"][-1]["psnr_y"]:.2f}dB'
                        for n in models] + ['HR']))
  means = {kind: {name: {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
                  for name, rows in table.items()} for kind, table in scores.items()}
  return means, grid


def main(argv=None) -> int:
  from flax_sr import host_allocator
  host_allocator.reexec_with_fast_malloc()
  parser = argparse.ArgumentParser(prog='python experiments/realesrgan_x4.py',
                                   description=__doc__.split('\n\n')[0])
  add_folder_run_flags(parser)
  parser.add_argument('--train_minutes', type=float, default=10.0,
                      help='training budget of each of the two runs')
  parser.add_argument('--degradation_seed', type=int, default=0)
  parser.add_argument('--quick', action='store_true', help='two steps per run (CI)')
  args = parser.parse_args(argv)
  check_eval_data_dir(parser, args)

  import numpy as np
  from flax_sr import cli, pictures, trainer
  workdir = pathlib.Path(args.workdir).absolute()

  def run(_argv):
    summaries, configs = {}, {}
    for kind in TRAINING:
      config = experiment_config(PRESET, args.data_dir, args.eval_data_dir, args.train_minutes,
                                 args.quick)
      config = dataclasses.replace(config, degradation=kind)
      print(f'== trained on {kind} LR ({args.train_minutes:g} min budget)', flush=True)
      summaries[kind] = trainer.train_and_evaluate(config, str(workdir / kind))
      configs[kind] = dataclasses.asdict(config)
    tables, grid = evaluate({kind: workdir / kind for kind in TRAINING}, args.eval_data_dir,
                            args.degradation_seed)
    for lr_kind, table in tables.items():
      label = (f'realistically degraded (Real-ESRGAN, seed {args.degradation_seed})'
               if lr_kind == 'realesrgan' else 'MATLAB-bicubic')
      print(f'\nrealesrgan_x4 on {args.eval_data_dir}, {label} LR (whole images, x4; '
            f'PSNR/SSIM on Y, shave 4):')
      print(f'{"method":<24} {"PSNR-Y":>8} {"SSIM-Y":>8}')
      for name, values in table.items():
        print(f'{name:<24} {values["psnr_y"]:8.3f} {values["ssim_y"]:8.4f}')
    gain = (tables['realesrgan']['trained_on_realesrgan']['psnr_y']
            - tables['realesrgan']['trained_on_bicubic']['psnr_y'])
    print(f'on realistic LR, the realistic-trained model is {gain:+.3f} dB PSNR-Y from the '
          f'bicubic-trained one')
    rows = [[np.asarray(image) for image in images] for images, _ in grid]
    picture = pictures.comparison_grid(rows, [labels for _, labels in grid])
    pictures.save_png(picture, workdir / 'grid.png')
    result = {'tables': tables, 'realistic_gain_db': gain,
              'train_minutes': {k: s['train_seconds'] / 60 for k, s in summaries.items()},
              'steps': {k: s['step'] for k, s in summaries.items()}, 'configs': configs,
              'eval_data_dir': args.eval_data_dir, 'degradation_seed': args.degradation_seed}
    (workdir / 'results.json').write_text(json.dumps(result, indent=2, default=str))
    print(f'wrote {workdir / "results.json"} and {workdir / "grid.png"}')
    return 0

  return cli.run_cli(run)


if __name__ == '__main__':
  sys.exit(main())
