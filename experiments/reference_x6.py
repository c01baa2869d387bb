"""Experiment reference_x6: the preset flax_sr/configs/reference_x6.py, trained and evaluated.

    python experiments/reference_x6.py --workdir runs/reference_x6 [--train_minutes M]
"""
from common import run

if __name__ == '__main__':
  run('reference_x6')
