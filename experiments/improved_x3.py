"""Experiment improved_x3: the preset flax_sr/configs/improved_x3.py, trained and evaluated.

    python experiments/improved_x3.py --workdir runs/improved_x3 [--train_minutes M]
"""
from common import run

if __name__ == '__main__':
  run('improved_x3')
