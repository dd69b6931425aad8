"""Webhook connection overrides: the ``#ct=..&rc=..&e=a,b`` URL fragment.

Twilio reads a fragment on a webhook URL to tune how it connects to it:

====  ==========================================  ===========  =========
key   meaning                                     range        default
====  ==========================================  ===========  =========
ct    connect timeout, ms                         100-10000    5000
rt    read timeout, ms                            100-15000    15000
tt    total time including retries, ms            100-15000    15000
rc    retry count                                 0-5          1
rp    retry policy: 4xx, 5xx, ct, rt, all, list                ct
sni   use SNI                                     y or n       y
e     egress edge, or a list rotated on retries   public, -ix  ashburn
====  ==========================================  ===========  =========

:func:`build` writes only the keys that are set, in the order of the table;
:func:`parse` reads one back, and ``build(*parse(url)) == url`` for any URL
that :func:`build` wrote. Out-of-range values raise
:class:`~sipedge.errors.OverrideError` naming the key, value and range.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional, Tuple

from . import catalog
from ..errors import OverrideError

__all__ = ["Overrides", "build", "parse", "RANGES", "RETRY_POLICIES", "DEFAULTS"]

#: Inclusive ranges of the integer keys.
RANGES = {"ct": (100, 10000), "rt": (100, 15000), "tt": (100, 15000), "rc": (0, 5)}
RETRY_POLICIES = ("4xx", "5xx", "ct", "rt", "all")
#: Twilio's defaults when a key is absent.
DEFAULTS = {"ct": 5000, "rt": 15000, "tt": 15000, "rc": 1, "rp": ("ct",), "sni": True,
            "e": ("ashburn",)}
KEYS = ("ct", "rt", "tt", "rc", "rp", "sni", "e")


def egress_edges() -> list[str]:
    """Edges valid in ``e=``: the public and Interconnect edges (not roaming)."""
    return [e.name for e in catalog.EDGES.values() if e.kind in ("public", "private")]


@dataclass(frozen=True)
class Overrides:
    """Connection overrides; ``None`` means not set (Twilio's default applies)."""

    ct: Optional[int] = None
    rt: Optional[int] = None
    tt: Optional[int] = None
    rc: Optional[int] = None
    rp: Optional[Tuple[str, ...]] = None
    sni: Optional[bool] = None
    e: Optional[Tuple[str, ...]] = None

    def __post_init__(self) -> None:
        for key, (lo, hi) in RANGES.items():
            v = getattr(self, key)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int):
                raise OverrideError(f"override {key}={v!r}: must be an integer {lo}-{hi}")
            if not lo <= v <= hi:
                raise OverrideError(f"override {key}={v} is out of range: {key} must be {lo}-{hi}")
        if self.rp is not None:
            rp = (self.rp,) if isinstance(self.rp, str) else tuple(self.rp)
            _check_list("rp", rp, RETRY_POLICIES)
            object.__setattr__(self, "rp", rp)
        if self.sni is not None and not isinstance(self.sni, bool):
            raise OverrideError(f"override sni={self.sni!r}: must be True or False (y or n)")
        if self.e is not None:
            e = (self.e,) if isinstance(self.e, str) else tuple(self.e)
            e = tuple(_egress(x) for x in e)
            _check_list("e", e, egress_edges())
            object.__setattr__(self, "e", e)

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))

    def effective(self) -> dict:
        """Every key with the value Twilio uses (the default where not set)."""
        return {k: (DEFAULTS[k] if getattr(self, k) is None else getattr(self, k)) for k in KEYS}

    def fragment(self) -> str:
        """The fragment text without ``#`` (empty when nothing is set)."""
        parts = []
        for k in KEYS:
            v = getattr(self, k)
            if v is None:
                continue
            if k == "sni":
                v = "y" if v else "n"
            elif k in ("rp", "e"):
                v = ",".join(v)
            parts.append(f"{k}={v}")
        return "&".join(parts)


def _egress(name: str) -> str:
    e = catalog.EDGES.get(name)
    if e is None or e.kind not in ("public", "private"):
        legacy = catalog._BY_LEGACY.get(str(name).lower())
        hint = f" (did you mean {legacy.name!r}?)" if legacy and legacy.kind != "roaming" else ""
        raise OverrideError(
            f"override e={name!r}: not an egress edge{hint}; valid: {', '.join(egress_edges())}")
    return name


def _check_list(key: str, items: Tuple[str, ...], valid) -> None:
    if not items:
        raise OverrideError(f"override {key}= is empty: give one or more of {', '.join(valid)}")
    for x in items:
        if x not in valid:
            raise OverrideError(f"override {key}={x!r} is not valid; use one or more of {', '.join(valid)}")
    dup = [x for i, x in enumerate(items) if x in items[:i]]
    if dup:
        raise OverrideError(f"override {key} lists {dup[0]!r} twice; name each value once")


def build(url: str, overrides: Optional[Overrides] = None, **keys) -> str:
    """*url* with the connection-override fragment of *overrides* (or of the keywords).

    ``build("https://example.com/voice", ct=1000, rc=2, e=["ashburn", "umatilla"])``
    gives ``https://example.com/voice#ct=1000&rc=2&e=ashburn,umatilla``. A URL
    that already has a fragment is refused (Twilio reads the fragment as overrides).
    """
    if overrides is None:
        overrides = Overrides(**keys)
    elif keys:
        raise TypeError("give either an Overrides object or keywords, not both")
    if "#" in url:
        raise OverrideError(f"{url!r} already has a fragment; remove it (Twilio reads the "
                            "fragment as connection overrides), or use parse() to edit it")
    frag = overrides.fragment()
    return f"{url}#{frag}" if frag else url


def _int(key: str, text: str) -> int:
    lo, hi = RANGES[key]
    if not text.isdigit() or not text.isascii() or (len(text) > 1 and text[0] == "0"):
        raise OverrideError(f"override {key}={text!r}: must be a whole number {lo}-{hi}")
    return int(text)


def parse(url: str) -> Tuple[str, Overrides]:
    """(URL without the fragment, its :class:`Overrides`). Unknown keys are refused."""
    base, sep, frag = url.partition("#")
    if not sep or not frag:
        return base, Overrides()
    vals: dict = {}
    for part in frag.split("&"):
        key, eq, text = part.partition("=")
        if not eq:
            raise OverrideError(f"override {part!r} in {url!r}: write KEY=VALUE, keys: {', '.join(KEYS)}")
        if key not in KEYS:
            raise OverrideError(f"unknown override key {key!r} in {url!r}; valid keys: {', '.join(KEYS)}")
        if key in vals:
            raise OverrideError(f"override {key} given twice in {url!r}; give each key once")
        if key in RANGES:
            vals[key] = _int(key, text)
        elif key == "sni":
            if text not in ("y", "n"):
                raise OverrideError(f"override sni={text!r}: must be y or n")
            vals[key] = text == "y"
        else:
            vals[key] = tuple(text.split(",")) if text else ()
    return base, Overrides(**vals)
