"""The config a workdir was written with (its config.json), e.g. by an import of PyTorch weights.

  python main.py --config=configs/workdir.py:DIR --workdir=DIR --job=eval
  python main.py --config=configs/workdir.py:DIR --config.init_from=DIR \
      --config.mode=chans --workdir=NEW

Fields config.json lacks keep their defaults (spatialmix_jax/config/config_schema.py).
"""

from spatialmix_jax.jobs import evaluation


def get_config(workdir):
  return evaluation.load_saved_config(workdir)
