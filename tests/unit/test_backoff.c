#include <criterion/criterion.h>

#include "parley_backoff.h"

Test(backoff, first_retry_lies_between_half_and_whole_floor)
{
    for (uint32_t r = 0; r < 1000; r++) {
        uint64_t d = parley_backoff_delay(100, 5000, 0, r * 2654435761u);
        cr_assert(d >= 50 && d <= 100, "delay %lu out of [50,100]", d);
    }
}

Test(backoff, doubles_per_failure_until_the_ceiling)
{
    /* random 0 gives the lowest point of each window: nominal - nominal/2 */
    cr_assert_eq(parley_backoff_delay(100, 5000, 0, 0), 50);
    cr_assert_eq(parley_backoff_delay(100, 5000, 1, 0), 100);
    cr_assert_eq(parley_backoff_delay(100, 5000, 2, 0), 200);
    cr_assert_eq(parley_backoff_delay(100, 5000, 5, 0), 1600);
    cr_assert_eq(parley_backoff_delay(100, 5000, 6, 0), 2500);
    cr_assert_eq(parley_backoff_delay(100, 5000, 60, 0), 2500);
}

Test(backoff, never_exceeds_the_ceiling_even_after_many_failures)
{
    for (unsigned f = 0; f < 200; f++) {
        uint64_t d = parley_backoff_delay(100, 5000, f, 0xffffffffu);
        cr_assert(d <= 5000, "failures %u: %lu", f, d);
        cr_assert(d >= 50, "failures %u: %lu", f, d);
    }
}

Test(backoff, huge_bounds_do_not_overflow)
{
    uint64_t max = UINT64_MAX / 2 + 7;
    uint64_t d = parley_backoff_delay(UINT64_MAX / 4, max, 100, 0);
    cr_assert(d <= max && d >= max / 2, "%lu", d);
}

Test(backoff, degenerate_bounds)
{
    cr_assert_eq(parley_backoff_delay(0, 0, 3, 12345), 0);
    /* max below min behaves as max == min */
    uint64_t d = parley_backoff_delay(400, 10, 3, 7);
    cr_assert(d >= 200 && d <= 400, "%lu", d);
    cr_assert_eq(parley_backoff_delay(1, 1, 0, 99), 1);
}

Test(backoff, jitter_spreads_retries)
{
    uint64_t lo = UINT64_MAX, hi = 0;
    for (uint32_t r = 0; r < 5000; r++) {
        uint64_t d = parley_backoff_delay(1000, 1000, 0, r * 2246822519u + 1);
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
    }
    cr_assert(lo < 600 && hi > 900, "window [%lu,%lu] too narrow", lo, hi);
}
