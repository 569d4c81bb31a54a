"""Who may call the server: API keys (each mapped to a tenant), Host and Origin allow-lists.

* **API keys.** ``parse_api_keys(["k1=acme", "k2"])`` maps each key to a tenant
  (a key without ``=TENANT`` is a tenant of its own). With keys configured every
  request but ``/health`` must send one as ``Authorization: Bearer KEY`` (OpenAI)
  or ``x-api-key: KEY`` (Anthropic); keys are compared as SHA-256 digests with
  :func:`hmac.compare_digest`, against every configured key, so the time taken
  says nothing about which key (or how much of one) matched.
* **Tenants.** The prefix cache is salted with the tenant: the key's, never one
  the client names. A client's ``x-tokenlean-tenant`` header counts only when the
  operator trusts it (``trust_tenant_header``); with keys it then splits the
  key's own tenant (``acme/alice``), so it can never reach another key's entries.
* **Host.** A DNS-rebinding page reaches a loopback server under the attacker's
  host name; only the listed names are served (default: ``localhost``,
  ``127.0.0.1`` and ``[::1]``, any port).
* **Origin.** A browser page on another origin may POST ``text/plain`` without a
  preflight; a request that carries an ``Origin`` not listed (default: none) is
  refused.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from tokenlean.core import ConfigError

from ._errors import ApiError

__all__ = ["ENV_API_KEYS", "LOOPBACK_HOSTS", "Access", "default_allowed_hosts",
           "parse_api_keys"]

ENV_API_KEYS = "TOKENLEAN_API_KEYS"
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
_TENANT = re.compile(r"[A-Za-z0-9._-]{1,64}")
_KEY = re.compile(r"[\x21-\x2b\x2d-\x7e]+")  # visible ASCII but the comma (the env separator)
_ORIGIN = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s]+")


def _key_tenant(key: str) -> str:
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:12]


def _add(out: dict[str, str], key: str, tenant: str) -> None:
    if not _KEY.fullmatch(key):
        raise ConfigError("an API key is empty or has a space, a comma or a character that is "
                          "not visible ASCII (give KEY or KEY=TENANT)")
    if tenant and not _TENANT.fullmatch(tenant):
        raise ConfigError(f"tenant {tenant[:70]!r}: a tenant name is 1-64 letters, digits, "
                          f"'.', '_' or '-'")
    tenant = tenant or _key_tenant(key)
    if out.get(key, tenant) != tenant:
        raise ConfigError(f"an API key is given twice, for tenants {out[key]!r} and {tenant!r}")
    out[key] = tenant


def parse_api_keys(specs: Iterable[str]) -> dict[str, str]:
    """``KEY`` or ``KEY=TENANT`` specs as ``{key: tenant}``.

    The tenant follows the last ``=`` when what follows is a tenant name (letters,
    digits, ``.``, ``_``, ``-``); otherwise the whole spec is the key (base64 keys end
    in ``=``). A key without a tenant is a tenant of its own (``key-<hash>``).
    """
    out: dict[str, str] = {}
    for spec in specs:
        spec = spec.strip()
        key, sep, tenant = spec.rpartition("=")
        if not sep or not key or not _TENANT.fullmatch(tenant):
            key, tenant = spec, ""
        _add(out, key, tenant)
    return out


def default_allowed_hosts(bind_host: str) -> tuple[str, ...]:
    """The Host names a server bound to ``bind_host`` answers by default.

    Loopback: ``localhost``, ``127.0.0.1``, ``[::1]`` (any port). Another address:
    those and that address. All interfaces (``0.0.0.0``, ``::``): those and any IP
    literal (a DNS-rebinding page always sends its own host *name*); add the names
    clients use with ``allowed_hosts``.
    """
    host = bind_host.strip().strip("[]").lower()
    if host in ("", "0.0.0.0", "::"):
        return (*LOOPBACK_HOSTS, "0.0.0.0/0", "::/0")
    if host == "localhost":
        return LOOPBACK_HOSTS
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return (*LOOPBACK_HOSTS, host)
    if address.is_loopback:
        return LOOPBACK_HOSTS
    return (*LOOPBACK_HOSTS, f"[{host}]" if address.version == 6 else host)


def _split_host(value: str) -> tuple[str, str | None]:
    """``host[:port]`` (``[v6]:port`` too) as (lower-case host, port or None)."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        host, rest = (value[:end + 1], value[end + 1:]) if end > 0 else (value, "")
        port = rest[1:] if rest.startswith(":") else None
        return host, port
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        return value.rstrip("."), None
    return host.rstrip("."), port


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class _HostRule:
    """One allow-list entry: ``*``, ``name``, ``name:port``, ``*.suffix`` or a CIDR block."""

    host: str
    port: str | None
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None

    @classmethod
    def parse(cls, entry: str) -> _HostRule:
        entry = entry.strip().lower()
        if "/" in entry:
            try:
                return cls("", None, ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                raise ConfigError(f"allowed host {entry!r} is not a name or an IP block"
                                  ) from None
        host, port = _split_host(entry)
        if not host:
            raise ConfigError("an allowed host is empty")
        return cls(host, port, None)

    def matches(self, host: str, port: str | None) -> bool:
        if self.network is not None:
            ip = _ip(host)
            return ip is not None and ip.version == self.network.version and ip in self.network
        if self.port is not None and self.port != port:
            return False
        if self.host == "*":
            return True
        if self.host.startswith("*."):
            return host.endswith(self.host[1:])
        return host == self.host


def _origin(value: str) -> str:
    return value.strip().lower().rstrip("/")


@dataclass(frozen=True, slots=True)
class Access:
    """The admission checks of one app (see the module docstring)."""

    keys: tuple[tuple[bytes, str], ...]  # (sha256 of the key, tenant)
    trust_tenant_header: bool
    tenant_header: str
    hosts: tuple[_HostRule, ...]
    origins: frozenset[str]

    @classmethod
    def build(cls, *, api_keys: Mapping[str, str] | None, trust_tenant_header: bool,
              tenant_header: str, allowed_hosts: Sequence[str] | None,
              allowed_origins: Sequence[str]) -> Access:
        checked: dict[str, str] = {}
        for key, tenant in (api_keys or {}).items():
            _add(checked, key, tenant)
        keys = tuple((hashlib.sha256(k.encode()).digest(), t) for k, t in checked.items())
        if isinstance(allowed_hosts, str) or isinstance(allowed_origins, str):
            raise ConfigError("allowed_hosts and allowed_origins are lists of strings")
        origins = frozenset(_origin(o) for o in allowed_origins)
        for o in origins:
            if o != "*" and not _ORIGIN.fullmatch(o):
                raise ConfigError(f"allowed origin {o!r} is not scheme://host[:port] or '*'")
        hosts = LOOPBACK_HOSTS if allowed_hosts is None else tuple(allowed_hosts)
        return cls(keys, bool(trust_tenant_header), tenant_header.lower(),
                   tuple(_HostRule.parse(h) for h in hosts), origins)

    @property
    def tenants(self) -> tuple[str, ...]:
        return tuple(sorted({t for _, t in self.keys}))

    def check_host(self, value: str | None) -> None:
        if value is None:
            raise ApiError(400, "the request has no Host header")
        host, port = _split_host(value)
        if not any(rule.matches(host, port) for rule in self.hosts):
            raise ApiError(403, f"this server does not answer to the host name "
                                f"{value[:80]!r}; the operator lists the names it serves "
                                f"(tokenlean serve --allowed-host)", code="host_not_allowed")

    def check_origin(self, value: str | None) -> None:
        if value is None or "*" in self.origins or _origin(value) in self.origins:
            return
        raise ApiError(403, f"requests from the web origin {value[:80]!r} are refused; the "
                            f"operator lists the origins allowed (tokenlean serve "
                            f"--allowed-origin)", code="origin_not_allowed")

    def tenant(self, headers: Mapping[str, str]) -> str:
        """The prefix-cache tenant of a request, or a 401 when a key is required."""
        claimed = headers.get(self.tenant_header, "") if self.trust_tenant_header else ""
        if not self.keys:
            return claimed
        presented = [v for v in (_bearer(headers.get("authorization")),
                                 headers.get("x-api-key")) if v]
        if not presented:
            raise ApiError(401, "this server requires an API key: send 'Authorization: "
                                "Bearer KEY' (OpenAI) or 'x-api-key: KEY' (Anthropic)",
                           code="invalid_api_key", headers={"www-authenticate": "Bearer"})
        found = ""
        for value in presented:
            digest = hashlib.sha256(value.encode()).digest()
            for stored, tenant in self.keys:  # every key, no early exit
                if hmac.compare_digest(digest, stored) and not found:
                    found = tenant
        if not found:
            raise ApiError(401, "the API key is not valid for this server",
                           code="invalid_api_key", headers={"www-authenticate": "Bearer"})
        return f"{found}/{claimed}" if claimed else found


def _bearer(value: str | None) -> str:
    scheme, _, token = (value or "").strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""
