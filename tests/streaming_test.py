"""Training data larger than memory: the prepared sub-image store (``flax_sr.prepare``), reading
it at random, grain's worker processes, and exact resume through them."""

import dataclasses
import json
import pathlib

import numpy as np
import pytest
from PIL import Image

from conftest import run_module, tiny_config
from flax_sr import input_pipeline, prepare, subimage_store


def make_images(directory: pathlib.Path, sizes) -> list[np.ndarray]:
  directory.mkdir(parents=True)
  rng = np.random.default_rng(2)
  images = []
  for i, (h, w) in enumerate(sizes):
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(image).save(directory / f'img{i}.png')
    images.append(image)
  return images


def test_subimage_positions_are_basicsrs():
  # DIV2K's 0001.png is 2040x1356: BasicSR's 480/240 cuts start here, the last flush with the
  # edge (its thresh_size 0).
  assert subimage_store.subimage_starts(1356, 480, 240, 0) == [0, 240, 480, 720, 876]
  assert subimage_store.subimage_starts(2040, 480, 240, 0) == [0, 240, 480, 720, 960, 1200,
                                                                1440, 1560]
  assert subimage_store.subimage_starts(1200, 480, 240, 0) == [0, 240, 480, 720]  # exact fit
  assert subimage_store.subimage_starts(1356, 480, 240, 200) == [0, 240, 480, 720]
  assert subimage_store.subimage_starts(300, 480, 240, 0) == [0]  # smaller: the whole side


def test_prepared_store_holds_the_subimages_with_counts_and_checksums(tmp_path):
  images = make_images(tmp_path / 'hr', [(50, 70), (40, 40), (33, 61)])
  (tmp_path / 'hr' / 'broken.png').write_bytes(b'not a png')
  manifest = prepare.prepare(tmp_path / 'hr', tmp_path / 'store', crop_size=32, step=16,
                             images_per_shard=2, progress=False)
  expected = [sub for image in images for sub in subimage_store.cut_subimages(image, 32, 16, 0)]
  store = subimage_store.SubimageStore(tmp_path / 'store', verify=True)
  assert len(store) == manifest['num_subimages'] == len(expected) == 4 * 3 + 2 * 2 + 2 * 3
  assert manifest['num_images'] == 3 and manifest['skipped'] == ['broken.png']
  # Sorted by name: (broken.png, img0.png), (img1.png, img2.png).
  assert [s['subimages'] for s in manifest['shards']] == [12, 4 + 6]
  for i, sub in enumerate(expected):
    np.testing.assert_array_equal(store[i], sub)
  np.testing.assert_array_equal(store.heights, [s.shape[0] for s in expected])
  for shard in manifest['shards']:
    assert subimage_store.sha256(tmp_path / 'store' / shard['file']) == shard['sha256']
  assert not (tmp_path / 'store' / subimage_store.PROGRESS).exists()

  # A damaged shard is found by its checksum; a missing manifest is a one-line error.
  shard = tmp_path / 'store' / manifest['shards'][1]['file']
  shard.write_bytes(shard.read_bytes()[:-10] + b'0123456789')
  with pytest.raises(subimage_store.StoreError, match='does not match its checksum'):
    subimage_store.SubimageStore(tmp_path / 'store', verify=True)
  with pytest.raises(subimage_store.StoreError, match='holds no prepared store'):
    subimage_store.SubimageStore(tmp_path / 'hr')


def test_crops_read_only_the_bands_they_overlap(tmp_path):
  images = make_images(tmp_path / 'hr', [(100, 120), (70, 90)])
  prepare.prepare(tmp_path / 'hr', tmp_path / 'store', crop_size=80, step=40,
                  images_per_shard=1, progress=False)  # two shards: records numbered per shard
  store = subimage_store.SubimageStore(tmp_path / 'store')
  assert len(store.paths) == 2
  expected = [sub for image in images for sub in subimage_store.cut_subimages(image, 80, 40, 0)]
  assert store.band_rows == 32 and len(store) == len(expected)
  rng = np.random.default_rng(0)
  indices = rng.integers(0, len(store), 20)
  tops, lefts = rng.integers(0, 80 - 37 + 1, 20), rng.integers(0, 80 - 37 + 1, 20)
  crops = store.read_crops(indices, tops, lefts, 37)
  for crop, i, top, left in zip(crops, indices, tops, lefts):
    np.testing.assert_array_equal(crop, expected[i][top:top + 37, left:left + 37])
  read = []
  original = store._read_bands
  store._read_bands = lambda *args: read.append(len(records := original(*args))) or records
  store.read_crops([0], [0], [0], 32)    # rows 0-31: the first band only
  store.read_crops([0], [30], [0], 40)   # rows 30-69: three of the three bands (32, 32, 16)
  store.read_crops([1], [48], [0], 32)   # rows 48-79: the last two
  assert read == [1, 3, 2]


