"""A published PyTorch checkpoint as a flax_sr run directory: ``python -m flax_sr.convert``.

    python -m flax_sr.convert RealESRGAN_x4plus.pth runs/realesrgan_x4
    python -m flax_sr.evaluate --workdir runs/realesrgan_x4 --eval_data_dir Set5/
    python -m flax_sr.main --init_from runs/realesrgan_x4 --model rrdb ...   # fine-tune

The architecture and its settings are detected from the state dict (``flax_sr.torch_weights``
lists what is detected); ``--scale`` is needed only where the keys cannot tell (x3 RRDBNet).
The directory gets ``config.json`` and an Orbax checkpoint at step 0, which everything that
takes ``--workdir`` reads. A state dict that does not fit is a one-line error and nothing is
written; an existing run directory is not replaced.
"""

from __future__ import annotations

import json
import pathlib

from flax_sr import cli
from flax_sr.config import UserError


def convert(weights: str | pathlib.Path, out_dir: str | pathlib.Path,
            scale: int | None = None) -> pathlib.Path:
  """Writes the run directory; returns its absolute path."""
  import jax
  from flax_sr import checkpointing, inference
  from flax_sr import train as train_lib
  out_dir = pathlib.Path(out_dir).expanduser().absolute()
  if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
    raise UserError(f'{out_dir} exists and is not an empty folder; choose a new OUT_DIR')
  loaded = inference.load_weights(weights, scale)
  rebuilt = train_lib.model_from_config(loaded.config)
  # A run directory is rebuilt from config.json alone: settings no flag holds must be defaults.
  differences = inference.model_differences(loaded.model, rebuilt)
  if differences:
    raise UserError(f'{weights}: a setting a run directory cannot record ({differences[0]}, '
                    f'detected vs default); use it with --weights instead')
  config = loaded.config
  config.init_from = str(pathlib.Path(weights).expanduser().absolute())
  state = train_lib.with_weights(train_lib.state_from_config(config, total_steps=1),
                                 loaded.variables)
  out_dir.mkdir(parents=True, exist_ok=True)
  checkpointing.save_config(out_dir, config)
  checkpointer = checkpointing.Checkpointer(out_dir, keep=1)
  try:
    checkpointer.save(0, jax.device_get(state),
                      {'position': [0, 0], 'train_seconds': 0.0, 'epoch': 0.0,
                       'converted_from': config.init_from})
    checkpointer.wait()
  finally:
    checkpointer.close()
  return out_dir


def main(argv=None) -> int:
  parser = cli.ArgumentParser(prog='python -m flax_sr.convert',
                              description='Convert a published PyTorch checkpoint (.pth, .pt, '
                                          '.ckpt, .safetensors) into a flax_sr run directory.')
  parser.add_argument('weights', help='the checkpoint file')
  parser.add_argument('out_dir', help='the run directory to create (must not hold anything)')
  parser.add_argument('--scale', type=cli.positive_int, default=None,
                      help='the upscaling factor, where the keys cannot tell (x3 RRDBNet)')
  args = parser.parse_args(argv)
  out_dir = convert(args.weights, args.out_dir, args.scale)
  config = json.loads((out_dir / 'config.json').read_text())
  print(f'wrote {out_dir}: {config["model"]} x{config["hr_size"] // config["input_size"]} '
        f'(evaluate/predict/benchmark --workdir {out_dir}, or main --init_from {out_dir})')
  return 0


def console() -> None:
  cli.console_main(main)


if __name__ == '__main__':
  console()
