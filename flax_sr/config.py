"""The run configuration: one dataclass, its defaults (the reference design's) and validation.

Validation raises ``UserError`` with a one-line message; the command-line tools print it and
exit with code 2 instead of a traceback.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any


class UserError(Exception):
  """A problem with the user's input (options, files, data): reported in one line, exit 2."""


@dataclasses.dataclass
class Config:
  # Data.
  dataset: str = 'stl10'            # stl10 | folder | sample
  data_dir: str | None = None       # tfds data dir (stl10) or image folder (folder)
  eval_data_dir: str | None = None  # folder of HR images to evaluate on (folder dataset)
  hr_size: int = 96                 # HR training size (STL-10 images are 96x96)
  input_size: int = 32              # LR training size; scale = hr_size / input_size
  augment: bool = False             # random flips and 90-degree rotations
  patches_per_image: int = 16       # folder dataset: random crops per image per epoch
  crops_by_area: bool = False       # folder dataset: crops per image in proportion to its area
  image_scales: tuple[float, ...] = (1.0,)  # folder dataset: also train on downscaled copies
  eval_examples: int | None = None  # limit the evaluation set (None: all of it)
  # Model.
  model: str = 'reference'
  features: int | None = None       # width; None: the model's default
  num_blocks: int = 4               # reference model depth
  num_res_blocks: int = 16          # EDSR depth
  upsample_factors: tuple[int, ...] | None = None  # reference model; None: on the last blocks
  global_residual: bool = False
  dtype: str = 'float32'            # computation dtype: float32 | bfloat16
  conv_impl: str = 'auto'           # convolutions: auto | xla | matmul | tuned
  # Optimisation (defaults: the reference design).
  batch_size: int = 64
  num_epochs: int = 10
  num_train_steps: int | None = None  # overrides num_epochs when set
  train_minutes: float | None = None  # wall-clock training budget
  learning_rate: float = 1e-4
  lr_schedule: str = 'constant'     # constant | cosine (with warm-up)
  warmup_steps: int = 0
  loss: str = 'mse'                 # mse | l1 | charbonnier
  ema_decay: float = 0.0            # > 0 keeps a weight EMA, used for evaluation
  seed: int = 0
  # Loop.
  eval_every: int | None = None     # steps; None: at the end of every epoch
  eval_batch_size: int | None = None
  log_every: int = 50
  checkpoint_every: int = 1000
  keep_checkpoints: int = 3
  resume: bool = True
  num_devices: int | None = None    # None: every local device
  distributed: bool = False         # call jax.distributed.initialize() (multi-host)
  num_grid_images: int = 6

  @property
  def scale(self) -> int:
    return self.hr_size // self.input_size

  def model_kwargs(self) -> dict[str, Any]:
    kwargs: dict[str, Any] = {'conv_impl': self.resolved_conv_impl()}
    if self.features is not None:
      kwargs['features'] = self.features
    if self.model == 'reference':
      kwargs.update(num_blocks=self.num_blocks, upsample_factors=self.upsample_factors)
    elif self.model == 'edsr':
      kwargs['num_res_blocks'] = self.num_res_blocks
    return kwargs

  def resolved_conv_impl(self) -> str:
    """'auto' is the 'tuned' convolution on CPU (Winograd, or XLA where that is faster, chosen
    per layer shape; several times faster there than XLA:CPU's convolution alone) and
    XLA's own (cuDNN) on accelerators. All compute the same function with the same
    parameters, so a checkpoint from one runs with the other."""
    if self.conv_impl != 'auto':
      return self.conv_impl
    import jax
    return 'tuned' if jax.default_backend() == 'cpu' else 'xla'

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

  @classmethod
  def from_dict(cls, values: dict[str, Any]) -> 'Config':
    known = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in values.items() if k in known}
    if values.get('image_scales') is not None:
      values['image_scales'] = tuple(values['image_scales'])
    if values.get('upsample_factors') is not None:
      values['upsample_factors'] = tuple(values['upsample_factors'])
    return cls(**values)

  def validate(self) -> 'Config':
    """Checks the options; raises ``UserError`` naming the valid values."""
    valid_sizes = [d for d in range(1, self.hr_size) if self.hr_size % d == 0]
    if self.input_size not in valid_sizes:
      raise UserError(f'--input_size {self.input_size} does not divide --hr_size '
                      f'{self.hr_size}; valid values: {", ".join(map(str, valid_sizes))}')
    from flax_sr import models  # lazily: the CLI parses flags before importing JAX
    if self.model not in models.MODEL_NAMES:
      raise UserError(f'--model {self.model!r} is unknown; valid values: '
                      f'{", ".join(models.MODEL_NAMES)}')
    if self.upsample_factors is not None:
      if self.model != 'reference':
        raise UserError('--upsample_factors applies to --model reference only')
      if (len(self.upsample_factors) != self.num_blocks
          or math.prod(self.upsample_factors) != self.scale
          or min(self.upsample_factors) < 1):
        example = ','.join(map(str, models.default_upsample_factors(self.scale, self.num_blocks)))
        raise UserError(f'--upsample_factors {",".join(map(str, self.upsample_factors))} must be '
                        f'{self.num_blocks} positive integers whose product is the scale '
                        f'{self.scale} (= {self.hr_size}/{self.input_size}), e.g. {example}')
    if self.dataset not in ('stl10', 'folder', 'sample'):
      raise UserError(f'--dataset {self.dataset!r} is unknown; valid values: stl10, folder, sample')
    if self.dataset == 'folder' and not self.data_dir:
      raise UserError('--dataset folder needs --data_dir DIR (a folder of PNG/JPEG/BMP images)')
    if self.dataset in ('stl10', 'sample') and self.hr_size != 96:
      raise UserError(f'--dataset {self.dataset} has 96x96 images; --hr_size must be 96')
    choices = {'dtype': ('float32', 'bfloat16'), 'conv_impl': ('auto', 'xla', 'matmul', 'tuned'),
               'loss': ('mse', 'l1', 'charbonnier'), 'lr_schedule': ('constant', 'cosine')}
    for name, valid in choices.items():
      if getattr(self, name) not in valid:
        raise UserError(f'--{name} {getattr(self, name)!r} is unknown; valid values: '
                        f'{", ".join(valid)}')
    positive = ['batch_size', 'num_epochs', 'log_every', 'checkpoint_every', 'keep_checkpoints',
                'patches_per_image', 'num_blocks', 'num_res_blocks']
    for name in positive + ['num_train_steps', 'eval_every', 'eval_batch_size', 'eval_examples',
                            'num_devices', 'features']:
      value = getattr(self, name)
      if (value is not None or name in positive) and value < 1:
        raise UserError(f'--{name} must be a positive integer, got {value}')
    if not self.image_scales or not all(0.0 < scale <= 1.0 for scale in self.image_scales):
      raise UserError(f'--image_scales must be factors in (0, 1], e.g. 1,0.9,0.8,0.7,0.6; got '
                      f'{",".join(map(str, self.image_scales))}')
    if self.learning_rate <= 0:
      raise UserError(f'--learning_rate must be positive, got {self.learning_rate}')
    if not 0.0 <= self.ema_decay < 1.0:
      raise UserError(f'--ema_decay must be in [0, 1), got {self.ema_decay}')
    if self.train_minutes is not None and self.train_minutes <= 0:
      raise UserError(f'--train_minutes must be positive, got {self.train_minutes}')
    return self
