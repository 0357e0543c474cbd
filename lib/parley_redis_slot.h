/*
 * Redis Cluster key slots: CRC16 (XMODEM) of the key, or of its hash tag,
 * modulo 16384, as the Redis Cluster specification defines them.  hiredis
 * 0.14 has no cluster support, so Parley routes commands (and sharded
 * pub/sub channels) to the node that owns the slot itself.
 */
#ifndef PARLEY_REDIS_SLOT_H
#define PARLEY_REDIS_SLOT_H

#include <stddef.h>
#include <stdint.h>

#define PARLEY_REDIS_SLOTS 16384

/* CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, no reflection. */
uint16_t parley_redis_crc16(const unsigned char *buf, size_t len);

/*
 * The slot of a key.  When the key holds a '{' followed later by a '}' with
 * at least one byte between them, only the bytes between the first '{' and
 * the first '}' after it are hashed ("{user:7}:inbox" and "{user:7}:presence"
 * share a slot); otherwise the whole key is.
 */
unsigned parley_redis_slot(const unsigned char *key, size_t len);

#endif
