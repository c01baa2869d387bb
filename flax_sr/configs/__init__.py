"""Named recipes: ``python -m flax_sr.main --config NAME`` (``--list_configs`` lists them).

Each preset is a module here with a docstring (its first line is what ``--list_configs``
prints) and ``get_config()``, which returns the ``Config`` fields it sets; every other field
keeps ``Config``'s default, and flags given on the command line override both. A preset can
also be any ``.py`` file of that shape, named by its path.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import pathlib
from types import ModuleType

from flax_sr.config import Config, UserError

PRESET_DIR = pathlib.Path(__file__).parent


def names() -> list[str]:
  """The presets that ship with flax_sr."""
  return sorted(p.stem for p in PRESET_DIR.glob('*.py') if not p.stem.startswith('_'))


def _module(name_or_path: str) -> tuple[str, ModuleType]:
  if name_or_path in names():
    return name_or_path, importlib.import_module(f'flax_sr.configs.{name_or_path}')
  path = pathlib.Path(name_or_path).expanduser()
  if path.suffix == '.py' and path.is_file():
    spec = importlib.util.spec_from_file_location(f'flax_sr_preset_{path.stem}', path)
    module = importlib.util.module_from_spec(spec)
    try:
      spec.loader.exec_module(module)
    except Exception as error:
      raise UserError(f'--config {path} could not be loaded ({type(error).__name__}: {error})')
    return str(path), module
  raise UserError(f'--config {name_or_path!r} is neither a preset ({", ".join(names())}) nor a '
                  f'.py file')


def summary(name: str) -> str:
  """The first line of a preset's docstring."""
  doc = (_module(name)[1].__doc__ or '').strip()
  return doc.splitlines()[0] if doc else ''


def load(name_or_path: str) -> tuple[str, dict]:
  """(name, the ``Config`` fields the preset sets); unknown fields are a ``UserError``."""
  name, module = _module(name_or_path)
  if not callable(getattr(module, 'get_config', None)):
    raise UserError(f'--config {name} has no get_config() function')
  values = dict(module.get_config())
  known = {f.name for f in dataclasses.fields(Config)} - {'preset'}
  unknown = sorted(set(values) - known)
  if unknown:
    raise UserError(f'--config {name} sets {unknown[0]!r}, which is not an option')
  return name, values
