"""The model zoo: ready-made models (MediaPipe selfie segmentation, ...) with their scripts.

``load_zoo()`` lists them; ``entry.build(workdir, cache_dir)`` writes one as OpenVINO IR.
"""

from cluster.zoo.registry import ZooArtifacts, ZooEntry, get_entry, load_zoo

__all__ = ["ZooArtifacts", "ZooEntry", "get_entry", "load_zoo"]
