"""Stores: the ends of a copy behind one interface (base.Store). Each implementation lives in its
own module (azure.py: Azure Blob Storage), imported where it is used, so that one store's SDK is
never loaded for another."""

from replicator.stores.base import (
    ContentHeaders,
    Data,
    IncompleteUpload,
    ListedObject,
    ObjectVersion,
    Part,
    ReplicaRecord,
    Store,
    StoreAccessError,
    StoredObject,
    StoreLimits,
    StoreMissingError,
    StoreUnavailableError,
    Upload,
)

__all__ = [
    "ContentHeaders",
    "Data",
    "IncompleteUpload",
    "ListedObject",
    "ObjectVersion",
    "Part",
    "ReplicaRecord",
    "Store",
    "StoreAccessError",
    "StoreLimits",
    "StoreMissingError",
    "StoreUnavailableError",
    "StoredObject",
    "Upload",
]
