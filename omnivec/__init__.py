"""omnivec: self-hosted multimodal embedding inference and retrieval."""

__version__ = "0.1.0"
