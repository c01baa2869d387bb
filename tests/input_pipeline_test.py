"""The input pipeline: mock and real STL-10, the offline error, image folders, the sample."""

import logging
import time

import jax
import numpy as np
import pytest
from PIL import Image

from flax_sr import input_pipeline, parallel
from flax_sr.config import Config, UserError


def take(stream, n):
  out = [next(stream) for _ in range(n)]
  stream.close()
  return out


@pytest.mark.parametrize('split', ['unlabelled', 'train', 'test'])
def test_mock_stl10_splits_load(mock_stl10, split):
  source = input_pipeline.load_stl10(mock_stl10, split)
  assert source.images.shape == (48, 96, 96, 3) and source.images.dtype == np.uint8


def test_stream_batches_determinism_and_epochs(mock_stl10):
  source = input_pipeline.load_stl10(mock_stl10, 'unlabelled')
  stream = input_pipeline.TrainStream(source, 16, seed=3)
  assert stream.steps_per_epoch == 3
  batches = take(stream, 6)
  batch, position = batches[0]
  assert batch['hr'].shape == (16, 96, 96, 3) and batch['hr'].dtype == np.uint8
  assert [p for _, p in batches] == [(0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (2, 0)]
  again = take(input_pipeline.TrainStream(source, 16, seed=3), 6)
  for (a, _), (b, _) in zip(batches, again):
    np.testing.assert_array_equal(a['hr'], b['hr'])
  other_seed = take(input_pipeline.TrainStream(source, 16, seed=4), 1)
  assert not np.array_equal(other_seed[0][0]['hr'], batch['hr'])
  # Each epoch covers every image once, in a new order.
  def ids(batch_list):
    return [int(np.flatnonzero((source.images == im).all(axis=(1, 2, 3)))[0])
            for b, _ in batch_list for im in b['hr']]
  epoch0, epoch1 = ids(batches[:3]), ids(batches[3:])
  assert sorted(epoch0) == sorted(epoch1) == list(range(48))
  assert epoch0 != epoch1


def test_stream_resumes_at_a_position(mock_stl10):
  source = input_pipeline.load_stl10(mock_stl10, 'unlabelled')
  full = take(input_pipeline.TrainStream(source, 16, seed=0, augment=True), 5)
  resumed = take(input_pipeline.TrainStream(source, 16, seed=0, augment=True,
                                            position=full[1][1]), 3)
  for (a, pa), (b, pb) in zip(full[2:], resumed):
    np.testing.assert_array_equal(a['hr'], b['hr'])
    assert pa == pb


def test_per_process_and_per_device_split(mock_stl10):
  source = input_pipeline.load_stl10(mock_stl10, 'unlabelled')
  whole = take(input_pipeline.TrainStream(source, 16, seed=0), 1)[0][0]['hr']
  parts = [take(input_pipeline.TrainStream(source, 16, seed=0, process_index=p,
                                           process_count=2), 1)[0][0]['hr'] for p in range(2)]
  np.testing.assert_array_equal(np.concatenate(parts), whole)
  split = parallel.split_for_pmap({'hr': whole}, 4)
  assert split['hr'].shape == (4, 4, 96, 96, 3)
  # On the mesh, each device holds batch / devices images.
  mesh = parallel.make_mesh()
  placed = parallel.put_batch({'hr': whole}, mesh)
  assert placed['hr'].shape == (16, 96, 96, 3)
  assert {s.data.shape for s in placed['hr'].addressable_shards} == {(16 // mesh.size, 96, 96, 3)}


class RecordingList(list):
  """A list that records which items were read: which images a process cut crops from."""

  def __init__(self, items):
    super().__init__(items)
    self.read = []

  def __getitem__(self, index):
    self.read.append(index)
    return super().__getitem__(index)


def test_each_process_crops_only_its_share_and_together_they_make_the_global_batch():
  rng = np.random.default_rng(5)
  images = [rng.integers(0, 256, (40 + 7 * i, 50 + 3 * i, 3), dtype=np.uint8) for i in range(8)]

  def stream(process_index=0, process_count=1):
    source = input_pipeline.FolderSource(images, [str(i) for i in range(8)], 24,
                                         patches_per_image=2, name='eight')
    source.image_list = RecordingList(images)
    return source, input_pipeline.TrainStream(source, 8, seed=3, augment=True,
                                              process_index=process_index,
                                              process_count=process_count)
  whole_source, whole_stream = stream()
  whole = [whole_stream.make_batch(0, index)['hr'] for index in range(2)]
  assert len(whole_source.image_list.read) == 16
  assert not np.array_equal(whole[0], whole[1])
  for index in range(2):
    parts = []
    for process in range(4):
      source, part_stream = stream(process, 4)
      parts.append(part_stream.make_batch(0, index)['hr'])
      # 2 of the 8 crops: no per-image work for the other processes' examples.
      assert parts[-1].shape == (2, 24, 24, 3) and len(source.image_list.read) == 2
    np.testing.assert_array_equal(np.concatenate(parts), whole[index])


def test_eval_batches_cover_each_image_once():
  images = np.arange(10)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
  batches = list(input_pipeline.eval_batches(images.astype(np.uint8), 4))
  assert [len(b['hr']) for b in batches] == [4, 4, 4]
  real = np.concatenate([b['hr'][b['mask']] for b in batches])
  np.testing.assert_array_equal(real[:, 0, 0, 0], np.arange(10))


def test_real_stl10_subset(shared_tfds):
  source = input_pipeline.load_stl10(shared_tfds.parent, 'test', download=False)
  assert source.images.shape == (300, 96, 96, 3)
  # Real photographs: smooth neighbouring pixels, unlike mock noise.
  neighbour_diff = np.abs(np.diff(source.images.astype(int), axis=2)).mean()
  assert neighbour_diff < 20 and source.images.std() > 30
  config = Config(dataset='stl10', data_dir=str(shared_tfds.parent))
  eval_set = input_pipeline.make_eval_set(config)
  batches = list(input_pipeline.eval_batches(eval_set.images, 64))
  assert sum(int(b['mask'].sum()) for b in batches) == 300
  seen = np.concatenate([b['hr'][b['mask']] for b in batches])
  assert len({im.tobytes() for im in seen}) == 300
  stream = input_pipeline.TrainStream(input_pipeline.load_stl10(shared_tfds.parent, 'unlabelled'),
                                      64, seed=0)
  assert stream.steps_per_epoch == 4500 // 64
  stream.close()


def test_offline_and_unprepared_gives_clear_error_fast(tmp_path, monkeypatch):
  # No network here (as on CI); in case there is one, make the host unreachable.
  monkeypatch.setattr(input_pipeline, 'STL10_DOWNLOAD_HOST', ('stl10.invalid', 80))
  start = time.monotonic()
  with pytest.raises(input_pipeline.DataError) as error:
    input_pipeline.load_stl10(str(tmp_path / 'empty'), 'unlabelled')
  assert time.monotonic() - start < 15
  message = str(error.value)
  assert str(tmp_path / 'empty') in message and '--dataset sample' in message
  assert '--dataset folder' in message and '--data_dir' in message and '\n' not in message


def write_folder(root):
  rng = np.random.default_rng(0)
  (root / 'sub').mkdir(parents=True)
  Image.fromarray(rng.integers(0, 255, (120, 100, 3), np.uint8)).save(root / 'a.png')
  Image.fromarray(rng.integers(0, 255, (110, 130), np.uint8)).save(root / 'sub' / 'gray.jpg')
  Image.fromarray(rng.integers(0, 255, (100, 100, 4), np.uint8), 'RGBA').save(root / 'rgba.png')
  Image.fromarray(rng.integers(0, 255, (97, 140, 3), np.uint8)).save(root / 'sub' / 'b.bmp')
  Image.fromarray(rng.integers(0, 255, (40, 40, 3), np.uint8)).save(root / 'small.png')
  (root / 'corrupt.png').write_bytes(b'\x89PNG not really')
  (root / 'notes.txt').write_text('ignored')


def test_folder_source(tmp_path, caplog):
  write_folder(tmp_path / 'imgs')
  with caplog.at_level(logging.WARNING):
    images, names, gray, skipped = input_pipeline.load_folder_images(tmp_path / 'imgs',
                                                                     min_size=96)
  assert sorted(names) == ['a.png', 'rgba.png', 'sub/b.bmp', 'sub/gray.jpg']
  assert dict(zip(names, gray)) == {'a.png': False, 'rgba.png': False, 'sub/b.bmp': False,
                                    'sub/gray.jpg': True}
  assert sorted(skipped) == ['corrupt.png', 'small.png']
  assert all(im.ndim == 3 and im.shape[2] == 3 and im.dtype == np.uint8 for im in images)
  log = caplog.text
  assert 'corrupt.png' in log and 'small.png' in log and 'skipped 2' in log
  source = input_pipeline.FolderSource(images, names, 96, 4, 'imgs')
  stream = input_pipeline.TrainStream(source, 8, seed=0, augment=True)
  assert stream.steps_per_epoch == 2
  batch = take(stream, 1)[0][0]
  assert batch['hr'].shape == (8, 96, 96, 3)
  eval_set = input_pipeline.folder_eval_set(tmp_path / 'imgs', 3)
  # Evaluation keeps whole images (small ones too), cropped to a multiple of the scale.
  assert eval_set.names == ['a.png', 'rgba.png', 'small.png', 'sub/b.bmp', 'sub/gray.jpg']
  assert [im.shape[:2] for im in eval_set.images] == [(120, 99), (99, 99), (39, 39), (96, 138),
                                                      (108, 129)]


def test_several_folders_train_together(tmp_path):
  # The "291" set is two folders (T91 + BSD200): --data_dir A,B loads both, names prefixed.
  write_folder(tmp_path / 't91')
  rng = np.random.default_rng(1)
  (tmp_path / 'bsd' / 'sub').mkdir(parents=True)
  Image.fromarray(rng.integers(0, 255, (100, 150, 3), np.uint8)).save(tmp_path / 'bsd' / 'a.png')
  Image.fromarray(rng.integers(0, 255, (30, 30, 3), np.uint8)).save(
      tmp_path / 'bsd' / 'sub' / 'tiny.png')
  both = input_pipeline.load_folder_images(f'{tmp_path / "t91"}, {tmp_path / "bsd"}/',
                                           min_size=96)
  assert both.names == ['t91/a.png', 't91/rgba.png', 't91/sub/b.bmp', 't91/sub/gray.jpg',
                        'bsd/a.png']
  assert sorted(both.skipped) == ['bsd/sub/tiny.png', 't91/corrupt.png', 't91/small.png']
  assert both.gray == [False, False, False, True, False]
  assert both.images[-1].shape == (100, 150, 3)
  config = Config(dataset='folder', data_dir=f'{tmp_path / "t91"},{tmp_path / "bsd"}',
                  hr_size=96, input_size=32, patches_per_image=2)
  assert len(input_pipeline.make_train_source(config).names) == 5
  with pytest.raises(input_pipeline.DataError, match='empty folder name'):
    input_pipeline.load_folder_images(f'{tmp_path / "t91"},,{tmp_path / "bsd"}')
  with pytest.raises(input_pipeline.DataError, match='twice'):
    input_pipeline.load_folder_images(f'{tmp_path / "bsd"},{tmp_path / "bsd"}')
  with pytest.raises(input_pipeline.DataError, match='missing does not exist'):
    input_pipeline.load_folder_images(f'{tmp_path / "t91"},{tmp_path / "missing"}')


def test_folder_without_usable_images(tmp_path):
  (tmp_path / 'empty').mkdir()
  (tmp_path / 'empty' / 'bad.png').write_bytes(b'nope')
  with pytest.raises(input_pipeline.DataError, match='no usable image'):
    input_pipeline.load_folder_images(tmp_path / 'empty')
  with pytest.raises(input_pipeline.DataError, match='does not exist'):
    input_pipeline.load_folder_images(tmp_path / 'missing')


def test_sample_needs_no_network(monkeypatch):
  import socket
  def no_network(*args, **kwargs):
    raise AssertionError('the sample must not touch the network')
  monkeypatch.setattr(socket, 'create_connection', no_network)
  monkeypatch.setattr(socket.socket, 'connect', no_network)
  train = input_pipeline.load_sample('train')
  held_out = input_pipeline.load_sample('eval')
  assert train.images.shape[1:] == (96, 96, 3) and len(train) >= 100 and len(held_out) >= 20
  assert train.images.std() > 30
  stream = input_pipeline.TrainStream(train, 16, seed=0)
  assert take(stream, 1)[0][0]['hr'].shape == (16, 96, 96, 3)


def test_crops_by_area_follow_image_area():
  # Each image is one flat colour, so a crop tells which image it came from.
  big = np.full((400, 300, 3), 200, np.uint8)     # 120,000 px: 12x the small one
  small = np.full((100, 100, 3), 10, np.uint8)
  uniform = input_pipeline.FolderSource([big, small], ['big', 'small'], 96, 8, 'two')
  by_area = input_pipeline.FolderSource([big, small], ['big', 'small'], 96, 8, 'two',
                                        crops_by_area=True)

  def share_from_big(source):
    crops = source.gather(np.arange(source.examples_per_epoch), np.random.default_rng(0), False)
    return np.mean(crops[:, 0, 0, 0] == 200)

  assert uniform.examples_per_epoch == 16 and share_from_big(uniform) == 0.5
  # Areas 12:1 around a mean of 8 crops per image: round(8 * 24/13) = 15 and round(8 * 2/13) = 1.
  assert by_area.examples_per_epoch == 16
  assert share_from_big(by_area) == 15 / 16


def test_downscaled_copies_for_scale_augmentation():
  ramp = np.broadcast_to(np.linspace(0, 255, 200)[None, :, None], (150, 200, 3)).astype(np.uint8)
  images, names = input_pipeline.with_downscaled_copies([ramp], ['ramp.png'], (1.0, 0.8, 0.5),
                                                        min_size=96)
  # 0.5 would be 75x100 px, smaller than a 96 px crop: left out.
  assert names == ['ramp.png', 'ramp.png@0.8']
  assert images[0] is ramp and images[1].shape == (120, 160, 3) and images[1].dtype == np.uint8
  # A linear ramp stays a ramp over the same range: bicubic, not a crop or a nearest pick.
  row = images[1][60, :, 0].astype(float)
  assert abs(row[0] - 0) <= 3 and abs(row[-1] - 255) <= 3
  np.testing.assert_allclose(np.diff(row[5:-5]), 255 / 159, atol=1.0)


def test_folder_config_with_scale_augmentation(tmp_path):
  folder = tmp_path / 'hr'
  folder.mkdir()
  for name, size in (('a.png', (200, 160)), ('b.png', (100, 100))):
    Image.fromarray(np.random.default_rng(0).integers(0, 256, size + (3,), np.uint8)).save(
        folder / name)
  config = Config(dataset='folder', data_dir=str(folder), image_scales=(1.0, 0.6),
                  crops_by_area=True, patches_per_image=4).validate()
  source = input_pipeline.make_train_source(config)
  # b.png at 0.6 (60x60) is too small for a 96 px crop; a.png at 0.6 is 120x96.
  assert source.names == ['a.png', 'a.png@0.6', 'b.png']
  assert [im.shape[:2] for im in source.image_list] == [(200, 160), (120, 96), (100, 100)]
  for bad in ((), (1.0, 0.0), (1.5,)):
    with pytest.raises(UserError, match='--image_scales'):
      Config(dataset='folder', data_dir=str(folder), image_scales=bad).validate()


def test_hard_crop_positions_are_the_worst_for_bicubic():
  # Left half flat grey (bicubic is exact there), right half noise (bicubic is far off): the
  # kept half of the positions must be the rightmost, and each kept position's error sum must
  # be at least every dropped one's, by brute force over the error map.
  rng = np.random.default_rng(0)
  image = np.full((30, 60, 3), 128, np.uint8)
  image[:, 30:] = rng.integers(0, 256, (30, 30, 3), np.uint8)
  crop, scale, step = 12, 3, 2
  kept = input_pipeline.informative_crop_positions([image], crop, scale, 0.5, step=step)
  every = input_pipeline.informative_crop_positions([image], crop, scale, 1.0, step=step)
  assert len(every.tops) == 10 * 25 and len(kept.tops) == 125
  assert kept.lefts.min() >= 18 and every.lefts.min() == 0
  errors = input_pipeline.bicubic_error_map(image, scale)
  def crop_sum(top, left):
    return errors[top:top + crop, left:left + crop].sum()
  kept_set = set(zip(kept.tops, kept.lefts))
  kept_sums = [crop_sum(t, l) for t, l in kept_set]
  dropped_sums = [crop_sum(t, l) for t, l in zip(every.tops, every.lefts)
                  if (t, l) not in kept_set]
  assert min(kept_sums) >= max(dropped_sums) * (1 - 1e-6)
  assert errors[:, :16].max() == 0 and errors[:, 36:].mean() > 100


def test_folder_source_trains_on_hard_positions_only():
  # Each pixel names its place (red = row, green = column), so a crop's corner tells its
  # position; two images, and the flat one gives no hard crops at all.
  rows, cols = np.meshgrid(np.arange(90), np.arange(120), indexing='ij')
  textured = np.stack([rows, cols, (rows * 7 + cols * 13) % 256], -1).astype(np.uint8)
  textured[::2, ::2, 2] = 0
  flat = np.full((90, 120, 3), 50, np.uint8)
  positions = input_pipeline.informative_crop_positions([flat, textured], 24, 3, 0.5, step=4)
  assert set(positions.images) == {1}
  source = input_pipeline.FolderSource([flat, textured], ['flat', 'textured'], 24, 8, 'two',
                                       crops_by_area=True, positions=positions)
  assert source.examples_per_epoch == len(positions.tops)
  order = np.random.default_rng(1).permutation(source.examples_per_epoch)
  crops = source.gather(order, np.random.default_rng(2), augment=False)
  tops, lefts = crops[:, 0, 0, 0].astype(int), crops[:, 0, 0, 1].astype(int)
  # Each crop starts within one grid step below/right of its kept position, inside the image.
  assert np.all((tops >= positions.tops[order]) & (tops < positions.tops[order] + 4))
  assert np.all((lefts >= positions.lefts[order]) & (lefts < positions.lefts[order] + 4))
  assert tops.max() <= 90 - 24 and lefts.max() <= 120 - 24
  assert len(set(zip(tops // 4, lefts // 4))) > 1


def test_hard_crop_fraction_config(tmp_path):
  folder = tmp_path / 'hr'
  folder.mkdir()
  rng = np.random.default_rng(0)
  image = np.full((120, 120, 3), 90, np.uint8)
  image[:, 60:] = rng.integers(0, 256, (120, 60, 3), np.uint8)
  Image.fromarray(image).save(folder / 'half.png')
  config = Config(dataset='folder', data_dir=str(folder), hr_size=48, input_size=16,
                  hard_crop_fraction=0.25).validate()
  source = input_pipeline.make_train_source(config)
  assert source.positions is not None and source.positions.lefts.min() >= 60 - 48
  for bad in (-0.1, 1.5):
    with pytest.raises(UserError, match='--hard_crop_fraction must be in'):
      Config(dataset='folder', data_dir=str(folder), hard_crop_fraction=bad).validate()
  with pytest.raises(UserError, match='--hard_crop_fraction ranks'):
    Config(dataset='stl10', hard_crop_fraction=0.5).validate()
