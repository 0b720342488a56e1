"""Names users give things, and the model URIs that point at registered versions."""

from __future__ import annotations

import re
from dataclasses import dataclass

from shipyard.errors import InvalidInput, InvalidURI

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_URI = re.compile(r"(?:models:/)?(?P<name>[^/@]+)(?:/(?P<version>[^/@]+)|@(?P<alias>[^/@]+))")
URI_FORMS = "models:/NAME/VERSION, models:/NAME@ALIAS, NAME/VERSION or NAME@ALIAS"


def validate_name(value: str, *, what: str) -> str:
    """Return ``value`` if it is a safe identifier (letters, digits, ``._-``; 1-128 chars)."""
    if not isinstance(value, str) or not _NAME.fullmatch(value) or ".." in value:
        raise InvalidInput(
            f"{what} {value!r} is not valid: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
            field=what,
        )
    return value


def validate_alias(value: str) -> str:
    """Aliases are names that cannot be mistaken for a version number."""
    validate_name(value, what="alias")
    if value.isdigit() or value == "latest":
        raise InvalidInput(
            f"alias {value!r} is not valid: an alias cannot be a number or 'latest'", field="alias"
        )
    return value


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A parsed model URI: a ``version``, an ``alias``, or neither (the latest version)."""

    name: str
    version: int | None = None
    alias: str | None = None

    @property
    def latest(self) -> bool:
        return self.version is None and self.alias is None

    def __str__(self) -> str:
        if self.alias is not None:
            return f"models:/{self.name}@{self.alias}"
        return f"models:/{self.name}/{self.version if self.version is not None else 'latest'}"


def parse_model_uri(uri: str) -> ModelRef:
    """Parse ``models:/churn/3``, ``models:/churn@production``, ``churn/latest`` and the like."""
    match = _URI.fullmatch(uri.strip()) if isinstance(uri, str) else None
    if match is None:
        raise InvalidURI(
            f"model URI {uri!r} is not valid; accepted forms: {URI_FORMS}", field="uri"
        )
    try:
        name = validate_name(match["name"], what="model name")
        alias = None if match["alias"] is None else validate_alias(match["alias"])
    except InvalidInput as exc:
        raise InvalidURI(f"{exc.message} (accepted forms: {URI_FORMS})", field="uri") from exc
    if alias is not None:
        return ModelRef(name, alias=alias)
    version = match["version"]
    if version == "latest":
        return ModelRef(name)
    if not version.isdigit() or int(version) < 1:
        raise InvalidURI(
            f"model URI {uri!r} has version {version!r}; a version is a positive integer or "
            f"'latest' (accepted forms: {URI_FORMS})",
            field="uri",
        )
    return ModelRef(name, version=int(version))
