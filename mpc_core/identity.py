"""Identities of servers and clients, as carried in certificate SANs.

Every certificate of a cluster names exactly one identity in a URI
SubjectAltName, and the URI's namespace says the role:

* ``urn:mpc:server:<name>`` for the three servers (``server-0`` ...);
* ``urn:mpc:client:<name>`` for data owners and receivers (``bank-1`` ...).

The CA issues both kinds, so a client certificate can never claim a server
role. This module is pure: it parses and validates strings only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from mpc_core.errors import InvalidArgumentError

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
"""Identities, dataset names and job ids: 1-128 chars of [A-Za-z0-9._-]."""

URI_PREFIX = "urn:mpc:"


class Role(Enum):
    """Whether a certificate belongs to a server or a client."""

    SERVER = "server"
    CLIENT = "client"


MAX_SHOWN = 64


def shown(value: object) -> str:
    """``repr(value)``, cut short: client input echoed in an error stays small."""
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else f"{text[: MAX_SHOWN - 5]}...{text[-1]} ({len(text)} chars)"


def validate_name(value: str, what: str) -> str:
    """Return ``value`` if it is a valid name, else raise naming ``what``."""
    if not isinstance(value, str) or NAME_PATTERN.fullmatch(value) is None:
        raise InvalidArgumentError(
            f"invalid {what} {shown(value)}: use 1-128 characters of letters, digits, "
            "'.', '_' and '-', starting with a letter or digit"
        )
    return value


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a role and a name."""

    role: Role
    name: str

    @property
    def uri(self) -> str:
        """The SAN URI that carries this identity in a certificate."""
        return f"{URI_PREFIX}{self.role.value}:{self.name}"

    def __str__(self) -> str:
        """The bare name, as used in grants and error messages."""
        return self.name


def parse_identity_uri(uri: str) -> Principal | None:
    """Parse ``urn:mpc:<role>:<name>``; None if ``uri`` is not one of ours."""
    if not uri.startswith(URI_PREFIX):
        return None
    role_text, _, name = uri[len(URI_PREFIX) :].partition(":")
    try:
        role = Role(role_text)
    except ValueError:
        return None
    if NAME_PATTERN.fullmatch(name) is None:
        return None
    return Principal(role, name)
