"""Which bundles the minutes-long per-bundle tests run on (a clean-interpreter package run, torchrun training).

Bundles whose configs are identical once their own name and the ids their ``network_def`` reads (backbone, attention,
...) are set aside are one configuration with different networks, like the HybridMedNet variants. These tests run on
the cheapest member of each such group (fewest multiply-accumulates per forward where the index counts them, as for
the HybridMedNet bundles, else fewest parameters); everything that depends on the network (forward shapes,
TorchScript and ONNX export, the train/evaluate/infer workflows, determinism) still runs on every bundle.
``MEDZOO_ALL_BUNDLES=1`` runs them on every bundle.
"""

import json
import os
import re

from medzoo.paths import bundle_names
from medzoo.zoo import INDEX_FILE, Bundle

ALL_BUNDLES = os.environ.get("MEDZOO_ALL_BUNDLES") == "1"


def _configuration(bundle: Bundle) -> str:
    """The bundle's configs as one canonical text, without its name and the ids ``network_def`` reads."""
    configs = {}
    for name in bundle.configs:
        if not name.endswith(".json") or name == "metadata.json":
            continue
        config = json.loads(bundle.config_path(name).read_text().replace(bundle.name, "<bundle>"))
        network_ids = set(re.findall(r"@(\w+)", json.dumps(config.get("network_def", ""))))
        configs[name] = {k: v for k, v in config.items() if k != "network_def" and k not in network_ids}
    return json.dumps(configs, sort_keys=True)


def smallest_of_each_configuration(names: list[str] | None = None) -> list[str]:
    """One bundle per configuration (see the module docstring), the cheapest one; all bundles with
    ``MEDZOO_ALL_BUNDLES=1``. Sorted by name."""
    names = bundle_names() if names is None else names
    if ALL_BUNDLES:
        return sorted(names)
    cost = {
        e["name"]: (e.get("performance") or {}).get("macs") or e["parameters"]
        for e in json.loads(INDEX_FILE.read_text())["bundles"]
    }
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(_configuration(Bundle(name)), []).append(name)
    return sorted(min(group, key=lambda n: cost[n]) for group in groups.values())
