"""The SR evaluation protocol pinned by known answers that ship with the tests
(``tests/data/protocol``, made by ``tests/data/make_protocol_fixtures.py`` from ../shared), so
these run in a clone without ../shared: MATLAB's bicubic downscale to the bit, RCAN's outputs
scored as the literature scores them, the BT.601 constants, the shave, and grey decided by the
file's channels."""

import json
import pathlib

import numpy as np
import pytest
from PIL import Image

from flax_sr import input_pipeline, metrics, resize

DATA = pathlib.Path(__file__).parent / 'data' / 'protocol'
KNOWN = json.loads((DATA / 'known_answers.json').read_text())['scales']
# Interior LR pixels that depend only on HR pixels inside the vendored crop (the x4 kernel
# reaches 8 HR pixels, 2 LR pixels, from its centre).
MARGIN = 3


def vendored(name: str) -> np.ndarray:
  return input_pipeline.read_image(DATA / name)


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_downscale_equals_matlab_on_vendored_crop(scale):
  hr = vendored('butterfly_hr.png')
  lr = np.asarray(resize.bicubic_downscale(hr, scale))
  reference = vendored(f'butterfly_matlab_lr_x{scale}.png')
  assert lr.shape == reference.shape == (120 // scale, 120 // scale, 3)
  inner = (slice(MARGIN, -MARGIN), slice(MARGIN, -MARGIN))
  np.testing.assert_array_equal(lr[inner], reference[inner])


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_rcan_crop_scores_as_the_literature(scale):
  hr = vendored('butterfly_hr.png')
  sr = vendored(f'butterfly_rcan_x{scale}.png')
  known = KNOWN[str(scale)]
  got = {k: float(v) for k, v in metrics.sr_metrics(sr, hr, scale).items()}
  assert got['psnr_y'] == pytest.approx(known['rcan_psnr_y'], abs=1e-4)
  assert got['ssim_y'] == pytest.approx(known['rcan_ssim_y'], abs=1e-5)
  assert float(metrics.psnr(sr, hr, shave=scale, y_channel=True)) == pytest.approx(
      known['rcan_psnr_y'], abs=1e-4)


def test_y_coefficients_per_primary():
  # rgb2ycbcr: Y = 16 + 65.481 R + 128.553 G + 24.966 B (RGB in [0, 1]).
  primaries = np.eye(3, dtype=np.float32).reshape(3, 1, 1, 3)
  np.testing.assert_allclose(np.asarray(metrics.rgb_to_y(primaries)).ravel(),
                             [16 + 65.481, 16 + 128.553, 16 + 24.966], atol=1e-4)


@pytest.mark.parametrize('axis', ['rows', 'columns'])
def test_shave_removes_exactly_scale_pixels_on_every_side(axis):
  scale = 3
  rng = np.random.default_rng(0)
  hr = rng.integers(0, 256, (1, 30, 36, 3), np.uint8)
  perfect = {k: float(v[0]) for k, v in metrics.sr_metrics(hr, hr, scale).items()}

  def with_error(index):
    sr = hr.copy()
    if axis == 'rows':
      sr[:, index] = 255 - sr[:, index]
    else:
      sr[:, :, index] = 255 - sr[:, :, index]
    return {k: float(v[0]) for k, v in metrics.sr_metrics(sr, hr, scale).items()}

  # Errors inside the shaved border leave every protocol number as for a perfect output...
  for border in (0, scale - 1, -1, -scale):
    assert with_error(border) == perfect, border
  # ...and one pixel further in, they count.
  for inside in (scale, -scale - 1):
    assert all(with_error(inside)[k] < perfect[k] for k in perfect), inside


def write_png(path: pathlib.Path, array: np.ndarray, mode: str | None = None) -> pathlib.Path:
  Image.fromarray(array, mode).save(path)
  return path


def test_grey_is_decided_by_the_file_not_the_pixels(tmp_path):
  rng = np.random.default_rng(0)
  level = rng.integers(0, 256, (36, 36), np.uint8)
  write_png(tmp_path / 'rgb_equal_channels.png', np.repeat(level[..., None], 3, axis=-1))
  write_png(tmp_path / 'one_channel.png', level)
  eval_set = input_pipeline.folder_eval_set(tmp_path, 3)
  assert dict(zip(eval_set.names, eval_set.gray)) == {'one_channel.png': True,
                                                      'rgb_equal_channels.png': False}
  rgb_file, grey_file = (eval_set.images[eval_set.names.index(n)]
                         for n in ('rgb_equal_channels.png', 'one_channel.png'))
  np.testing.assert_array_equal(rgb_file, grey_file)  # the same pixels...
  noisy = np.clip(level[:36, :36].astype(int) + rng.integers(-20, 21, (36, 36)), 0, 255)
  sr = np.repeat(noisy.astype(np.uint8)[..., None], 3, axis=-1)  # a grey output
  as_colour = float(metrics.psnr(sr, rgb_file, shave=3, y_channel=True, gray=False))
  as_grey = float(metrics.psnr(sr, grey_file, shave=3, y_channel=True, gray=True))
  expected_grey = 10 * np.log10(
      255**2 / np.mean((noisy[3:-3, 3:-3] - level[3:-3, 3:-3].astype(float)) ** 2))
  assert as_grey == pytest.approx(expected_grey, abs=1e-3)
  # A colour file's Y is rgb2ycbcr's, which maps grey 0..255 onto 16..235: the same error is
  # 219/255 as large, 20 log10(255/219) dB better; a grey file's Y is its grey level.
  assert as_colour - as_grey == pytest.approx(20 * np.log10(255 / 219), abs=1e-3)


def test_16_bit_grey_and_exif_orientation(tmp_path):
  ramp = (np.arange(40 * 30, dtype=np.uint16).reshape(30, 40) * 54).astype(np.uint16)
  Image.fromarray(ramp).save(tmp_path / 'grey16.png')
  image, gray = input_pipeline.read_image_and_gray(tmp_path / 'grey16.png')
  assert gray and image.shape == (30, 40, 3) and image.dtype == np.uint8
  np.testing.assert_array_equal(image[..., 0], np.round(ramp / 257).astype(np.uint8))
  assert image.max() == round(ramp.max() / 257) and image.min() == 0
  # A portrait photo stored landscape with EXIF orientation 6 (rotate 90 degrees clockwise).
  landscape = np.zeros((20, 50, 3), np.uint8)
  landscape[:, :10] = 255  # white on the left
  exif = Image.Exif()
  exif[0x0112] = 6
  Image.fromarray(landscape).save(tmp_path / 'portrait.jpg', exif=exif, quality=95)
  upright = input_pipeline.read_image(tmp_path / 'portrait.jpg')
  assert upright.shape == (50, 20, 3)
  assert upright[:10].mean() > 200 and upright[-10:].mean() < 50  # the left is now the top
