"""glucoledger.vault: encrypted off-chain batches, their keys, and content-addressed blobs.

Modules: ``batch`` (salted leaves, signed uploads, the blob format), ``blobstore`` (the
BlobStore interface, filesystem and memory backends), ``store`` (the Vault: sealing, key
store and batch index in SQLite). Cryptography is reached only through ``glucoledger.crypto``.
"""

from .batch import Upload, prepare_upload
from .blobstore import BlobStore, FsBlobStore, MemoryBlobStore
from .store import BatchIntegrityError, BatchRow, Vault

__all__ = ["BatchIntegrityError", "BatchRow", "BlobStore", "FsBlobStore", "MemoryBlobStore",
           "Upload", "Vault", "prepare_upload"]
