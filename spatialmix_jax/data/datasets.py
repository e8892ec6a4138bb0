"""Datasets the project knows: their TFDS names, splits, shapes and normalisation statistics.

Pure data, no TensorFlow: models, validation and benchmarks read it without a data pipeline.
Reading the datasets is `tfds_builders.py`'s job.
"""

import dataclasses

from spatialmix_jax.infra.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  num_classes: int
  image_shape: tuple  # (H, W, C) as stored
  mean: tuple  # per channel, of images scaled to [0, 1]; the models normalise internally
  std: tuple
  train_split: str = 'train'
  test_split: str = 'test'
  prepare_hint: str = ''


def _tfds_build_hint(name):
  return f'tfds build {name} --data_dir=DATA_DIR (on a machine with internet access)'


DATASETS = {
    'digits': DatasetSpec(10, (8, 8, 1), (0.3055,), (0.3759,),
                          prepare_hint='prepared automatically from scikit-learn'),
    'mnist': DatasetSpec(10, (28, 28, 1), (0.1307,), (0.3081,),
                         prepare_hint=_tfds_build_hint('mnist')),
    'fashion_mnist': DatasetSpec(10, (28, 28, 1), (0.2860,), (0.3530,),
                                 prepare_hint=_tfds_build_hint('fashion_mnist')),
    'cifar10': DatasetSpec(10, (32, 32, 3), (0.4914, 0.4822, 0.4465),
                           (0.2470, 0.2435, 0.2616),
                           prepare_hint=_tfds_build_hint('cifar10')),
    'cifar100': DatasetSpec(100, (32, 32, 3), (0.5071, 0.4865, 0.4409),
                            (0.2673, 0.2564, 0.2762),
                            prepare_hint=_tfds_build_hint('cifar100')),
    # Variable-size images; the input pipeline crops/resizes to config.augment.image_size.
    'imagenet2012': DatasetSpec(
        1000, (None, None, 3), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
        test_split='validation',
        prepare_hint=('download ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar by hand '
                      'into DATA_DIR/downloads/manual/, then run '
                      'tfds build imagenet2012 --data_dir=DATA_DIR')),
}


def get_spec(name):
  if name not in DATASETS:
    raise ConfigError(f'Unknown dataset {name!r}; choose one of {sorted(DATASETS)}.')
  return DATASETS[name]
