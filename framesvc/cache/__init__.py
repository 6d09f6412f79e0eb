"""The media cache: built chunks, frames and previews as files, one build per distinct content.

Callers choose opaque string keys derived from what the item contains (data id, data
version, source frames, quality, format), so a new data version simply makes new keys
and old ones age out by LRU; nothing needs to be invalidated by hand in the normal case.
See ``media_cache`` for how publication, single-flight and eviction work.
"""

from framesvc.cache.items import CachedItem, CacheError, CacheTimeout, ItemMeta, make_etag
from framesvc.cache.media_cache import DEFAULT_WAIT_TIMEOUT, Build, CacheStats, MediaCache

__all__ = [
    "DEFAULT_WAIT_TIMEOUT",
    "Build",
    "CacheError",
    "CacheStats",
    "CacheTimeout",
    "CachedItem",
    "ItemMeta",
    "MediaCache",
    "make_etag",
]
