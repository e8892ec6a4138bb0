"""Pixel un-shuffling (paper §4.4): undo one fixed random permutation of pixel positions.

The same permutation, drawn from `config.unshuffle.permutation_seed`, scrambles every image;
all channels of a pixel move together. The model sees the scrambled image and is trained with
MSE to output the original; quality is PSNR with a data range of 1.
"""

import jax.numpy as jnp
import numpy as np


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
