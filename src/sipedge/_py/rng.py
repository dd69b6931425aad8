"""Random numbers and key hashes: the pure-Python twin of ``csrc/rng.c``.

Same generator (xoshiro256** seeded through splitmix64), same unbiased
draw in ``[0, n]`` (bitmask rejection; ``n == 0`` consumes nothing) and same
key hash, bit for bit; see ``csrc/rng.h`` for the exact definitions.
"""
from __future__ import annotations

M64 = 0xFFFFFFFFFFFFFFFF
GOLDEN = 0x9E3779B97F4A7C15
HASH_C1 = 0xFF51AFD7ED558CCD


def mix64(z: int) -> int:
    """The splitmix64 finaliser on a 64-bit integer."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def hash_bytes(data: bytes) -> int:
    """64-bit hash of *data* (blocks of 8 bytes, little-endian, zero-padded)."""
    n = len(data)
    h = GOLDEN ^ ((n * HASH_C1) & M64)
    frm = int.from_bytes
    for k in range(0, n, 8):
        h = mix64(h ^ frm(data[k:k + 8], "little"))
    return mix64(h)


class Rng:
    """xoshiro256** generator; ``Rng(seed)`` for a seed in 0 .. 2**64-1."""

    __slots__ = ("s0", "s1", "s2", "s3")

    def __init__(self, seed: int) -> None:
        self.seed(seed)

    def seed(self, seed: int) -> None:
        s = []
        for _ in range(4):
            seed = (seed + GOLDEN) & M64
            s.append(mix64(seed))
        self.s0, self.s1, self.s2, self.s3 = s

    def next(self) -> int:
        """The next 64-bit output."""
        s0, s1, s2, s3 = self.s0, self.s1, self.s2, self.s3
        x = (s1 * 5) & M64
        result = ((((x << 7) | (x >> 57)) & M64) * 9) & M64
        t = (s1 << 17) & M64
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = ((s3 << 45) | (s3 >> 19)) & M64
        self.s0, self.s1, self.s2, self.s3 = s0, s1, s2, s3
        return result

    def uniform(self, n: int) -> int:
        """A uniform integer in ``[0, n]`` inclusive (``n == 0``: 0, no draw)."""
        if n == 0:
            return 0
        shift = 64 - n.bit_length()
        while True:
            x = self.next() >> shift
            if x <= n:
                return x

    def state(self) -> tuple[int, int, int, int]:
        return (self.s0, self.s1, self.s2, self.s3)
