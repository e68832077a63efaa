"""Stores: the ends of a copy behind one interface (base.Store). Each implementation lives in its
own module: s3.py (any S3-compatible bucket, on boto3, which every process loads anyway) is
exported here; azure.py (Azure Blob Storage) is imported where it is used, so that its SDK is never
loaded for another store."""

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
from replicator.stores.s3 import S3Store

__all__ = [
    "ContentHeaders",
    "Data",
    "IncompleteUpload",
    "ListedObject",
    "ObjectVersion",
    "Part",
    "ReplicaRecord",
    "S3Store",
    "Store",
    "StoreAccessError",
    "StoreLimits",
    "StoreMissingError",
    "StoreUnavailableError",
    "StoredObject",
    "Upload",
]
