/* split_clients: see split.h. */
#include "core/split.h"

uint32_t sg_murmur_hash2(const void *p, size_t len)
{
    const unsigned char *data = p;
    uint32_t h = (uint32_t)len, k;
    while (len >= 4) {
        k = data[0] | (uint32_t)data[1] << 8 | (uint32_t)data[2] << 16 | (uint32_t)data[3] << 24;
        k *= 0x5bd1e995;
        k ^= k >> 24;
        k *= 0x5bd1e995;
        h *= 0x5bd1e995;
        h ^= k;
        data += 4;
        len -= 4;
    }
    switch (len) {
    case 3: h ^= (uint32_t)data[2] << 16; /* fall through */
    case 2: h ^= (uint32_t)data[1] << 8;  /* fall through */
    case 1: h ^= data[0]; h *= 0x5bd1e995;
    }
    h ^= h >> 13;
    h *= 0x5bd1e995;
    h ^= h >> 15;
    return h;
}

long sg_split_percent(const char *s, size_t n)
{
    if (n < 2 || s[n - 1] != '%') return -1;
    long v = 0;
    int frac = -1;
    for (size_t i = 0; i + 1 < n; i++) {
        if (s[i] == '.' && frac < 0) { frac = 0; continue; }
        if (s[i] < '0' || s[i] > '9' || frac >= 2) return -1;
        v = v * 10 + (s[i] - '0');
        if (frac >= 0) frac++;
        if (v > 100000) return -1;
    }
    for (int f = frac < 0 ? 0 : frac; f < 2; f++) v *= 10;
    return v;
}

bool sg_split_bound(long pct, uint64_t *sum, uint64_t *last, uint32_t *bound)
{
    /* nginx: "*" counts as the whole 100%, so nothing may follow it */
    *sum = pct ? *sum + (uint64_t)pct : 10000;
    if (*sum > 10000) return false;
    *bound = 0;
    if (pct) {
        *last += (uint64_t)pct * 0xffffffffu / 10000;
        *bound = (uint32_t)*last;
    }
    return true;
}

size_t sg_split_pick(const uint32_t *bound, size_t n, uint32_t hash)
{
    for (size_t i = 0; i < n; i++)
        if (hash < bound[i] || bound[i] == 0) return i;
    return n;
}
