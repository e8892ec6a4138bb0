"""The one matplotlib setup: a headless backend, imported only by what draws."""


def pyplot():
  """matplotlib.pyplot on the Agg backend (no display on TPU VMs and CI machines)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt
