"""A password kept masked in memory, handed to redis-py only when a connection authenticates.

The pool hands objects to plugins (every hook gets the pool), and the
project promises that no credential is reachable from a hook payload, not
even through private attributes. So the backend never keeps the password as
a string: :class:`MaskedPassword` holds it XOR-ed with a random pad, and
:class:`Credentials` (a redis-py credential provider) unmasks it into a
local variable each time a connection sends ``AUTH``. Neither object can
be pickled (a copy is the object itself), and neither shows the password in its ``repr``.
"""

from __future__ import annotations

import os
from typing import NoReturn

from redis.credentials import CredentialProvider


class MaskedPassword:
    """A password that is not stored as text (see the module). ``reveal()`` returns it."""

    __slots__ = ("_masked", "_pad")

    def __init__(self, password: str) -> None:
        raw = password.encode("utf-8")
        self._pad = os.urandom(len(raw))
        self._masked = bytes(a ^ b for a, b in zip(raw, self._pad))

    def reveal(self) -> str:
        """The password (keep it in a local variable only)."""
        return bytes(a ^ b for a, b in zip(self._masked, self._pad)).decode("utf-8")

    def __repr__(self) -> str:
        return "MaskedPassword(***)"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a fleet store password is not pickled")

    def __copy__(self) -> MaskedPassword:
        return self  # immutable

    def __deepcopy__(self, memo: object) -> MaskedPassword:
        return self


class Credentials(CredentialProvider):
    """redis-py's credential provider over a :class:`MaskedPassword` and an optional user name."""

    def __init__(self, username: str | None, password: MaskedPassword) -> None:
        self._username = username
        self._password = password

    def get_credentials(self) -> tuple[str] | tuple[str, str]:
        if self._username is None:
            return (self._password.reveal(),)
        return (self._username, self._password.reveal())

    def __repr__(self) -> str:
        return "Credentials(***)"

    def __reduce__(self) -> NoReturn:
        raise TypeError("fleet store credentials are not pickled")

    def __copy__(self) -> Credentials:
        return self  # immutable

    def __deepcopy__(self, memo: object) -> Credentials:
        return self
