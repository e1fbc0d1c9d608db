"""omnivec-client: embed, index, search and classify against an omnivec server, sync or async."""

from .async_client import AsyncClient
from .client import Client
from .errors import OmnivecError
from .media import content_id
from .retry import NO_RETRY, RetryPolicy
from .types import AddResult, AudioWindow, Classification, Collection, Embeddings, Hit, Item, ItemError, LabelScore, LabelSet, StoredItem

__version__ = "0.1.0"
__all__ = [
    "AddResult", "AsyncClient", "AudioWindow", "Classification", "Client", "Collection", "Embeddings", "Hit", "Item", "ItemError",
    "LabelScore", "LabelSet", "NO_RETRY", "OmnivecError", "RetryPolicy", "StoredItem", "content_id",
]
