"""Who is asking: a signed token (JWT) from the force's identity provider, verified with PyJWT.

The token must be signed by a trusted key (a PEM public key in tests and small deployments, or the identity
provider's JWKS URL), be unexpired, name the issuer and the audience `interchange-enquiry`, and carry the
claims `sub` (the officer), `force` (PNC force code) and `role`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jwt

from broker.enquiry.model import BAD_TOKEN, NO_IDENTITY, TOKEN_EXPIRED, EnquiryRefused, Identity

AUDIENCE = "interchange-enquiry"
ALGORITHMS = ("RS256", "ES256")


@dataclass
class Verifier:
    """Verifies bearer tokens against public keys or a JWKS endpoint."""

    public_keys: list[Any] = field(default_factory=list)
    jwks_url: str | None = None
    issuer: str | None = None
    leeway_seconds: int = 5
    _jwks: Any = None

    def identity(self, authorization: str | None) -> Identity:
        """The officer named by an `Authorization: Bearer <token>` header; raises EnquiryRefused."""
        if not authorization or not authorization.lower().startswith("bearer ") or not authorization[7:].strip():
            raise EnquiryRefused(NO_IDENTITY, "no identity: send Authorization: Bearer <token> from your force")
        token = authorization[7:].strip()
        claims = self._claims(token)
        missing = [c for c in ("sub", "force", "role") if not isinstance(claims.get(c), str) or not claims[c]]
        if missing:
            raise EnquiryRefused(BAD_TOKEN, f"the token lacks the claim(s) {', '.join(missing)}")
        return Identity(claims["sub"], claims["force"], claims["role"])

    def _claims(self, token: str) -> dict[str, Any]:
        options: Any = {"require": ["exp", "sub"]}
        last: Exception | None = None
        for key in self._keys(token):
            try:
                return jwt.decode(
                    token,
                    key,
                    algorithms=list(ALGORITHMS),
                    audience=AUDIENCE,
                    issuer=self.issuer,
                    leeway=self.leeway_seconds,
                    options=options,
                )
            except jwt.ExpiredSignatureError as exc:
                raise EnquiryRefused(TOKEN_EXPIRED, "the token has expired: sign in again") from exc
            except jwt.InvalidSignatureError as exc:
                last = exc
            except jwt.PyJWTError as exc:
                raise EnquiryRefused(BAD_TOKEN, f"the token is not valid: {exc}") from exc
        raise EnquiryRefused(BAD_TOKEN, "the token's signature is not from a trusted identity provider") from last

    def _keys(self, token: str) -> list[Any]:
        if self.jwks_url:
            if self._jwks is None:
                self._jwks = jwt.PyJWKClient(self.jwks_url, cache_keys=True)
            try:
                return [self._jwks.get_signing_key_from_jwt(token).key]
            except jwt.PyJWTError as exc:
                raise EnquiryRefused(BAD_TOKEN, f"no trusted key for this token: {exc}") from exc
        return list(self.public_keys)


def load_public_keys(paths: list[str]) -> list[Any]:
    """PEM public keys from files (RSA or EC)."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    return [load_pem_public_key(open(p, "rb").read()) for p in paths]
