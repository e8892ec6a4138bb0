"""Spatial filter families and init schemes."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spatialmix_jax.kernels import depthwise
from spatialmix_jax.modeling import filters


def _init(family, shape, scheme='torch', seed=0, **kwargs):
  return np.asarray(filters.kernel_init(family, scheme, **kwargs)(jax.random.key(seed), shape))


def _per_filter_energy(kernel):
  return np.sum(np.square(kernel), axis=(0, 1)).ravel()


def test_same_repeats_d_filters_for_every_channel():
  channels, d = 5, 3
  kernel = _init('same', (4, 4, 1, channels * d), depth_multiplier=d)
  per_channel = kernel[:, :, 0].reshape(4, 4, channels, d)
  for c in range(1, channels):
    np.testing.assert_array_equal(per_channel[:, :, c], per_channel[:, :, 0])
  # The d filters of one channel are still distinct random filters.
  assert not np.allclose(per_channel[..., 0, 0], per_channel[..., 0, 1])


def test_box_is_constant_and_identity_is_delta():
  box = _init('box', (5, 5, 1, 6))
  assert np.all(box == box.flat[0]) and box.flat[0] > 0
  for k in (3, 4, 8):
    delta = _init('identity', (k, k, 1, 6))
    centre = (k - 1) // 2
    assert np.count_nonzero(delta) == 6
    assert np.all(delta[centre, centre] > 0)


@pytest.mark.parametrize('k', [3, 4])
def test_identity_is_an_unshifted_identity_under_same_padding(k):
  x = jax.random.normal(jax.random.key(1), (2, 7, 7, 3))
  delta = _init('identity', (k, k, 1, 3))
  delta = delta / delta.max()
  np.testing.assert_allclose(depthwise.depthwise_conv(x, jnp.asarray(delta)), x, atol=1e-6)


def _high_frequency_fraction(kernel, size=16):
  spectrum = np.abs(np.fft.fft2(kernel, s=(size, size), axes=(0, 1))) ** 2
  freq = np.abs(np.fft.fftfreq(size))
  high = (freq[:, None] > 0.25) | (freq[None, :] > 0.25)
  return (spectrum[high].sum(axis=0) / spectrum.reshape(size * size, -1).sum(axis=0)).mean()


def test_smooth_has_less_high_frequency_energy_than_random():
  shape = (7, 7, 1, 256)
  rough = _high_frequency_fraction(_init('random', shape))
  smooth = _high_frequency_fraction(_init('smooth', shape, smooth_sigma=1.0))
  assert smooth < 0.25 * rough, (smooth, rough)


def test_smooth_keeps_each_filters_energy():
  shape = (5, 5, 1, 32)
  np.testing.assert_allclose(_per_filter_energy(_init('smooth', shape, seed=3)),
                             _per_filter_energy(_init('random', shape, seed=3)), rtol=1e-5)


@pytest.mark.parametrize('scheme', filters.INIT_SCHEMES)
@pytest.mark.parametrize('family', filters.FAMILIES)
def test_families_share_the_random_energy_scale(family, scheme):
  k, channels, d = 5, 8, 512
  expected = k * k * filters.weight_variance(scheme, (k, k, 1, channels * d))
  assert expected == pytest.approx(1 / 3 if scheme == 'torch' else 1.0)
  kernel = _init(family, (k, k, 1, channels * d), scheme, depth_multiplier=d)
  # `same` draws only d distinct filters; 512 filters of 25 weights give ~2% error on the mean.
  assert _per_filter_energy(kernel).mean() == pytest.approx(expected, rel=0.05)


@pytest.mark.parametrize('shape', [(5, 5, 1, 4096), (1, 1, 64, 256)])
def test_torch_init_is_uniform_with_pytorch_bound(shape):
  bound = 1 / math.sqrt(math.prod(shape[:-1]))
  kernel = _init('random', shape)
  assert np.abs(kernel).max() <= bound
  assert kernel.std() == pytest.approx(bound / math.sqrt(3), rel=0.02)
  bias = np.asarray(filters.bias_init('torch', math.prod(shape[:-1]))(jax.random.key(0), (4096,)))
  assert np.abs(bias).max() <= bound and bias.std() == pytest.approx(bound / math.sqrt(3), rel=0.05)


def test_flax_init_is_lecun_normal_with_zero_bias():
  kernel = _init('random', (1, 1, 64, 4096), 'flax')
  assert kernel.std() == pytest.approx(1 / 8, rel=0.02)
  assert not np.any(np.asarray(filters.bias_init('flax', 64)(jax.random.key(0), (8,))))


def test_invalid_choices_name_the_valid_ones():
  with pytest.raises(ValueError, match='random.*same.*box.*identity.*smooth'):
    filters.kernel_init('gabor')
  with pytest.raises(ValueError, match='torch.*flax'):
    filters.kernel_init('random', 'kaiming')
  with pytest.raises(ValueError, match='smooth_sigma'):
    filters.kernel_init('smooth', smooth_sigma=0.0)
