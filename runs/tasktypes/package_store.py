"""Where team code packages are kept, for the upload (runs/packages.py) and the workers
(runs/tasktypes/python.py) alike: wheels in the "packages" storage under their sha256, and
this host's cache of their environments."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import Storage, storages

from runs.tasktypes.environments import EnvironmentCache, PackageSpec
from runs.tasktypes.sandbox import interpreter
from workflows.models import CodePackage

__all__ = [
    "StoredWheelError",
    "environment_cache",
    "package_spec",
    "package_wheel",
    "store_wheel",
    "wheel_path",
]

STORAGE = "packages"


class StoredWheelError(Exception):
    """The stored wheel of a package is missing, or no longer matches its digest."""


def wheel_path(digest: str, filename: str) -> str:
    """Where a wheel lives in the "packages" storage: by its sha256 (the same wheel
    uploaded to two tenants is stored once)."""
    return f"sha256/{digest[:2]}/{digest}/{filename}"


def package_wheel(package: CodePackage) -> bytes:
    """The stored wheel's bytes, checked against the package's digest."""
    path = wheel_path(package.digest, package.filename)
    try:
        with _storage().open(path, "rb") as handle:
            data: bytes = handle.read()
    except FileNotFoundError:
        raise StoredWheelError(
            f"the wheel of {package.name} {package.version} is missing from the package "
            f"storage ({path})"
        ) from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != package.digest:
        raise StoredWheelError(
            f"the stored wheel of {package.name} {package.version} ({path}) has sha256 "
            f"{actual}, not its digest {package.digest}"
        )
    return data


def package_spec(package: CodePackage) -> PackageSpec:
    """What the environment cache needs to build the package's environment."""
    return PackageSpec(
        digest=package.digest,
        name=package.name,
        version=package.version,
        filename=package.filename,
        lock=tuple(package.lock),
    )


def environment_cache() -> EnvironmentCache:
    """This host's cache of package environments, as the settings describe it (the upload
    builds into it; workers run from it): one object per process and settings, so what it
    has read of its environments' markers is kept between tasks."""
    return _cache_of(
        str(settings.PACKAGE_ENV_DIR),
        settings.PACKAGE_ENV_MAX_MB,
        settings.PACKAGE_INDEX_URL or None,
        tuple(settings.PACKAGE_FIND_LINKS),
        settings.PACKAGE_BUILD_TIMEOUT,
    )


@functools.lru_cache(maxsize=8)
def _cache_of(
    root: str, max_mb: int, index_url: str | None, find_links: tuple[str, ...], timeout: int
) -> EnvironmentCache:
    return EnvironmentCache(
        Path(root),
        max_bytes=max_mb * 1024 * 1024,
        python=interpreter(),
        index_url=index_url,
        find_links=list(find_links),
        timeout=timeout,
    )


def _storage() -> Storage:
    return storages[STORAGE]


def store_wheel(digest: str, filename: str, wheel: bytes) -> None:
    """Keep a wheel under its digest (once: the same wheel of two tenants is one file)."""
    storage = _storage()
    path = wheel_path(digest, filename)
    if storage.exists(path):
        return
    saved = storage.save(path, ContentFile(wheel))
    if saved != path:  # stored meanwhile by a concurrent upload of the same wheel
        storage.delete(saved)
