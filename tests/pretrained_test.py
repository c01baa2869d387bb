"""The pretrained weights shipped with the package."""

import pathlib

import numpy as np
import pytest

from conftest import run_module
from flax_sr import inference, input_pipeline, metrics, resize


def test_shipped_models_are_small_and_load():
  assert inference.pretrained_names() == ['x2', 'x3', 'x4']
  sizes = [p.stat().st_size for p in inference.PRETRAINED_DIR.glob('*.msgpack')]
  assert sum(sizes) < 6 * 2**20  # three EDSR 64x12 in float16: about 1.9 MB each
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


def test_shipped_files_hold_no_local_path_and_carry_their_recipe():
  import json
  for name in inference.pretrained_names():
    meta = json.loads((inference.PRETRAINED_DIR / f'{name}.json').read_text())
    strings = []
    def collect(value):
      if isinstance(value, dict):
        for v in value.values():
          collect(v)
      elif isinstance(value, list):
        for v in value:
          collect(v)
      elif isinstance(value, str):
        strings.append(value)
    collect(meta)
    assert not [s for s in strings if s.startswith(('/', '~')) or ':\\' in s], name
    assert meta['config']['data_dir'] is None and meta['config']['eval_data_dir'] is None
    assert meta['training_data'].startswith('T91') and meta['config']['model'] == 'edsr'


def test_evaluate_pretrained_without_data_says_what_to_pass(tmp_path):
  result = run_module('flax_sr.evaluate', '--pretrained', 'x3', cwd=str(tmp_path))
  assert result.returncode == 2 and 'Traceback' not in result.stderr
  assert result.stderr.strip().splitlines()[-1].startswith('error: ')
  assert '--dataset folder --data_dir DIR' in result.stderr
  assert '/work' not in result.stderr and '.devdata' not in result.stderr


def test_evaluate_pretrained_on_a_folder_from_any_directory(tmp_path):
  (tmp_path / 'set').mkdir()
  (tmp_path / 'set' / 'butterfly.png').write_bytes(
      (pathlib.Path(__file__).parent / 'data' / 'protocol' / 'butterfly_hr.png').read_bytes())
  result = run_module('flax_sr.evaluate', '--pretrained', 'x3', '--dataset', 'folder',
                      '--data_dir', 'set', cwd=str(tmp_path))
  assert result.returncode == 0, result.stderr
  # (then '; LPIPS on RGB, whole image' when its weights are installed)
  assert 'Evaluation on folder set (1 images, x3, shave 3' in result.stdout
