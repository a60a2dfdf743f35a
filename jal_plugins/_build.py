"""Build step (setuptools ``build_py``): ship the repository's root ``registry.toml`` inside the package.

The design card keeps ``registry.toml`` at the root, where a source checkout reads it; a wheel has no
root, so the file goes to ``jal_plugins/registry.toml``. Editable installs read the root file.
"""

from pathlib import Path

from setuptools.command.build_py import build_py


class BuildPy(build_py):
    def run(self):
        super().run()
        if not self.editable_mode:
            self.copy_file("registry.toml", str(Path(self.build_lib, "jal_plugins", "registry.toml")))
