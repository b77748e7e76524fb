"""Generators: the ``Generator`` protocol and the embedded procedural face model SynthFace."""

from lsi_ml.generators.base import (
    FaceGenerator,
    Generator,
    GroundTruthGenerator,
    LatentLevel,
    RenderOutput,
    generator_cache_key,
    generator_signature,
)
from lsi_ml.generators.synthface import (
    ATTRIBUTE_NAMES,
    CLASS_NAMES,
    SynthFace,
    save_identity_grid,
    save_sample_grid,
)

__all__ = [
    "ATTRIBUTE_NAMES",
    "CLASS_NAMES",
    "FaceGenerator",
    "Generator",
    "GroundTruthGenerator",
    "LatentLevel",
    "RenderOutput",
    "SynthFace",
    "generator_cache_key",
    "generator_signature",
    "save_identity_grid",
    "save_sample_grid",
]
