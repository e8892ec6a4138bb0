"""docs/quickstart.ipynb runs top to bottom (with fewer steps) and produces real results; the
committed copy shows its figures and holds the code of its paired docs/quickstart.py."""

import json
import os

import pytest

REASON = 'the notebook runner is not installed (pip install -e ".[test]")'
nbclient = pytest.importorskip('nbclient', reason=REASON)
nbformat = pytest.importorskip('nbformat', reason=REASON)
jupytext = pytest.importorskip('jupytext', reason=REASON)
pytest.importorskip('ipykernel', reason=REASON)

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'docs')
NOTEBOOK = os.path.join(DOCS, 'quickstart.ipynb')
STEPS = 60  # enough for every run to beat chance by far, and the test to stay near a minute


def _code(notebook):
  return [cell.source.strip() for cell in notebook.cells if cell.cell_type == 'code']


def _figures(notebook):
  return [output for cell in notebook.cells for output in cell.get('outputs', [])
          if 'image/png' in output.get('data', {})]


def test_committed_notebook_shows_figures_and_matches_its_py():
  committed = nbformat.read(NOTEBOOK, as_version=4)
  assert len(_figures(committed)) == 4  # accuracies, envelopes, FGSM, un-shuffling
  assert not [o for c in committed.cells for o in c.get('outputs', [])
              if o.get('output_type') == 'error']
  paired = jupytext.read(os.path.join(DOCS, 'quickstart.py'))
  assert _code(paired) == _code(committed), (
      'docs/quickstart.py and .ipynb differ: run jupytext --sync docs/quickstart.py, then '
      're-execute the notebook (see docs/quickstart.py)')


def test_quickstart_executes_top_to_bottom(tmp_path, monkeypatch):
  workdir, data_dir = tmp_path / 'runs', tmp_path / 'data'
  data_dir.mkdir()  # the digits are prepared here, not in the user's cache
  monkeypatch.setenv('QUICKSTART_STEPS', str(STEPS))
  monkeypatch.setenv('QUICKSTART_WORKDIR', str(workdir))
  monkeypatch.setenv('QUICKSTART_DATA_DIR', str(data_dir))
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  # Raises CellExecutionError, naming the cell, if any cell fails.
  nbclient.NotebookClient(notebook, timeout=600, kernel_name='python3',
                          resources={'metadata': {'path': DOCS}}).execute()

  assert len(_figures(notebook)) == 4
  with open(workdir / 'summary.json') as f:
    summary = json.load(f)
  assert summary['steps'] == STEPS
  for mode, accuracy in summary['test_accuracy'].items():
    assert accuracy > 0.5, (mode, accuracy)  # chance is 0.1
    assert summary['frozen_unchanged'][mode] is True
    fgsm = summary['fgsm'][mode]
    assert fgsm['0'] == pytest.approx(accuracy)  # ε = 0 is the clean test set
    assert fgsm['32'] < fgsm['0']
  coverage = summary['coverage']
  assert coverage['random (the frozen init)'] > coverage['smoothed random, σ=1']
  assert summary['unshuffle_psnr'] > summary['scrambled_psnr'] + 3.0
