"""Trains or evaluates a spatialmix-jax config (`spatialmix_jax/jobs/main.py` has the flags).

  python main.py --config=configs/default.py --workdir=/tmp/digits
  python main.py --config=configs/default.py --workdir=/tmp/digits --job=eval
  python main.py --config=configs/convmixer_cifar10.py --config.mode=space --workdir=...

`--job` is what to do with the workdir (train, which resumes it, or eval); `--config.mode` is
which mixers the model learns (full, chans, space). Where the package is installed without
this repository, `spatialmix-jax` (or `python -m spatialmix_jax.jobs.main`) is the same command.
"""

from spatialmix_jax.infra import host_memory

if __name__ == '__main__':  # before any import starts a thread (host_memory says why)
  host_memory.retain_freed_memory()

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app

from spatialmix_jax.config import cli
from spatialmix_jax.jobs import main as command
# pylint: enable=g-import-not-at-top,wrong-import-position

command.define_flags()  # at import, as before: tests drive `main.main` with absl's app.run
main = command.main

if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
