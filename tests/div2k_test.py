"""DIV2K through tensorflow-datasets: a small real tfds ``div2k`` directory built here (tfds' own
builder, its download replaced by local folders), streamed through ``as_data_source`` when
prepared as ArrayRecord, decoded into memory when prepared as tfrecord; and under
``tfds.testing.mock_data``."""

import dataclasses
import json
import pathlib
import time

import numpy as np
import pytest
from PIL import Image

from conftest import tiny_config
from flax_sr import input_pipeline
from flax_sr.config import UserError

TRAIN_IDS, VALID_IDS = range(1, 5), range(801, 803)


def _write_split(root: pathlib.Path, hr_folder: str, lr_folder: str, ids, rng) -> dict:
  hr_dir, lr_dir = root / hr_folder, root / lr_folder / 'X4'
  hr_dir.mkdir(parents=True)
  lr_dir.mkdir(parents=True)
  images = {}
  for i in ids:
    hr = rng.integers(0, 256, (48 + 4 * (i % 3), 64, 3), dtype=np.uint8)
    Image.fromarray(hr).save(hr_dir / f'{i:04d}.png')
    # Darkened, so that an evaluation on the dataset's own LR is told from one on bicubic LR.
    lr = Image.fromarray(np.asarray(Image.fromarray(hr).resize(
        (hr.shape[1] // 4, hr.shape[0] // 4), Image.Resampling.BICUBIC)) // 2)
    lr.save(lr_dir / f'{i:04d}x4.png')
    images[i] = (hr, np.asarray(lr))
  return images


@pytest.fixture(scope='module')
def div2k_dirs(tmp_path_factory):
  """tfds data dirs holding div2k/bicubic_x4 prepared as ArrayRecord and as tfrecord, from 4
  training and 2 validation images; and the images themselves."""
  import tensorflow_datasets as tfds
  root = tmp_path_factory.mktemp('div2k')
  rng = np.random.default_rng(0)
  train = _write_split(root / 'raw', 'train_hr/DIV2K_train_HR', 'train_lr', TRAIN_IDS, rng)
  valid = _write_split(root / 'raw', 'valid_hr/DIV2K_valid_HR', 'valid_lr', VALID_IDS, rng)
  extracted = {'train_hr_url': root / 'raw' / 'train_hr', 'valid_hr_url': root / 'raw' / 'valid_hr',
               'train_lr_url': root / 'raw' / 'train_lr', 'valid_lr_url': root / 'raw' / 'valid_lr'}
  original = tfds.download.DownloadManager.download_and_extract
  tfds.download.DownloadManager.download_and_extract = (
      lambda self, urls: {k: str(v) for k, v in extracted.items()})
  try:
    for name, file_format in (('array_record', 'array_record'), ('tfrecord', 'tfrecord')):
      tfds.builder('div2k/bicubic_x4', data_dir=str(root / name)).download_and_prepare(
          file_format=file_format)
  finally:
    tfds.download.DownloadManager.download_and_extract = original
  return {'array_record': str(root / 'array_record'), 'tfrecord': str(root / 'tfrecord'),
          'train': train, 'valid': valid}


def div2k_config(data_dir, **overrides):
  values = dict(dataset='div2k', data_dir=data_dir, hr_size=32, input_size=8, patches_per_image=2)
  return tiny_config(**{**values, **overrides})


def is_crop_of_one(crop: np.ndarray, images) -> bool:
  size = crop.shape[0]
  for image in images:
    windows = np.lib.stride_tricks.sliding_window_view(image, (size, size, 3))[..., 0, :, :, :]
    if (windows == crop).all(axis=(-3, -2, -1)).any():
      return True
  return False


def test_training_images_stream_through_the_tfds_data_source(div2k_dirs):
  source = input_pipeline.load_div2k_train(div2k_config(div2k_dirs['array_record']))
  assert isinstance(source, input_pipeline.TfdsImageSource)
  assert source.examples_per_epoch == 8
  stream = input_pipeline.TrainStream(source, 4, seed=0, augment=False)
  hr_images = [hr for hr, _ in div2k_dirs['train'].values()]
  for epoch, index in ((0, 0), (0, 1), (1, 0)):
    batch = stream.make_batch(epoch, index)['hr']
    assert batch.shape == (4, 32, 32, 3)
    assert all(is_crop_of_one(crop, hr_images) for crop in batch)
  np.testing.assert_array_equal(stream.make_batch(0, 1)['hr'], stream.make_batch(0, 1)['hr'])


def test_a_tfrecord_copy_is_decoded_into_memory(div2k_dirs):
  source = input_pipeline.load_div2k_train(div2k_config(div2k_dirs['tfrecord']))
  assert isinstance(source, input_pipeline.FolderSource)
  expected = sorted(hr.tobytes() for hr, _ in div2k_dirs['train'].values())
  assert sorted(image.tobytes() for image in source.image_list) == expected


def test_validation_images_with_the_configurations_own_lr(div2k_dirs):
  config = div2k_config(div2k_dirs['array_record'], input_size=8, eval_dataset_lr=True)
  eval_set = input_pipeline.make_eval_set(config)
  assert eval_set.names == ['0801', '0802'] and eval_set.name.endswith('its own LR')
  pairs = sorted((hr.shape, lr.tobytes()) for hr, lr in
                 (div2k_dirs['valid'][i] for i in VALID_IDS))
  got = sorted((hr.shape, lr.tobytes()) for hr, lr in zip(eval_set.images, eval_set.lr_images))
  assert [shape for shape, _ in got] == [(s[0] // 4 * 4, 64, 3) for s, _ in pairs]
  assert [lr for _, lr in got] == [lr for _, lr in pairs]
  bicubic = input_pipeline.make_eval_set(dataclasses.replace(config, eval_dataset_lr=False))
  assert bicubic.lr_images is None and len(bicubic) == 2
  with pytest.raises(UserError, match='--div2k_config bicubic_x4 is not x2'):
    div2k_config('d', input_size=16, eval_dataset_lr=True).validate()


def test_training_a_few_steps_on_div2k_with_a_worker(div2k_dirs, tmp_path):
  from flax_sr import trainer
  config = div2k_config(div2k_dirs['array_record'], num_train_steps=2, eval_every=2,
                        data_workers=1, conv_impl='xla', num_grid_images=1)
  summary = trainer.train_and_evaluate(config, str(tmp_path / 'run'))
  assert summary['step'] == 2 and summary['num_eval_images'] == 2
  assert summary['eval_dataset'] == 'div2k/bicubic_x4 validation'
  from flax_sr import evaluate
  out = tmp_path / 'own_lr.json'
  assert evaluate.main(['--workdir', str(tmp_path / 'run'), '--dataset', 'div2k', '--data_dir',
                        div2k_dirs['array_record'], '--eval_dataset_lr', '--lpips', 'none',
                        '--output_json', str(out)]) == 0
  result = json.loads(out.read_text())
  assert result['dataset'].endswith('its own LR') and result['num_images'] == 2
  # The bicubic row upscales tfds' (darkened) LR, not MATLAB's bicubic of the HR.
  assert result['bicubic']['psnr_y'] < summary['eval']['bicubic']['psnr_y'] - 1.0


def test_not_prepared_is_a_one_line_error_in_seconds(tmp_path, monkeypatch):
  monkeypatch.setattr(input_pipeline, '_host_reachable', lambda *args, **kwargs: False)
  started = time.time()
  with pytest.raises(input_pipeline.DataError) as raised:
    input_pipeline.load_div2k_train(div2k_config(str(tmp_path)))
  message = str(raised.value)
  assert '\n' not in message and 'is not prepared in' in message and '--data_dir' in message
  assert 'data.vision.ee.ethz.ch cannot be reached' in message
  assert time.time() - started < 30
  with pytest.raises(UserError, match="--div2k_config 'bicubic_x5' is unknown"):
    div2k_config('d', div2k_config='bicubic_x5').validate()


def test_under_tfds_mock_data(monkeypatch):
  import tensorflow_datasets as tfds
  monkeypatch.setattr(input_pipeline, '_host_reachable', lambda *args, **kwargs: True)
  with tfds.testing.mock_data(num_examples=3):
    config = div2k_config(None, hr_size=16, input_size=4)
    source = input_pipeline.load_div2k_train(config)
    batch = input_pipeline.TrainStream(source, 2, seed=0).make_batch(0, 0)['hr']
    assert batch.shape == (2, 16, 16, 3) and batch.dtype == np.uint8
    eval_set = input_pipeline.make_eval_set(config)
    assert len(eval_set) == 3 and all(image.shape[0] % 4 == 0 for image in eval_set.images)
