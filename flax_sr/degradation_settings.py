"""The ranges and probabilities of the Real-ESRGAN degradation, checked without JAX.

Defaults are Real-ESRGAN's (``options/train_realesrgan_x4plus.yml``, Wang et al. 2021): two
stages of blur -> random resize -> noise -> JPEG, then a final 2-D sinc filter, resize to
HR/scale and JPEG in either order. ``flax_sr.degradations.realesrgan`` takes a
``RealESRGANSettings``; ``--degradation_options NAME=VALUE,...`` (or a preset) overrides fields:
a range as ``LOW:HIGH``, a list as ``A/B/C``, e.g. ``jpeg_range=40:90,resize_prob=0.3/0.4/0.3``.
Bad values are one-line ``UserError``s naming the option and what it accepts, raised before
anything is compiled.
"""

from __future__ import annotations

import dataclasses
import math

from flax_sr.errors import UserError

KERNEL_TYPES = ('iso', 'aniso', 'generalized_iso', 'generalized_aniso', 'plateau_iso',
                'plateau_aniso')
RESIZE_MODES = ('area', 'bilinear', 'bicubic')
# The largest blur kernel: every kernel is zero-padded to this size (Real-ESRGAN's 21).
MAX_KERNEL_SIZE = 21


@dataclasses.dataclass(frozen=True)
class RealESRGANSettings:
  """Every random choice's range (frozen and hashable: a static argument of the jitted step).

  ``*2`` fields belong to the second stage. Resize probabilities are (up, down, keep);
  kernel probabilities follow ``KERNEL_TYPES``.
  """
  kernel_size_range: tuple[int, int] = (7, 21)     # odd sizes, uniform among them
  kernel_probs: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
  sinc_prob: float = 0.1
  blur_sigma: tuple[float, float] = (0.2, 3.0)
  betag_range: tuple[float, float] = (0.5, 4.0)    # generalized Gaussian shape
  betap_range: tuple[float, float] = (1.0, 2.0)    # plateau shape
  resize_prob: tuple[float, float, float] = (0.2, 0.7, 0.1)
  resize_range: tuple[float, float] = (0.15, 1.5)
  gaussian_noise_prob: float = 0.5                  # else Poisson
  noise_range: tuple[float, float] = (1.0, 30.0)    # Gaussian sigma on the 0..255 scale
  poisson_scale_range: tuple[float, float] = (0.05, 3.0)
  gray_noise_prob: float = 0.4
  jpeg_range: tuple[float, float] = (30.0, 95.0)

  second_blur_prob: float = 0.8
  kernel_probs2: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
  sinc_prob2: float = 0.1
  blur_sigma2: tuple[float, float] = (0.2, 1.5)
  betag_range2: tuple[float, float] = (0.5, 4.0)
  betap_range2: tuple[float, float] = (1.0, 2.0)
  resize_prob2: tuple[float, float, float] = (0.3, 0.4, 0.3)
  resize_range2: tuple[float, float] = (0.3, 1.2)
  gaussian_noise_prob2: float = 0.5
  noise_range2: tuple[float, float] = (1.0, 25.0)
  poisson_scale_range2: tuple[float, float] = (0.05, 2.5)
  gray_noise_prob2: float = 0.4
  jpeg_range2: tuple[float, float] = (30.0, 95.0)

  final_sinc_prob: float = 0.8

  def validate(self) -> 'RealESRGANSettings':
    """Raises ``UserError`` naming the first option out of its valid range."""
    def fail(name, value, valid):
      text = ':'.join(map(_fmt, value)) if isinstance(value, tuple) else _fmt(value)
      raise UserError(f'--degradation_options {name}={text} is invalid: {valid}')

    low, high = self.kernel_size_range
    if not (isinstance(low, int) and isinstance(high, int) and 1 <= low <= high
            <= MAX_KERNEL_SIZE and low % 2 and high % 2):
      fail('kernel_size_range', self.kernel_size_range,
           f'odd kernel sizes LOW:HIGH with 1 <= LOW <= HIGH <= {MAX_KERNEL_SIZE}')
    for field in dataclasses.fields(self):
      name, value = field.name, getattr(self, field.name)
      if name == 'kernel_size_range':
        continue
      if name.endswith('_prob') or name.endswith('_prob2') or name in ('sinc_prob',
                                                                       'sinc_prob2'):
        if isinstance(value, tuple):
          if len(value) != 3 or not _probabilities(value):
            fail(name, value, 'three probabilities (up/down/keep) in [0, 1] summing to 1')
        elif not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
          fail(name, value, 'a probability in [0, 1]')
      elif name.startswith('kernel_probs'):
        if len(value) != len(KERNEL_TYPES) or not _probabilities(value):
          fail(name, value, f'{len(KERNEL_TYPES)} probabilities ({"/".join(KERNEL_TYPES)}) in '
                            f'[0, 1] summing to 1')
      else:  # a (LOW, HIGH) range
        lower_bound = {'jpeg': 1.0, 'blur': 1e-3}.get(name.split('_')[0], 0.0)
        upper_bound = 100.0 if name.startswith('jpeg') else math.inf
        if not (len(value) == 2 and all(isinstance(v, (int, float)) and math.isfinite(v)
                                        for v in value)
                and lower_bound <= value[0] <= value[1] <= upper_bound
                and (value[0] > 0 or name.startswith('noise'))):
          valid = ('a JPEG quality range LOW:HIGH within 1..100' if name.startswith('jpeg')
                   else 'a range LOW:HIGH of finite numbers with 0 < LOW <= HIGH'
                   if not name.startswith('noise') else
                   'a range LOW:HIGH of finite numbers with 0 <= LOW <= HIGH')
          fail(name, value, valid)
    if self.resize_range[0] > 1 or self.resize_range[1] < 1:
      fail('resize_range', self.resize_range, 'LOW <= 1 <= HIGH (down below 1, up above)')
    if self.resize_range2[0] > 1 or self.resize_range2[1] < 1:
      fail('resize_range2', self.resize_range2, 'LOW <= 1 <= HIGH (down below 1, up above)')
    return self

  def with_options(self, spec: str | None) -> 'RealESRGANSettings':
    """These settings with ``NAME=VALUE,...`` applied (ranges ``LOW:HIGH``, lists ``A/B/C``)."""
    if not spec:
      return self
    types = {f.name: f.type for f in dataclasses.fields(self)}
    changes = {}
    for item in spec.split(','):
      name, sep, text = item.strip().partition('=')
      name = name.strip()
      if not sep or name not in types:
        raise UserError(f'--degradation_options: {item.strip()!r} is not NAME=VALUE with a '
                        f'known NAME; known: {", ".join(types)}')
      try:
        if ':' in text or '/' in text:
          parts = text.replace('/', ':').split(':')
          integer = name == 'kernel_size_range'
          changes[name] = tuple(int(p) if integer else float(p) for p in parts)
        else:
          changes[name] = float(text)
      except ValueError:
        raise UserError(f'--degradation_options {name}={text} is not a number, LOW:HIGH or '
                        f'A/B/C') from None
      if isinstance(getattr(self, name), tuple) != isinstance(changes[name], tuple):
        raise UserError(f'--degradation_options {name} takes '
                        f'{"a range LOW:HIGH or list A/B/C" if isinstance(getattr(self, name), tuple) else "one number"}'
                        f', got {text!r}')
    return dataclasses.replace(self, **changes)


def _probabilities(values) -> bool:
  return (all(isinstance(v, (int, float)) and 0.0 <= v <= 1.0 for v in values)
          and abs(sum(values) - 1.0) < 1e-6)


def _fmt(value) -> str:
  return f'{value:g}' if isinstance(value, (int, float)) else str(value)


def settings_from_options(spec: str | None) -> RealESRGANSettings:
  """The defaults with ``--degradation_options`` applied, validated."""
  return RealESRGANSettings().with_options(spec).validate()
