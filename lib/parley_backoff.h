/*
 * Reconnect backoff: exponential growth from a floor to a ceiling, with
 * "equal jitter" so that many workers that lost the same backend do not
 * reconnect in lockstep, yet none retries sooner than half the nominal delay.
 */
#ifndef PARLEY_BACKOFF_H
#define PARLEY_BACKOFF_H

#include <stdint.h>

/*
 * Delay in milliseconds before attempt number `failures` + 1, given
 * `failures` consecutive failures so far (0 = first retry).  `random` is any
 * 32-bit random value; the result lies in [nominal / 2, nominal] where
 * nominal = min(max_ms, min_ms * 2^failures).  min_ms == 0 yields 0;
 * max_ms < min_ms is treated as max_ms == min_ms.
 */
uint64_t parley_backoff_delay(uint64_t min_ms, uint64_t max_ms,
                              unsigned failures, uint32_t random);

#endif
