"""The pretrained weights shipped with the package."""

import numpy as np
import pytest

from conftest import run_module
from flax_sr import inference, input_pipeline, metrics, resize


def test_shipped_models_are_small_and_load():
  assert inference.pretrained_names() == ['x2', 'x3', 'x4']
  sizes = [p.stat().st_size for p in inference.PRETRAINED_DIR.glob('*.msgpack')]
  assert sum(sizes) < 4 * 2**20
  for name, scale in (('x2', 2), ('x3', 3), ('x4', 4)):
    loaded = inference.load_pretrained(name)
    assert loaded.model.scale == scale
    out = inference.Upscaler(loaded)(np.zeros((10, 12, 3), np.uint8))
    assert out.shape == (10 * scale, 12 * scale, 3)
  with pytest.raises(inference.UserError, match='available: x2, x3, x4'):
    inference.load_pretrained('x8')


def test_pretrained_x3_beats_bicubic_on_set5_by_3db(shared_sr):
  loaded = inference.load_pretrained('x3')
  upscaler = inference.Upscaler(loaded)
  gains = []
  for path in sorted((shared_sr / 'Set5').glob('*.png')):
    hr = resize.crop_to_multiple(input_pipeline.read_image(path), 3)
    lr = np.asarray(resize.bicubic_downscale(hr, 3))
    sr = metrics.quantize(upscaler(lr))
    bicubic = resize.imresize(lr, 3)
    gains.append(float(metrics.psnr(sr, hr, shave=3, y_channel=True))
                 - float(metrics.psnr(bicubic, hr, shave=3, y_channel=True)))
  assert np.mean(gains) >= 3.0, gains


def test_predict_with_pretrained_offline(tmp_path):
  from PIL import Image
  photo = input_pipeline.read_image(input_pipeline._sample_photo_dir() / 'chelsea.png')[:60, :80]
  Image.fromarray(photo).save(tmp_path / 'photo.png')
  result = run_module('flax_sr.predict', '--pretrained', 'x3', '--input',
                      str(tmp_path / 'photo.png'), '--output', str(tmp_path / 'out.png'))
  assert result.returncode == 0, result.stderr
  assert Image.open(tmp_path / 'out.png').size == (240, 180)
