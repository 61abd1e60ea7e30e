"""A stand-in for an object store without rename, for tests/test_store.py: the local filesystem
under the protocol `norename://`, on which every move or rename raises (as on S3 or GCS there is no
rename to rely on). A Ray worker finds it through the `fsspec.specs` entry point the test installs."""
from __future__ import annotations

from fsspec.implementations.local import LocalFileSystem


class NoRename(NotImplementedError):
    pass


class NoRenameFileSystem(LocalFileSystem):
    protocol = ("norename",)

    def __init__(self, *args, **kwargs):
        kwargs["auto_mkdir"] = True  # an object store has no folders to create first
        super().__init__(*args, **kwargs)

    def mv(self, path1, path2, *args, **kwargs):
        raise NoRename(f"norename:// cannot rename {path1} to {path2}")

    rename = move = mv

    def _open(self, path, mode="rb", block_size=None, autocommit=True, **kwargs):
        if not autocommit:  # LocalFileOpener commits a deferred write by renaming a temporary file
            raise NoRename(f"norename:// cannot commit {path} by a rename")
        return super()._open(path, mode, block_size=block_size, autocommit=autocommit, **kwargs)
