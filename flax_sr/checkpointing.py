"""Orbax checkpoints of a run: save, keep (last N + best by PSNR), restore, load for inference.

Layout of a workdir:

    WORKDIR/config.json           the run's Config (the model is rebuilt from it)
    WORKDIR/checkpoints/<step>/   state (params, batch_stats, opt_state, step, ema_params)
                                  and meta (stream position, eval metrics, wall time)

Orbax writes each step to a temporary folder and renames it when complete, so a process killed
mid-save leaves no checkpoint that a resume would pick up; ``cleanup_tmp_directories`` removes
the leftovers. Saves are asynchronous: training continues while the files are written.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import shutil
import time
from typing import Any

import jax
import orbax.checkpoint as ocp
from flax import serialization
from orbax.checkpoint import checkpoint_managers

from flax_sr.config import Config, UserError

BEST_METRIC = 'psnr_y'


class CheckpointError(UserError):
  pass


def checkpoint_dir(workdir: str | os.PathLike) -> pathlib.Path:
  return pathlib.Path(workdir).expanduser().absolute() / 'checkpoints'


def _state_dict(state) -> dict[str, Any]:
  """The state's arrays as a nested dict (the static model and optimizer are not saved)."""
  tree = serialization.to_state_dict(state)
  return {k: v for k, v in tree.items() if v is not None}


class Checkpointer:
  """An Orbax ``CheckpointManager`` that keeps the last ``keep`` checkpoints and, whatever they
  are, the best one by validation ``psnr_y``."""

  def __init__(self, workdir: str | os.PathLike, keep: int = 3, *, read_only: bool = False,
               async_save: bool = True):
    self.directory = checkpoint_dir(workdir)
    policy = checkpoint_managers.AnyPreservationPolicy([
        checkpoint_managers.LatestN(keep),
        checkpoint_managers.BestN(get_metric_fn=lambda metrics: metrics[BEST_METRIC], n=1,
                                  keep_checkpoints_without_metrics=False),
    ])
    options = ocp.CheckpointManagerOptions(
        preservation_policy=None if read_only else policy, create=not read_only,
        read_only=read_only, cleanup_tmp_directories=not read_only,
        enable_async_checkpointing=async_save)
    if read_only and not self.directory.is_dir():
      raise CheckpointError(f'no checkpoints in {self.directory.parent} '
                            f'(expected a folder {self.directory})')
    self.manager = ocp.CheckpointManager(self.directory, item_names=('state', 'meta'),
                                         options=options)

  def all_steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def meta(self, step: int) -> dict[str, Any]:
    return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta

  def best_step(self) -> int | None:
    """The step with the highest validation PSNR (the latest when none was evaluated)."""
    scored = []
    for step in self.all_steps():
      metric = (self.meta(step).get('metrics') or {}).get(BEST_METRIC)
      if metric is not None:
        scored.append((metric, step))
    return max(scored)[1] if scored else self.latest_step()

  def save(self, step: int, state, meta: dict[str, Any], metrics: dict[str, float] | None = None,
           ranked: bool = True):
    """Saves ``step``; its evaluation ``metrics`` rank it for 'best' unless ``ranked`` is
    False (a GAN run trades PSNR for perceptual quality, so its best is its latest); they are
    kept in the meta as ``eval`` either way."""
    meta = dict(meta, metrics=metrics if ranked else None, eval=metrics)
    self.manager.save(
        step, args=ocp.args.Composite(state=ocp.args.StandardSave(_state_dict(state)),
                                      meta=ocp.args.JsonSave(meta)),
        metrics={BEST_METRIC: metrics[BEST_METRIC]} if metrics and ranked else None, force=True)

  def restore(self, step: int, target_state):
    """Restores ``step`` into the structure (and device placement) of ``target_state``."""
    target = _state_dict(target_state)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    try:
      restored = self.manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
    except (ValueError, KeyError, TypeError) as error:
      raise CheckpointError(f'checkpoint {self.directory / str(step)} does not match the model: '
                            f'{str(error).splitlines()[0][:300]}') from error
    # Fields saved as absent (None, e.g. no EMA) come back from the target.
    full = dict(serialization.to_state_dict(target_state), **restored.state)
    return serialization.from_state_dict(target_state, full), restored.meta

  def restore_first_good(self, steps, target_state, move_aside_to: pathlib.Path | None = None):
    """Restores the first of ``steps`` that restores: ``(step, state, meta)``.

    A checkpoint whose files were cut short or deleted (a full disk, a killed copy, a broken
    network file system) is reported in one line and the next step is tried; nothing is
    deleted. A writer passes ``move_aside_to`` (a folder outside ``checkpoints/``) to move such
    checkpoints there, so that training can save their steps again. When none restores, a
    ``CheckpointError`` lists what was tried."""
    tried, unreadable = [], []
    for step in steps:
      try:
        state, meta = self.restore(step, target_state)
      except Exception as error:  # TensorStore reports unreadable files as plain Exceptions
        reason = (str(error).splitlines() or [type(error).__name__])[0]
        reason = reason.split('. See full TensorStore details')[0][:160]
        logging.warning('checkpoint %s cannot be restored (%s)', self.directory / str(step),
                        reason)
        tried.append(f'step {step}: {reason}')
        unreadable.append(step)
        continue
      if tried:
        logging.warning('continuing from checkpoint step %d instead', step)
      if move_aside_to is not None:
        for bad in unreadable:
          destination = move_aside_to / f'{bad}-{int(time.time())}'
          destination.parent.mkdir(parents=True, exist_ok=True)
          shutil.move(str(self.directory / str(bad)), str(destination))
          logging.warning('moved the unreadable checkpoint %d aside to %s', bad, destination)
      return step, state, meta
    raise CheckpointError(f'no checkpoint in {self.directory} could be restored; tried '
                          f'{"; ".join(tried) or "none (the folder is empty)"}')

  def wait(self):
    self.manager.wait_until_finished()

  def close(self):
    self.manager.wait_until_finished()
    self.manager.close()


