"""Models: reading (IR, ONNX, TFLite), preprocessing in the graph, devices, compiling and running."""

from cluster.models.devices import available_devices, require_device
from cluster.models.engine import EngineCache, InferenceEngine
from cluster.models.preprocessing import Preprocessing, apply_preprocessing
from cluster.models.reading import read_model, save_ir

__all__ = [
    "EngineCache",
    "InferenceEngine",
    "Preprocessing",
    "apply_preprocessing",
    "available_devices",
    "read_model",
    "require_device",
    "save_ir",
]
