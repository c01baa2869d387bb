"""The reference model with the improved recipe (see improved_x3.py), x6 on STL-10."""
from common import run
from improved_x3 import RECIPE

if __name__ == '__main__':
  run('improved_x6', dict(RECIPE, input_size=16))
