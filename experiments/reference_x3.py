"""Experiment reference_x3: the preset flax_sr/configs/reference_x3.py, trained and evaluated.

    python experiments/reference_x3.py --workdir runs/reference_x3 [--train_minutes M]
"""
from common import run

if __name__ == '__main__':
  run('reference_x3')