def latest_complete_step(workdir: str | os.PathLike) -> int | None:
  """The latest complete checkpoint's step in ``workdir``, or None (no run there yet)."""
  if not checkpoint_dir(workdir).is_dir():
    return None
  checkpointer = Checkpointer(workdir, read_only=True)
  step = checkpointer.latest_step()
  checkpointer.close()
  return step


def save_config(workdir: str | os.PathLike, config: Config):
  path = pathlib.Path(workdir) / 'config.json'
  tmp = path.with_suffix('.json.tmp')
  tmp.write_text(config.to_json())
  os.replace(tmp, path)  # atomic: a crash never leaves half a config


def load_config(workdir: str | os.PathLike) -> Config:
  path = pathlib.Path(workdir) / 'config.json'
  if not path.is_file():
    raise CheckpointError(f'{workdir} is not a flax_sr run: it has no config.json')
  try:
    return Config.from_dict(json.loads(path.read_text()))
  except (json.JSONDecodeError, TypeError) as error:
    raise CheckpointError(f'{path} is not a valid run configuration: {error}') from error


# Options whose change makes a checkpoint not fit (the saved arrays differ): the network and its
# sizes, the weight EMA on or off, the optimizer state's structure (a schedule's step count).
STATE_FIELDS = ('model', 'scale', 'features', 'num_blocks', 'num_res_blocks', 'num_rrdb',
                'pixel_unshuffle', 'channel_attention',
                'res_scale', 'num_groups', 'num_rcab', 'reduction', 'depths', 'num_heads',
                'window_size', 'mlp_ratio', 'upsampler', 'resi_connection', 'compress_ratio',
                'squeeze_factor', 'overlap_ratio', 'upsample_factors',
                'global_residual', 'discriminator', 'disc_features')
# Options that change the recipe but not the saved arrays: refused on resume unless
# --allow_recipe_change, since the run would no longer be the recipe its config records (and
# the exact data order of a resume depends on the seed, batch size and data options).
RECIPE_FIELDS = ('dataset', 'hr_size', 'augment', 'patches_per_image', 'crops_by_area',
                 'hard_crop_fraction', 'image_scales', 'dtype', 'batch_size', 'learning_rate',
                 'warmup_steps', 'loss', 'ema_decay', 'seed', 'disc_learning_rate', 'gan_loss',
                 'pixel_weight', 'perceptual_weight', 'adversarial_weight', 'perceptual_net',
                 'perceptual_layers', 'vgg_weights', 'degradation', 'degradation_options',
                 'activation')
HISTORY_FILE = 'config_history.jsonl'


def _differences(saved: Config, requested: Config, fields) -> list[str]:
  return [f'{name} {getattr(saved, name)} (checkpoint) vs {getattr(requested, name)} (requested)'
          for name in fields if getattr(saved, name) != getattr(requested, name)]


def describe_mismatch(saved: Config, requested: Config) -> str | None:
  """One line naming how a saved run's state differs from a requested one's, or None."""
  diffs = _differences(saved, requested, STATE_FIELDS)
  if (saved.ema_decay > 0) != (requested.ema_decay > 0):
    diffs.append(f'ema_decay {saved.ema_decay} (checkpoint, EMA '
                 f'{"on" if saved.ema_decay > 0 else "off"}) vs {requested.ema_decay} (requested, '
                 f'EMA {"on" if requested.ema_decay > 0 else "off"})')
  if (saved.lr_schedule == 'constant') != (requested.lr_schedule == 'constant'):
    diffs.append(f'lr_schedule {saved.lr_schedule} (checkpoint) vs {requested.lr_schedule} '
                 f'(requested): the optimizer states differ')
  return '; '.join(diffs) or None


def recipe_changes(saved: Config, requested: Config) -> list[str]:
  """The recipe options (``RECIPE_FIELDS``) a resume would change, each with both values."""
  return _differences(saved, requested, RECIPE_FIELDS)


def check_compatible(saved: Config, requested: Config, workdir) -> None:
  """Raises ``CheckpointError`` when ``requested`` cannot resume the run saved in ``workdir``:
  its state does not fit, or its recipe changed without ``allow_recipe_change``."""
  mismatch = describe_mismatch(saved, requested)
  if mismatch:
    raise CheckpointError(f'the checkpoint in {workdir} does not match the requested model: '
                          f'{mismatch}; resume with the same options, or train a new run with '
                          f'another --workdir')
  changes = recipe_changes(saved, requested)
  if changes and not requested.allow_recipe_change:
    raise CheckpointError(f'resuming {workdir} would change its recipe: {"; ".join(changes)}; '
                          f'resume with the same options, pass --allow_recipe_change to continue '
                          f'with the change (recorded in {HISTORY_FILE}), or use another '
                          f'--workdir')


def record_config_history(workdir: str | os.PathLike, step: int, config: Config,
                          previous: Config | None):
  """Appends this start's config (and, on resume, the recipe changes) to the run's history, so
  the original recipe stays on record whatever later starts change."""
  entry = {'step': step, 'time': time.time(), 'config': json.loads(config.to_json())}
  if previous is not None:
    entry['changes'] = recipe_changes(previous, config)
  with open(pathlib.Path(workdir) / HISTORY_FILE, 'a') as history:
    history.write(json.dumps(entry) + '\n')
