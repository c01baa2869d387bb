"""Paired LR/HR data (RealSR/DRealSR style): matching by name, size checks, aligned crops, the
LR going into the step as it is, and evaluation on pairs without re-degrading."""

import json
import pathlib

import jax
import numpy as np
import optax
import pytest
from PIL import Image

from conftest import run_module, tiny_config
from flax_sr import input_pipeline, models, train
from flax_sr.config import UserError


def box_downscale(image: np.ndarray, scale: int) -> np.ndarray:
  """A degradation that is not bicubic (the mean of each scale x scale block)."""
  h, w = image.shape[0] // scale, image.shape[1] // scale
  blocks = image[:h * scale, :w * scale].reshape(h, scale, w, scale, 3).astype(np.float64)
  return np.round(blocks.mean(axis=(1, 3))).astype(np.uint8)


def make_pairs(root: pathlib.Path, scale: int = 2, count: int = 4, size=(40, 52)):
  """HR images and box-downscaled LR partners named as RealSR names them."""
  hr_dir, lr_dir = root / 'HR', root / 'LR'
  hr_dir.mkdir(parents=True)
  lr_dir.mkdir(parents=True)
  rng = np.random.default_rng(1)
  y, x = np.mgrid[0:size[0], 0:size[1]]
  for i in range(count):
    base = 128 + 90 * np.sin(x / (2.5 + i) + y / 4.0)[..., None] * np.array([1.0, 0.6, 0.3])
    hr = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
    # One HR image a pixel larger than scale x its partner: modcropped, as MATLAB does.
    if i == 0:
      hr = np.concatenate([hr, hr[-1:]], axis=0)
    Image.fromarray(hr).save(hr_dir / f'Canon_{i:03d}_HR.png')
    Image.fromarray(box_downscale(hr, scale)).save(lr_dir / f'Canon_{i:03d}_LR{scale}.png')
  return hr_dir, lr_dir


def test_pair_names():
  assert input_pipeline.pair_key('Canon_001_HR.png') == 'Canon_001'
  assert input_pipeline.pair_key('Canon_001_LR4.png') == 'Canon_001'
  assert input_pipeline.pair_key('0001x4.png') == input_pipeline.pair_key('0001.png') == '0001'
  assert input_pipeline.pair_key('sub/dir/img_lr.jpg') == 'sub/dir/img'


def test_pairs_load_modcropped_and_problems_are_listed_in_one_line(tmp_path):
  hr_dir, lr_dir = make_pairs(tmp_path / 'good')
  hr, lr, names, _ = input_pipeline.load_image_pairs(hr_dir, lr_dir, 2)
  assert names == [f'Canon_{i:03d}_HR.png' for i in range(4)]
  assert hr[0].shape == (40, 52, 3) and lr[0].shape == (20, 26, 3)  # the extra row cropped
  for h, l in zip(hr, lr):
    np.testing.assert_array_equal(box_downscale(h, 2), l)

  hr_dir, lr_dir = make_pairs(tmp_path / 'bad', count=4)
  (lr_dir / 'Canon_001_LR2.png').unlink()                    # an HR image without partner
  Image.fromarray(np.zeros((7, 9, 3), np.uint8)).save(lr_dir / 'Canon_002_LR2.png')  # wrong size
  Image.fromarray(np.zeros((9, 9, 3), np.uint8)).save(lr_dir / 'extra_LR2.png')      # no HR
  with pytest.raises(input_pipeline.DataError) as raised:
    input_pipeline.load_image_pairs(hr_dir, lr_dir, 2)
  message = str(raised.value)
  assert '\n' not in message and '3 problem(s)' in message
  assert 'Canon_001_HR.png has no LR partner' in message
  assert 'Canon_002_HR.png is 52x40 but its LR partner Canon_002_LR2.png is 9x7' in message
  assert 'extra_LR2.png has no HR partner' in message


def test_paired_crops_are_aligned_under_augmentation_and_across_processes(tmp_path):
  hr_dir, lr_dir = make_pairs(tmp_path)
  hr, lr, names, _ = input_pipeline.load_image_pairs(hr_dir, lr_dir, 2)
  source = input_pipeline.PairedFolderSource(hr, lr, names, 16, 2, patches_per_image=4,
                                             name='pairs')
  stream = input_pipeline.TrainStream(source, 8, seed=0, augment=True)
  batch = stream.make_batch(0, 0)
  assert batch['hr'].shape == (8, 16, 16, 3) and batch['lr'].shape == (8, 8, 8, 3)
  # The LR crop is the box-downscaled HR crop: same place, same flip and rotation.
  for h, l in zip(batch['hr'], batch['lr']):
    np.testing.assert_array_equal(box_downscale(h, 2), l)
  parts = [input_pipeline.TrainStream(source, 8, seed=0, augment=True, process_index=p,
                                      process_count=2).make_batch(0, 0) for p in range(2)]
  for key in ('hr', 'lr'):
    np.testing.assert_array_equal(np.concatenate([part[key] for part in parts]), batch[key])


