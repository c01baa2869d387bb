"""The package's layering: no import cycles, and the command-line front (flags, presets,
validation, --help) answers without importing JAX."""

import ast
import json
import pathlib
import subprocess
import sys

import pytest

from conftest import REPO
from flax_sr import configs
from flax_sr.config import Config

PACKAGE = REPO / 'flax_sr'


def import_graph() -> dict[str, set[str]]:
  """flax_sr module -> the flax_sr modules it imports, anywhere in the file (lazy imports
  inside functions count: they hide a cycle, they do not remove it)."""
  modules = {p.stem: p for p in PACKAGE.glob('*.py') if p.stem != '__init__'}
  graph = {}
  for name, path in modules.items():
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.ImportFrom) and node.module:
        if node.module == 'flax_sr':
          targets |= {a.name for a in node.names}
        elif node.module.startswith('flax_sr.'):
          targets.add(node.module.split('.')[1])
      elif isinstance(node, ast.Import):
        targets |= {a.name.split('.')[1] for a in node.names if a.name.startswith('flax_sr.')}
    graph[name] = {t for t in targets if t in modules and t != name}
  return graph


def find_cycle(graph):
  state = {}

  def visit(node, path):
    state[node] = 'open'
    for target in sorted(graph[node]):
      if state.get(target) == 'open':
        return path + [node, target]
      if target not in state:
        cycle = visit(target, path + [node])
        if cycle:
          return cycle
    state[node] = 'done'
    return None

  for node in sorted(graph):
    if node not in state:
      cycle = visit(node, [])
      if cycle:
        return cycle
  return None


def test_no_import_cycles():
  graph = import_graph()
  assert find_cycle(graph) is None, ' -> '.join(find_cycle(graph))
  # The walk sees lazy imports too: a planted cycle is found.
  planted = {**graph, 'models': graph['models'] | {'trainer'}}
  assert find_cycle(planted) is not None


def test_no_library_module_imports_a_command():
  commands = {'main', 'evaluate', 'predict', 'benchmark', 'convert', 'prepare'}
  graph = import_graph()
  offenders = {m: graph[m] & commands for m in graph if m not in commands and graph[m] & commands}
  assert not offenders


def run_python(code: str):
  return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                        timeout=120, cwd=REPO, env={'PYTHONPATH': str(REPO), 'PATH': '/usr/bin:/bin',
                                                    'FLAX_SR_FAST_MALLOC': '0'})


def test_flags_presets_and_help_need_no_jax():
  code = '''
import contextlib, io, sys
from flax_sr import benchmark, cli, evaluate, main, predict, prepare
from flax_sr.config import UserError
for tool in (main, evaluate, predict, benchmark, prepare):
  with contextlib.redirect_stdout(io.StringIO()):
    try:
      tool.main(['--help'])
    except SystemExit:
      pass
main.main(['--list_configs'])
for argv in (['--input_size', '25'], ['--config', 'nope']):
  try:
    main.parse_config(argv)
  except UserError:
    pass
main.parse_config(['--config', 't91_x3', '--data_dir', 'T91'])
print('jax imported:', 'jax' in sys.modules)
'''
  result = run_python(code)
  assert result.returncode == 0, result.stderr
  assert 'jax imported: False' in result.stdout
  for name in configs.names():
    assert name in result.stdout


def test_presets_set_the_recipe_and_flags_override_them():
  from flax_sr import main
  config, workdir = main.parse_config(['--config', 'improved_x3', '--learning_rate', '2e-3'])
  assert config.preset == 'improved_x3' and config.learning_rate == 2e-3
  assert config.global_residual and config.loss == 'l1' and config.ema_decay == 0.999
  plain, _ = main.parse_config(['--input_size', '32'])  # the original design, as always
  assert plain == Config(input_size=32) and plain.preset is None
  assert workdir == 'runs/stl10_reference_x3'


def test_experiments_train_their_preset():
  sys.path.insert(0, str(REPO / 'experiments'))
  try:
    import common
  finally:
    sys.path.pop(0)
  from flax_sr import main
  for name in ('reference_x3', 'reference_x6', 'improved_x3', 'improved_x6', 't91_x3',
               'sr291_x3'):
    from_main, _ = main.parse_config(['--config', name, '--data_dir', 'D'])
    from_experiment = common.experiment_config(name, data_dir='D')
    assert from_main == from_experiment, name


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_pretrained_presets_are_the_shipped_recipes(scale):
  from flax_sr import inference, main
  shipped = json.loads((inference.PRETRAINED_DIR / f'x{scale}.json').read_text())['config']
  config, _ = main.parse_config(['--config', f'pretrained_x{scale}', '--data_dir', 'T91'])
  recorded = Config.from_dict(shipped)
  ignore = {'data_dir', 'eval_data_dir', 'preset'}
  assert {k: v for k, v in vars(config).items() if k not in ignore} == {
      k: v for k, v in vars(recorded).items() if k not in ignore}


def test_bad_preset_is_a_one_line_error(tmp_path):
  from flax_sr import main
  from flax_sr.config import UserError
  with pytest.raises(UserError, match='neither a preset'):
    main.parse_config(['--config', 'improved_x9'])
  bad = tmp_path / 'mine.py'
  bad.write_text('def get_config():\n  return {"learning_rat": 1.0}\n')
  with pytest.raises(UserError, match="sets 'learning_rat', which is not an option"):
    main.parse_config(['--config', str(bad)])
  good = tmp_path / 'ok.py'
  good.write_text('"""Mine."""\ndef get_config():\n  return {"model": "edsr", "features": 8}\n')
  config, _ = main.parse_config(['--config', str(good)])
  assert config.model == 'edsr' and config.features == 8 and config.preset == str(good)
