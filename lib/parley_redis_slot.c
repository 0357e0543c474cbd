#include "parley_redis_slot.h"

uint16_t parley_redis_crc16(const unsigned char *buf, size_t len)
{
    uint16_t crc = 0;
    size_t i;
    int bit;

    for (i = 0; i < len; i++) {
        crc ^= (uint16_t) (buf[i] << 8);
        for (bit = 0; bit < 8; bit++) {
            crc = (crc & 0x8000) ? (uint16_t) ((crc << 1) ^ 0x1021)
                                 : (uint16_t) (crc << 1);
        }
    }

    return crc;
}

unsigned parley_redis_slot(const unsigned char *key, size_t len)
{
    size_t start, end;

    for (start = 0; start < len && key[start] != '{'; start++) {
        /* find the first '{' */
    }

    if (start < len) {
        for (end = start + 1; end < len && key[end] != '}'; end++) {
            /* and the first '}' after it */
        }

        if (end < len && end > start + 1) {
            return parley_redis_crc16(key + start + 1, end - start - 1)
                   % PARLEY_REDIS_SLOTS;
        }
    }

    return parley_redis_crc16(key, len) % PARLEY_REDIS_SLOTS;
}
