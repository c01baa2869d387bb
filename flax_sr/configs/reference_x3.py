"""Model 2 of the original design: the reference CNN, 32x32 -> 96x96 (x3) on STL-10, its recipe.

Four conv + BatchNorm + ReLU + nearest-upsample blocks (upsampling on the last), MSE, Adam 1e-4,
batch 64, 10 epochs, with the MATLAB-bicubic LR made inside the step.
"""


def get_config() -> dict:
  return dict(dataset='stl10', input_size=32, model='reference', loss='mse',
              learning_rate=1e-4, batch_size=64, num_epochs=10)
