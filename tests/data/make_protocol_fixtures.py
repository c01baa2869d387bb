"""Writes tests/data/protocol/: a few KB of the SR protocol's known answers, so the protocol
tests also run (and fail on a wrong constant) in a clone without ../shared.

    python tests/data/make_protocol_fixtures.py ../shared/data/sr

From Set5's butterfly it keeps one interior HR crop (120x120 at row/column 72, a multiple of
2, 3 and 4, so the LR grids stay aligned), the same region of MATLAB's bicubic LR at x2/x3/x4
and of RCAN's published outputs, and ``known_answers.json``: PSNR-Y/SSIM-Y of the RCAN crops
against the HR crop (shave = scale). Those numbers come from an implementation independent of
flax_sr (NumPy float64 BT.601 Y, scikit-image's SSIM with MATLAB's settings), which this
script first checks against RCAN's published Set5 means on the whole images.
"""

import json
import pathlib
import sys

import numpy as np
from PIL import Image
from skimage.metrics import structural_similarity

NAMES = ('baby', 'bird', 'butterfly', 'head', 'woman')
PUBLISHED_RCAN = {2: (38.2742, 0.9614), 3: (34.7422, 0.9299), 4: (32.6336, 0.9002)}
TOP = LEFT = 72
SIZE = 120


def read(path):
  return np.asarray(Image.open(path).convert('RGB'))


def y_channel(rgb_uint8):
  """MATLAB rgb2ycbcr's Y on the 0..255 scale, unrounded, in float64."""
  rgb = rgb_uint8.astype(np.float64) / 255.0
  return 16.0 + 65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]


def protocol(sr, hr, scale):
  a, b = y_channel(sr)[scale:-scale, scale:-scale], y_channel(hr)[scale:-scale, scale:-scale]
  psnr = 10 * np.log10(255.0**2 / np.mean((a - b) ** 2))
  ssim = structural_similarity(a, b, data_range=255, gaussian_weights=True, sigma=1.5,
                               use_sample_covariance=False)
  return float(psnr), float(ssim)


def main(shared_sr: pathlib.Path, out: pathlib.Path):
  out.mkdir(parents=True, exist_ok=True)
  answers = {'source': 'Set5 butterfly, HR rows/cols [72, 192)', 'scales': {}}
  for scale, (published_psnr, published_ssim) in PUBLISHED_RCAN.items():
    results = []
    for name in NAMES:
      hr = read(shared_sr / 'Set5' / f'{name}.png')
      hr = hr[:hr.shape[0] - hr.shape[0] % scale, :hr.shape[1] - hr.shape[1] % scale]
      results.append(protocol(read(shared_sr / f'ref_RCAN_SR_Set5_x{scale}' / f'{name}.png'),
                              hr, scale))
    mean_psnr, mean_ssim = np.mean(results, axis=0)
    assert abs(mean_psnr - published_psnr) < 2e-3 and abs(mean_ssim - published_ssim) < 1e-3, (
        scale, mean_psnr, mean_ssim)
    hr = read(shared_sr / 'Set5' / 'butterfly.png')[TOP:TOP + SIZE, LEFT:LEFT + SIZE]
    rcan = read(shared_sr / f'ref_RCAN_SR_Set5_x{scale}' / 'butterfly.png')
    rcan = rcan[TOP:TOP + SIZE, LEFT:LEFT + SIZE]
    lr = read(shared_sr / f'ref_MATLAB_LR_Set5_x{scale}' / 'butterfly.png')
    lr = lr[TOP // scale:(TOP + SIZE) // scale, LEFT // scale:(LEFT + SIZE) // scale]
    Image.fromarray(rcan).save(out / f'butterfly_rcan_x{scale}.png', optimize=True)
    Image.fromarray(lr).save(out / f'butterfly_matlab_lr_x{scale}.png', optimize=True)
    psnr, ssim = protocol(rcan, hr, scale)
    answers['scales'][str(scale)] = {'rcan_psnr_y': psnr, 'rcan_ssim_y': ssim,
                                     'set5_rcan_mean_psnr_y': float(mean_psnr),
                                     'set5_rcan_mean_ssim_y': float(mean_ssim)}
  Image.fromarray(hr).save(out / 'butterfly_hr.png', optimize=True)
  (out / 'known_answers.json').write_text(json.dumps(answers, indent=2) + '\n')


if __name__ == '__main__':
  main(pathlib.Path(sys.argv[1]), pathlib.Path(__file__).parent / 'protocol')
