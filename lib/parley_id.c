#include "parley_id.h"

#define SEQ_SHIFT  0
#define NODE_SHIFT PARLEY_ID_SEQ_BITS
#define MS_SHIFT   (PARLEY_ID_SEQ_BITS + PARLEY_ID_NODE_BITS)

parley_id_rc_t parley_id_gen_init(parley_id_gen_t *gen, uint32_t node)
{
    gen->node = 0;
    gen->seq = 0;
    gen->last_ms = 0;
    gen->started = 0;

    if (node > PARLEY_ID_NODE_MAX) {
        return PARLEY_ID_ENODE;
    }

    gen->node = node;
    return PARLEY_ID_OK;
}

parley_id_rc_t parley_id_next(parley_id_gen_t *gen, uint64_t now_ms,
                              uint64_t *id)
{
    uint64_t ms;
    uint32_t seq;

    if (gen->node > PARLEY_ID_NODE_MAX) {
        return PARLEY_ID_ENODE;
    }

    if (now_ms < PARLEY_ID_EPOCH_MS) {
        /* a clock before 2025 is wrong, not stepped back: refuse to start */
        if (!gen->started) {
            return PARLEY_ID_ECLOCK;
        }
        ms = 0;
    } else {
        ms = now_ms - PARLEY_ID_EPOCH_MS;
    }

    if (!gen->started || ms > gen->last_ms) {
        seq = 0;
    } else {
        /* same millisecond, or the clock is behind: stay on last_ms */
        ms = gen->last_ms;
        seq = gen->seq + 1;
        if (seq > PARLEY_ID_SEQ_MAX) {
            ms++; /* borrow the next millisecond */
            seq = 0;
        }
    }

    if (ms > PARLEY_ID_MS_MAX) {
        return PARLEY_ID_ECLOCK;
    }

    gen->last_ms = ms;
    gen->seq = seq;
    gen->started = 1;

    *id = (ms << MS_SHIFT) | ((uint64_t) gen->node << NODE_SHIFT)
          | ((uint64_t) seq << SEQ_SHIFT);
    return PARLEY_ID_OK;
}

uint64_t parley_id_compose(uint64_t unix_ms, uint32_t node, uint32_t seq)
{
    uint64_t ms;

    if (unix_ms < PARLEY_ID_EPOCH_MS || node > PARLEY_ID_NODE_MAX
        || seq > PARLEY_ID_SEQ_MAX)
    {
        return 0;
    }

    ms = unix_ms - PARLEY_ID_EPOCH_MS;
    if (ms > PARLEY_ID_MS_MAX) {
        return 0;
    }

    return (ms << MS_SHIFT) | ((uint64_t) node << NODE_SHIFT)
           | ((uint64_t) seq << SEQ_SHIFT);
}

uint64_t parley_id_unix_ms(uint64_t id)
{
    return ((id >> MS_SHIFT) & PARLEY_ID_MS_MAX) + PARLEY_ID_EPOCH_MS;
}

uint32_t parley_id_node(uint64_t id)
{
    return (uint32_t) ((id >> NODE_SHIFT) & PARLEY_ID_NODE_MAX);
}

uint32_t parley_id_seq(uint64_t id)
{
    return (uint32_t) ((id >> SEQ_SHIFT) & PARLEY_ID_SEQ_MAX);
}

size_t parley_id_format(uint64_t id, char out[PARLEY_ID_DEC_SIZE])
{
    char   tmp[PARLEY_ID_DEC_SIZE];
    size_t n = 0, i;

    do {
        tmp[n++] = (char) ('0' + id % 10);
        id /= 10;
    } while (id != 0);

    for (i = 0; i < n; i++) {
        out[i] = tmp[n - 1 - i];
    }
    out[n] = '\0';

    return n;
}

int parley_id_parse(const char *str, size_t len, uint64_t *id)
{
    uint64_t v = 0;
    unsigned d;
    size_t   i;

    if (len == 0 || len > PARLEY_ID_DEC_SIZE - 1 || (str[0] == '0' && len > 1)) {
        return -1;
    }

    for (i = 0; i < len; i++) {
        if (str[i] < '0' || str[i] > '9') {
            return -1;
        }
        d = (unsigned) (str[i] - '0');
        if (v > (UINT64_MAX - d) / 10) {
            return -1;
        }
        v = v * 10 + d;
    }

    *id = v;
    return 0;
}
