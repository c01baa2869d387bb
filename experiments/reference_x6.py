"""Model 1 of the original design: 16x16 -> 96x96 (x6) on STL-10, with its recipe."""
from common import run
from reference_x3 import RECIPE

if __name__ == '__main__':
  run('reference_x6', dict(RECIPE, input_size=16))
