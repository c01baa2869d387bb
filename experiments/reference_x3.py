"""Model 2 of the original design: 32x32 -> 96x96 (x3) on STL-10, with its recipe.

Reference model (4 blocks, upsampling on the last block), MSE, Adam 1e-4, batch 64, 10 epochs
(``--train_minutes`` caps the wall-clock time), MATLAB-bicubic LR made in the step.
"""
from common import run

RECIPE = dict(dataset='stl10', input_size=32, model='reference', loss='mse', learning_rate=1e-4,
              batch_size=64, num_epochs=10, eval_examples=None)

if __name__ == '__main__':
  run('reference_x3', RECIPE)
