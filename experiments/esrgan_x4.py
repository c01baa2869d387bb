"""Experiment esrgan_x4: ESRGAN's two-stage protocol at CPU size, ending with the table papers
print: bicubic, the PSNR model (stage 1) and the GAN model (stage 2) on PSNR-Y, SSIM-Y and
LPIPS.

    python experiments/esrgan_x4.py --workdir runs/esrgan_x4 --stage1_minutes 15 \
        --stage2_minutes 44 [--data_dir T91/ --eval_data_dir Set5/]

Stage 1 trains the preset ``esrgan_cpu_psnr_x4`` (L1); stage 2 the preset
``esrgan_cpu_gan_x4`` (L1 + VGG16 perceptual + relativistic GAN, U-Net discriminator),
started from stage 1's best checkpoint with ``--init_from``. Each stage is a normal flax_sr
run in WORKDIR/stage1 and WORKDIR/stage2 (resumable: re-running the command continues them).
The evaluation uses whole Set5 images, MATLAB-bicubic LR, PSNR/SSIM on Y with a 4-pixel
shave, LPIPS (alex, v0.1) on RGB of the whole image; WORKDIR/results.json holds the table.
``--quick`` runs two steps of each stage (CI).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys

from common import add_folder_run_flags, check_eval_data_dir, experiment_config

STAGES = ('esrgan_cpu_psnr_x4', 'esrgan_cpu_gan_x4')


def evaluate(runs: dict[str, tuple[pathlib.Path, str]], eval_data_dir: str
             ) -> dict[str, dict]:
  """{method: {psnr_y, ssim_y, lpips}} on every image of ``eval_data_dir`` (means), for runs
  {method: (workdir, step)}."""
  import jax
  import numpy as np
  from flax_sr import inference, input_pipeline, lpips, metrics, resize, train
  weights = lpips.load_weights('alex')
  models = {name: inference.load_run(workdir, step) for name, (workdir, step) in runs.items()}
  images = input_pipeline.list_images(eval_data_dir)
  scale = next(iter(models.values())).model.scale
  upscale = jax.jit(train.upscale, static_argnames='model')
  distance = jax.jit(lpips.lpips_distance, static_argnames='net')
  rows: dict[str, list] = {}
  for path in images:
    hr = input_pipeline.read_image(path)
    hr = hr[:hr.shape[0] // scale * scale, :hr.shape[1] // scale * scale][None]
    lr = train.degrade(hr, scale)
    outputs = {'bicubic': metrics.to_float(resize.imresize(lr, scale))}
    for name, loaded in models.items():
      outputs[name] = metrics.quantize(upscale(loaded.variables, lr, model=loaded.model))
    target = metrics.to_float(hr)
    for name, out in outputs.items():
      values = metrics.sr_metrics(out, target, scale)
      rows.setdefault(name, []).append({
          'psnr_y': float(values['psnr_y'][0]), 'ssim_y': float(values['ssim_y'][0]),
          'lpips': float(distance(weights, out, target)[0])})
  return {name: {k: float(np.mean([r[k] for r in values])) for k in values[0]}
          for name, values in rows.items()}


def main(argv=None) -> int:
  from flax_sr import host_allocator
  host_allocator.reexec_with_fast_malloc()
  parser = argparse.ArgumentParser(prog='python experiments/esrgan_x4.py',
                                   description=__doc__.split('\n\n')[0])
  add_folder_run_flags(parser)
  parser.add_argument('--stage1_minutes', type=float, default=15.0)
  parser.add_argument('--stage2_minutes', type=float, default=44.0)
  parser.add_argument('--quick', action='store_true', help='two steps per stage (CI)')
  args = parser.parse_args(argv)
  check_eval_data_dir(parser, args)

  from flax_sr import cli, trainer
  workdir = pathlib.Path(args.workdir).absolute()

  def run(_argv):
    summaries, configs = {}, {}
    for stage, (name, minutes) in enumerate(zip(STAGES, (args.stage1_minutes,
                                                         args.stage2_minutes)), start=1):
      config = experiment_config(name, args.data_dir, args.eval_data_dir, minutes, args.quick)
      if args.quick:
        config = dataclasses.replace(config, features=8, num_rrdb=1, disc_features=8,
                                     perceptual_layers='conv1_2:1', hr_size=96)
      if stage == 2:
        config = dataclasses.replace(config, init_from=str(workdir / 'stage1'))
      print(f'== stage {stage}: {name} ({minutes:g} min budget)', flush=True)
      summaries[stage] = trainer.train_and_evaluate(config, str(workdir / f'stage{stage}'))
      configs[stage] = dataclasses.asdict(config)
    # The PSNR model's best checkpoint by PSNR; the GAN model's last, as ESRGAN reports it.
    table = evaluate({'psnr_model': (workdir / 'stage1', 'best'),
                      'gan_model': (workdir / 'stage2', 'latest')}, args.eval_data_dir)
    print(f'\nesrgan_x4 on {args.eval_data_dir} (whole images, x4; PSNR/SSIM on Y, shave 4; '
          f'LPIPS alex on RGB):')
    print(f'{"method":<12} {"PSNR-Y":>8} {"SSIM-Y":>8} {"LPIPS":>8}')
    for name, values in table.items():
      print(f'{name:<12} {values["psnr_y"]:8.3f} {values["ssim_y"]:8.4f} {values["lpips"]:8.4f}')
    ratio = table['gan_model']['lpips'] / table['psnr_model']['lpips']
    cost = table['psnr_model']['psnr_y'] - table['gan_model']['psnr_y']
    train_minutes = sum(s['train_seconds'] for s in summaries.values()) / 60
    print(f'GAN/PSNR LPIPS ratio {ratio:.3f}, PSNR-Y cost {cost:.3f} dB, '
          f'{train_minutes:.1f} training minutes in both stages')
    result = {'table': table, 'lpips_ratio': ratio, 'psnr_y_cost': cost,
              'train_minutes': train_minutes,
              'steps': {stage: s['step'] for stage, s in summaries.items()},
              'configs': configs, 'eval_data_dir': args.eval_data_dir}
    (workdir / 'results.json').write_text(json.dumps(result, indent=2, default=str))
    print(f'wrote {workdir / "results.json"}')
    return 0

  return cli.run_cli(run)


if __name__ == '__main__':
  sys.exit(main())
