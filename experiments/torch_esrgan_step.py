"""ESRGAN's adversarial train step in PyTorch, as BasicSR runs it: the peer ``bench.py --gan``
times flax_sr's GAN step against.

The networks and losses of flax_sr's ``gan.gan_train_step`` (``tests/gan_test.py`` checks that,
with the same weights and LR, this step's generator loss terms equal flax_sr's):

* generator: spandrel's RRDBNet (ESRGAN's), L1 pixel loss;
* perceptual loss: VGG16 feature maps before the ReLU (``torchvision``'s ``vgg16().features``
  layout, filled with the arrays flax_sr uses), L1 per layer, weighted;
* discriminator: Real-ESRGAN's ``UNetDiscriminatorSN`` (``basicsr/archs/discriminator_arch.py``,
  written out here because basicsr does not install beside this torch);
* relativistic average GAN loss (ESRGAN), Adam for both networks, the generator's weight EMA.

The update order is BasicSR's ``ESRGANModel.optimize_parameters``: the generator's update
(the discriminator frozen, its real logits detached), then the discriminator's with the real
and fake halves backpropagated one after the other. That runs the discriminator five times a
step; flax_sr's step shares the real and fake passes between both updates and runs it twice.
The LR batch is given (BasicSR reads LR files); flax_sr's step computes it from the HR batch.
"""

from __future__ import annotations

import copy
import functools
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class UNetDiscriminatorSN(nn.Module):
  """Real-ESRGAN's U-Net discriminator with spectral norm (BasicSR's definition)."""

  def __init__(self, num_feat: int = 64):
    super().__init__()
    sn = nn.utils.spectral_norm
    nf = num_feat
    self.conv0 = nn.Conv2d(3, nf, 3, 1, 1)
    self.conv1 = sn(nn.Conv2d(nf, nf * 2, 4, 2, 1, bias=False))
    self.conv2 = sn(nn.Conv2d(nf * 2, nf * 4, 4, 2, 1, bias=False))
    self.conv3 = sn(nn.Conv2d(nf * 4, nf * 8, 4, 2, 1, bias=False))
    self.conv4 = sn(nn.Conv2d(nf * 8, nf * 4, 3, 1, 1, bias=False))
    self.conv5 = sn(nn.Conv2d(nf * 4, nf * 2, 3, 1, 1, bias=False))
    self.conv6 = sn(nn.Conv2d(nf * 2, nf, 3, 1, 1, bias=False))
    self.conv7 = sn(nn.Conv2d(nf, nf, 3, 1, 1, bias=False))
    self.conv8 = sn(nn.Conv2d(nf, nf, 3, 1, 1, bias=False))
    self.conv9 = nn.Conv2d(nf, 1, 3, 1, 1)

  def forward(self, x):
    lrelu = functools.partial(F.leaky_relu, negative_slope=0.2)
    up = functools.partial(F.interpolate, scale_factor=2, mode='bilinear', align_corners=False)
    x0 = lrelu(self.conv0(x))
    x1 = lrelu(self.conv1(x0))
    x2 = lrelu(self.conv2(x1))
    x3 = lrelu(self.conv3(x2))
    x4 = lrelu(self.conv4(up(x3))) + x2
    x5 = lrelu(self.conv5(up(x4))) + x1
    x6 = lrelu(self.conv6(up(x5))) + x0
    return self.conv9(lrelu(self.conv8(lrelu(self.conv7(x6)))))


VGG16_BLOCKS = (2, 2, 3, 3, 3)


def vgg16_features(convs: Sequence[dict]) -> nn.Sequential:
  """torchvision's ``vgg16().features`` layout, filled from flax_sr's VGG arrays
  (``vgg.load_weights()['convs']``: HWIO kernels and biases)."""
  layers, index = [], 0
  for block, count in enumerate(VGG16_BLOCKS):
    if block:
      layers.append(nn.MaxPool2d(2, 2))
    for _ in range(count):
      kernel, bias = convs[index]['kernel'], convs[index]['bias']
      module = nn.Conv2d(kernel.shape[2], kernel.shape[3], 3, 1, 1)
      with torch.no_grad():
        module.weight.copy_(torch.tensor(np.transpose(kernel, (3, 2, 0, 1))))
        module.bias.copy_(torch.tensor(np.asarray(bias)))
      layers += [module, nn.ReLU()]
      index += 1
  return nn.Sequential(*layers)