def test_train_step_uses_the_paired_lr_as_it_is():
  model = models.ReferenceSR(scale=2, features=8, conv_impl='xla')
  state = train.create_train_state(jax.random.key(0), model, optax.adam(1e-3),
                                   lr_shape=(1, 8, 8, 3))
  hr = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
  step = jax.jit(train.train_step)
  bicubic_lr = np.asarray(train.degrade(hr, 2))
  _, plain = step(state, {'hr': hr})
  _, given_bicubic = step(state, {'hr': hr, 'lr': bicubic_lr})
  _, given_box = step(state, {'hr': hr, 'lr': np.stack([box_downscale(h, 2) for h in hr])})
  assert float(given_bicubic['loss']) == float(plain['loss'])
  assert abs(float(given_box['loss']) - float(plain['loss'])) > 1e-4
  with pytest.raises(ValueError, match=r"batch\['lr'\]"):
    step(state, {'hr': hr, 'lr': bicubic_lr[:, :7]})


def test_training_and_evaluation_on_pairs(tmp_path):
  from flax_sr import evaluate, trainer
  hr_dir, lr_dir = make_pairs(tmp_path / 'data')
  config = tiny_config(dataset='folder', data_dir=str(hr_dir), lr_data_dir=str(lr_dir),
                       eval_data_dir=str(hr_dir), eval_lr_data_dir=str(lr_dir), hr_size=16,
                       input_size=8, patches_per_image=2, num_train_steps=2, eval_every=2,
                       conv_impl='xla')
  summary = trainer.train_and_evaluate(config, str(tmp_path / 'run'))
  assert summary['step'] == 2 and summary['eval_dataset'].startswith('pairs ')
  # The comparison pictures show the real LR, aligned with the HR crop.
  grid_hr, grid_lr = trainer.grid_examples(input_pipeline.make_eval_set(config), 3, 30, 2)
  assert grid_hr.shape == (3, 30, 30, 3) and grid_lr.shape == (3, 15, 15, 3)
  for h, l in zip(grid_hr, grid_lr):
    np.testing.assert_array_equal(box_downscale(h, 2), l)
  assert len(list((tmp_path / 'run' / 'pictures').glob('grid_step*.png'))) == 1

  def evaluated(*flags):
    out = tmp_path / f'{len(flags)}.json'
    assert evaluate.main(['--workdir', str(tmp_path / 'run'), '--step', '2', '--lpips', 'none',
                          '--dataset', 'folder', '--data_dir', str(hr_dir), *flags,
                          '--output_json', str(out)]) == 0
    return json.loads(out.read_text())
  paired, bicubic = evaluated('--lr_data_dir', str(lr_dir)), evaluated()
  # The baselines upscale the given (box) LR, not a bicubic LR made from the HR.
  assert paired['dataset'].startswith('pairs ')
  assert abs(paired['bicubic']['psnr_y'] - bicubic['bicubic']['psnr_y']) > 0.05
  # The run's own evaluation was on the same pairs.
  assert abs(summary['eval']['bicubic']['psnr_y'] - paired['bicubic']['psnr_y']) < 1e-4


@pytest.mark.parametrize('flags, message', [
    (dict(dataset='sample', lr_data_dir='LR'), '--lr_data_dir (paired LR images) needs'),
    (dict(dataset='folder', data_dir='HR', lr_data_dir='LR', degradation='realesrgan'),
     'does not combine with --degradation realesrgan'),
    (dict(dataset='folder', data_dir='HR', lr_data_dir='LR', image_scales=(1.0, 0.8)),
     'would break the LR/HR pairs'),
    (dict(dataset='folder', data_dir='HR', eval_lr_data_dir='LR'), 'needs --eval_data_dir'),
])
def test_bad_paired_options_are_one_line_errors(flags, message):
  from flax_sr.config import Config
  with pytest.raises(UserError, match=message.replace('(', r'\(').replace(')', r'\)')):
    Config(**flags).validate()


def test_unpaired_folders_stop_before_training(tmp_path):
  hr_dir, lr_dir = make_pairs(tmp_path / 'data')
  (lr_dir / 'Canon_003_LR2.png').unlink()
  result = run_module('flax_sr.main', '--dataset', 'folder', '--data_dir', str(hr_dir),
                      '--lr_data_dir', str(lr_dir), '--hr_size', '16', '--input_size', '8',
                      '--workdir', str(tmp_path / 'run'), timeout=120)
  assert result.returncode == 2 and 'Traceback' not in result.stderr, result.stderr[-2000:]
  assert 'Canon_003_HR.png has no LR partner' in result.stderr
  assert not (tmp_path / 'run').exists()