def test_an_interrupted_preparation_continues_where_it_stopped(tmp_path, monkeypatch):
  make_images(tmp_path / 'hr', [(40, 40)] * 5)
  clean = prepare.prepare(tmp_path / 'hr', tmp_path / 'clean', crop_size=24, step=16,
                          images_per_shard=2, progress=False)
  real_read = input_pipeline.read_image
  calls = []

  def read_then_die(path):
    calls.append(path)
    if len(calls) == 4:  # in the second shard: the first one is complete
      raise KeyboardInterrupt
    return real_read(path)
  monkeypatch.setattr(input_pipeline, 'read_image', read_then_die)
  with pytest.raises(KeyboardInterrupt):
    prepare.prepare(tmp_path / 'hr', tmp_path / 'store', crop_size=24, step=16,
                    images_per_shard=2, progress=False)
  assert (tmp_path / 'store' / subimage_store.PROGRESS).exists()
  assert not (tmp_path / 'store' / subimage_store.MANIFEST).exists()
  with pytest.raises(subimage_store.StoreError, match='preparation did not finish'):
    subimage_store.SubimageStore(tmp_path / 'store')
  first_shard = tmp_path / 'store' / clean['shards'][0]['file']
  written_at = first_shard.stat().st_mtime_ns
  calls.clear()
  monkeypatch.setattr(input_pipeline, 'read_image', real_read)
  resumed = prepare.prepare(tmp_path / 'hr', tmp_path / 'store', crop_size=24, step=16,
                            images_per_shard=2, progress=False)
  assert first_shard.stat().st_mtime_ns == written_at  # kept, not written again
  assert [s['sha256'] for s in resumed['shards']] == [s['sha256'] for s in clean['shards']]
  assert resumed['num_subimages'] == clean['num_subimages']


def test_prepare_command_line_errors(tmp_path):
  result = run_module('flax_sr.prepare', str(tmp_path / 'nowhere'), str(tmp_path / 'out'))
  assert result.returncode == 2 and 'Traceback' not in result.stderr
  assert 'does not exist' in result.stderr
  result = run_module('flax_sr.prepare', str(tmp_path), str(tmp_path / 'out'), '--step', '500')
  assert result.returncode == 2 and '--step 500 is larger than --crop_size 480' in result.stderr
  make_images(tmp_path / 'hr', [(40, 40)])
  assert run_module('flax_sr.prepare', str(tmp_path / 'hr'), str(tmp_path / 'out'),
                    '--crop_size', '32', '--step', '16').returncode == 0
  result = run_module('flax_sr.prepare', str(tmp_path / 'hr'), str(tmp_path / 'out'))
  assert result.returncode == 2 and 'prepared differently' in result.stderr


def test_worker_processes_deliver_the_same_batches_and_resume_from_grains_state(tmp_path):
  make_images(tmp_path / 'hr', [(64, 80), (48, 48), (70, 50)])
  prepare.prepare(tmp_path / 'hr', tmp_path / 'store', crop_size=32, step=16, progress=False)
  source = input_pipeline.StoreSource(subimage_store.SubimageStore(tmp_path / 'store'), 24,
                                      patches_per_image=1, name='store')

  def take(stream, count):
    try:
      return [(batch['hr'], position, stream.loader_state) for batch, position in
              (next(stream) for _ in range(count))]
    finally:
      stream.close()
  in_thread = take(input_pipeline.TrainStream(source, 4, seed=1, augment=True), 5)
  in_workers = take(input_pipeline.TrainStream(source, 4, seed=1, augment=True, workers=2), 3)
  for (a, pa, _), (b, pb, state) in zip(in_thread, in_workers):
    np.testing.assert_array_equal(a, b)
    assert pa == pb and state['workers'] == 2
  # Resumed from the state saved after batch 3 (JSON, as the checkpoint stores it).
  saved = json.loads(json.dumps(in_workers[-1][2]))
  resumed = take(input_pipeline.TrainStream(source, 4, seed=1, augment=True, workers=2,
                                            position=in_workers[-1][1], loader_state=saved), 2)
  for (a, pa, _), (b, pb, _) in zip(in_thread[3:], resumed):
    np.testing.assert_array_equal(a, b)
    assert pa == pb


def test_training_from_a_prepared_store_resumes_exactly_with_workers(tmp_path):
  from flax_sr import trainer
  make_images(tmp_path / 'hr', [(64, 80), (48, 48), (70, 50), (56, 56)])
  make_images(tmp_path / 'eval', [(24, 24)])
  prepare.prepare(tmp_path / 'hr', tmp_path / 'store', crop_size=32, step=16, progress=False)
  config = tiny_config(dataset='prepared', data_dir=str(tmp_path / 'store'),
                       eval_data_dir=str(tmp_path / 'eval'), hr_size=24, input_size=12,
                       patches_per_image=1, augment=True, data_workers=2, conv_impl='xla',
                       eval_every=100, num_grid_images=1)

  def losses(workdir):
    return [json.loads(line)['train/loss'] for line in
            (workdir / 'metrics.jsonl').read_text().splitlines() if 'train/loss' in line]
  trainer.train_and_evaluate(dataclasses.replace(config, num_train_steps=4), str(tmp_path / 'straight'))
  trainer.train_and_evaluate(dataclasses.replace(config, num_train_steps=2), str(tmp_path / 'resumed'))
  trainer.train_and_evaluate(dataclasses.replace(config, num_train_steps=4), str(tmp_path / 'resumed'))
  straight, resumed = losses(tmp_path / 'straight'), losses(tmp_path / 'resumed')
  assert len(straight) == 4 and resumed == straight  # bitwise


def test_prepared_dataset_needs_a_store_and_evaluation_images(tmp_path):
  from flax_sr.config import Config, UserError
  with pytest.raises(UserError, match='--dataset prepared needs --data_dir STORE'):
    Config(dataset='prepared', data_dir=str(tmp_path)).validate()
  result = run_module('flax_sr.main', '--dataset', 'prepared', '--data_dir', str(tmp_path),
                      '--eval_data_dir', str(tmp_path), '--workdir', str(tmp_path / 'run'))
  assert result.returncode == 2 and 'Traceback' not in result.stderr, result.stderr[-2000:]
  assert 'holds no prepared store' in result.stderr and not (tmp_path / 'run').exists()
