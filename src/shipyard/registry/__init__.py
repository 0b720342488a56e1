"""The model registry: numbered versions per name, aliases with history, tags, archive."""

from shipyard.registry.models import Registry

__all__ = ["Registry"]
