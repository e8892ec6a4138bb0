"""Pixel un-shuffling (paper §4.4) on the embedded 8×8 digits: no download, minutes on a CPU.

  python main.py --config=configs/unshuffle_digits.py --workdir=/tmp/spatialmix/unshuffle_full \
      --config.mode=full
  python main.py --config=configs/unshuffle_digits.py --workdir=/tmp/spatialmix/unshuffle_chans

One fixed permutation (unshuffle.permutation_seed) scrambles every image; results.json gives
test_psnr next to scrambled_psnr (the scrambled input's own PSNR) and unshuffle.png shows
ground truth / scrambled / reconstruction. Depth × (kernel - 1) + 1 = 33 ≥ 2 × 8 - 1, so
every output pixel can see every input pixel.

Measured (2 shared CPU cores, 440 steps, ~3 min each): test_psnr 19.35 dB (chans) and
19.88 dB (full) against scrambled_psnr 5.78 dB.
"""

from configs import base


def get_config():
  config = base.get_config()
  config.dataset = 'digits'
  config.task = 'unshuffle'
  config.mode = 'chans'
  config.model.name = 'unshuffle_convmixer'
  config.model.width = 128
  config.model.depth = 8
  config.model.kernel_size = 5
  config.model.patch_size = 1
  config.batch_size = 64
  config.eval_batch_size = 120
  config.num_epochs = 20
  config.optimizer.name = 'adamw'
  config.optimizer.learning_rate = 0.005
  config.optimizer.weight_decay = 0.0
  config.optimizer.schedule = 'onecycle'
  config.log_every_steps = 50
  config.checkpoint_every_steps = 500
  return config
