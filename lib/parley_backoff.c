#include "parley_backoff.h"

uint64_t parley_backoff_delay(uint64_t min_ms, uint64_t max_ms,
                              unsigned failures, uint32_t random)
{
    uint64_t nominal = min_ms;
    uint64_t half;

    if (max_ms < min_ms) {
        max_ms = min_ms;
    }

    /* doubling stops at the ceiling, so it can never overflow */
    while (failures-- > 0 && nominal < max_ms) {
        nominal = nominal > max_ms / 2 ? max_ms : nominal * 2;
    }

    if (nominal > max_ms) {
        nominal = max_ms;
    }

    half = nominal / 2;
    return (nominal - half) + (half ? random % (half + 1) : 0);
}
