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
import os
import pathlib
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

  def save(self, step: int, state, meta: dict[str, Any], metrics: dict[str, float] | None = None):
    meta = dict(meta, metrics=metrics)
    self.manager.save(
        step, args=ocp.args.Composite(state=ocp.args.StandardSave(_state_dict(state)),
                                      meta=ocp.args.JsonSave(meta)),
        metrics={BEST_METRIC: metrics[BEST_METRIC]} if metrics else None, force=True)

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


def describe_mismatch(saved: Config, requested: Config) -> str | None:
  """One line naming how a saved run's model differs from a requested one, or None."""
  fields = ('model', 'scale', 'features', 'num_blocks', 'num_res_blocks', 'upsample_factors',
            'global_residual')
  diffs = []
  for name in fields:
    a, b = getattr(saved, name), getattr(requested, name)
    if a != b:
      diffs.append(f'{name} {a} (checkpoint) vs {b} (requested)')
  return '; '.join(diffs) or None


def check_compatible(saved: Config, requested: Config, workdir) -> None:
  mismatch = describe_mismatch(saved, requested)
  if mismatch:
    raise CheckpointError(f'the checkpoint in {workdir} does not match the requested model: '
                          f'{mismatch}')