def vgg16_layer_index(name: str) -> int:
  """The ``vgg16().features`` index of conv layer ``name`` ('conv3_3'): its output is the
  feature map before the ReLU."""
  block, conv = (int(n) for n in name[4:].split('_'))
  return sum(2 * count + 1 for count in VGG16_BLOCKS[:block - 1]) + 2 * (conv - 1)


class PerceptualLoss(nn.Module):
  """sum_l weight_l * mean |VGG_l(x) - VGG_l(target)| on ImageNet-normalised [0, 1] images."""

  def __init__(self, vgg_weights: dict, layers: Sequence[tuple[str, float]]):
    super().__init__()
    self.layers = {vgg16_layer_index(name): weight for name, weight in layers}
    self.net = vgg16_features(vgg_weights['convs'])[:max(self.layers) + 1].eval()
    for p in self.net.parameters():
      p.requires_grad_(False)
    self.register_buffer('mean', torch.tensor(np.asarray(vgg_weights['mean']))[:, None, None])
    self.register_buffer('std', torch.tensor(np.asarray(vgg_weights['std']))[:, None, None])

  def features(self, x):
    x = (x - self.mean) / self.std
    out = {}
    for index, layer in enumerate(self.net):
      x = layer(x)
      if index in self.layers:
        out[index] = x
    return out

  def forward(self, x, target):
    ours = self.features(x)
    with torch.no_grad():
      theirs = self.features(target)
    return sum(weight * F.l1_loss(ours[i], theirs[i]) for i, weight in self.layers.items())


def _bce(logits, label: float):
  return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, label))


class ESRGANStep:
  """``step(lr, hr) -> {losses}``: one generator and one discriminator update (NCHW [0, 1]
  float tensors), as BasicSR's ESRGANModel with the relativistic GAN loss."""

  def __init__(self, generator: nn.Module, discriminator: nn.Module, vgg_weights: dict, *,
               perceptual_layers: Sequence[tuple[str, float]], pixel_weight: float = 1.0,
               perceptual_weight: float = 1.0, adversarial_weight: float = 0.1,
               learning_rate: float = 2e-4, disc_learning_rate: float | None = None,
               ema_decay: float = 0.999):
    self.generator, self.discriminator = generator.train(), discriminator.train()
    self.generator_ema = copy.deepcopy(generator).eval()
    self.perceptual = PerceptualLoss(vgg_weights, perceptual_layers)
    self.pixel_weight, self.perceptual_weight = pixel_weight, perceptual_weight
    self.adversarial_weight, self.ema_decay = adversarial_weight, ema_decay
    self.optimizer_g = torch.optim.Adam(generator.parameters(), lr=learning_rate)
    self.optimizer_d = torch.optim.Adam(discriminator.parameters(),
                                        lr=disc_learning_rate or learning_rate)

  def __call__(self, lr, hr) -> dict[str, float]:
    generator, discriminator = self.generator, self.discriminator
    for p in discriminator.parameters():
      p.requires_grad_(False)
    self.optimizer_g.zero_grad()
    output = generator(lr)
    pixel = F.l1_loss(output, hr)
    perceptual = self.perceptual(output, hr)
    real_logits = discriminator(hr).detach()
    fake_logits = discriminator(output)
    adversarial = (_bce(real_logits - torch.mean(fake_logits), 0.0)
                   + _bce(fake_logits - torch.mean(real_logits), 1.0)) / 2
    total = (self.pixel_weight * pixel + self.perceptual_weight * perceptual
             + self.adversarial_weight * adversarial)
    total.backward()
    self.optimizer_g.step()

    for p in discriminator.parameters():
      p.requires_grad_(True)
    self.optimizer_d.zero_grad()
    fake_logits = discriminator(output.detach()).detach()
    real_logits = discriminator(hr)
    d_real = _bce(real_logits - torch.mean(fake_logits), 1.0) * 0.5
    d_real.backward()
    fake_logits = discriminator(output.detach())
    d_fake = _bce(fake_logits - torch.mean(real_logits.detach()), 0.0) * 0.5
    d_fake.backward()
    self.optimizer_d.step()

    with torch.no_grad():
      for ema, p in zip(self.generator_ema.parameters(), generator.parameters()):
        ema.mul_(self.ema_decay).add_(p, alpha=1 - self.ema_decay)
    return {'loss': float(total.detach()), 'pixel_loss': float(pixel.detach()),
            'perceptual_loss': float(perceptual.detach()),
            'adversarial_loss': float(adversarial.detach()),
            'd_loss': float((d_real + d_fake).detach())}
