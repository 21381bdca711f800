"""The layering the design promises: a headless core and a fast plugin start."""

from __future__ import annotations

import subprocess
import sys


def test_core_imports_no_gui(monkeypatch, repo_root):
    """import-linter contracts in pyproject.toml: no napari/Qt below the front end."""
    from importlinter.cli import lint_imports

    monkeypatch.chdir(repo_root)
    assert lint_imports(config_filename=str(repo_root / "pyproject.toml"), no_cache=True) == 0


def test_plugin_entry_points_import_light():
    """What napari imports to list the plugin's contributions pulls in no torch."""
    code = (
        "import sys, napari_segclr._reader, napari_segclr._sample_data, napari_segclr.layers;"
        "heavy = sorted(m for m in ('torch', 'umap', 'napari', 'qtpy') if m in sys.modules);"
        "print(','.join(heavy))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
