"""The schema every config overrides: `spatialmix_jax/config/config_schema.py`, re-exported here so
that config files read `from configs import base; config = base.get_config()`.

The schema lives inside the package because the package itself needs it at run time (to read
a workdir's config.json back), also when it is installed without this repository.
"""

from spatialmix_jax.config.config_schema import get_config  # pylint: disable=unused-import
