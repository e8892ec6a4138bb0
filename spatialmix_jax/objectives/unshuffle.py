"""Pixel un-shuffling (paper §4.4): undo one fixed random permutation of pixel positions.

The same permutation, drawn from `config.unshuffle.permutation_seed`, scrambles every image;
all channels of a pixel move together. The model sees the scrambled image and is trained with
MSE to output the original; quality is PSNR with a data range of 1.
"""

import jax.numpy as jnp
import numpy as np

from spatialmix_jax.infra import plotting


def pixel_permutation(seed, height, width):
  """A permutation of the H*W pixel positions, the same on every host and backend."""
  return np.random.default_rng(seed).permutation(height * width)


def scramble(images, permutation):
  """images (N, H, W, C): output pixel i is input pixel permutation[i]."""
  n, h, w, c = images.shape
  return images.reshape(n, h * w, c)[:, permutation].reshape(n, h, w, c)


def unscramble(images, permutation):
  return scramble(images, np.argsort(permutation))


def psnr(mse, data_range=1.0):
  return 10.0 * jnp.log10(data_range ** 2 / mse)


def scrambled_psnr(images, permutation):
  """Per-image PSNR of the scrambled input against the original: the do-nothing baseline."""
  mse = jnp.mean(jnp.square(scramble(images, permutation) - images), axis=(1, 2, 3))
  return psnr(jnp.maximum(mse, 1e-10))


def save_figure(model, permutation, variables, eval_data, path, num_images=8):
  """Rows of ground truth / scrambled input / reconstruction for the first test images."""
  plt = plotting.pyplot()
  batch = next(iter(eval_data.iterate()))
  images = np.asarray(batch['image'][:num_images][batch['mask'][:num_images] > 0])
  scrambled = np.asarray(scramble(images, permutation))
  restored = np.asarray(model.apply(variables, scrambled, train=False))
  rows = (('ground truth', images), ('scrambled', scrambled),
          ('reconstruction', np.clip(restored, 0.0, 1.0)))
  fig, axes = plt.subplots(3, len(images), figsize=(1.2 * len(images), 3.9), squeeze=False)
  for row, (title, pictures) in enumerate(rows):
    for column, picture in enumerate(pictures):
      ax = axes[row, column]
      grey = picture.shape[-1] == 1
      ax.imshow(picture[..., 0] if grey else picture, cmap='gray' if grey else None,
                vmin=0.0, vmax=1.0, interpolation='nearest')
      ax.set_xticks([])
      ax.set_yticks([])
    axes[row, 0].set_ylabel(title, fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path
