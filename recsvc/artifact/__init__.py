"""The model artifact: the one format training writes and serving memory-maps.

Layout (see models/README.md): `<models_dir>/<model_id>/manifest.json` plus one `.npy` per array.
No pickle anywhere; every file is listed in the manifest with its sha256.
"""

from recsvc.artifact.manifest import FORMAT_VERSION, Manifest, new_model_id
from recsvc.artifact.read import LoadedModel, load_model
from recsvc.artifact.write import write_model

__all__ = ["FORMAT_VERSION", "LoadedModel", "Manifest", "load_model", "new_model_id", "write_model"]
