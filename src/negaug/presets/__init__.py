"""The YAML presets of `negaug train PRESET` and the YAML dialect of every negaug config file
(read by `negaug.experiment.config`; nothing here imports torch, so the CLI's help can list them).
The presets of `negaug pretrain` live apart, in `negaug.presets.pretrain`."""
import re
from importlib import resources

import yaml


def preset_names(package: str = __name__) -> list[str]:
    """Names of the bundled presets of `package` (default: those of `negaug train`), sorted."""
    files = resources.files(package).iterdir()
    return sorted(f.name[: -len(".yaml")] for f in files if f.name.endswith(".yaml"))


MAX_YAML_CHARS = 1_000_000  # a config is a few KB


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads `1e-4` as a string (it wants `1.0e-4`); people type `1e-4`, so floats
    without a dot are floats here too. Aliases (`*name`) are refused: a few hundred bytes of
    nested aliases expand to gigabytes."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "YAML aliases (*name) are not allowed in negaug configs",
                                              self.peek_event().start_mark)
        return super().compose_node(parent, index)


# YAML 1.1 reads `1:20` as 80 (base 60) and `017` as 15 (octal): values nobody means. negaug's
# dialect reads them as strings, which every numeric key refuses by name (`config._coerce`).
SEXAGESIMAL_OR_OCTAL = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?|0[0-7_]+)$")
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers
            if tag not in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?"
               r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."),
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"""),
    list("-+0123456789"),
)


def yaml_load(text: str):
    """yaml.safe_load, except that `1e-4` is a float, aliases are refused and the text is at most
    MAX_YAML_CHARS characters (yaml.YAMLError otherwise)."""
    if len(text) > MAX_YAML_CHARS:
        raise yaml.YAMLError(f"the YAML text is longer than {MAX_YAML_CHARS} characters")
    try:
        return yaml.load(text, Loader=_Loader)
    except RecursionError:
        raise yaml.YAMLError("the YAML is nested too deeply") from None
