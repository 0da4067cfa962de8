"""The YAML presets of `negaug train PRESET` and the YAML dialect of every negaug config file
(read by `negaug.experiment.config`; nothing here imports torch, so the CLI's help can list them)."""
import re
from importlib import resources

import yaml


def preset_names() -> list[str]:
    """Names of the bundled presets, sorted."""
    files = resources.files(__name__).iterdir()
    return sorted(f.name[: -len(".yaml")] for f in files if f.name.endswith(".yaml"))


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads `1e-4` as a string (it wants `1.0e-4`); people type `1e-4`, so floats
    without a dot are floats here too."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"""),
    list("-+0123456789"),
)


def yaml_load(text: str):
    """yaml.safe_load, except that `1e-4` is a float."""
    return yaml.load(text, Loader=_Loader)
