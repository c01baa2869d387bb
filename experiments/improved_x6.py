"""Experiment improved_x6: the preset flax_sr/configs/improved_x6.py, trained and evaluated.

    python experiments/improved_x6.py --workdir runs/improved_x6 [--train_minutes M]
"""
from common import run

if __name__ == '__main__':
  run('improved_x6')
