"""Why shape buckets mask the convolutions: what plain padding does to a trained model.

Each Set5 image's LR input is padded on the bottom and right (edge replication or zeros),
upscaled by the shipped ``--pretrained x2|x3|x4`` model and cropped back; the table gives the
change of PSNR-Y against the image alone and the largest change of a pixel (grey levels).
``flax_sr.shape_buckets`` avoids it by zeroing every convolution's input outside the image,
which gives the image-alone output exactly.

    python experiments/plain_padding.py --set5 ../shared/data/sr/Set5 [--output_json J]
"""

from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np

from flax_sr import inference, input_pipeline, metrics, resize


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--set5', required=True, help='folder of the Set5 HR images')
  parser.add_argument('--pads', type=int, nargs='+', default=[5, 40],
                      help='LR pixels added on the bottom and right')
  parser.add_argument('--output_json')
  args = parser.parse_args(argv)
  rows = []
  print('| model | image | padding | PSNR-Y change (dB) | largest pixel change (levels) |')
  print('| --- | --- | --- | --- | --- |')
  for name in inference.pretrained_names():
    loaded = inference.load_pretrained(name)
    scale = loaded.model.scale
    upscaler = inference.Upscaler(loaded)
    for path in sorted(pathlib.Path(args.set5).glob('*.png')):
      hr = resize.crop_to_multiple(input_pipeline.read_image(path), scale)
      lr = np.asarray(resize.bicubic_downscale(hr, scale))
      alone = np.asarray(metrics.quantize(upscaler(lr)))
      psnr_alone = float(metrics.psnr(alone, hr, shave=scale, y_channel=True))
      for mode in ('edge', 'constant'):
        for pad in args.pads:
          padded = np.pad(lr, ((0, pad), (0, pad), (0, 0)), mode=mode)
          out = np.asarray(metrics.quantize(upscaler(padded)))[:hr.shape[0], :hr.shape[1]]
          row = {'model': name, 'image': path.stem, 'padding': f'{mode} {pad}',
                 'psnr_y_change_db': float(metrics.psnr(out, hr, shave=scale, y_channel=True))
                 - psnr_alone,
                 'largest_pixel_change': float(np.abs(out - alone).max() * 255)}
          rows.append(row)
          print(f'| {name} | {path.stem} | {row["padding"]} | {row["psnr_y_change_db"]:+.4f} | '
                f'{row["largest_pixel_change"]:.0f} |', flush=True)
  if args.output_json:
    pathlib.Path(args.output_json).write_text(json.dumps(rows, indent=2))
  return 0


if __name__ == '__main__':
  raise SystemExit(main())
